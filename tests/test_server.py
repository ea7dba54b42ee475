"""Serving a team: `attention-flows serve --workers 2` runs gunicorn; workers share nothing yet agree."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from app import ids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_gunicorn_workers_serve_the_same_answers(tiny_config, tmp_path):
    port = _free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--config", str(tiny_config), "--port", str(port), "--workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                assert urllib.request.urlopen(f"{base}/healthz", timeout=1).read() == b"ok"
                break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail((tmp_path / "gunicorn.log").read_text())
        specs = json.loads(urllib.request.urlopen(f"{base}/_dash-dependencies").read())
        from app.dash_http import request_body

        spec = next(s for s in specs if s["output"] == f"{ids.SANKEY}.figure")
        values = {
            f"{ids.ANALYSIS}.data": {"text": "a fine , moving film", "text_pair": None},
            f"{ids.TAU}.value": 0.05,
            f"{ids.LAYERS}.value": [1, 2],
            f"{ids.MODE}.value": "comparison",
        }
        answers = {
            json.dumps(
                _post(f"{base}/_dash-update-component", request_body(spec, values, f"{ids.ANALYSIS}.data")),
                sort_keys=True,
            )
            for _ in range(6)
        }
        assert len(answers) == 1  # every worker computed (or cached) the same figure
        assert "sankey" in answers.pop()
        workers = subprocess.run(["pgrep", "-f", "gunicorn.*app.wsgi:server"], capture_output=True, text=True)
        assert len(workers.stdout.split()) >= 3  # the arbiter and two workers
    finally:
        process.terminate()
        process.wait(timeout=30)
