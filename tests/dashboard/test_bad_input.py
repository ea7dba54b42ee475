"""A fuzz suite of bad inputs, kept in the repo: the command line, the dashboard's callbacks over HTTP and the engine
API. Each case asserts the exact outcome: a message that names the option (or the problem), the exit status or the
error banner, no file written, no Python traceback, and a server that still answers afterwards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.cli.main import main
from app.core.options import ExportOptions, OptionError, ViewOptions, check_selected_head
from app.dashboard import ids
from app.testing.dash_http import call
from tests.conftest import BASE

TEXT = "a fine , moving film"
GOOD = {"text": TEXT, "text_pair": None}


# --- the command line -------------------------------------------------------------------------------------------

# (flags after `export --text TEXT --out OUT`, the words the one-line message must contain)
BAD_EXPORT_FLAGS = [
    (["--tau", "2"], "Option 'tau' is 2; it must lie in [0, 1]"),
    (["--tau", "-1"], "Option 'tau' is -1; it must lie in [0, 1]"),
    (["--tau", "nan"], "Option 'tau' is nan, not a number"),
    (["--tau", "inf"], "Option 'tau' is inf, not a number"),
    (["--tau", "abc"], "Option 'tau' is 'abc', not a number"),
    (["--alpha", "1.5"], "Option 'alpha' is 1.5; it must lie in [0, 1]"),
    (["--layers", "5:2"], "Option 'layers' is 5:2; the first layer is after the last"),
    (["--layers", "0:2"], "Option 'layers' is 0; it must be from 1"),
    (["--layers", "0:9"], "Option 'layers' is 0; it must be from 1"),
    (["--layers", "1:9"], "Option 'layers' is 9; it must be from 1 to 2"),
    (["--layers", "a:b"], "Option 'layers' is 'a:b'"),
    (["--heads", "-1"], "Option 'heads' is -1; it must be from 0"),
    (["--heads", "99"], "Option 'heads' is 99; it must be from 0 to 1"),
    (["--heads", "0,99"], "Option 'heads' is 99; it must be from 0 to 1"),
    (["--heads", "x"], "Option 'heads' is 'x'"),
    (["--head", "6"], "Option 'head' is '6'. Write LAYER:HEAD"),
    (["--head", "99:99"], "--head 99:99 names no head of this pair: it has layers 1 to 2 and heads 0 to 1"),
    (["--head", "1:5"], "--head 1:5 names no head of this pair"),
    (["--sources=-1"], "Option 'sources' is -1; it must be from 0"),
    (["--sources", "99"], "Option 'sources' is 99; it must be from 0 to 6"),
    (["--hide", "bogus"], "Option 'hide' is 'bogus'. Use one of: special, punctuation"),
    (["--metric", "bogus"], "argument --metric: invalid choice: 'bogus'"),
    (["--method", "bogus"], "argument --method: invalid choice: 'bogus'"),
    (["--mode", "both"], "argument --mode: invalid choice: 'both'"),
    (["--level", "words"], "argument --level: invalid choice: 'words'"),
    (["--aggregation", "median"], "argument --aggregation: invalid choice: 'median'"),
    (["--view", "pie"], "argument --view: invalid choice: 'pie'"),
    (["--preset", "poster"], "argument --preset: invalid choice: 'poster'"),
    (["--format", "gif"], "argument --format: invalid choice: 'gif'"),
    (["--width", "0"], "Option 'width' is 0; it must be from 100 to 4000"),
    (["--height", "99999"], "Option 'height' is 99999; it must be from 100 to 4000"),
    (["--scale", "100"], "Option 'scale' is 100; it must lie in [0.5, 8]"),
    (["--scale", "0"], "Option 'scale' is 0; it must lie in [0.5, 8]"),
    (["--format", "png", "--width", "4000", "--height", "4000", "--scale", "8"], "more than the exporter can draw"),
    (["--method", "class_relevance", "--target", "neutral"], "no class 'neutral'"),
    (["--method", "class_relevance", "--target", "7"], "Class index 7 is out of range"),
]


@pytest.fixture
def models_never_load(monkeypatch):
    """Fails a test if the models are loaded: flags must be refused before that."""
    from app.service.analysis import AnalysisService

    def refuse(*_args, **_kwargs):
        raise AssertionError("the models were loaded before the flags were checked")

    monkeypatch.setattr(AnalysisService, "from_config", classmethod(refuse))


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse exits itself
        status = stop.code
    return status, capsys.readouterr().err


def _one_line_error(status: int, stderr: str, words: str) -> None:
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attention-flows: error: "), stderr
    assert words in lines[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("flags", "words"), BAD_EXPORT_FLAGS, ids=[" ".join(f) for f, _ in BAD_EXPORT_FLAGS])
def test_bad_export_flags_are_one_line_and_write_nothing(tiny_config, tmp_path, capsys, flags, words):
    out = tmp_path / "figure.svg"
    argv = ["export", "--config", str(tiny_config), "--text", TEXT, "--view", "sentence", "--out", str(out), *flags]
    _one_line_error(*_run(capsys, argv), words)
    assert list(tmp_path.iterdir()) == []


CHECKED_BEFORE_LOADING = [f for f, _ in BAD_EXPORT_FLAGS if "--sources" not in f and "--target" not in f]


@pytest.mark.parametrize("flags", CHECKED_BEFORE_LOADING, ids=[" ".join(f) for f in CHECKED_BEFORE_LOADING])
def test_bad_flags_are_refused_before_any_model_loads(tiny_config, tmp_path, capsys, models_never_load, flags):
    argv = ["export", "--config", str(tiny_config), "--text", TEXT, "--out", str(tmp_path / "x.svg"), *flags]
    status, stderr = _run(capsys, argv)
    assert status == 2 and "models were loaded" not in stderr


def test_unwritable_output_is_refused_before_the_work(tiny_config, capsys, models_never_load):
    status, stderr = _run(capsys, ["export", "--config", str(tiny_config), "--text", TEXT, "--out", "/proc/x.svg"])
    _one_line_error(status, stderr, "Folder /proc is not writable")


def test_texts_files_that_are_not_text(tiny_config, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cases = {
        "latin1.txt": (b"caf\xe9 au lait\n", "is not UTF-8 text (byte 3 cannot be decoded)"),
        "empty.txt": (b"\n\n", "contains no texts"),
        "columns.csv": (b"sentence\nhello\n", "has no 'text' column (columns: sentence)"),
    }
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content)
        argv = ["export", "--config", str(tiny_config), "--texts", str(tmp_path / name), "--out-dir", str(out_dir)]
        _one_line_error(*_run(capsys, [*argv, "--format", "svg"]), words)
    missing = ["export", "--config", str(tiny_config), "--texts", str(tmp_path / "nope.txt"), "--out-dir", str(out_dir)]
    _one_line_error(*_run(capsys, [*missing, "--format", "svg"]), "does not exist")
    assert list(out_dir.iterdir()) == []


def _sidecar(tmp_path, **changes) -> str:
    data = {
        "sidecar_version": 2,
        "pair": {"name": "minilm-sentiment", "config_sha256": "0" * 64},
        "text": TEXT,
        "view": "heads",
        "options": {},
        "export": {"format": "svg"},
        **changes,
    }
    path = tmp_path / "side.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"sidecar_version": 9}, "version 9 is newer than this program reads"),
        ({"pair": {"name": "someone-elses-pair"}}, "names pair 'someone-elses-pair', which is not installed"),
        ({"pair": {"name": "minilm-sentiment", "config_sha256": "0" * 64}}, "has changed since this figure was made"),
        ({"options": {"tau": 7}}, "Option 'tau' is 7"),
        ({"options": {"colour": "red"}}, "Unknown option(s): colour"),
        ({"view": "pie"}, "Option 'view' is 'pie'"),
        ({"text": ""}, "text is empty"),
        ({"export": {"format": "png", "width": 4000, "height": 4000, "scale": 8}}, "more than the exporter can draw"),
    ],
)
def test_bad_sidecars_are_refused_before_anything_loads(tmp_path, capsys, models_never_load, changes, words):
    out = tmp_path / "again.svg"
    status, stderr = _run(capsys, ["export", "--from-sidecar", _sidecar(tmp_path, **changes), "--out", str(out)])
    _one_line_error(status, stderr, words)
    assert not out.exists()


def test_unreadable_sidecars(tmp_path, capsys, models_never_load):
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    out = str(tmp_path / "x.svg")
    _one_line_error(*_run(capsys, ["export", "--from-sidecar", str(tmp_path / "broken.json"), "--out", out]),
                    "Cannot read sidecar")  # fmt: skip
    _one_line_error(*_run(capsys, ["export", "--from-sidecar", str(tmp_path / "none.json"), "--out", out]),
                    "Cannot read sidecar")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["faithfulness", "--n", "0"], "Option 'n' is 0; it must be from 1"),
        (["faithfulness", "--tau", "3"], "Option 'tau' is 3"),
        (["serve", "--port", "0"], "Option 'port' is 0; it must be from 1 to 65535"),
        (["serve", "--workers", "0"], "Option 'workers' is 0; it must be from 1 to 64"),
        (["prepare", "--seed", "-3"], "Option 'seed' is -3"),
        (["prepare", "--name", "x"], "--name needs --seed"),
        (["bench", "everything"], "argument which: invalid choice: 'everything'"),
    ],
)
def test_other_commands_refuse_bad_flags_in_one_line(capsys, argv, words):
    _one_line_error(*_run(capsys, argv), words)


# --- the dashboard's callbacks over HTTP ---------------------------------------------------------------------------


# (the output of the callback, the control to spoil, its bad value, the words the banner must contain)
BAD_PAYLOADS = [
    (ids.SANKEY, f"{ids.TAU}.value", "abc", "Option 'tau' is 'abc', not a number"),
    (ids.SANKEY, f"{ids.TAU}.value", math.nan, "Option 'tau' is nan, not a number"),
    (ids.SANKEY, f"{ids.TAU}.value", 5, "Option 'tau' is 5; it must lie in [0, 1]"),
    (ids.SANKEY, f"{ids.ALPHA}.value", [0.5], "Option 'alpha' is [0.5], not a number"),
    (ids.SANKEY, f"{ids.LAYERS}.value", [2, 1], "Option 'layers' is 2:1"),
    (ids.SANKEY, f"{ids.LAYERS}.value", [1, 99], "Option 'layers' is 99; it must be from 1 to 2"),
    (ids.SANKEY, f"{ids.LAYERS}.value", [1, 2, 3], "Option 'layers' is [1, 2, 3]"),
    (ids.SANKEY, f"{ids.HEADS}.value", [99], "Option 'heads' is 99; it must be from 0 to 1"),
    (ids.SANKEY, f"{ids.HEADS}.value", "all", "Option 'heads' is 'all', not a list"),
    (ids.SANKEY, f"{ids.SOURCES}.value", [-1], "Option 'sources' is -1; it must be from 0"),
    (ids.SANKEY, f"{ids.SOURCES}.value", [999], "Option 'sources' is 999; it must be from 0 to 6"),
    (ids.SANKEY, f"{ids.HIDE}.value", ["bogus"], "Option 'hide' is 'bogus'"),
    (ids.SANKEY, f"{ids.MODE}.value", 7, "Option 'mode' is 7"),
    (ids.SANKEY, f"{ids.LEVEL}.value", "words", "Option 'level' is 'words'"),
    (ids.SANKEY, f"{ids.SINKS}.value", "yes", "Option 'sinks' is 'yes'"),
    (ids.SANKEY, f"{ids.ANALYSIS}.data", {"text": 5}, "The page sent an input that is not text"),
    (ids.SANKEY, f"{ids.ANALYSIS}.data", ["a", "b"], "The page sent an input that is not text"),
    (ids.SANKEY, f"{ids.ANALYSIS}.data", {"text": ["a"]}, "The page sent an input that is not text"),
    (ids.SENTENCE, f"{ids.METHOD}.value", "bogus", "Option 'method' is 'bogus'"),
    (ids.SENTENCE, f"{ids.TARGET}.value", 5, "Option 'target' is 5"),
    (ids.MATRIX, f"{ids.SELECTED_HEAD}.data", {"layer": "a", "head": 0}, "Option 'selected layer' is 'a'"),
    (ids.MATRIX, f"{ids.SELECTED_HEAD}.data", {"layer": 99, "head": 0}, "Option 'selected layer' is 99"),
    (ids.MATRIX, f"{ids.SELECTED_HEAD}.data", {"layer": 1, "head": -1}, "Option 'selected head' is -1"),
    (ids.MATRIX, f"{ids.SELECTED_HEAD}.data", [1, 2], "The selected head is [1, 2]"),
]


@pytest.mark.parametrize(
    ("output", "control", "value", "words"), BAD_PAYLOADS, ids=[f"{c}={v!r}" for _, c, v, _ in BAD_PAYLOADS]
)
def test_bad_payloads_are_a_sentence_in_the_page(tiny_app, output, control, value, words):
    from app.service.registry import pair_service

    pair_service(server=tiny_app.server)  # loaded: a bad option is refused before the models are asked for
    client = tiny_app.server.test_client()
    response = call(client, f"{output}.figure", {**BASE, control: value}, control)
    assert response.status_code == 200, response.data[:300]
    banner = response.get_json()["sideUpdate"][ids.ERROR]["children"]
    assert words in banner and "Traceback" not in banner
    assert output not in response.get_json().get("response", {})  # the view keeps what it showed
    assert client.get("/healthz").data == b"ok"


def test_an_unknown_class_for_a_class_method_is_a_sentence_in_the_page(tiny_app):
    client = tiny_app.server.test_client()
    values = {**BASE, f"{ids.METHOD}.value": "class_relevance", f"{ids.TARGET}.value": "neutral"}
    response = call(client, f"{ids.SENTENCE}.figure", values, f"{ids.TARGET}.value")
    banner = response.get_json()["sideUpdate"][ids.ERROR]["children"]
    assert "no class 'neutral'" in banner and "0 = bad, 1 = good" in banner


@pytest.mark.parametrize(
    "click",
    [{"points": [{"x": math.nan, "y": 1}]}, {"points": [{"x": "a", "y": 1}]}, {"points": [{"x": 0, "y": math.inf}]}],
)
def test_bad_clicks_on_the_head_grid_are_refused(tiny_app, click):
    client = tiny_app.server.test_client()
    values = {f"{ids.HEAD_GRID}.clickData": click, f"{ids.SELECTED_HEAD}.data": None}
    response = call(client, f"{ids.SELECTED_HEAD}.data", values, f"{ids.HEAD_GRID}.clickData")
    payload = response.get_json()
    assert "selected" in payload["sideUpdate"][ids.ERROR]["children"]
    assert ids.SELECTED_HEAD not in payload.get("response", {})


@pytest.mark.parametrize(
    ("text", "words"), [(12, "The page sent"), (["a"], "The page sent"), ("x" * 6000, "characters long")]
)
def test_bad_texts_over_http(tiny_app, text, words):
    client = tiny_app.server.test_client()
    values = {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": text}
    response = call(client, f"{ids.ANALYSIS}.data", values, f"{ids.ANALYSE}.n_clicks")
    assert words in response.get_json()["sideUpdate"][ids.ERROR]["children"]


# --- the engine API ------------------------------------------------------------------------------------------------


def test_engine_refuses_bad_arguments_with_the_name_of_the_argument(tiny_models):
    from attention import attention_graph, blank_out, class_relevance, extract, load_model, relevance
    from attention.errors import InputTextError, TargetClassError

    weights = np.full((2, 2, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match="tau and alpha must lie in"):
        attention_graph(weights, tau=-0.1)
    with pytest.raises(ValueError, match="sinks must be token indices"):
        attention_graph(weights, sinks=[7])
    with pytest.raises(ValueError, match=r"weights must be \[layer, head, query, key\]"):
        attention_graph(weights[0])
    classifier = load_model(tiny_models["bert-classifier"], labels=("bad", "good"))
    with pytest.raises(InputTextError, match="The text is empty"):
        extract(classifier, "  ")
    with pytest.raises(TargetClassError, match="no class 'meh'"):
        class_relevance(classifier, TEXT, target="meh")
    with pytest.raises(ValueError, match="level must be token or word"):
        blank_out(classifier, TEXT, level="sentence")
    run = extract(classifier, TEXT)
    with pytest.raises(ValueError, match="method must be one of"):
        relevance(run, "saliency")


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ViewOptions(tau=True), "Option 'tau' is True, not a number"),
        (lambda: ViewOptions(alpha=float("nan")), "Option 'alpha' is nan"),
        (lambda: ViewOptions(mode="both"), "Option 'mode' is 'both'"),
        (lambda: ViewOptions(heads=()), "Option 'heads' is empty"),
        (lambda: ViewOptions(target=""), "Option 'target' is ''"),
        (lambda: ExportOptions("png", width=50), "Option 'width' is 50"),
        (lambda: ExportOptions("png", scale=float("inf")), "Option 'scale' is inf"),
        (lambda: ExportOptions.create(".tiff"), "Option 'format' is 'tiff'"),
        (lambda: check_selected_head({"layer": 1.5}, 6, 12), "Option 'selected layer' is 1.5"),
        (lambda: ViewOptions.from_dict(["tau", 1]), "The options are list, not a mapping"),
    ],
)
def test_option_objects_refuse_bad_values(build, words):
    with pytest.raises(OptionError) as raised:
        build()
    assert words in str(raised.value)


@pytest.mark.parametrize("want", ["x", [1, 2], {"key": 5, "changed": "tau"}, {"changed": [3, None]}])
def test_a_malformed_want_store_draws_the_view_and_keeps_no_answer(tiny_app, want):
    """The gate's ``want`` value comes from the page: anything but its own shape draws the view (never a traceback)
    and keeps no answered key, so the next change is counted from scratch."""
    from app.service.registry import pair_service
    from app.testing.dash_http import callback_spec, request_body

    client = tiny_app.server.test_client()
    values = {f"{ids.ANALYSIS}.data": pair_service(server=tiny_app.server).analyse("a fine film").to_store(),
              f"{ids.want('sentence')}.data": want}  # fmt: skip
    body = request_body(callback_spec(client, f"{ids.SENTENCE}.figure"), values, f"{ids.want('sentence')}.data")
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.data[:300]
    sent = response.get_json()["response"]
    assert ids.SENTENCE in sent and sent[ids.answered("sentence")]["data"] is None
