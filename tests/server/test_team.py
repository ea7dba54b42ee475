"""The team server: server config, several pairs (picker, LRU, names only), the Redis cache of runs and its
fallback, and background jobs — with real redis-server, gunicorn and Celery processes where they matter."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.dashboard import ids
from app.service.codecs import decode_runs, encode_runs
from app.service.registry import PairRegistry
from app.service.stores import RedisCache
from app.team.config import load_server_config
from app.testing.dash_http import HttpClient, call
from app.testing.servers import ServerNotReady, http_status, wait_until_ready
from attention.errors import ConfigError
from tests.conftest import write_tiny_config
from tests.servers import free_port, redis_server


@pytest.fixture(scope="module")
def second_config(tiny_models, tmp_path_factory) -> Path:
    """Another tiny pair under its own name and examples (same models: only the name tells them apart)."""
    path = tmp_path_factory.mktemp("second") / "second.toml"
    return write_tiny_config(path, tiny_models, "second", ["the second pair speaks", "another sentence"])


@pytest.fixture(scope="module")
def server_toml(tiny_config, second_config, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("server") / "server.toml"
    path.write_text(f'pairs = ["{tiny_config}", "{second_config}"]\nmax_loaded_pairs = 1\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def team_app(server_toml, tmp_path_factory):
    from app.team.site import create_app

    config = load_server_config(server_toml)
    config = config.model_copy(
        update={"jobs": config.jobs.model_copy(update={"folder": str(tmp_path_factory.mktemp("jobs"))})}
    )
    return create_app(config)


# --- the server config -------------------------------------------------------------------------------------------


def test_the_shipped_server_config_lists_the_default_and_the_seed_7_pair():
    from attention.resources import configs_dir

    config = load_server_config(configs_dir() / "server.toml")
    assert list(config.pairs) == ["minilm-sentiment", "minilm-sentiment-seed7"]
    assert config.default == "minilm-sentiment" and config.max_loaded_pairs == 2
    assert config.cache.redis == "" and config.jobs.broker == "" and config.jobs.lost_after_seconds == 15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_loaded_pairs = 2\n", "'pairs' must be a non-empty list"),
        ("pairs = []\n", "'pairs' must be a non-empty list"),
        ('pairs = ["no-such-pair"]\n', "No config named 'no-such-pair'"),
        ('pairs = ["default"]\nmax_loaded = 2\n', "max_loaded"),
        ('pairs = ["default"]\n[cache]\nredis = "http://x"\n', "redis://"),
        ('pairs = ["default", "default"]\n', "two pairs are called"),
        ('pairs = ["default"\n', "not valid TOML"),
        ('pairs = ["default"]\n[jobs]\nlost_after_seconds = 1\n', "lost_after_seconds"),
    ],
)
def test_a_bad_server_config_is_one_line_naming_the_problem(tmp_path, text, expected):
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_server_config(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_environment_overrides_the_config_file(tmp_path, monkeypatch):
    path = tmp_path / "server.toml"
    path.write_text('pairs = ["default"]\n[cache]\nredis = "redis://a:1/0"\n', encoding="utf-8")
    monkeypatch.setenv("ATTENTION_FLOWS_REDIS", "redis://b:2/0")
    assert load_server_config(path).cache.redis == "redis://b:2/0"


# --- several pairs -----------------------------------------------------------------------------------------------


def test_a_worker_keeps_at_most_the_configured_pairs_loaded_and_reloads_on_use(tiny_app):
    from app.service.registry import pair_service

    service = pair_service(server=tiny_app.server)
    built = []

    def builder(name):
        def build():
            built.append(name)
            return service

        return build

    registry = PairRegistry({name: builder(name) for name in ("a", "b", "c")}, max_loaded=2)
    for name in ("a", "b", "a", "c"):
        registry.get(name, timeout=10)
    assert built == ["a", "b", "c"] and list(registry.status()) == ["a", "c"]  # b was least recently used
    registry.get("b", timeout=10)
    assert built == ["a", "b", "c", "b"] and registry.unloads == 2
    for bad in ("d", "../configs/default.toml", "/etc/passwd", None, 3):
        with pytest.raises(ConfigError, match="Pick one of: a, b, c"):
            registry.check(bad)


def find(node, wanted):
    """The props of component ``wanted`` in a layout's JSON."""
    if isinstance(node, dict):
        if node.get("props", {}).get("id") == wanted:
            return node["props"]
        node = list(node.get("props", {}).values())
    if isinstance(node, list):
        return next((found for item in node if (found := find(item, wanted)) is not None), None)
    return None


def test_the_page_opens_the_pair_its_link_names_with_a_picker(team_app):
    client = team_app.server.test_client()
    default = client.get("/_dash-layout", headers={"Referer": "http://x/"}).get_json()
    assert find(default, ids.MODELS)["value"] == "tiny"
    assert [o["value"] for o in find(default, ids.MODELS)["options"]] == ["tiny", "second"]
    second = client.get("/_dash-layout", headers={"Referer": "http://x/?models=second"}).get_json()
    assert find(second, ids.MODELS)["value"] == "second"
    assert find(second, ids.ANALYSIS)["data"] == {
        "text": "the second pair speaks",
        "text_pair": None,
        "models": "second",
    }
    bad = json.dumps(client.get("/_dash-layout", headers={"Referer": "http://x/?models=../../etc"}).get_json())
    assert "There is no model pair called '../../etc' on this server. Pick one of: tiny, second." in bad


def test_callbacks_use_the_pair_the_analysis_names_and_refuse_others(team_app):
    client = team_app.server.test_client()
    for models in ("second", "tiny"):
        response = call(
            client,
            f"{ids.ANALYSIS}.data",
            {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": "a fine film",
             f"{ids.ANALYSIS}.data": {"text": "x", "text_pair": None, "models": models}},
            f"{ids.ANALYSE}.n_clicks",
        )  # fmt: skip
        assert response.get_json()["response"][ids.ANALYSIS]["data"]["models"] == models
    response = call(
        client,
        f"{ids.ANALYSIS}.data",
        {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": "a fine film",
         f"{ids.ANALYSIS}.data": {"text": "x", "text_pair": None, "models": "/etc/passwd"}},
        f"{ids.ANALYSE}.n_clicks",
    )  # fmt: skip
    body = json.dumps(response.get_json())
    assert "There is no model pair called '/etc/passwd' on this server." in body
    assert "Traceback" not in body


# --- the shared cache --------------------------------------------------------------------------------------------


def test_encoded_runs_come_back_bit_identical(tiny_app):
    from app.core.analysis import Analysis
    from app.service.registry import pair_service

    runs = pair_service(server=tiny_app.server).runs(Analysis("a fine , moving film", "and a pair"))
    data = encode_runs(runs)
    back = decode_runs(data)
    for before, after in ((runs.pretrained, back.pretrained), (runs.finetuned, back.finetuned)):
        assert np.array_equal(before.weights, after.weights) and before.weights.dtype == after.weights.dtype
        assert (before.tokens, before.groups, before.special, before.segments) == (
            after.tokens,
            after.groups,
            after.special,
            after.segments,
        )
        assert (before.label, before.probabilities, before.sep_indices) == (after.label, after.probabilities,
                                                                             after.sep_indices)  # fmt: skip
    assert len(data) < runs.pretrained.weights.nbytes + runs.finetuned.weights.nbytes + 2048  # weights + a header
    with pytest.raises(ValueError):
        decode_runs(b"XXXX" + data[4:])


def test_graphs_from_the_shared_cache_draw_the_same_sankey(tiny_app, monkeypatch):
    """Edge columns holding head tuples where a model has the edge and NaN where it has none come back as such:
    a Sankey drawn from another worker's graphs names the same heads (it said '–' when they came back as lists)."""
    import plotly.io as pio

    from app.core.analysis import Analysis
    from app.core.options import ViewOptions
    from app.figures.theme import Canvas
    from app.service.codecs import decode_graphs, encode_graphs
    from app.service.registry import pair_service
    from app.views import render

    service = pair_service(server=tiny_app.server)
    analysis = Analysis("a fine , moving film about nothing and everything")
    options = service.checked(analysis, ViewOptions(tau=0.05, measure="raw_attention"))  # per-head edges
    graphs = service.graphs(analysis, options)
    graphs = dataclasses.replace(graphs, edges=graphs.edges.copy())  # the service's own stays as it is
    # as the default pair's union of graphs has (the tiny pair's two graphs share every edge): NaN where the
    # fine-tuned model has no such edge
    graphs.edges.loc[graphs.edges.index[-3:], ["heads_finetuned", "weight_finetuned", "flow_finetuned"]] = np.nan
    heads = graphs.edges["heads_finetuned"]
    assert heads.isna().any() and heads.map(lambda v: isinstance(v, tuple) and len(v) > 0).any()
    back = decode_graphs(encode_graphs(graphs))
    for before, after in ((graphs.edges, back.edges), (graphs.nodes, back.nodes), (graphs.layers, back.layers)):
        pd.testing.assert_frame_equal(before, after)
    assert back.edges["heads_finetuned"].dropna().map(type).eq(tuple).all()
    assert back.edges["heads_pretrained"].dropna().map(type).eq(tuple).all()
    monkeypatch.setattr(service, "graphs", lambda *_: graphs)  # the worker that computed them
    drawn = render.sankey(service, analysis, options, (1, 0), Canvas())
    hovers = "\n".join(drawn["data"][0]["link"]["customdata"])
    assert "heads ≥ τ: pre-trained" in hovers and "; fine-tuned 0" in hovers  # heads named, as drawn here
    monkeypatch.setattr(service, "graphs", lambda *_: back)  # another worker: the graphs from the shared cache
    assert pio.to_json(render.sankey(service, analysis, options, (1, 0), Canvas())) == pio.to_json(drawn)


def test_a_second_worker_reads_the_runs_from_redis_and_survives_redis_going_away(tiny_app, tmp_path):
    from app.core.analysis import Analysis
    from app.service.analysis import AnalysisService
    from app.service.registry import pair_service
    from app.team.config import CacheSection

    pair = pair_service(server=tiny_app.server).pair
    with redis_server(tmp_path / "redis") as redis:
        section = CacheSection(redis=redis.url())
        first = AnalysisService(pair, cache_bytes=2**24, shared=RedisCache.connect(section))
        second = AnalysisService(pair, cache_bytes=2**24, shared=RedisCache.connect(section))
        analysis = Analysis("a worker computes this once")
        computed = first.runs(analysis)
        assert (first.shared.misses, first.shared.stores) == (1, 1)
        read = second.runs(analysis)  # another worker: no forward pass
        assert (second.shared.hits, second.shared.stores) == (1, 0)
        assert np.array_equal(computed.finetuned.weights, read.finetuned.weights)
        from app.core.options import ViewOptions

        options = ViewOptions()
        mine = first.faithfulness(analysis, options)
        hits = second.shared.hits
        theirs = second.faithfulness(analysis, options)  # the blank-out part and the ALTI maps: read, not recomputed
        assert second.shared.hits == hits + 2 and second.shared.stores == 0
        assert mine.equals(theirs)
        assert np.array_equal(first.explained(analysis, "finetuned", "predicted").scores,
                              second.explained(analysis, "finetuned", "predicted").scores)  # fmt: skip
        assert second.shared.hits == hits + 3 and second.shared.stores == 0  # class relevance: read too

        redis.stop()
        started = time.perf_counter()
        fallback = second.runs(Analysis("redis is gone"))  # served from the worker's own computation
        assert time.perf_counter() - started < 5 and fallback.finetuned.num_tokens > 0
        assert not second.shared.up and "unreachable since" in second.shared.state
        assert second.runs(Analysis("still gone")).finetuned.num_tokens > 0

        redis.start()
        assert second.shared.ping() and second.shared.up and second.shared.state == "ok"


def test_gunicorn_workers_share_analyses_in_redis_and_report_it(tiny_config, tmp_path):
    """Real processes: redis-server and `attention-flows serve --workers 2 --redis`; /healthz and /metrics."""
    with redis_server(tmp_path / "redis") as redis:
        port = free_port()
        log = (tmp_path / "serve.log").open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ATTENTION_FLOWS_HOME": str(tmp_path / "home")}
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--config", str(tiny_config), "--workers", "2", "--port",
             str(port), "--redis", redis.url()],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            health = _wait_ready(url, process, tmp_path / "serve.log")
            assert "shared cache: ok" in health
            for _ in range(6):  # the same input, answered by whichever worker takes it
                body = _post_analyse(url, "a film both workers see")
                assert body["response"][ids.ANALYSIS]["data"]["text"] == "a film both workers see"
            import redis as redis_client

            keys = redis_client.Redis.from_url(redis.url()).keys("attention-flows:*:runs:*")
            assert len(keys) >= 1  # stored once per input, whichever worker computed it first
            redis.stop()
            body = _post_analyse(url, "redis went away")  # served anyway
            assert body["response"][ids.ANALYSIS]["data"]["text"] == "redis went away"
            for _ in range(4):  # whichever worker answers checks Redis itself
                assert "shared cache: unreachable since" in _get(f"{url}/healthz")
                assert "attention_flows_shared_cache_up 0.0" in _get(f"{url}/metrics")
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert "Traceback" not in (tmp_path / "serve.log").read_text()


def _get(url: str) -> str:
    try:
        return urllib.request.urlopen(url, timeout=10).read().decode()
    except urllib.error.HTTPError as error:
        return error.read().decode()


def _wait_ready(url: str, process, log: Path, timeout: float = 120) -> str:
    """The body of the first ``/healthz`` answer that says ``ok`` (a worker that has loaded the models; another may
    still be loading, so the body is the answer's own, never a second request's)."""
    deadline = time.monotonic() + timeout
    try:
        wait_until_ready(f"{url}/healthz", timeout=timeout, process=process, log=log)
    except ServerNotReady as error:
        pytest.fail(str(error))
    while time.monotonic() < deadline:
        status, body = http_status(f"{url}/healthz")
        if status == 200:
            return body
        time.sleep(0.3)
    pytest.fail(f"/healthz stopped answering ok:\n{log.read_text()[-3000:]}")


def _post_analyse(url: str, text: str) -> dict:
    values = {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": text}
    response = call(HttpClient(url), f"{ids.ANALYSIS}.data", values, f"{ids.ANALYSE}.n_clicks")
    assert response.status_code == 200, response.data[:500]
    return response.get_json()


def test_workers_missing_the_same_entry_at_once_compute_it_once(tmp_path):
    """The views of one input arrive together on different workers: one computes, the others wait for it."""
    from concurrent.futures import ThreadPoolExecutor

    from app.service.stores import DiskCache
    from app.team.config import CacheSection

    calls = []

    def slow() -> bytes:
        calls.append(1)
        time.sleep(0.5)
        return b"value"

    with redis_server(tmp_path / "redis") as redis:
        caches = {
            "redis": [RedisCache.connect(CacheSection(redis=redis.url())) for _ in range(4)],
            "disk": [DiskCache(tmp_path / "disk", budget=2**24) for _ in range(4)],
        }
        for kind, workers in caches.items():
            calls.clear()
            with ThreadPoolExecutor(4) as pool:
                key = f"key-{kind}"
                values = list(pool.map(lambda c, key=key: c.memo(key, slow, lambda v: v, lambda b: b), workers))
            assert values == [b"value"] * 4 and len(calls) == 1, kind


def test_the_disk_cache_writes_a_large_value_whole_and_reads_it_back_as_bytes(tmp_path, monkeypatch):
    """diskcache writes a ``bytes`` value by iterating a BytesIO, i.e. line by line: 2 MB of float32 weights took
    ~8,000 writes and 7 ms of CPU per stored run. :meth:`DiskCache.put` hands it a file object (4 MB chunks)."""
    import builtins

    import diskcache.core

    from app.service.stores import DiskCache

    writes = []

    class Counted:  # the file diskcache opens, its writes counted
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def __getattr__(self, name: str):
            return getattr(self.handle, name)

        def write(self, data) -> int:
            writes.append(len(data))
            return self.handle.write(data)

    def counted_open(*args, **kwargs) -> Counted:
        return Counted(builtins.open(*args, **kwargs))

    monkeypatch.setattr(diskcache.core, "open", counted_open, raising=False)
    value = np.random.default_rng(0).random(500_000, dtype=np.float32).tobytes()  # 2 MB, ~8,000 b"\n" in it
    writer, reader = DiskCache(tmp_path, budget=2**26), DiskCache(tmp_path, budget=2**26)
    assert writer.put("weights", value) and writer.put("small", b"a\nb")
    assert sum(writes) == len(value) and len(writes) <= 2
    assert reader.get("weights") == value and type(reader.get("weights")) is bytes
    assert reader.get("small") == b"a\nb"


def test_metrics_report_pairs_and_job_outcomes(team_app):
    from app.dashboard.callbacks.batch import show_faithfulness_batch
    from app.service.registry import pair_service

    pair_service(server=team_app.server)  # the default pair, loaded (at most one pair stays loaded here)
    with team_app.server.test_request_context():
        _figure, style, status = show_faithfulness_batch({"error": "There is no text."})
        assert status == "Failed: There is no text." and style == {"display": "none"}
    client = team_app.server.test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'attention_flows_jobs_total{job="faithfulness",outcome="failed"} 1.0' in text
    assert "attention_flows_pairs_loaded 1.0" in text  # max_loaded_pairs = 1
    assert "attention_flows_models_ready 1.0" in text


def test_a_forked_job_process_does_not_inherit_a_lock_another_thread_held(tiny_app):
    """Diskcache jobs are forked from a web worker: a lock held by another request's thread at that moment must not
    stay held in the job forever."""
    import os
    import threading

    from app.service.registry import pair_service

    service = pair_service(server=tiny_app.server)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with service._forward_lock, service.cache._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    pid = os.fork()
    if pid == 0:  # the job process
        got = service._forward_lock.acquire(timeout=2) and service.cache._lock.acquire(timeout=2)
        os._exit(0 if got else 1)
    _, status = os.waitpid(pid, 0)
    release.set()
    thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_graph_comparisons_come_back_from_the_shared_cache_exactly(tiny_app):
    import pandas as pd

    from app.core.options import ViewOptions
    from app.service.codecs import decode_graphs, encode_graphs
    from app.service.registry import pair_service

    service = pair_service(server=tiny_app.server)
    cases = [
        (service.analyse("a fine , moving film"), ViewOptions()),
        (service.analyse("a fine , moving film", "and a pair"), ViewOptions(level="word", sinks=False)),
        (service.analyse(" ".join(["film"] * 50)), ViewOptions(tau=0.0)),  # folded: 52 tokens
        (service.analyse("a fine film"), ViewOptions(sources=(2,), heads=(1,), tau=0.9)),  # few or no edges
    ]
    for analysis, options in cases:
        graphs = service.graphs(analysis, options)
        back = decode_graphs(encode_graphs(graphs))
        for name in ("edges", "nodes", "layers"):
            pd.testing.assert_frame_equal(getattr(graphs, name), getattr(back, name), check_exact=True)


@pytest.mark.parametrize(
    ("texts", "view", "message"),
    [
        ("", "sankey", "Failed: There is no text to export."),
        ("a fine film\n" + " ".join(["film"] * 80), "sankey", "Failed: Line 2: The input is 82 tokens long"),
        ("\n".join(["a film"] * 101), "sankey", "Failed: 101 texts are more than 100."),
        ("a fine film", "../../etc", "Failed: Unknown view or format."),
    ],
)
def test_a_batch_export_that_cannot_be_made_is_one_line_and_sends_nothing(tiny_app, texts, view, message):
    from dash import no_update

    from app.dashboard.callbacks.batch import EXPORT_CONTROLS, run_export_batch

    controls = {"mode": "comparison", "layers": [1, 2], "heads": [0, 1], "tau": 0.05, "alpha": 0.5,
                "aggregation": "mean", "level": "token", "sources": [], "hide": [], "sinks": ["sinks"], "top_k": 30,
                "method": "class_relevance", "target": "predicted", "metric": "js_divergence",
                "arrangement": "rings", "renormalize": [], "measure": "alti"}  # fmt: skip
    with tiny_app.server.test_request_context():
        download, status = run_export_batch(lambda _: None, 1, texts, view, "svg", None, None,
                                      *(controls[name] for name in EXPORT_CONTROLS))  # fmt: skip
    assert download is no_update and status.startswith(message), status


def test_background_jobs_run_below_the_web_workers_priority(tmp_path):
    """A job's process (the one-machine manager forks one per job) runs at a lower CPU priority than the web
    worker that started it, so a faithfulness check never slows the page's own requests."""
    import diskcache

    from app.team.jobs import JOB_NICE, LostJobsDiskcacheManager

    manager = LostJobsDiskcacheManager(diskcache.Cache(str(tmp_path / "jobs")))
    seen = tmp_path / "priority"

    def job(key, progress_key, args, context):
        seen.write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))

    pid = manager.call_job_fn("key", job, (), {})
    os.waitpid(pid, 0)
    assert int(seen.read_text()) == min(os.getpriority(os.PRIO_PROCESS, 0) + JOB_NICE, 19)


def test_a_job_started_while_another_thread_compiles_with_numba_finishes(tmp_path):
    """A job forked while another thread of the web worker compiles a numba kernel (the max-flow warm-up runs a few
    seconds after start-up) must not inherit numba's compiler lock held: its own first numba call would wait
    forever. (Seen in CI: a faithfulness check "updating" for a minute.)"""
    import threading
    import time

    import diskcache
    import numba
    from numba.core.compiler_lock import global_compiler_lock

    from app.team.jobs import LostJobsDiskcacheManager

    manager = LostJobsDiskcacheManager(diskcache.Cache(str(tmp_path / "jobs")))
    done = tmp_path / "done"
    holding = threading.Event()

    def compiling() -> None:  # what a compile in another thread does: hold the global compiler lock a while
        with global_compiler_lock:
            holding.set()
            time.sleep(1.5)

    def job(key, progress_key, args, context):
        add_one = numba.njit(lambda x: x + 1)  # a new kernel: compiling it takes the compiler lock
        done.write_text(str(add_one(41)))

    other = threading.Thread(target=compiling)
    other.start()
    holding.wait(5)
    pid = manager.call_job_fn("key", job, (), {})
    other.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.1)
    finished = done.exists()
    if not finished:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert finished and done.read_text() == "42"


def test_an_analysis_shares_its_class_relevance_with_the_other_workers(tiny_app, tmp_path, monkeypatch):
    """The relevance computed along with an analysis's runs is put in the shared cache: another worker's default
    view reads it there and runs no model."""
    from app.service import analysis as services
    from app.service.analysis import AnalysisService
    from app.service.registry import pair_service
    from app.service.stores import DiskCache

    pair = pair_service(server=tiny_app.server).pair
    shared = DiskCache(tmp_path / "shared", budget=2**26)
    first = AnalysisService(pair, shared=shared)
    analysis = first.analyse("a warm and clever film", explain=True)
    other = AnalysisService(pair, shared=DiskCache(tmp_path / "shared", budget=2**26))
    monkeypatch.setattr(services, "class_relevance", lambda *a, **k: pytest.fail("ran the model again"))
    monkeypatch.setattr(services, "extract", lambda *a, **k: pytest.fail("ran the model again"))
    explained = other.explained(analysis, "finetuned", "predicted")
    np.testing.assert_array_equal(explained.scores, first.explained(analysis, "finetuned", "predicted").scores)
    assert other.runs(analysis).finetuned.label == first.runs(analysis).finetuned.label


def test_only_a_long_input_s_graphs_go_through_the_shared_cache(tiny_app, tmp_path, monkeypatch):
    """Graphs of a short input cost less to compute again than to store and fetch: they stay in the worker's memo;
    a long input's are stored once and another worker reads them instead of computing them."""
    from app.core.options import ViewOptions
    from app.service import analysis as services
    from app.service.analysis import AnalysisService
    from app.service.registry import pair_service
    from app.service.stores import DiskCache

    monkeypatch.setattr(services, "SHARE_GRAPHS_ABOVE", 12)  # the tiny pair takes short inputs only
    pair = pair_service(server=tiny_app.server).pair
    shared = DiskCache(tmp_path / "shared", budget=2**26)
    first = AnalysisService(pair, shared=shared)

    def stored_graphs() -> int:
        return sum(":graphs:" in key for key in shared._cache.iterkeys())

    short, long = first.analyse("a warm and clever film"), first.analyse(" ".join(["film"] * 20))
    assert first.runs(short).pretrained.num_tokens <= 12 < first.runs(long).pretrained.num_tokens
    first.graphs(short, ViewOptions())
    assert stored_graphs() == 0
    drawn = first.graphs(long, ViewOptions())
    assert stored_graphs() == 1
    other = AnalysisService(pair, shared=DiskCache(tmp_path / "shared", budget=2**26))
    other.runs(long)  # its runs from the shared cache too
    monkeypatch.setattr(services, "compare_graphs", lambda *a, **k: pytest.fail("computed the graphs again"))
    pd.testing.assert_frame_equal(other.graphs(long, ViewOptions()).edges, drawn.edges)


def test_freed_memory_is_handed_back_after_a_heavy_request_only(tiny_app, monkeypatch):
    """Trimming the heap after every request cost ~2–3 ms of CPU per control change (the trim, then the next
    request's page faults): it runs after a request that took at least HEAVY_CPU_SECONDS of CPU."""
    import app.team.routes as routes
    from app.dashboard import ids
    from app.service.registry import pair_service
    from app.testing.dash_http import call

    released = []
    monkeypatch.setattr(routes, "release_freed_memory", lambda: released.append(1))
    client = tiny_app.server.test_client()
    values = {f"{ids.ANALYSIS}.data": pair_service(server=tiny_app.server).analyse("a fine film").to_store()}
    for threshold, heavy in ((1e9, False), (0.0, True)):  # no request that heavy; every request
        monkeypatch.setattr(routes, "HEAVY_CPU_SECONDS", threshold)
        released.clear()
        assert call(client, f"{ids.SANKEY}.figure", values).status_code == 200  # with the GETs of its callback map
        assert bool(released) is heavy, threshold
