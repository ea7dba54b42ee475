"""/metrics: Prometheus text with request latency per callback, the cache's counters and the models' readiness;
behind sign-in like every route."""

from prometheus_client.parser import text_string_to_metric_families

from app.dashboard import ids
from app.team.auth import AuthConfig, UsersFile
from app.testing.dash_http import call


def _samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _analysed(samples: dict) -> float:
    """How many analyse callbacks the metrics have counted."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "attention_flows_request_seconds_count"
        and ("route", "/_dash-update-component") in labels
        and any(k == "callback" and v.startswith(f"..{ids.ANALYSIS}.data") for k, v in labels)
    )


def test_metrics_count_callbacks_and_cache_use(tiny_app):
    client = tiny_app.server.test_client()
    before = _analysed(_samples(client.get("/metrics").get_data(as_text=True)))  # the app may be shared
    for _ in range(2):  # the second analysis of the same text is a cache hit
        response = call(
            client, f"{ids.ANALYSIS}.data", {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": "a dull film"},
            f"{ids.ANALYSE}.n_clicks",
        )  # fmt: skip
        assert response.status_code == 200
    body = {"output": "made-up.children", "inputs": [], "changedPropIds": []}
    made_up = client.post("/_dash-update-component", json=body)
    assert made_up.status_code == 400  # refused before Dash (app/team/request_checks.py)
    page = client.get("/metrics")
    assert page.status_code == 200 and page.mimetype == "text/plain"
    samples = _samples(page.get_data(as_text=True))
    assert _analysed(samples) - before == 2
    counts = [labels for name, labels in samples if name == "attention_flows_request_seconds_count"]
    assert not any("made-up" in str(labels) for labels in counts)  # made-up outputs never become labels
    assert samples[("attention_flows_models_ready", ())] == 1
    assert samples[("attention_flows_cache_misses_total", ())] >= 1
    assert samples[("attention_flows_cache_hits_total", ())] >= 1
    assert samples[("attention_flows_cache_bytes", ())] > 0


def test_metrics_need_sign_in(tiny_config, tmp_path):
    from app.team.site import create_app

    users = UsersFile(tmp_path / "users.json")
    users.add("ada", "correct horse battery")
    client = _loaded(create_app(tiny_config, auth=AuthConfig(users_file=users.path))).server.test_client()
    assert client.get("/metrics").status_code == 401


def _loaded(dash_app):
    """The app once its models are loaded (a process must not exit while the loader thread is inside torch)."""
    from app.service.registry import pair_service

    pair_service(server=dash_app.server)
    return dash_app
