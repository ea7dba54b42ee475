"""Serving a team: `attention-flows serve --workers 2` runs gunicorn; workers share nothing yet agree."""

import json
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from app.dashboard import ids
from app.testing.dash_http import request_body
from tests.cli.test_fuzz_cli import exported_into
from tests.servers import serving


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_gunicorn_workers_serve_the_same_answers_from_a_preloaded_master(tiny_config, tmp_path, temporary):
    """Two workers answer, agree, and share the models the master loaded before forking them; a worker killed
    with -9 is replaced by one that answers at once. gunicorn opens no control socket at a fixed path (in HOME or
    XDG_RUNTIME_DIR), and a server that exported leaves no temporary folders after SIGTERM."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    runtime.mkdir()
    env = {"TMPDIR": str(temporary), "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime),
           "ATTENTION_FLOWS_HOME": str(home / "data")}  # fmt: skip
    log = tmp_path / "gunicorn.log"
    with serving("--config", str(tiny_config), "--workers", "2", log=log, env=env, timeout=90) as base:
        assert not (home / ".gunicorn").exists() and list(runtime.iterdir()) == []
        specs = json.loads(urllib.request.urlopen(f"{base}/_dash-dependencies").read())
        spec = next(s for s in specs if f"{ids.SANKEY}.figure" in s["output"] and "allow_duplicate" not in s["output"])
        values = {
            f"{ids.ANALYSIS}.data": {"text": "a fine , moving film", "text_pair": None},
            f"{ids.TAU}.value": 0.05,
            f"{ids.LAYERS}.value": [1, 2],
            f"{ids.MODE}.value": "comparison",
        }
        body = request_body(spec, values, f"{ids.ANALYSIS}.data")
        answers = {json.dumps(_post(f"{base}/_dash-update-component", body), sort_keys=True) for _ in range(6)}
        assert len(answers) == 1  # every worker computed (or cached) the same figure
        assert "sankey" in answers.pop()
        _two_workers_answer(base)
        _a_killed_worker_is_replaced_at_once(base)
        made = exported_into(base, temporary)
    # serving() has sent SIGTERM and waited for gunicorn to exit
    assert set(temporary.iterdir()) & made == set(), log.read_text()[-2000:]


def _arbiter(port: int) -> psutil.Process:
    """gunicorn's arbiter (master) serving ``port``: the socket is shared by the arbiter and its forked workers
    (same command line); the arbiter is the oldest of them."""
    holder = next(
        psutil.Process(c.pid) for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    )  # fmt: skip
    arbiter = holder
    while arbiter.parent() is not None and arbiter.parent().cmdline() == arbiter.cmdline():
        arbiter = arbiter.parent()
    return arbiter


def _a_killed_worker_is_replaced_at_once(base: str) -> None:
    """``serve --workers 2`` preloads: the master has loaded torch and the pair before it forks (the workers share
    it copy-on-write), so gunicorn's replacement of a worker killed with -9 answers /healthz "ok" within 2 s — a
    worker that loaded its own models answered 503 for 20 s or more."""
    arbiter = _arbiter(int(base.rsplit(":", 1)[1]))
    assert "libtorch" in Path(f"/proc/{arbiter.pid}/maps").read_text()  # the master imported torch: preloaded
    victim = arbiter.children()[0]
    victim.kill()
    started = time.monotonic()
    while victim.pid in {w.pid for w in arbiter.children()} or len(arbiter.children()) < 2:
        assert time.monotonic() - started < 10, "gunicorn did not replace the killed worker"
        time.sleep(0.02)
    answered = 0
    while answered < 8:  # every worker, the new one too, answers ok (8 in a row reach both)
        assert time.monotonic() - started < 2.0, f"only {answered} ok answers in a row after 2 s"
        try:
            ok = urllib.request.urlopen(f"{base}/healthz", timeout=2).read().startswith(b"ok")
        except OSError:  # 503 while a worker loads its models
            ok = False
        answered = answered + 1 if ok else 0


def _holder(workers: list[psutil.Process], client_port: int) -> psutil.Process | None:
    """The worker whose socket is connected to our ``client_port``."""
    for worker in workers:
        if any(c.raddr and c.raddr.port == client_port for c in worker.net_connections(kind="tcp")):
            return worker
    return None


def _two_workers_answer(base: str) -> None:
    """Exactly two workers (children of the gunicorn arbiter listening on the port), and both answer: one is held by a
    request whose headers have not all arrived (a sync worker waits for them), so the requests meanwhile are the
    other's; then the held one finishes its request. With one worker the requests meanwhile would time out."""
    port = int(base.rsplit(":", 1)[1])
    workers = _arbiter(port).children()  # they share the arbiter's listening socket
    assert len(workers) == 2, [w.cmdline() for w in workers]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line that ends the headers: later
        deadline = time.monotonic() + 10
        while (busy := _holder(workers, held.getsockname()[1])) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert busy is not None, "no worker took the held connection"
        for _ in range(3):  # answered while `busy` waits: by the other worker
            assert urllib.request.urlopen(f"{base}/healthz", timeout=20).read().startswith(b"ok")
        held.sendall(b"Connection: close\r\n\r\n")
        reply = b""
        while chunk := held.recv(4096):  # to the end: headers and body may come in separate packets
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and b"ok" in reply  # and the held worker answered too
