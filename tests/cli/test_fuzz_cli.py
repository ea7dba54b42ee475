"""A fuzz suite of the command line's bad cases and leftovers: each refusal is one line naming the problem and the
fix, exit status 2, no Python traceback, nothing written, and checked before any long work; a file holds the format
its name says; the files a command leaves have the user's modes, and no temporary folder or socket outlives it."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli.main import main
from app.core.options import DEFAULT_PNG_SCALE, ExportOptions
from app.dashboard import ids
from app.testing.dash_http import HttpClient, dependencies
from tests.conftest import BASE
from tests.servers import serving

ROOT = Path(__file__).resolve().parents[2]
TEXT = "a fine , moving film"
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<svg"}


@pytest.fixture
def models_never_load(monkeypatch):
    """Fails a test if a model is loaded: arguments must be refused before that."""
    import attention
    from app.service.analysis import AnalysisService

    def refuse(*_args, **_kwargs):
        raise AssertionError("the models were loaded before the arguments were checked")

    monkeypatch.setattr(AnalysisService, "from_config", classmethod(refuse))
    monkeypatch.setattr(attention, "load_pair", refuse)


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse exits itself
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.err + captured.out


def _one_line_error(status: int, output: str, words: str) -> None:
    assert status == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attention-flows: error: "), output
    assert words in lines[0], output
    assert "Traceback" not in output


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command as a user runs it, without a terminal (a new session has no /dev/tty to prompt on)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def _sidecar(folder: Path, fmt: str = "svg") -> Path:
    data = {
        "sidecar_version": 2,
        "pair": {"name": "tiny", "config_sha256": None},
        "text": TEXT,
        "view": "heads",
        "options": {},
        "export": {"format": fmt},
    }
    path = folder / "base.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- sidecars nested deeper than Python parses --------------------------------------------------------------------

DEEP = 100_000
DEEP_SIDECARS = {
    "list": "[" * DEEP + "]" * DEEP,
    "object": '{"a": ' * DEEP + "1" + "}" * DEEP,
    "option value": '{"sidecar_version": 2, "options": {"tau": ' + "[" * DEEP + "]" * DEEP + "}}",
}


@pytest.mark.parametrize("content", DEEP_SIDECARS.values(), ids=DEEP_SIDECARS.keys())
def test_a_sidecar_nested_100k_deep_is_one_line_not_a_recursion_error(tmp_path, capsys, models_never_load, content):
    (tmp_path / "deep.json").write_text(content, encoding="utf-8")
    out = tmp_path / "again.svg"
    status, output = _run(capsys, ["export", "--from-sidecar", str(tmp_path / "deep.json"), "--out", str(out)])
    _one_line_error(status, output, "nests deeper than Python can parse. Pass a JSON file written by an export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.json"]


# --- the file's name says its format ------------------------------------------------------------------------------

# (the flags after `export --config TINY --view heads`, the words of the refusal)
SIDE = ["--from-sidecar", "{sidecar}"]
BAD_OUTPUTS = [
    (
        ["--text", TEXT, "--out", "{dir}/o.png", "--format", "svg"],
        "--out {dir}/o.png ends in .png, but the figure would be SVG. Name the file o.svg",
    ),
    (["--text", TEXT, "--out", "{dir}/o.svg", "--format", "pdf"], "Name the file o.pdf, or leave out --format"),
    (["--text", TEXT, "--out", "{dir}/o.jpg", "--format", "png"], "ends in .jpg, but the figure would be PNG"),
    (["--text", TEXT, "--out", "{dir}/o.jpg"], "ends in .jpg, which is not a format the exporter writes"),
    (["--text", TEXT, "--out", "{dir}/o"], "has no suffix to tell the format. End it in .png, .svg or .pdf"),
    ([*SIDE, "--out", "{dir}/o.png", "--format", "svg"], "ends in .png, but the figure would be SVG"),
    ([*SIDE, "--out", "{dir}/o.gif"], "ends in .gif, which is not a format the exporter writes"),
]


@pytest.mark.parametrize(("flags", "words"), BAD_OUTPUTS, ids=[" ".join(f[2:]) for f, _ in BAD_OUTPUTS])
def test_an_output_whose_suffix_is_not_the_format_is_refused_before_loading(
    tiny_config, tmp_path, capsys, models_never_load, flags, words
):
    side = _sidecar(tmp_path)
    flags = [flag.format(dir=tmp_path, sidecar=side) for flag in flags]
    status, output = _run(capsys, ["export", "--config", str(tiny_config), "--view", "heads", *flags])
    _one_line_error(status, output, words.format(dir=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.json"]


def _png_width(data: bytes) -> int:
    return struct.unpack(">II", data[16:24])[0]


def test_a_sidecar_redrawn_takes_the_format_of_the_out_suffix(tiny_config, tmp_path, capsys):
    base = tmp_path / "base.svg"
    argv = ["export", "--config", str(tiny_config), "--text", TEXT, "--view", "heads", "--out", str(base)]
    assert main([*argv, "--sidecar"]) == 0, capsys.readouterr().err
    side = str(base.with_suffix(".json"))
    for name, fmt in [("o.png", "png"), ("o.pdf", "pdf"), ("o.svg", "svg"), ("o", "svg")]:
        out = tmp_path / name
        assert main(["export", "--config", str(tiny_config), "--from-sidecar", side, "--out", str(out)]) == 0
        assert out.read_bytes().lstrip()[: len(MAGIC[fmt])] == MAGIC[fmt], name
    width, _, _ = ExportOptions.create("png").pixels()  # the SVG sidecar's size, at PNG's own default scale
    assert abs(_png_width((tmp_path / "o.png").read_bytes()) - width * DEFAULT_PNG_SCALE) <= 1


# --- faithfulness: arguments checked before minutes of work -------------------------------------------------------

BAD_FAITHFULNESS = [
    (
        ["--n", "99999999"],
        "Option 'n' is 99,999,999; pair 'minilm-sentiment' has 1,000 held-out sentences. Give --n 1000 or fewer",
    ),
    (["--n", "1001"], "Option 'n' is 1,001; pair 'minilm-sentiment' has 1,000 held-out sentences"),
    (["--out", "/proc/x.csv"], "Folder /proc is not writable"),
    (["--n", "99999999", "--out", "/proc/x.csv"], "Folder /proc is not writable"),
    (["--plot", "/proc/x.png"], "Folder /proc is not writable"),
    (["--out", "{tmp}/no/such/folder/x.csv"], "Folder {tmp}/no/such/folder does not exist"),
    (["--out", "{tmp}/table.png"], "does not end in .csv. The table is CSV"),
    (["--out", "{tmp}/table"], "does not end in .csv"),
    (["--plot", "{tmp}/plot.gif"], "has no .png, .svg or .pdf suffix"),
]


@pytest.mark.parametrize(("flags", "words"), BAD_FAITHFULNESS, ids=[" ".join(f) for f, _ in BAD_FAITHFULNESS])
def test_faithfulness_refuses_bad_arguments_before_loading_the_models(
    tmp_path, capsys, models_never_load, flags, words
):
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    status, output = _run(capsys, ["faithfulness", "--config", "default", *flags])
    _one_line_error(status, output, words.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


# --- users add without a password ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["--password-stdin"]], ids=["prompt", "password-stdin"])
def test_users_add_with_stdin_closed_says_how_to_give_a_password(tmp_path, flags):
    users = tmp_path / "users.json"
    done = _cli("users", "add", "ada", "--users", str(users), *flags, env={"ATTENTION_FLOWS_HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("attention-flows: error: No password could be read: the input ended"), done.stderr
    assert "attention-flows users add ada --password-stdin" in last
    assert "Traceback" not in done.stderr and not users.exists()


# --- files with the user's modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_a_prepared_model_folder_has_the_modes_of_the_umask(tiny_models, tmp_path, monkeypatch, umask):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from attention import prepare

    monkeypatch.setattr(prepare, "_card_text", lambda record: "a card\n")
    source = tiny_models["bert-classifier"]
    model = AutoModelForSequenceClassification.from_pretrained(source, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(source)
    out = tmp_path / "models" / "twin"
    previous = os.umask(umask)
    try:
        prepare._save_atomically(model, tokenizer, {"recipe": {}}, out)
    finally:
        os.umask(previous)
    modes = {path.relative_to(tmp_path).as_posix(): path.stat().st_mode & 0o777 for path in [out, *out.rglob("*")]}
    assert "models/twin/model.safetensors" in modes and "models/twin/training.json" in modes
    expected = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == expected
    assert [p.name for p in out.parent.iterdir()] == ["twin"]  # no staging folder left


# --- nothing left behind: the export browser's temporary folders, gunicorn's control socket -------------------------

CONTROLS = {**BASE, f"{ids.ANALYSIS}.data": {"text": TEXT, "text_pair": None}}  # the fuzz suite's page state


def export_request(client, view: str = "heads", fmt: str = "svg") -> dict:
    """The body the page posts when a view's Export button is clicked (its controls are pattern-matching ids)."""
    spec = next(s for s in dependencies(client) if f"{ids.DOWNLOAD}.data" in s["output"])
    per_view = {"export-button": 1, "export-format": fmt, "export-size": "double", "export-sidecar": []}

    def fill(dep: dict):
        if dep["id"].startswith("{"):
            kind = json.loads(dep["id"])["type"]
            return [{"id": {"type": kind, "view": view}, "property": dep["property"], "value": per_view.get(kind)}]
        return {"id": dep["id"], "property": dep["property"], "value": CONTROLS.get(f"{dep['id']}.{dep['property']}")}

    button = json.dumps(ids.export_control("button", view), separators=(",", ":"), sort_keys=True)
    return {
        "output": spec["output"],
        "outputs": [{"id": ids.DOWNLOAD, "property": "data"}, {"id": ids.DOWNLOAD_SIDECAR, "property": "data"}],
        "inputs": [fill(dep) for dep in spec["inputs"]],
        "state": [fill(dep) for dep in spec["state"]],
        "changedPropIds": [f"{button}.n_clicks"],
    }


def test_a_server_that_exported_leaves_no_temporary_folders_after_sigterm(tiny_config, tmp_path, temporary):
    """One process; gunicorn is checked the same way in
    tests/server/test_server.py::test_gunicorn_workers_serve_the_same_answers_from_a_preloaded_master."""
    home = tmp_path / "home"
    env = {"TMPDIR": str(temporary), "HOME": str(home), "ATTENTION_FLOWS_HOME": str(home / "data")}
    with serving("--config", str(tiny_config), log=tmp_path / "serve.log", env=env, timeout=120) as url:
        made = exported_into(url, temporary)
    # serving() has sent SIGTERM and waited for the server to exit
    assert set(temporary.iterdir()) & made == set(), (tmp_path / "serve.log").read_text()[-2000:]


def exported_into(url: str, temporary: Path) -> set[Path]:
    """Export a figure from the server at ``url`` (its TMPDIR ``temporary``); the temporary folders it made."""
    before = set(temporary.iterdir())
    client = HttpClient(url)
    response = client.post("/_dash-update-component", json=export_request(client))
    assert response.status_code == 200 and "content" in response.get_json()["response"][ids.DOWNLOAD]["data"]
    made = set(temporary.iterdir()) - before
    assert made, "the export made no temporary folder: this test no longer sees kaleido's"
    return made


def test_a_forked_child_exports_with_a_browser_of_its_own_and_leaves_no_folders(temporary):
    """A background job is a child forked from a web worker that may have exported already: it must neither wait
    forever on the parent's browser nor leave its own browser's folders (it ends with ``os._exit``)."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        import plotly.graph_objects as go
        from app.export import files
        from app.core.options import ExportOptions

        figure, svg = go.Figure(go.Bar(x=[1, 2], y=[3, 4])), ExportOptions.create("svg")
        files.render_bytes(figure, svg)
        child = os.fork()
        if child == 0:
            signal.alarm(60)  # a child waiting on its parent's browser hangs: killed here
            drawn = files.render_bytes(figure, svg).startswith(b"<svg")
            files.stop_export_server()
            os._exit(0 if drawn else 1)
        sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "TMPDIR": str(temporary)},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(temporary.iterdir()) == []
