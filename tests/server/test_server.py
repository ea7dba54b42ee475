"""Serving a team: `attention-flows serve --workers 2` runs gunicorn; workers share nothing yet agree."""

import json
import socket
import time
import urllib.request

import psutil
import pytest

from app.dashboard import ids
from app.testing.dash_http import request_body
from tests.servers import serving


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_gunicorn_workers_serve_the_same_answers(tiny_config, tmp_path):
    with serving("--config", str(tiny_config), "--workers", "2", log=tmp_path / "gunicorn.log", timeout=90) as base:
        specs = json.loads(urllib.request.urlopen(f"{base}/_dash-dependencies").read())
        spec = next(s for s in specs if s["output"] == f"{ids.SANKEY}.figure")
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
    holder = next(
        psutil.Process(c.pid) for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    )  # fmt: skip
    arbiter = holder  # the socket is shared by the arbiter and its forked workers (same command line)
    while arbiter.parent() is not None and arbiter.parent().cmdline() == arbiter.cmdline():
        arbiter = arbiter.parent()
    workers = arbiter.children()  # they share the arbiter's listening socket
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
        reply = held.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200") and b"ok" in reply  # and the held worker answered too
