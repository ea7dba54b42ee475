"""Servers started for tests and benchmarks: a free loopback port, and the one wait until a server is ready.

:func:`wait_until_ready` is the only loop that polls a server (``/healthz`` of ``attention-flows serve``, or any
page); the tests (``tests/servers.py``) and every benchmark that starts a server use it.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from pathlib import Path

from attention.errors import AttentionFlowsError

LOG_TAIL = 3000  # characters of the server's log quoted in an error


class ServerNotReady(AttentionFlowsError):
    """A server did not become ready: its process exited, it failed to load its models (HTTP 500), or time ran out."""


CHROMIUM = "/usr/bin/chromium"  # Debian's Chromium: the browser tests and benchmarks drive it (Playwright)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout: float = 5) -> tuple[int | None, str]:
    """(HTTP status, body) of a GET of ``url``; ``(None, "")`` when nothing answers (not listening yet, timed out)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:  # 503 while the models load; 500 if they failed
        return error.code, error.read().decode(errors="replace")
    except OSError:
        return None, ""


def wait_until_ready(
    url: str,
    *,
    timeout: float,
    statuses: Collection[int] = (200,),
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    in_a_row: int = 1,
    interval: float = 0.3,
) -> float:
    """Poll ``url`` (e.g. ``http://127.0.0.1:PORT/healthz``) every ``interval`` seconds until it answers with one of
    ``statuses`` ``in_a_row`` times running (several answers, to reach every worker of a gunicorn server); return
    the seconds waited. :class:`ServerNotReady` when it answers 500 (the models failed to load; 500 not among
    ``statuses``), when ``process`` exits, or after ``timeout`` seconds; its message quotes the end of ``log``."""
    started = time.perf_counter()
    answered = 0
    while True:
        status, body = http_status(url)
        answered = answered + 1 if status in statuses else 0
        if answered >= in_a_row:
            return time.perf_counter() - started
        if status == 500 and 500 not in statuses:
            _not_ready(f"{url} answered HTTP 500: the models failed to load ({body.strip()[:500]}).", log)
        if process is not None and process.poll() is not None:
            _not_ready(f"The server exited (status {process.returncode}) before {url} was ready.", log)
        if time.perf_counter() - started > timeout:
            last = "no answer" if status is None else f"HTTP {status}"
            _not_ready(f"{url} was not ready after {timeout:g} s (last answer: {last}).", log)
        time.sleep(interval)


def _not_ready(problem: str, log: Path | None) -> None:
    tail = log.read_text(errors="replace")[-LOG_TAIL:] if log is not None and log.is_file() else ""
    raise ServerNotReady(problem, f"Its log ({log}):\n{tail}" if tail else "Run `attention-flows serve` to see why.")
