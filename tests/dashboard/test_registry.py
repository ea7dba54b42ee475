"""The page is served while the models load; callbacks wait for them; a failed load is a message, not a hang."""

from __future__ import annotations

import gc
import importlib
import inspect
import shutil
import subprocess
import sys
import threading

import pytest

from app.dashboard import ids
from app.service.registry import ModelsNotReadyError, ServiceLoader, pair_registry, pair_service
from app.testing.dash_http import call
from attention.errors import AttentionFlowsError, IncompatibleModelsError, ModelLoadError

TEXT_VALUES = {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": "a fine , moving film"}


def _blocked_build(service, release: threading.Event):
    def build():
        release.wait(30)
        return service

    return build


def test_loader_waits_then_hands_out_the_service(tiny_app):
    service, release = pair_service(server=tiny_app.server), threading.Event()
    loader = ServiceLoader(_blocked_build(service, release)).start()
    assert loader.status == "loading"
    with pytest.raises(ModelsNotReadyError, match="still loading"):
        loader.get(timeout=0.05)
    release.set()
    assert loader.get(timeout=10) is service
    assert loader.status == "ready" and loader.seconds is not None


@pytest.mark.parametrize(
    ("raised", "shown"),
    [
        (ModelLoadError("Model path /x does not exist.", "Fix 'path'."), "Model path /x does not exist. Fix 'path'."),
        (RuntimeError("disk on fire"), "Loading the models failed (RuntimeError: disk on fire)"),
    ],
)
def test_a_failed_load_is_reported_to_every_caller(raised, shown):
    def build():
        raise raised

    loader = ServiceLoader(build).start()
    for _ in range(2):  # every request gets the message, not only the first
        with pytest.raises(AttentionFlowsError) as error:
            loader.get(timeout=10)
        assert shown in str(error.value)
    assert loader.status == "failed"


@pytest.fixture
def collector_enabled():
    """The collector on, as a server starts, and nothing left frozen by the test."""
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    (gc.enable if was_enabled else gc.disable)()


def test_the_collector_is_paused_for_the_whole_build_then_what_it_built_is_frozen(collector_enabled):
    seen = []

    def build():
        built = [[i] for i in range(50_000)]  # a load creates many long-lived (tracked) objects
        seen.append(gc.isenabled())
        return built

    frozen_before = gc.get_freeze_count()
    loader = ServiceLoader(build).start()
    built = loader.get(timeout=10)
    assert seen == [False]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(built)


def test_a_failed_build_resumes_the_collector_and_freezes_nothing(collector_enabled):
    def build():
        raise RuntimeError("disk on fire")

    frozen_before = gc.get_freeze_count()
    loader = ServiceLoader(build).start()
    with pytest.raises(AttentionFlowsError):
        loader.get(timeout=10)
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen_before


def test_page_and_health_are_served_while_the_models_load(tiny_config, tiny_app):
    from app.team.site import create_app

    release = threading.Event()
    dash_app = create_app(tiny_config, build_service=_blocked_build(pair_service(server=tiny_app.server), release))
    client = dash_app.server.test_client()
    try:
        assert client.get("/").status_code == 200
        layout = client.get("/_dash-layout").get_json()
        assert "trace-from-dropdown" in str(layout) and "a fine , moving film" in str(layout)
        health = client.get("/healthz")
        assert (health.status_code, health.data) == (503, b"loading the models")
    finally:
        release.set()
    response = call(client, f"{ids.ANALYSIS}.data", TEXT_VALUES, f"{ids.ANALYSE}.n_clicks")
    assert response.get_json()["response"][ids.ANALYSIS]["data"]["text"] == "a fine , moving film"
    assert client.get("/healthz").data == b"ok"


def _pair_config(tmp_path, first, second):
    """A pair config over two model folders; the second model is shown as 'broken'."""
    config = tmp_path / "pair.toml"
    config.write_text(
        f'name = "pair"\nexamples = ["a fine , moving film"]\n'
        f'[pretrained]\npath = "{first}"\n[finetuned]\nname = "broken"\npath = "{second}"\n',
        encoding="utf-8",
    )
    return config


def test_models_that_fail_to_load_are_a_message_in_the_page_and_in_healthz(tiny_models, tmp_path):
    """config.json is fine (the page is built) but the weights are not: the failure surfaces in the page."""
    from app.team.site import create_app

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["bert-classifier"], broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    config = _pair_config(tmp_path, tiny_models["bert"], broken)
    dash_app = create_app(config)
    loader = pair_registry(dash_app.server)
    with pytest.raises(AttentionFlowsError):
        loader.get(timeout=60)
    client = dash_app.server.test_client()
    health = client.get("/healthz")
    assert health.status_code == 500 and b"Could not load model 'broken'" in health.data
    response = call(client, f"{ids.ANALYSIS}.data", TEXT_VALUES, f"{ids.ANALYSE}.n_clicks")
    shown = response.get_json()["sideUpdate"][ids.ERROR]["children"]
    assert "Could not load model 'broken'" in shown and "Traceback" not in shown


def test_bad_pairs_are_refused_before_anything_loads(tiny_models, tmp_path):
    from app.team.site import create_app

    with pytest.raises(IncompatibleModelsError, match="layers: 2 vs 3"):
        create_app(_pair_config(tmp_path, tiny_models["bert"], tiny_models["bert-3-layers"]))
    with pytest.raises(ModelLoadError, match="does not exist"):
        create_app(_pair_config(tmp_path, tiny_models["bert"], tmp_path / "absent"))


def test_the_engine_imports_without_torch_transformers_or_numba():
    """``import attention`` and the dashboard's page modules stay light, so the page is served at once."""
    code = (
        "import sys, attention, app.team.site, app.dashboard.callbacks;"
        "print(sorted(m for m in ('torch', 'transformers', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_every_lazy_engine_name_resolves():
    import attention

    assert set(attention.__all__) == set(attention._EXPORTS)
    for module in set(attention._EXPORTS.values()):  # an imported submodule must not shadow a name
        importlib.import_module(module)
    for name in attention.__all__:
        assert not inspect.ismodule(getattr(attention, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = attention.nope
