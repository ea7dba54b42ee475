"""The head similarity map (app/figures/scatter.py): every head has its own spot where it can be seen and clicked,
the most-changed heads are labelled, and the colours read in the light and the dark theme."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from dash._callback_context import context_value
from dash._utils import AttributeDict
from dash.exceptions import PreventUpdate

from app.core.options import DPI, PRESETS
from app.dashboard import ids
from app.dashboard.callbacks import selection, views
from app.figures import make_similarity
from app.figures.scatter import (
    LABELLED,
    contrast_ratio,
    dark_theme_colour,
    frame_for,
    layer_colours,
    spread,
)
from app.figures.theme import Canvas
from attention import head_embedding
from tests.conftest import make_run, plotly_figure, random_attention

TEXT = {"text": "a fine , moving film", "text_pair": None}
PAGE = None  # the page's canvas: make_similarity lays the map out for the page's card
EXPORTS = {name: Canvas(round(p.width_in * DPI), p.font_pt * DPI / 72, static=True) for name, p in PRESETS.items()}


@pytest.fixture(scope="module")
def embedding():
    """Both models' heads of a 6-layer, 12-head pair (as the default pair), on random attention."""
    pre, ft = (make_run(random_attention(6, 12, 9, seed=s, concentration=0.4)) for s in (3, 4))
    return head_embedding(pre, ft)


@pytest.fixture(scope="module")
def crowd():
    """144 heads in three tight clumps (MDS positions a thousandth apart), with changes from 0 to 0.3."""
    rng = np.random.default_rng(7)
    layer, head = np.indices((6, 12)).reshape(2, -1)
    centres = np.array([[0.0, 0.0], [0.3, 0.05], [0.1, 0.4]])[rng.integers(0, 3, 144)]
    return pd.DataFrame(
        {
            "model": np.repeat(["pretrained", "finetuned"], 72),
            "layer": np.tile(layer + 1, 2),
            "head": np.tile(head, 2),
            "x": centres[:, 0] + rng.normal(0, 0.001, 144),
            "y": centres[:, 1] + rng.normal(0, 0.001, 144),
            "js_divergence": np.tile(rng.uniform(0, 0.3, 72), 2),
        }
    )


@pytest.fixture(scope="module")
def twelve():
    """A 12-layer, 12-head pair (as BERT-base): 288 markers, drawn smaller."""
    pre, ft = (make_run(random_attention(12, 12, 9, seed=s, concentration=0.4)) for s in (5, 6))
    return head_embedding(pre, ft)


def _drawn(fig: dict, canvas: Canvas | None) -> list[tuple[int, int, str, float, float, float]]:
    """(layer, head, symbol, x px, y px, nominal radius px) of every marker a click can pick, in the plot the map is
    laid out for (its side in px over the square's range: the smallest plot it is drawn in)."""
    side = frame_for(canvas).side
    x0, x1 = fig["layout"]["xaxis"]["range"]
    y0, y1 = fig["layout"]["yaxis"]["range"]
    out = []
    for trace in fig["data"]:
        if trace.get("hoverinfo") == "skip":
            continue
        sizes = np.broadcast_to(trace["marker"]["size"], len(trace["x"]))
        for (layer, head, *_), x, y, size in zip(trace["customdata"], trace["x"], trace["y"], sizes, strict=True):
            px, py = (x - x0) / (x1 - x0) * side, (y - y0) / (y1 - y0) * side
            out.append((int(layer), int(head), trace["marker"]["symbol"], px, py, size / 2))
    return out


def _reach(symbol: str, radius: float) -> float:
    """How far a Plotly marker's drawn shape reaches from its centre, outline included (a diamond: 1.3 r)."""
    return radius * (1.3 if symbol == "diamond" else 1.0) + 0.75


def _plotly_distance(pointer: tuple[float, float], marker: tuple) -> float:
    """Plotly's "closest" hover distance of a pointer to a scatter marker (plotly.js ``scatter/hover.js``): inside
    the marker a constant under 1 (smaller markers win), outside its distance to the marker's edge."""
    radius = max(3.0, marker[5])
    return max(float(np.hypot(pointer[0] - marker[3], pointer[1] - marker[4])) - radius, 1 - 3 / radius)


def test_spread_parts_a_clump_leaves_lone_points_and_is_deterministic():
    points = np.array([[50.0, 50.0]] * 12 + [[180.0, 180.0]])
    radii = np.full(13, 6.0)
    placed = spread(points, radii, 200.0)
    gaps = [np.hypot(*(placed[i] - placed[j])) - 12.0 for i, j in itertools.combinations(range(13), 2)]
    assert min(gaps) >= -1e-6
    assert placed[-1].tolist() == [180.0, 180.0]  # nothing near it: it stays where MDS put it
    assert ((placed >= 6.0) & (placed <= 194.0)).all()
    assert np.array_equal(placed, spread(points, radii, 200.0))


@pytest.mark.parametrize("canvas", [PAGE, *EXPORTS.values()], ids=["page", *EXPORTS])
@pytest.mark.parametrize("which", ["embedding", "crowd", "twelve"])
def test_no_two_heads_overlap_where_the_map_draws_them(request, which, canvas):
    """Markers (their drawn shape and outline) keep apart in the smallest plot the map is drawn in, even when MDS
    puts dozens of heads on one spot. Today's map drew them where MDS put them: 5 of 14 sampled heads hidden."""
    embedding = request.getfixturevalue(which)
    fig = make_similarity(embedding, canvas=canvas)
    plotly_figure(fig)
    markers = _drawn(fig, canvas)
    assert len(markers) == len(embedding)
    touching = [
        (a[:2], b[:2])
        for a, b in itertools.combinations(markers, 2)
        if np.hypot(a[3] - b[3], a[4] - b[4]) < _reach(a[2], a[5]) + _reach(b[2], b[5]) + 1.0
    ]
    assert touching == []


@pytest.mark.parametrize("which", ["embedding", "crowd"])
def test_plotly_hit_test_picks_the_head_drawn_under_the_pointer(request, which):
    """Plotly's own "closest" hit test, applied to the page's figure, picks the marker under the pointer from its
    centre to its edge (and the lines, labels and selection ring are never hit)."""
    fig = make_similarity(request.getfixturevalue(which), selected=(6, 3))
    markers = _drawn(fig, PAGE)
    wrong = []
    for index, marker in enumerate(markers):
        inner = marker[5] * (0.7 if marker[2] == "diamond" else 0.95)  # inside the drawn diamond / circle
        for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            pointer = (marker[3] + inner * np.cos(angle), marker[4] + inner * np.sin(angle))
            picked = min(range(len(markers)), key=lambda i: _plotly_distance(pointer, markers[i]))
            if picked != index:
                wrong.append((marker[:2], markers[picked][:2]))
        picked = min(range(len(markers)), key=lambda i: _plotly_distance(marker[3:5], markers[i]))
        if picked != index:
            wrong.append((marker[:2], markers[picked][:2]))
    assert wrong == []
    hit = [t["name"] for t in fig["data"] if t.get("hoverinfo") != "skip"]
    assert hit == ["pre-trained", "fine-tuned"] and fig["layout"]["hovermode"] == "closest"


def test_known_values_of_the_contrast_and_the_dark_filter():
    assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast_ratio("rgb(119, 119, 119)", "#FFFFFF") == pytest.approx(4.48, abs=0.01)
    assert dark_theme_colour("#FFFFFF") == "rgb(26, 26, 26)"  # the figure's white, as the dark page shows it
    assert dark_theme_colour("#000000") == "rgb(230, 230, 230)"
    r, g, b = (int(v) for v in dark_theme_colour("#0072B2")[4:-1].split(","))
    assert b > g > r  # the filter keeps hues: the pre-trained blue stays blue


@pytest.mark.parametrize("layers", [2, 6, 12, 24])
def test_every_layer_colour_has_three_to_one_contrast_in_both_themes(layers):
    white, dark = "#FFFFFF", dark_theme_colour("#FFFFFF")
    for colour in layer_colours(layers):
        assert contrast_ratio(colour, white) >= 3.0, colour
        assert contrast_ratio(dark_theme_colour(colour), dark) >= 3.0, colour


def test_the_figure_colours_layers_with_those_colours(embedding):
    """The colour bar's bands and every marker's colour come from the checked layer colours. Today's Viridis
    drew layer 6 in yellow: 1.3:1 on white, dark olive on dark grey (1.6:1)."""
    fig = make_similarity(embedding)
    scale = fig["layout"]["coloraxis"]["colorscale"]
    colours = {colour for _, colour in scale}
    assert colours == set(layer_colours(6))
    white, dark = "#FFFFFF", dark_theme_colour("#FFFFFF")
    assert min(contrast_ratio(c, white) for c in colours) >= 3.0
    assert min(contrast_ratio(dark_theme_colour(c), dark) for c in colours) >= 3.0
    bar = fig["layout"]["coloraxis"]
    assert (bar["cmin"], bar["cmax"]) == (0.5, 6.5) and bar["colorbar"]["tickvals"] == [1, 2, 3, 4, 5, 6]
    for trace in fig["data"][1:3]:
        assert trace["marker"]["opacity"] == 1.0 and trace["marker"]["coloraxis"] == "coloraxis"


def _most_changed(embedding: pd.DataFrame, count: int) -> set[str]:
    heads = embedding.drop_duplicates(["layer", "head"]).sort_values("js_divergence", ascending=False)
    return {f"L{layer} H{head}" for layer, head in zip(heads["layer"][:count], heads["head"][:count], strict=True)}


def test_the_page_labels_the_most_changed_heads_and_every_head_from_the_legend(embedding):
    fig = make_similarity(embedding)
    called = [a["text"] for a in fig["layout"]["annotations"]]
    assert set(called) <= _most_changed(embedding, LABELLED) and len(set(called)) >= LABELLED - 1
    markers = {(round(x, 9), round(y, 9)) for t in fig["data"][1:3] for x, y in zip(t["x"], t["y"], strict=True)}
    assert all((round(a["x"], 9), round(a["y"], 9)) in markers for a in fig["layout"]["annotations"])
    every = next(t for t in fig["data"] if t["name"] == "labels: every head")
    assert every["visible"] == "legendonly" and every["hoverinfo"] == "skip" and every["showlegend"]
    assert {*called, *every["text"]} == {f"L{layer} H{head}" for layer in range(1, 7) for head in range(12)}
    assert fig["layout"]["legend"]["uirevision"]  # a toggled legend entry survives the selection's patches


@pytest.mark.parametrize("preset", list(EXPORTS))
def test_an_export_labels_the_most_changed_heads_that_fit_and_asks_for_no_click(embedding, preset):
    fig = make_similarity(embedding, canvas=EXPORTS[preset])
    called = [a["text"] for a in fig["layout"]["annotations"]]
    assert called and set(called) <= _most_changed(embedding, LABELLED)
    assert not any(t["name"].startswith("labels") for t in fig["data"])
    texts = [fig["layout"]["title"]["text"], fig["layout"]["title"]["subtitle"]["text"], *called]
    assert not any(word in text.lower() for text in texts for word in ("hover", "click"))
    assert fig["layout"]["meta"]["min_height"] == fig["layout"]["height"]


def test_hover_says_how_far_a_head_was_nudged(crowd):
    fig = make_similarity(crowd)
    notes = [text for trace in fig["data"][1:3] for text in trace["text"]]
    assert any(note.startswith("moved ") for note in notes)
    assert "%{text}" in fig["data"][1]["hovertemplate"] and "JS change" in fig["data"][1]["hovertemplate"]


def test_one_model_draws_its_heads_apart_with_the_ring_after_them(embedding):
    fig = make_similarity(embedding, mode="finetuned", selected=(2, 5))
    assert [t["name"] for t in fig["data"]] == ["fine-tuned", "selected head", "labels: every head"]
    ring, heads = fig["data"][1], fig["data"][0]
    at = next(i for i, (layer, head, *_) in enumerate(heads["customdata"]) if (layer, head) == (2, 5))
    assert (ring["x"], ring["y"]) == ([heads["x"][at]], [heads["y"][at]])


@pytest.fixture
def context(tiny_app):
    with tiny_app.server.app_context():
        yield tiny_app


def _clicked(trigger: str, click: dict):
    token = context_value.set(AttributeDict(triggered_inputs=[{"prop_id": f"{trigger}.clickData"}]))
    try:
        return selection.select_head(None, click, 0, [], None, None, TEXT)
    finally:
        context_value.reset(token)


def test_a_click_on_the_map_selects_the_clicked_head_and_the_ring_moves_onto_it(context):
    click = {"points": [{"curveNumber": 2, "pointNumber": 3, "customdata": [2, 1, 0.04, 6.0]}]}
    assert _clicked(ids.SIMILARITY, click) == {"layer": 2, "head": 1}
    with pytest.raises(PreventUpdate):  # a label or a line carries no head
        _clicked(ids.SIMILARITY, {"points": [{"curveNumber": 4, "pointNumber": 0}]})
    drawn = views.update_similarity(analysis_data=TEXT, selected=None, mode="comparison")
    patch = selection.mark_selected_head({"layer": 2, "head": 1}, TEXT, "comparison").to_plotly_json()
    (operation,) = patch["operations"]
    assert operation["location"] == ["data", 3]
    ring = operation["params"]["value"]
    at = [
        (trace["x"][i], trace["y"][i])
        for trace in drawn["data"][1:3]
        for i, (layer, head, *_) in enumerate(trace["customdata"])
        if (layer, head) == (2, 1)
    ]
    assert list(zip(ring["x"], ring["y"], strict=True)) == at
