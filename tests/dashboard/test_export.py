"""Static export through kaleido and Debian chromium: valid files of the requested size, sidecars that
reproduce the figure, clear errors, no half-written files."""

import contextlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from plotly.io.json import to_json_plotly

from app.core.analysis import Analysis
from app.core.options import ExportOptions, OptionError, ViewOptions
from app.export import (
    ExportError,
    SidecarError,
    export_figure,
    read_sidecar,
    render_bytes,
    resolve_pair,
    stop_export_server,
    write_atomically,
)
from app.export.files import check_drawn, start_export_server
from app.export.requests import FigureRequest, file_stem, make_one
from app.service.registry import pair_service
from app.testing.figure_standard import normalised_svg, undated_pdf
from app.views.render import render

TEXT = "a fine , moving film"


@pytest.fixture(scope="module")
def service(tiny_app):
    start_export_server()
    return pair_service(server=tiny_app.server)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_png_has_magic_bytes_and_the_requested_pixels(service, tmp_path):
    figure = render("heads", service, service.analyse(TEXT), ViewOptions(tau=0.05))  # sized by the preset
    path = export_figure(figure, tmp_path / "heads.png", ExportOptions("png", width=600, height=400, scale=2))
    assert _png_size(path.read_bytes()) == (1200, 800)


def test_pdf_is_a_pdf_with_the_preset_page_size(service, tmp_path):
    figure = render("heads", service, service.analyse(TEXT), ViewOptions())
    path = export_figure(figure, tmp_path / "heads.pdf", ExportOptions("pdf", preset="single"))
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    width, height, _ = ExportOptions("pdf", preset="single").pixels()
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box and abs(float(box[1]) - width * 0.75) < 2 and abs(float(box[2]) - height * 0.75) < 2


def test_svg_parses_and_contains_the_token_labels(service, tmp_path):
    figure = render("matrix", service, service.analyse(TEXT), ViewOptions(), (2, 1))
    path = export_figure(figure, tmp_path / "matrix.svg", ExportOptions("svg", width=700, height=450))
    root = ET.fromstring(path.read_bytes())
    # the matrix lays itself out for the width (every label at the font's size): its height is its own
    assert root.tag.endswith("svg") and root.get("width") == "700" and float(root.get("height")) > 0
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"fine", "moving", "film", "[CLS]"} <= texts


def test_sidecar_reproduces_the_same_figure(service, tiny_config, tmp_path):
    options = ViewOptions(layers=(1, 2), heads=(1,), tau=0.1, level="word", hide=("punctuation",))
    export = ExportOptions("svg", preset="single")
    job = FigureRequest(Analysis(TEXT), "sankey", options, (2, 1), export, tmp_path / "flow.svg")
    path = make_one(service, job, with_sidecar=True)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sidecar_version"] == 3 and len(sidecar["pair"]["config_sha256"]) == 64
    assert sidecar["options"]["measure"] == "alti"  # the graph views' default measure, named in the sidecar
    assert sidecar["text"] == TEXT and sidecar["options"]["level"] == "word" and sidecar["pair"]["name"] == "tiny"
    assert "config" not in sidecar["pair"]  # a name and a hash, never a path
    again = read_sidecar(path.with_suffix(".json"))
    assert resolve_pair(again, str(tiny_config)).name == "tiny"
    original = render("sankey", service, service.analyse(TEXT), options, (2, 1))
    rebuilt = render(again.view, service, service.analyse(again.text), again.options, again.selected)
    assert to_json_plotly(rebuilt) == to_json_plotly(original)
    assert again.export == export


def test_a_sidecar_from_before_measures_reproduces_raw_attention(service, tmp_path):
    """Version 2 sidecars were drawn over raw attention, the only measure then: read back, they still are."""
    options = ViewOptions(measure="raw_attention")
    job = FigureRequest(Analysis(TEXT), "sankey", options, None, ExportOptions("svg"), tmp_path / "old.svg")
    path = make_one(service, job, with_sidecar=True).with_suffix(".json")
    data = json.loads(path.read_text())
    data["sidecar_version"] = 2
    del data["options"]["measure"]
    path.write_text(json.dumps(data))
    assert read_sidecar(path).options.measure == "raw_attention"
    data["sidecar_version"] = 3
    path.write_text(json.dumps(data))
    assert read_sidecar(path).options.measure == "alti"  # a current sidecar without it: today's default


def test_a_sidecar_naming_a_pair_that_is_not_installed_is_refused_before_loading(service, tmp_path, capsys):
    options = ViewOptions()
    job = FigureRequest(Analysis(TEXT), "heads", options, None, ExportOptions("svg"), tmp_path / "heads.svg")
    side = json.loads(make_one(service, job, with_sidecar=True).with_suffix(".json").read_text())
    (tmp_path / "evil.toml").write_text(
        'name = "tiny"\n[pretrained]\npackage = "this"\n[finetuned]\npackage = "this"\n', encoding="utf-8"
    )
    side["pair"]["config"] = str(tmp_path / "evil.toml")  # a path in a sidecar is never followed
    (tmp_path / "evil.json").write_text(json.dumps(side), encoding="utf-8")
    with pytest.raises(SidecarError, match="names pair 'tiny', which is not installed here"):
        resolve_pair(read_sidecar(tmp_path / "evil.json"))
    assert "Zen of Python" not in capsys.readouterr().out  # `import this` never ran


def test_a_sidecar_whose_pair_changed_is_refused(service, tmp_path):
    job = FigureRequest(Analysis(TEXT), "heads", ViewOptions(), None, ExportOptions("svg"), tmp_path / "heads.svg")
    side = json.loads(make_one(service, job, with_sidecar=True).with_suffix(".json").read_text())
    side["pair"]["name"] = "minilm-sentiment"  # an installed pair, but not the config this figure was made with
    (tmp_path / "changed.json").write_text(json.dumps(side), encoding="utf-8")
    with pytest.raises(SidecarError, match="has changed since this figure was made"):
        resolve_pair(read_sidecar(tmp_path / "changed.json"))


def test_version_one_sidecars_still_read(tmp_path):
    old = {
        "attention_flows_version": "0.1.0",
        "pair": {"name": "minilm-sentiment", "config": "/somewhere/default.toml"},
        "text": TEXT,
        "text_pair": None,
        "view": "matrix",
        "options": {"mode": "comparison", "layers": [1, 6], "tau": 0.25, "method": "graph"},
        "selected_head": {"layer": 6, "head": 3},
        "format": "pdf",
        "width": 688,
        "height": 432,
        "scale": 1.0,
    }
    (tmp_path / "v1.json").write_text(json.dumps(old), encoding="utf-8")
    sidecar = read_sidecar(tmp_path / "v1.json")
    assert sidecar.pair_name == "minilm-sentiment" and sidecar.config_sha256 is None
    assert sidecar.export == ExportOptions("pdf", width=688, height=432, scale=1.0)
    assert sidecar.selected == (6, 3) and sidecar.options.tau == 0.25
    assert resolve_pair(sidecar).name == "minilm-sentiment"  # resolved by name among the installed configs


def test_bad_format_and_bad_targets_are_refused(service, tmp_path):
    figure = render("heads", service, service.analyse(TEXT), ViewOptions())
    with pytest.raises(OptionError, match=r"Option 'format' is 'gif'\. Use one of: png, svg, pdf"):
        export_figure(figure, tmp_path / "x.gif")
    with pytest.raises(ExportError, match=r"does not exist\. Create it first"):
        export_figure(figure, tmp_path / "missing" / "x.png")
    with pytest.raises(ExportError, match="is not writable"):
        export_figure(figure, "/proc/sys/x.png")
    with pytest.raises(OptionError, match="Option 'preset' is 'poster'"):
        ExportOptions("png", preset="poster")
    with pytest.raises(OptionError, match="more than the exporter can draw"):
        ExportOptions("png", width=4000, height=4000, scale=8)


def test_a_file_that_is_not_a_figure_is_an_error_never_a_download():
    with pytest.raises(ExportError, match="3 bytes that are not a PNG file"):
        check_drawn(b"\x89PN", "png")
    assert check_drawn(b"\x89PNG\r\n\x1a\n" + bytes(100), "png")


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")

    def broken_replace(*_):
        raise OSError("disk full")

    monkeypatch.setattr("app.export.files.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_missing_chromium_gives_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    with pytest.raises(ExportError, match="apt-get install chromium"):
        start_export_server()


def test_exports_at_once_from_two_threads_each_get_their_own_figure(service):
    """kaleido's sync server paired answers with callers by order: two threads could swap figures."""
    from concurrent.futures import ThreadPoolExecutor

    analysis = service.analyse(TEXT)
    figures = {view: render(view, service, analysis, ViewOptions()) for view in ("heads", "sentence", "matrix")}
    export = ExportOptions("svg")

    def texts(view: str) -> tuple[str, list[bytes]]:  # what an SVG says (its element ids differ at every draw)
        return view, re.findall(rb"<text[^>]*>(.*?)</text>", render_bytes(figures[view], export))

    expected = dict(map(texts, figures))
    assert len({tuple(said) for said in expected.values()}) == 3  # three different figures
    with ThreadPoolExecutor(3) as pool:
        drawn = list(pool.map(texts, [*figures] * 3))
    for view, said in drawn:
        assert said == expected[view], view  # its own figure, whichever thread drew it and in whatever order


def test_a_warm_browser_answers_its_first_export_at_once(service, tmp_path):
    """What ``serve`` starts in the background: the first export then waits for no Chromium start (its time is
    measured by ``attention-flows bench export``)."""
    from app.export.browser import PROCESS_BROWSER
    from app.export.files import warm_export_browser

    stop_export_server()
    assert not PROCESS_BROWSER.running
    warm_export_browser(delay=0).join(timeout=60)
    assert PROCESS_BROWSER.running
    warmed = PROCESS_BROWSER._thread
    figure = render("heads", service, service.analyse(TEXT), ViewOptions())
    assert export_figure(figure, tmp_path / "heads.svg").read_bytes().lstrip().startswith(b"<svg")
    assert PROCESS_BROWSER._thread is warmed  # drawn by the warmed browser, not one started for it


def test_png_and_pdf_bytes_do_not_depend_on_what_the_tab_drew_before(service):
    """PNG and PDF tabs are put back without a reload (0.2 s of a core each); an SVG is drawn by a reloaded page.
    Each format's bytes must be what a fresh browser makes (a PDF's print date aside, an SVG's random ids aside)."""
    from app.export.browser import PROCESS_BROWSER

    analysis = service.analyse(TEXT)
    legend = {  # a page that drew a legend writes the next legend's attributes in another order
        "data": [{"type": "scatter", "x": [0, 1], "y": [0, 1], "name": "a"},
                 {"type": "scatter", "x": [0, 1], "y": [1, 0], "name": "b"}],
        "layout": {"showlegend": True, "title": {"text": "two lines"}},
    }  # fmt: skip
    views = [render(view, service, analysis, ViewOptions()) for view in ("sankey", "heads", "matrix", "sentence")]
    figures = [legend, *views]
    formats = {fmt: ExportOptions(fmt) for fmt in ("svg", "png", "pdf")}  # the SVG first: by a fresh page
    stop_export_server()  # fresh tabs
    fresh = {fmt: render_bytes(figures[0], export) for fmt, export in formats.items()}
    uses = PROCESS_BROWSER._kaleido._uses
    for figure in figures * 2:  # both tabs draw figures in PNG and PDF
        render_bytes(figure, formats["png"])
        render_bytes(figure, formats["pdf"])
    assert len(uses) == 2 and min(uses.values()) >= 3  # both tabs drew, and were not reloaded since
    assert render_bytes(figures[0], formats["png"]) == fresh["png"]
    assert undated_pdf(render_bytes(figures[0], formats["pdf"])) == undated_pdf(fresh["pdf"])
    assert normalised_svg(render_bytes(figures[0], formats["svg"])) == normalised_svg(fresh["svg"])


def test_a_tab_whose_reload_fails_is_not_lost(service):
    """A used tab is reloaded before an SVG; when that reload fails the caller gets the error and the tab stays in
    the queue (two lost tabs would leave every later export waiting forever)."""
    from app.export.browser import PROCESS_BROWSER

    figure = render("heads", service, service.analyse(TEXT), ViewOptions())
    stop_export_server()
    fresh_svg = render_bytes(figure, ExportOptions("svg"))
    kaleido = PROCESS_BROWSER._kaleido
    for _ in range(20):  # PNGs until both tabs have drawn since their last reload (the SVG's runs in the background)
        render_bytes(figure, ExportOptions("png"))
        if len(kaleido._uses) == 2 and kaleido.tabs_ready.qsize() == 2:
            break
        time.sleep(0.1)
    tabs = list(kaleido.tabs_ready._queue)  # asyncio.Queue's own deque: the tabs waiting for a figure
    assert len(tabs) == 2 and all(kaleido._uses.get(id(tab)) for tab in tabs)
    failures = []

    def failing_once(tab):
        working = tab.reload

        async def reload():
            if tab not in failures:
                failures.append(tab)
                raise RuntimeError("the page did not load")
            return await working()

        return reload

    for tab in tabs:
        tab.reload = failing_once(tab)
    with pytest.raises(ExportError, match="the page did not load"):
        render_bytes(figure, ExportOptions("svg"))
    assert kaleido.tabs_ready.qsize() == 2  # the tab whose reload failed is back in the queue
    svgs = []
    for _ in range(4):  # the other tab's reload fails once too; then both tabs reload and draw
        with contextlib.suppress(ExportError):
            svgs.append(render_bytes(figure, ExportOptions("svg")))
    assert len(failures) == 2 and len(svgs) >= 2
    assert all(normalised_svg(svg) == normalised_svg(fresh_svg) for svg in svgs)
    for _ in range(100):  # each SVG's tab is reloaded in the background, then queued again
        if kaleido.tabs_ready.qsize() == 2:
            break
        time.sleep(0.1)
    assert kaleido.tabs_ready.qsize() == 2


def _cli(*args) -> subprocess.CompletedProcess:
    """``attention-flows ARGS`` run in this process (its exit status, printed output and errors, as a subprocess
    would give them): no interpreter, torch import or browser start per call."""
    from app.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse refuses bad arguments with exit status 2
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_cli_single_export_and_unknown_view(tiny_config, tmp_path):
    out = tmp_path / "sentence.pdf"
    done = _cli("export", "--config", str(tiny_config), "--text", TEXT, "--view", "sentence", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"%PDF")
    wrong = _cli("export", "--config", str(tiny_config), "--text", TEXT, "--view", "pie", "--out", str(out))
    assert wrong.returncode == 2 and "invalid choice: 'pie'" in wrong.stderr
    missing = _cli("export", "--config", str(tiny_config), "--text", TEXT, "--out", str(tmp_path / "no" / "x.png"))
    assert missing.returncode == 2 and "attention-flows: error: Folder" in missing.stderr
    assert "Traceback" not in missing.stderr


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
    names = sorted(p.name for p in out.iterdir())
    assert [re.sub(r"-[0-9a-f]{8}\.", ".", n) for n in names] == [
        "001-heads-comparison-all-layers-a-fine-film-double-svg.json",
        "001-heads-comparison-all-layers-a-fine-film-double-svg.svg",
        "003-heads-comparison-all-layers-a-dull-film-double-svg.json",
        "003-heads-comparison-all-layers-a-dull-film-double-svg.svg",
    ]
    assert "wrote 2 of 3 figures" in done.stdout


@pytest.mark.parametrize(
    ("browser", "said"), [("/no/such/chromium", "none was found"), ("/bin/false", "did not start")]
)
def test_cli_batch_without_a_working_browser_is_one_line_and_writes_nothing(tiny_config, tmp_path, browser, said):
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\na dull film\n", encoding="utf-8")
    out = tmp_path / "figures"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "export", "--config", str(tiny_config), "--texts", str(texts),
         "--out-dir", str(out), "--format", "svg"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BROWSER_PATH": browser},
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("attention-flows: error: ")]
    assert done.returncode == 2 and len(errors) == 1 and said in errors[0], done.stderr
    assert "line 1" not in done.stderr and "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


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


def test_the_pages_selection_marks_stay_out_of_exported_figures(service, tmp_path):
    job = FigureRequest(Analysis(TEXT), "heads", ViewOptions(), (2, 1), ExportOptions("svg"), tmp_path / "heads.svg")
    path = make_one(service, job, with_sidecar=True)
    assert 'class="shape-group"' not in path.read_text()  # the grid's selection outline is a layout shape
    assert json.loads(path.with_suffix(".json").read_text())["selected_head"] == {"layer": 2, "head": 1}


def test_file_names_differ_by_preset_and_format():
    """A single-column PDF, a double-column PNG and a double-column PDF of one view are three files (and three
    sidecars), never one name overwriting another (issue 27)."""
    options = ViewOptions()
    stems = {
        file_stem("sankey", options, TEXT, ExportOptions.create(fmt, preset=preset))
        for fmt, preset in (("pdf", "single"), ("png", "double"), ("pdf", "double"))
    }
    assert len(stems) == 3
    assert sum("-single-pdf-" in s for s in stems) == 1 and sum("-double-" in s for s in stems) == 2
    assert file_stem("sankey", options, TEXT, ExportOptions.create("png", preset="double")) in stems  # stable
