"""The team server's own routes beside the pages: ``/docs/<name>`` (the help links' documents) and ``/healthz``, and
handing freed memory back to the OS after each heavy request."""

from __future__ import annotations

import re
import time
from pathlib import Path

from flask import Flask, g, send_file

from app.dashboard.help import render_doc
from app.service.registry import PairRegistry
from app.service.stores import RedisCache
from attention.memory import HEAVY_CPU_SECONDS, release_freed_memory

_APP_DIR = Path(__file__).resolve().parents[1]  # app/


def docs_dir() -> Path:
    """The checkout's docs/ folder (``app/_docs`` in a wheel)."""
    packaged = _APP_DIR / "_docs"
    return packaged if packaged.is_dir() else _APP_DIR.parent / "docs"


def install_routes(server: Flask, registry: PairRegistry) -> None:
    """``/docs/<name>`` and ``/healthz`` on ``server`` (``registry``: the pairs /healthz reports), and the memory
    release after each request."""

    @server.before_request
    def note_cpu() -> None:
        g.cpu_at_start = time.thread_time()

    @server.teardown_request
    def release_memory(_error: BaseException | None) -> None:
        """After a heavy request (:data:`~attention.memory.HEAVY_CPU_SECONDS` of CPU or more: an analysis, an
        export, a long input's views), hand what it freed back to the OS (see
        :func:`attention.memory.release_freed_memory`): a worker's RSS then follows its byte-bounded cache instead of
        its largest past request. A light request (a redraw) frees little, and trimming after it cost ~0.5 ms of
        CPU plus the page faults of the next request taking the memory back: ~2–3 ms per control change."""
        start = g.get("cpu_at_start")  # None: refused by an earlier check (sign-in, the body), a light request
        if start is not None and time.thread_time() - start >= HEAVY_CPU_SECONDS:
            release_freed_memory()

    @server.route("/docs/<name>")
    def docs(name: str):
        """docs/<name>.md as a page, one anchor per section (the "?" help links point here); docs/<name>.png, the
        images those pages show."""
        if re.fullmatch(r"[a-z_-]+\.png", name) and (docs_dir() / name).is_file():
            return send_file(docs_dir() / name, mimetype="image/png")
        path = docs_dir() / f"{name}.md"
        if not re.fullmatch(r"[a-z_-]+", name) or not path.is_file():
            return "No such document.", 404
        return render_doc(path), 200

    @server.route("/healthz")
    def healthz() -> tuple[str, int, dict]:
        return health(registry)


def health(registry: PairRegistry) -> tuple[str, int, dict]:
    """This worker's readiness. First line: ``ok`` (200) once the default pair is loaded, ``loading the models``
    (503) while it loads, ``failed: …`` (500) if loading failed. Then, on a team server, one line per pair this
    worker has loaded and the shared cache's state (``unreachable`` means it serves from its own cache)."""
    loader = registry.loader(registry.default)
    status = loader.status
    first, code = {"ready": ("ok", 200), "loading": ("loading the models", 503)}.get(
        status, (f"failed: {loader.error}", 500)
    )
    lines = [first]
    if len(registry.names) > 1:
        lines += [f"pair {name}: {state}" for name, state in registry.status().items()]
    services = registry.ready_services()
    shared = next((s.shared for s in services if isinstance(s.shared, RedisCache)), None)
    if shared is not None:
        shared.ping()  # this worker's own view, now (0.5 s at most)
        lines.append(f"shared cache: {shared.state}")
    return "\n".join(lines), code, {"Content-Type": "text/plain; charset=utf-8"}
