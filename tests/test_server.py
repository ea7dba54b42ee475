"""Serving a team: `attention-flows serve --workers 2` runs gunicorn; workers share nothing yet agree."""

import json
import subprocess
import urllib.request

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
        workers = subprocess.run(["pgrep", "-f", "gunicorn.*app.team.wsgi:server"], capture_output=True, text=True)
        assert len(workers.stdout.split()) >= 3  # the arbiter and two workers
