"""The figure standard (app/testing/figure_standard.py) for every view × preset × format, at a 30-token sentence, a
137-word review and a sentence pair: legible, inside the canvas, nothing overlapping, compact legends, no
interaction words, every label shown or its thinning said. PNG and PDF are the SVG's layout, so they are checked
for the same canvas: a PNG of width × scale pixels, a PDF page of the same size in points."""

from __future__ import annotations

import re
import struct

import pytest

from app.core.options import DPI, PRESETS, VIEWS, ExportOptions, ViewOptions
from app.export.requests import FigureRequest, export_bytes
from app.service.analysis import AnalysisService
from app.testing.figure_standard import (
    INPUTS,
    check_svg,
    exports,
    missing_from_pdf,
    svg_texts,
    thinned_labels,
    violations,
)
from tests.servers import ARTIFACTS


@pytest.fixture(scope="module")
def service(default_pair):
    return AnalysisService(default_pair)


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_preset_and_input_meets_the_figure_standard(view, service, tab):
    broken = {}
    for name, _, preset, svg, figure in exports(service, [view], list(PRESETS), list(INPUTS)):
        found = check_svg(tab, svg, figure)
        if found:
            broken[f"{preset}/{name}"] = found[:6]
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / f"standard-{view}-{preset}-{name}.svg").write_bytes(svg)
    assert not broken, broken


@pytest.mark.parametrize("view", list(VIEWS))
def test_png_and_pdf_have_the_svgs_canvas_and_text(view, service, tab):
    analysis = service.analyse(*INPUTS["sentence"])
    for preset in PRESETS:
        made = {}
        for fmt in ("svg", "png", "pdf"):
            options = ExportOptions.create(fmt, preset=preset)
            made[fmt] = export_bytes(service, FigureRequest(analysis, view, ViewOptions(), None, options))[0]
        width, height = (
            float(v) for v in re.search(rb'<svg[^>]* width="([\d.]+)" height="([\d.]+)"', made["svg"]).groups()
        )
        assert width == pytest.approx(PRESETS[preset].width_in * DPI, abs=1)
        scale = ExportOptions.create("png", preset=preset).scale
        png_width, png_height = struct.unpack(">II", made["png"][16:24])
        assert (png_width, png_height) == (pytest.approx(width * scale, abs=2), pytest.approx(height * scale, abs=2))
        box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", made["pdf"])
        assert box, f"{view}/{preset}: no PDF page"
        assert (float(box[1]), float(box[2])) == (
            pytest.approx(width * 0.75, abs=2),
            pytest.approx(height * 0.75, abs=2),
        )
        missing = missing_from_pdf(svg_texts(tab, made["svg"]), made["pdf"])
        assert not missing, f"{view}/{preset}: the PDF page does not show {missing[:5]}"


def _measured(**parts) -> dict:
    base = {
        "canvas": [0, 0, 300, 200],
        "texts": [],
        "plots": [],
        "colorbars": [],
        "legends": [],
        "nodes": [],
        "ticks": {},
    }
    return {**base, **parts}


def _text(text, box, size=10.0, owner="free"):
    return {"text": text, "box": box, "size": size, "owner": owner}


PANEL = {"name": "x2y2", "box": [100, 10, 200, 190]}
BAR = {"name": "colorbar:cb1 colorbar", "box": [90, 20, 130, 180]}


def test_each_rule_catches_what_it_names():
    """The rules fail on a planted fault of each kind, and pass a clean layout."""
    assert (
        violations(_measured(texts=[_text("a", [10, 10, 30, 20])], plots=[{"name": "xy", "box": [40, 10, 290, 190]}]))
        == []
    )
    cases = {
        "under 7 pt": _measured(texts=[_text("a", [10, 10, 30, 20], size=8.0)]),
        "cut at the edge": _measured(texts=[_text("a", [290, 10, 320, 20])]),
        "texts overlap": _measured(texts=[_text("a", [10, 10, 30, 20]), _text("b", [20, 12, 40, 22])]),
        "colorbar over plot area": _measured(plots=[PANEL], colorbars=[BAR]),
        "legend takes": _measured(legends=[{"name": "legend", "box": [0, 150, 300, 200]}]),
        "lies on plot area": _measured(plots=[PANEL], texts=[_text("0.5", [110, 50, 130, 60], owner=BAR["name"])]),
        "interaction word": _measured(texts=[_text("Hover a token", [10, 10, 80, 20])]),
        "carry no label": _measured(nodes=["the", ""]),
        "plot areas overlap": _measured(plots=[{"name": "xy", "box": [90, 0, 120, 100]}, PANEL]),
    }
    for said, measured in cases.items():
        assert any(said in line for line in violations(measured)), said


def test_a_token_axis_that_hides_labels_must_say_so():
    figure = {"data": [{"type": "heatmap", "x": ["a", "b", "c"], "y": ["a", "b", "c"], "xaxis": "x2", "yaxis": "y2"}]}
    quiet = _measured(ticks={"x2tick": 1, "y2tick": 3})
    assert thinned_labels(quiet, figure) == ["x2 axis shows 1 of 3 token labels and does not say so"]
    said = _measured(ticks={"x2tick": 1, "y2tick": 3}, texts=[_text("key; 1 label in 3", [0, 0, 50, 10])])
    assert thinned_labels(said, figure) == []
