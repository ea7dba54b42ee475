"""Static export through kaleido and Debian chromium: valid files of the requested size, sidecars that
reproduce the figure, clear errors, no half-written files."""

import json
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from plotly.io.json import to_json_plotly

from app.export import ExportError, export_figure, pixel_size, start_export_server, write_atomically
from app.exporting import Job, job_from_sidecar, make_one
from app.loading import service_of
from app.render import render
from app.services import Analysis
from app.state import ViewOptions

TEXT = "a fine , moving film"


@pytest.fixture(scope="module")
def service(tiny_app):
    start_export_server()
    return service_of(tiny_app)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_png_has_magic_bytes_and_the_requested_pixels(service, tmp_path):
    figure = render("sankey", service, service.analyse(TEXT), ViewOptions(tau=0.05))
    path = export_figure(figure, tmp_path / "flow.png", width=600, height=400, scale=2)
    assert _png_size(path.read_bytes()) == (1200, 800)


def test_pdf_is_a_pdf_with_the_preset_page_size(service, tmp_path):
    figure = render("heads", service, service.analyse(TEXT), ViewOptions())
    path = export_figure(figure, tmp_path / "heads.pdf", preset="single")
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    width, height, _ = pixel_size("single", None, None)
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box and abs(float(box[1]) - width * 0.75) < 2 and abs(float(box[2]) - height * 0.75) < 2


def test_svg_parses_and_contains_the_token_labels(service, tmp_path):
    figure = render("matrix", service, service.analyse(TEXT), ViewOptions(), (2, 1))
    path = export_figure(figure, tmp_path / "matrix.svg", width=700, height=450)
    root = ET.fromstring(path.read_bytes())
    assert root.tag.endswith("svg") and root.get("width") == "700" and root.get("height") == "450"
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"fine", "moving", "film", "[CLS]"} <= texts


def test_sidecar_reproduces_the_same_figure(service, tiny_config, tmp_path):
    options = ViewOptions(layers=(1, 2), heads=(1,), tau=0.1, level="word", hide=("punctuation",))
    job = Job(Analysis(TEXT), "sankey", options, (2, 1), tmp_path / "flow.svg", "svg", "single", None, None, 1.0)
    path = make_one(service, job, with_sidecar=True)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["text"] == TEXT and sidecar["options"]["level"] == "word" and sidecar["pair"]["name"] == "tiny"
    config, again = job_from_sidecar(path.with_suffix(".json"), tmp_path / "again.svg")
    assert config == str(tiny_config)
    original = render("sankey", service, service.analyse(TEXT), options, (2, 1))
    rebuilt = render(again.view, service, service.analyse(again.analysis.text), again.options, again.selected)
    assert to_json_plotly(rebuilt) == to_json_plotly(original)
    assert (again.width, again.height, again.fmt) == (sidecar["width"], sidecar["height"], "svg")


def test_bad_format_and_bad_targets_are_refused(service, tmp_path):
    figure = render("heads", service, service.analyse(TEXT), ViewOptions())
    with pytest.raises(ExportError, match=r"Unknown export format 'gif'\. Use one of: png, svg, pdf"):
        export_figure(figure, tmp_path / "x.gif")
    with pytest.raises(ExportError, match=r"does not exist\. Create it first"):
        export_figure(figure, tmp_path / "missing" / "x.png")
    with pytest.raises(ExportError, match="is not writable"):
        export_figure(figure, "/proc/sys/x.png")
    with pytest.raises(ExportError, match="Unknown size preset"):
        pixel_size("poster", None, None)


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")

    def broken_replace(*_):
        raise OSError("disk full")

    monkeypatch.setattr("app.export.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_missing_chromium_gives_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    with pytest.raises(ExportError, match="apt-get install chromium"):
        start_export_server()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_single_export_and_unknown_view(tiny_config, tmp_path):
    out = tmp_path / "sentence.pdf"
    done = _cli("export", "--config", str(tiny_config), "--text", TEXT, "--view", "sentence", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"%PDF")
    wrong = _cli("export", "--config", str(tiny_config), "--text", TEXT, "--view", "pie", "--out", str(out))
    assert wrong.returncode == 2 and "invalid choice: 'pie'" in wrong.stderr
    missing = _cli("export", "--config", str(tiny_config), "--text", TEXT, "--out", str(tmp_path / "no" / "x.png"))
    assert missing.returncode == 2 and "error: Folder" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_batch_writes_one_file_per_text_and_reports_bad_lines(tiny_config, tmp_path):
    texts = tmp_path / "texts.csv"
    texts.write_text('text\n"a fine film"\n"' + "film " * 80 + '"\n"a dull film"\n', encoding="utf-8")
    out = tmp_path / "figures"
    out.mkdir()
    done = _cli(
        "export",
        "--config",
        str(tiny_config),
        "--texts",
        str(texts),
        "--out-dir",
        str(out),
        "--format",
        "svg",
        "--view",
        "heads",
        "--sidecar",
    )
    assert done.returncode == 1
    assert "line 2: The input is 82 tokens long" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "001-a-fine-film.json",
        "001-a-fine-film.svg",
        "003-a-dull-film.json",
        "003-a-dull-film.svg",
    ]
    assert "wrote 2 of 3 figures" in done.stdout


def test_cli_class_relevance_export_names_the_class_and_refuses_an_unknown_one(tiny_config, tmp_path):
    def export(target: str, out, *extra):
        return _cli(
            "export", "--config", str(tiny_config), "--text", TEXT, "--view", "sentence",
            "--method", "class_relevance", "--target", target, "--out", str(out), *extra,
        )  # fmt: skip

    out = tmp_path / "sentence.svg"
    done = export("good", out, "--sources", "all", "--sidecar")
    assert done.returncode == 0, done.stderr
    assert "class &#39;good&#39;" in out.read_text() or "class 'good'" in out.read_text()
    options = json.loads(out.with_suffix(".json").read_text())["options"]
    assert options["method"] == "class_relevance" and options["target"] == "good" and options["trace_all"]
    bad = tmp_path / "bad.svg"
    wrong = export("neutral", bad)
    assert wrong.returncode == 2 and "no class 'neutral'" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not bad.exists()


def test_written_files_follow_the_umask_not_mkstemps_private_mode(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        path = write_atomically(tmp_path / "figure.svg", b"<svg/>")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644
