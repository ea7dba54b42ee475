"""The head view (bertviz's): the pure figure on hand-made attention, its renderer and callback on the tiny pair."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.options import ViewOptions
from app.figures.headview import (
    HEAD_COLOURS,
    MIN_WEIGHT,
    STEPS,
    make_headview,
    step_of,
    step_opacity,
)
from app.figures.theme import Canvas
from tests.conftest import plotly_figure, random_attention

TOKENS = ("[CLS]", "a", "sub", "##plot", "[SEP]")
PAGE, FILE = Canvas(width=900), Canvas(width=672, font_px=10.67, static=True)


def _maps(seed: int = 0, heads: int = 3, tokens: int = len(TOKENS)) -> dict[str, np.ndarray]:
    """``[head, query, key]`` per model."""
    pre, ft = (random_attention(1, heads, tokens, seed=seed + i, concentration=0.4)[0] for i in range(2))
    return {"pretrained": pre, "finetuned": ft}


def _lines(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if isinstance(t.get("meta"), dict) and "q" in t["meta"]]


def _segments(fig: dict, trace: dict) -> list[tuple[int, int, int]]:
    """(panel, query, key) of each segment, read from the drawn x (a panel's query dot → its key dot) and y."""
    columns = fig["layout"]["meta"]["columns"]
    xs, ys = trace["x"], trace["y"]
    assert set(xs[2::3]) == {None} and set(ys[2::3]) == {None}
    panels = [
        next(i for i, c in enumerate(columns) if c == (x0, x1)) for x0, x1 in zip(xs[0::3], xs[1::3], strict=True)
    ]
    return list(zip(panels, ys[0::3], ys[1::3], strict=True))


def test_weights_fall_into_steps_drawn_at_their_middle_and_light_ones_are_not_drawn():
    weights = np.array([0.0, MIN_WEIGHT - 1e-4, MIN_WEIGHT, 0.1, 0.39, 0.4, 0.99, 1.0])
    assert step_of(weights).tolist() == [-1, -1, 0, 1, 2, 2, 3, 3]
    assert [step_opacity(s) for s in range(len(STEPS))] == [0.075, 0.175, 0.375, 0.75]


def test_every_weight_above_the_minimum_is_one_line_in_its_heads_colour_and_step():
    maps = _maps()
    fig = make_headview(maps, tokens=TOKENS, layer=2, which="the last of layers 1–2", canvas=PAGE)
    plotly_figure(fig)
    drawn: dict[tuple[str, int, int, int], float] = {}
    models = ("pretrained", "finetuned")
    for trace in _lines(fig):
        head, step = (int(part) for part in trace["uid"].split("-"))
        assert trace["line"]["color"] == HEAD_COLOURS[head] and trace["opacity"] == step_opacity(step)
        assert trace["legendgroup"] == f"head {head}" and trace["hoverinfo"] == "skip"
        segments = _segments(fig, trace)
        assert segments == list(zip(trace["meta"]["p"], trace["meta"]["q"], trace["meta"]["k"], strict=True))
        for panel, query, key in segments:
            weight = float(maps[models[panel]][head, query, key])
            assert STEPS[step][0] <= weight and (weight < STEPS[step][1] or step == len(STEPS) - 1)
            drawn[(models[panel], head, query, key)] = weight
    expected = {(m, *map(int, at)) for m, w in maps.items() for at in zip(*np.nonzero(w >= MIN_WEIGHT), strict=True)}
    assert set(drawn) == expected  # each weight ≥ the minimum exactly once, nothing lighter
    assert "layer 2, the last of layers 1–2" in fig["layout"]["title"]["text"]


def test_comparison_puts_the_models_side_by_side_and_one_mode_draws_its_model_alone():
    fig = make_headview(_maps(), tokens=TOKENS, layer=1, which="x", canvas=PAGE)
    (query, key), (query2, key2) = fig["layout"]["meta"]["columns"]
    assert query < key < query2 < key2  # pre-trained | fine-tuned, each queries | keys
    names = [a["text"] for a in fig["layout"]["annotations"]]
    assert names.index("<b>pre-trained</b>") < names.index("<b>fine-tuned</b>")
    assert names.count("query") == 2 and names.count("key") == 2
    alone = make_headview(_maps(), tokens=TOKENS, layer=1, which="x", mode="finetuned", canvas=PAGE)
    assert len(alone["layout"]["meta"]["columns"]) == 1 and {p for t in _lines(alone) for p in t["meta"]["p"]} == {0}
    assert "<b>fine-tuned</b>" in [a["text"] for a in alone["layout"]["annotations"]]
    weights = _maps()["finetuned"]
    assert sum(len(t["meta"]["q"]) for t in _lines(alone)) == int((weights >= MIN_WEIGHT).sum())


def test_each_head_has_one_legend_entry_that_toggles_its_lines_in_both_models():
    fig = make_headview(_maps(heads=3), tokens=TOKENS, layer=1, which="x", canvas=PAGE)
    entries = [t for t in fig["data"] if t.get("showlegend", True) and t.get("name")]
    assert [e["name"] for e in entries] == ["H0", "H1", "H2"]
    for head, entry in enumerate(entries):
        grouped = [t for t in _lines(fig) if t["legendgroup"] == entry["legendgroup"]]
        assert {p for t in grouped for p in t["meta"]["p"]} == {0, 1}  # both models
        assert entry["line"]["color"] == HEAD_COLOURS[head]
    assert fig["layout"]["legend"]["y"] > 1  # above the panels, as bertviz's head tiles
    assert fig["layout"]["uirevision"]  # a reader's legend choices survive the page's redraws


def test_heads_outside_the_filter_start_hidden_in_the_page_and_stay_out_of_a_file():
    page = make_headview(_maps(heads=3), tokens=TOKENS, layer=1, which="x", heads=(0, 2), canvas=PAGE)
    hidden = {t["legendgroup"] for t in page["data"] if t.get("visible") == "legendonly"}
    assert hidden == {"head 1"}  # in the legend, to be clicked back
    file = make_headview(_maps(heads=3), tokens=TOKENS, layer=1, which="x", heads=(0, 2), canvas=FILE)
    assert {t["legendgroup"] for t in file["data"] if "legendgroup" in t} == {"head 0", "head 2"}
    assert "Heads shown: 0, 2" in _caption(file)


def _caption(fig: dict) -> str:
    return fig["layout"]["annotations"][-1]["text"].replace("<br>", " ")


def test_the_caption_explains_colour_and_opacity_and_a_file_never_asks_to_interact():
    page = _caption(make_headview(_maps(), tokens=TOKENS, layer=3, which="x", canvas=PAGE))
    file = make_headview(_maps(), tokens=TOKENS, layer=3, which="x", canvas=FILE)
    for text in (page, _caption(file)):
        assert "colour: the head" in text and "opacity: the attention weight" in text
        assert f"weights under {MIN_WEIGHT:g} are not drawn" in text and "0.05–0.1" in text
    assert "Hover a token" in page and "legend" in page
    words = " ".join(str(v) for t in file["data"] for v in (t.get("text"), t.get("hovertemplate")) if v)
    words += " ".join(a["text"] for a in file["layout"]["annotations"]) + file["layout"]["title"]["text"]
    assert "hover" not in words.lower() and "click" not in words.lower()
    assert not [t for t in file["data"] if t.get("customdata")]  # no hover targets in a file
    assert file["layout"]["meta"]["natural_size"]  # the export keeps its laid-out height


def test_the_page_puts_a_hover_target_over_each_label_that_says_its_side_and_position():
    fig = make_headview(_maps(), tokens=TOKENS, layer=1, which="x", canvas=PAGE)
    targets = [t for t in fig["data"] if t.get("customdata")]
    assert len(targets) == 2  # the query and the key columns of both panels
    for side, target in enumerate(targets):
        assert target["customdata"] == [[side, row] for row in range(len(TOKENS))] * 2
        assert target["hoverinfo"] == "none" and target["marker"]["opacity"] == 0  # events, no box over the words
        dots = [t for t in fig["data"] if t.get("mode") == "markers+text"][side]["x"]
        assert all((x < dot) if side == 0 else (x > dot) for x, dot in zip(target["x"], dots, strict=True))
    assert fig["layout"]["meta"]["label"] > 0 and fig["layout"]["hoverdistance"] >= fig["layout"]["meta"]["label"] / 2


def test_labels_keep_sub_word_marks_a_long_word_is_cut_and_the_fold_label_never_is():
    tokens = ("[CLS]", "extraordinarily", "##ly", "[SEP]", "other (120)")
    narrow = Canvas(width=336, font_px=9.33, static=True)
    fig = make_headview(_maps(), tokens=tokens, layer=1, which="x", folded=True, canvas=narrow)
    shown = next(t for t in fig["data"] if t.get("mode") == "markers+text")["text"]
    assert shown[2] == "##ly" and shown[4] == "other (120)"
    assert shown[1].endswith("…") and len(shown[1]) < len(tokens[1])
    assert "'other (n)' stands for the n least relevant tokens" in _caption(fig)


def test_each_token_gets_a_row_a_line_of_text_high():
    short = make_headview(_maps(tokens=5), tokens=TOKENS, layer=1, which="x", canvas=PAGE)
    many = tuple(f"t{i}" for i in range(40))
    tall = make_headview(_maps(tokens=40), tokens=many, layer=1, which="x", canvas=PAGE)
    per_row = (tall["layout"]["height"] - short["layout"]["height"]) / (40 - 5)
    assert per_row >= 1.3 * PAGE.font_px
    assert tall["layout"]["yaxis"]["range"] == [39.5, -0.5]  # the first token on top
    assert len(tall["data"]) < 4 * 12 + 20  # few traces: the page redraws them all on a hover


def test_a_64_token_comparison_serialises_small_and_quickly():
    import time

    from plotly.io.json import to_json_plotly

    models = ("pretrained", "finetuned")
    maps = {model: random_attention(1, 12, 64, seed=s, concentration=0.2)[0] for s, model in enumerate(models)}
    tokens = tuple(f"token{i}" for i in range(64))
    started = time.perf_counter()
    payload = to_json_plotly(make_headview(maps, tokens=tokens, layer=6, which="x", canvas=PAGE))
    assert time.perf_counter() - started < 1.0 and len(payload.encode()) < 400_000


# The renderer and callback, on the tiny pair (2 layers × 2 heads).


@pytest.fixture
def service(tiny_app):
    from app.service.registry import pair_service

    return pair_service(server=tiny_app.server)


def _weights_drawn(fig: dict, panel: int) -> set[tuple[int, int, int]]:
    return {(int(t["uid"].split("-")[0]), q, k) for t in _lines(fig) for p, q, k in _segments(fig, t) if p == panel}


def test_the_layer_is_the_selected_heads_else_the_last_of_the_chosen_layers(service):
    from app.views.render import render

    analysis = service.analyse("a fine , moving film")
    pre, _, _ = service.thumbnails(analysis, ViewOptions())
    for options, selected, layer, said in (
        (ViewOptions(), None, 2, "the last of layers 1–2"),
        (ViewOptions(layers=(1, 1)), (2, None), 1, "the last of layers 1–1"),  # a layer alone: the range decides
        (ViewOptions(layers=(2, 2)), (1, 0), 1, "the selected head L1 H0's layer"),
    ):
        fig = render("headview", service, analysis, options, selected)
        assert f"layer {layer}, {said}" in fig["layout"]["title"]["text"]
        expected = {tuple(map(int, at)) for at in zip(*np.nonzero(pre[layer - 1] >= MIN_WEIGHT), strict=True)}
        assert _weights_drawn(fig, 0) == expected


def test_the_head_view_draws_the_matrix_tokens_hidden_and_folded_as_the_matrix_does(service):
    from app.views.render import render

    long = service.analyse(" ".join(["film"] * 50))  # 52 tokens: folds above 40
    options = ViewOptions(hide=("punctuation",), top_k=20, renormalize=True)
    fig = render("headview", service, long, options)
    assert "renormalised to sum to 1" in _caption(fig)
    labels = next(t for t in fig["data"] if t.get("mode") == "markers+text")["text"]
    drawn = service.matrix_tokens(long, options)
    assert tuple(labels) == drawn * 2 and drawn[-1].startswith("other (")  # both models' query columns
    assert "'other (n)'" in _caption(fig)


def test_an_export_of_the_head_view_draws_the_selected_heads_layer(service):
    from app.core.options import ExportOptions
    from app.export.requests import FigureRequest, export_figure

    analysis = service.analyse("a fine , moving film")
    request = FigureRequest(analysis, "headview", ViewOptions(), (1, 1), ExportOptions.create("svg", preset="single"))
    fig = export_figure(service, request)
    assert "layer 1, the selected head L1 H1's layer" in fig["layout"]["title"]["text"]
    assert "hover" not in _caption(fig).lower()  # a file


def test_the_callback_draws_for_the_cards_width_and_the_selected_layer(tiny_app):
    from app.dashboard.callbacks import headview

    controls = {"mode": "pretrained", "layers": [1, 2], "heads": [0, 1], "tau": 0.05, "alpha": 0.5,
                "aggregation": "mean", "level": "word", "sources": [], "hide": [], "sinks": ["sinks"], "top_k": 30,
                "measure": "raw_attention", "method": "rollout", "target": "predicted", "renormalize": []}  # fmt: skip
    with tiny_app.server.app_context():
        fig = headview.update_headview(
            analysis_data={"text": "a fine , moving film", "text_pair": None},
            selected={"layer": 1, "head": 0},
            canvas={"width": 700},
            **controls,
        )
    fig = plotly_figure(fig)
    assert fig.layout.width == 700 and "layer 1" in fig.layout.title.text
    assert "moving" in next(t for t in fig.data if t.mode == "markers+text").text
