"""The head similarity map in a real page (``attention-flows serve`` on the default pair, Chromium through
Playwright) and in its exported files: every head is drawn in its own spot, a click on a drawn head selects that
head, the labels are there, and the markers stand out from the background in the light and the dark theme."""

from __future__ import annotations

import base64
import contextlib
import itertools
import math

import pytest

from app.core.options import PRESETS, ExportOptions, ViewOptions
from app.export.requests import FigureRequest, export_bytes
from app.figures.scatter import PAGE_FRAME, contrast_ratio, dark_theme_colour, frame_for, layer_colours
from app.figures.theme import Canvas
from app.service.analysis import AnalysisService
from app.testing.figure_standard import INPUTS
from benchmarks.dashboard import show_view
from benchmarks.gallery import wait_until_settled
from tests.servers import ARTIFACTS

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # a dev dependency: the fixtures fail with an install hint
    PlaywrightTimeout = TimeoutError

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Every marker of a model trace as drawn: its head (from the trace's customdata), its centre and box in px.
DRAWN_JS = """(root) => {
  const out = [];
  document.querySelectorAll(root + ' .scatterlayer .trace').forEach(g => {
    const trace = g.__data__ && g.__data__[0] && g.__data__[0].trace;
    if (!trace || !trace.customdata || trace.hoverinfo === 'skip') return;
    g.querySelectorAll('path.point').forEach(p => {
      const r = p.getBoundingClientRect(), data = trace.customdata[p.__data__.i];
      out.push({layer: data[0], head: data[1], model: trace.name, x: (r.left + r.right) / 2,
                y: (r.top + r.bottom) / 2, reach: Math.max(r.width, r.height) / 2});
    });
  });
  return out;
}"""
# The plot area (its clip rectangle, placed by its group's transform) in page px: [left, top, right, bottom].
PLOT_JS = """(root) => {
  const svg = document.querySelector(root + ' svg.main-svg') || document.querySelector('svg');
  const plot = svg.querySelector('.cartesianlayer .overplot > g[clip-path]');
  const rect = document.getElementById(plot.getAttribute('clip-path').match(/#([^)'"]+)/)[1]).querySelector('rect');
  const m = plot.transform.baseVal.consolidate().matrix, frame = svg.getBoundingClientRect();
  const x = frame.left + m.e, y = frame.top + m.f;
  return [x, y, x + rect.width.baseVal.value, y + rect.height.baseVal.value];
}"""
RING_JS = """() => { const g = document.querySelector('#similarity-graph .js-plotly-plot');
  const ring = g.data.find(t => t.name === 'selected head');
  const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, box = g.getBoundingClientRect();
  return ring.x.map((x, i) => [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(ring.y[i])]); }"""
# Pixels of a PNG at the given points, read back through a canvas: [r, g, b] each.
PIXELS_JS = """async ([png, points]) => {
  const img = new Image(); img.src = 'data:image/png;base64,' + png; await img.decode();
  const canvas = document.createElement('canvas'); canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
  return points.map(([x, y]) => Array.from(ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data.slice(0, 3)));
}"""


@pytest.fixture(scope="module")
def server(default_server):
    return default_server


def _open(browser, server, *, width=1600, height=1100, scheme="light", scale=1):
    """A new tab on the page at this window size and colour scheme, once the similarity map is drawn."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                  device_scale_factor=scale)  # fmt: skip
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda m: tab.console_errors.append(m.text) if m.type == "error" else None)
    tab.goto(server)
    show_view(tab, "similarity", timeout=90_000)
    tab.wait_for_selector("#similarity-graph .scatterlayer path.point", timeout=90_000)
    tab.locator("#card-similarity").scroll_into_view_if_needed()
    wait_until_settled(tab)  # every view drawn, no callback in flight
    return context, tab


def _crowded(markers: list[dict], count: int) -> list[dict]:
    """The ``count`` markers with the most neighbours within 25 px (one marker per head), crowded first."""

    def neighbours(m):
        return sum(math.dist((m["x"], m["y"]), (o["x"], o["y"])) < 25 for o in markers) - 1

    chosen, seen = [], set()
    for marker in sorted(markers, key=lambda m: (-neighbours(m), m["layer"], m["head"], m["model"])):
        if (marker["layer"], marker["head"]) not in seen:
            seen.add((marker["layer"], marker["head"]))
            chosen.append(marker)
    return chosen[:count]


def _overlaps(markers: list[dict]) -> list[str]:
    return [f"L{a['layer']} H{a['head']} {a['model']} × L{b['layer']} H{b['head']} {b['model']}"
            for a, b in itertools.combinations(markers, 2)
            if math.dist((a["x"], a["y"]), (b["x"], b["y"])) < a["reach"] + b["reach"] - 0.5]  # fmt: skip


def test_clicking_where_a_head_is_drawn_selects_that_head(browser, server):
    context, tab = _open(browser, server)
    markers = tab.evaluate(DRAWN_JS, "#similarity-graph")
    assert len(markers) == 2 * 6 * 12  # both models' 72 heads, every one drawn
    wrong = []
    aimed = [m for m in markers if (m["layer"], m["head"]) == (6, 3)] + _crowded(markers, 5)  # L6 H3: issue 27
    for marker in aimed:
        label = tab.locator("#selected-head-label").text_content()
        want = f"layer {marker['layer']}, head {marker['head']}"
        if label == want:
            continue
        tab.mouse.click(marker["x"], marker["y"])
        with contextlib.suppress(PlaywrightTimeout):  # unchanged: the click picked the selected head, or none
            tab.wait_for_function(
                "old => document.getElementById('selected-head-label').textContent !== old", arg=label, timeout=15_000
            )
        got = tab.locator("#selected-head-label").text_content()
        if got != want:
            wrong.append(f"aimed at L{marker['layer']} H{marker['head']} ({marker['model']}), selected {got!r}")
        wait_until_settled(tab, quiet=0.6)  # the views this selection redraws are drawn before the next click
    assert wrong == []  # the old map: 5 of the 14 most crowded missed (aiming at L6 H3 selected L4 H10)
    assert _overlaps(markers) == []
    # the ring went to the head drawn there (nudged off its MDS position or not)
    tab.wait_for_timeout(1000)
    last = marker
    rings = tab.evaluate(RING_JS)
    drawn = [(m["x"], m["y"]) for m in markers if (m["layer"], m["head"]) == (last["layer"], last["head"])]
    assert len(rings) == 2 and all(min(math.dist(r, d) for d in drawn) < 1.5 for r in rings), (rings, drawn)
    assert tab.console_errors == []
    context.close()


def test_labels_name_the_most_changed_heads_and_every_head_on_demand(browser, server):
    context, tab = _open(browser, server)
    labels = tab.locator("#similarity-graph .annotation-text").all_text_contents()
    assert 4 <= len(labels) <= 10 and all(text.startswith("L") and " H" in text for text in labels), labels
    assert tab.locator("#similarity-graph .scatterlayer .textpoint").count() == 0  # the rest wait for the legend
    entry = tab.locator("#similarity-graph .legend .traces", has_text="labels: every head")
    entry.locator(".legendtoggle").click()
    tab.wait_for_function("() => document.querySelectorAll('#similarity-graph .textpoint').length > 50")
    shown = set(labels) | set(tab.locator("#similarity-graph .textpoint").all_text_contents())
    assert len(shown) == 72  # every head named: the most changed by their callouts, the others once
    tab.screenshot(path=str(ARTIFACTS / "similarity-every-label.png"), full_page=False)
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_markers_stand_out_from_the_plot_in_both_themes(browser, server, scheme):
    """Every marker's fill (its centre pixel, or one beside it where a label's line crosses) against the plot's
    background, as Chromium shows them: the layer's colour, at least 3:1 (the dark theme is the page's filter over
    the figure; ``dark_theme_colour`` is checked against it). Today's layer 6 was 1.6:1 in the dark theme."""
    context, tab = _open(browser, server, scheme=scheme, scale=2)
    graph = tab.locator("#similarity-graph")
    png = graph.screenshot()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"similarity-{scheme}.png").write_bytes(png)
    box = graph.bounding_box()
    markers = tab.evaluate(DRAWN_JS, "#similarity-graph")
    left, top, right, bottom = tab.evaluate(PLOT_JS, "#similarity-graph")
    empty = next(
        (x, y)
        for x, y in itertools.product(range(int(left) + 4, int(right) - 4, 3), range(int(top) + 4, int(bottom) - 4, 3))
        if all(math.dist((x, y), (m["x"], m["y"])) > m["reach"] + 4 for m in markers)
    )
    around = [(0.0, 0.0), (0.4, 0.0), (-0.4, 0.0), (0.0, 0.4), (0.0, -0.4)]  # a leader line may cross the centre
    points = [((m["x"] + dx * m["reach"] - box["x"]) * 2, (m["y"] + dy * m["reach"] - box["y"]) * 2)
              for m in markers for dx, dy in around]  # fmt: skip
    points.append(((empty[0] - box["x"]) * 2, (empty[1] - box["y"]) * 2))
    pixels = tab.evaluate(PIXELS_JS, [base64.b64encode(png).decode(), points])
    background = "rgb({}, {}, {})".format(*pixels[-1])
    expected = [layer_colours(6)[m["layer"] - 1] for m in markers]
    if scheme == "dark":
        expected = [dark_theme_colour(colour) for colour in expected]
        assert max(abs(a - b) for a, b in zip(pixels[-1], (26, 26, 26), strict=True)) <= 3  # white, filtered
    low, unlike = {}, []
    for index, (marker, colour) in enumerate(zip(markers, expected, strict=True)):
        want = [int(v) for v in colour[4:-1].split(",")]
        samples = pixels[index * len(around) : (index + 1) * len(around)]
        fill = min(samples, key=lambda p: max(abs(a - b) for a, b in zip(p, want, strict=True)))
        if max(abs(a - b) for a, b in zip(fill, want, strict=True)) > 6:
            unlike.append((marker["layer"], marker["head"], marker["model"], colour, samples))
        ratio = contrast_ratio("rgb({}, {}, {})".format(*fill), background)
        if ratio < 3.0:
            low[(marker["layer"], marker["head"], marker["model"])] = round(ratio, 2)
    assert low == {}, f"{scheme}: markers under 3:1 on {background}"
    assert unlike == []  # the fill shown is the layer's colour (through the dark filter: dark_theme_colour)
    context.close()


def test_a_narrow_two_column_window_still_draws_every_head_apart(browser, server):
    """At 1101 px (the narrowest window with two columns of views) the card is narrowest: the plot keeps at
    least the side the map is laid out for."""
    context, tab = _open(browser, server, width=1101, height=900)
    left, top, right, bottom = tab.evaluate(PLOT_JS, "#similarity-graph")
    assert min(right - left, bottom - top) >= PAGE_FRAME.side - 0.5
    assert _overlaps(tab.evaluate(DRAWN_JS, "#similarity-graph")) == []
    context.close()


@pytest.fixture(scope="module")
def service(default_pair):
    return AnalysisService(default_pair)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_export_preset_draws_every_head_apart(browser, service, preset):
    """Each preset's SVG drawn by Chromium: the plot keeps the side the map was laid out for, no two markers
    overlap and no label lies on a marker."""
    analysis = service.analyse(*INPUTS["sentence"])
    export = ExportOptions.create("svg", preset=preset)
    svg = export_bytes(service, FigureRequest(analysis, "similarity", ViewOptions(), None, export))[0]
    width, _, font = export.pixels()
    tab = browser.new_page(viewport={"width": 1400, "height": 1400})
    tab.set_content(f"<html><body style='margin:0'>{svg.decode()}</body></html>")
    left, top, right, bottom = tab.evaluate(PLOT_JS, "svg")
    assert min(right - left, bottom - top) >= frame_for(Canvas(width=width, font_px=font, static=True)).side - 0.5
    markers = tab.evaluate(
        """() => [...document.querySelectorAll('.scatterlayer .trace')].flatMap(g =>
             [...g.querySelectorAll('path.point')].filter(p => !p.style.opacity || +p.style.opacity > 0)
             .map(p => { const r = p.getBoundingClientRect();
                         return {x: (r.left + r.right) / 2, y: (r.top + r.bottom) / 2,
                                 reach: Math.max(r.width, r.height) / 2, layer: 0, head: 0, model: ''}; }))"""
    )
    assert len(markers) >= 144 and _overlaps(markers) == []
    labels = tab.evaluate(
        "() => [...document.querySelectorAll('.annotation-text')].map(t => { const r = t.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; })"
    )
    assert labels, f"{preset}: no head is labelled"
    on_markers = [
        box for box in labels for m in markers
        if box[0] < m["x"] + m["reach"] - 1 and m["x"] - m["reach"] + 1 < box[2]
        and box[1] < m["y"] + m["reach"] - 1 and m["y"] - m["reach"] + 1 < box[3]
    ]  # fmt: skip
    assert on_markers == []
    tab.close()
