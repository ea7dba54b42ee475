"""The heatmap views (attention matrix, head grid and word query, every-head thumbnails, token scores per layer):
laid out for the canvas they are drawn for, colour bars that cover nothing and read as plain numbers, every label
shown when it fits (or its thinning said), difference panels scaled like the model panels, no blank layers, the
matrix inside the chosen layer range, no interaction words in files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from app.core.options import ViewOptions
from app.figures import make_sentence
from app.figures.heatmaps import OFF_SCALE, make_influence, make_matrix, make_word_query
from app.figures.theme import Canvas, colorbar_ticks, tick_labels, tick_step
from app.figures.thumbnails import make_thumbnails
from app.views.render import matrix_caption, matrix_selection
from attention import attention_matrices, attention_received, compare_relevance
from tests.conftest import TOKENS, make_run, plotly_figure, random_attention

SENTENCE = (
    "the film is a slow , careful portrait of a family in crisis , and its quiet ending stays with you so long after ."
)
TOKENS27 = ("[CLS]", *SENTENCE.split(), "[SEP]")  # 27 tokens, as the figure standard's sentence
PAGE = Canvas()  # the page's default: 1150 px, 13 px text
SINGLE = Canvas(width=336, font_px=7 * 96 / 72, static=True)  # the single-column export
DOUBLE = Canvas(width=687, font_px=8 * 96 / 72, static=True)


def _matrices(tokens: int, seed: int = 0) -> pd.DataFrame:
    pre, ft = (make_run(random_attention(2, 3, tokens, seed=seed + i, concentration=0.3)) for i in range(2))
    return attention_matrices(pre, ft, 2)


def _bars(fig: dict) -> list[dict]:
    return [t["colorbar"] for t in fig["data"] if t.get("showscale")]


def test_single_column_matrix_stacks_its_panels_with_each_colour_bar_above_its_own_panel():
    fig = make_matrix(_matrices(27), tokens=TOKENS27, canvas=SINGLE)
    plotly_figure(fig)
    layout = fig["layout"]
    domains = [layout[key]["domain"] for key in ("yaxis", "yaxis2", "yaxis3")]
    assert all(top > bottom for bottom, top in domains)
    assert domains[0][0] > domains[1][1] and domains[1][0] > domains[2][1]  # one above the other, apart
    assert [t["xaxis"] for t in fig["data"]] == ["x"] * 3  # one key axis, labelled under the last panel
    bars = _bars(fig)
    assert len(bars) == 3 and all(bar["orientation"] == "h" and bar["yanchor"] == "bottom" for bar in bars)
    plot_h = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    for bar, (_, top), above in zip(bars, domains, [None, *domains[:2]], strict=True):
        assert top < bar["y"] <= top + 5 / plot_h  # sits on its panel's top edge, so covers none of its cells
        height_px = bar["thickness"] + 20  # the bar, its tick marks and one line of labels
        assert above is None or bar["y"] + height_px / plot_h < above[0]  # and clears the panel above


def test_side_by_side_colour_bars_sit_right_of_the_last_panel_in_px_whatever_the_page_width():
    fig = make_matrix(_matrices(12), tokens=TOKENS27[:12], canvas=PAGE)
    plotly_figure(fig)
    assert max(fig["layout"][f"xaxis{i}"]["domain"][1] for i in ("", "2", "3")) <= 1.0
    for bar in _bars(fig):
        assert (bar["x"], bar["xanchor"]) == (1.0, "left")  # the plot's right edge: in the margin, beside no panel
    assert fig["layout"]["margin"]["r"] >= 40  # room for the bar and its labels
    lows_highs = sorted((b["y"] - b["len"] / 2, b["y"] + b["len"] / 2) for b in _bars(fig))
    assert all(high <= low2 for (_, high), (low2, _) in itertools.pairwise(lows_highs))


def test_matrix_shows_every_one_of_27_token_labels_where_they_fit():
    """Issue 27 item 9: the page showed "1 label in 2" for 27 tokens, the single-column file 6 of 27 unsaid."""
    fig = make_matrix(_matrices(27), tokens=TOKENS27, canvas=PAGE)
    for key in [k for k in fig["layout"] if k.startswith(("xaxis", "yaxis"))]:
        assert list(fig["layout"][key]["ticktext"]) == list(TOKENS27), key
    assert fig["layout"]["xaxis"]["tickangle"] == -90  # turned vertical rather than thinned


def test_a_single_column_matrix_fits_a_page_with_every_key_and_says_which_queries_it_labels():
    """Three stacked 27-row panels at 7 pt were 10.3 in tall, more than a journal page holds: the figure now fits
    9 in, keeps every key label (turned vertical) and labels every other query row, saying so on the axis."""
    fig = make_matrix(_matrices(27), tokens=TOKENS27, canvas=SINGLE)
    assert fig["layout"]["height"] <= 9 * 96
    xaxes = [k for k in fig["layout"] if k.startswith("xaxis")]
    assert all(list(fig["layout"][k].get("ticktext", [])) in ([], list(TOKENS27)) for k in xaxes)
    assert list(fig["layout"]["xaxis"]["ticktext"]) == list(TOKENS27)
    for key in [k for k in fig["layout"] if k.startswith("yaxis")]:
        axis = fig["layout"][key]
        assert list(axis["ticktext"]) == list(TOKENS27)[::2] and "1 label in 2" in axis["title"]["text"], key


def test_a_matrix_too_wide_for_its_labels_thins_them_and_says_so():
    tokens = tuple(f"w{i}" for i in range(60))
    fig = make_matrix(_matrices(60), tokens=tokens, canvas=DOUBLE)
    shown = fig["layout"]["xaxis"]["ticktext"]
    step = 60 // len(shown) if len(shown) < 60 else 1
    assert 1 < len(shown) < 60 and f"1 label in {step}" in fig["layout"]["xaxis"]["title"]["text"]
    assert len(fig["layout"]["yaxis"]["ticktext"]) == 60  # rows get the height they need


def test_colour_bar_numbers_are_plain_decimals_never_si_suffixes():
    """Issue 27 item 6: colour bars read "200μ" for attention shares and class relevance."""
    assert [label for _, label in tick_labels(0.0002)] == ["0.0000", "0.0001", "0.0002"]
    assert [label for _, label in tick_labels(0.81, signed=True)] == ["−0.5", "0.0", "0.5"]
    assert colorbar_ticks(0.0035) == {"tickmode": "linear", "tick0": 0.0, "dtick": 0.001, "tickformat": ".3f"}
    assert tick_step(0.84) == 0.2
    fig = make_influence(_relevance(), tokens=TOKENS, method="class_relevance", scale_without=(0, 5))
    for bar in _bars(fig):
        assert bar["tickformat"].endswith("f") and bar["tickmode"] == "linear"


def _relevance(layers: int = 3) -> pd.DataFrame:
    """Six tokens ([CLS] … [SEP]) over ``layers`` layers; [CLS]'s difference is −0.06, the words' at most 0.01."""
    rows = []
    for layer in range(1, layers + 1):
        for token in range(6):
            pre = 0.5 if token == 0 else 0.02 * token
            change = -0.06 if token == 0 else 0.002 * token
            rows.append((layer, token, TOKENS[token], pre, pre + change, change))
    return pd.DataFrame(rows, columns=["layer", "token_idx", "token", "pretrained", "finetuned", "difference"])


def test_token_scores_difference_panel_leaves_special_tokens_off_its_scale_like_the_model_panels():
    """Issue 27 item 7: the difference was scaled by [CLS] (−0.06 against word differences ≤ 0.01)."""
    fig = make_influence(_relevance(), tokens=TOKENS, method="rollout", scale_without=(0, 5))
    difference = fig["data"][2]
    assert difference["zmax"] == pytest.approx(0.008) and difference["zmin"] == pytest.approx(-0.008)  # words only
    assert np.isnan(difference["z"][0]).all() and difference["customdata"][0][0] == pytest.approx(-0.06)
    for model in fig["data"][:2]:
        assert np.isnan(model["z"][0]).all() and model["zmax"] == pytest.approx(0.08 + 0.008)
    assert fig["layout"]["plot_bgcolor"] == OFF_SCALE  # blank cells are grey, never read as a white 0
    notes = " ".join(a["text"] for a in fig["layout"]["annotations"])
    assert "Grey: [CLS], [SEP], off the colour scale" in notes


def test_token_scores_in_a_file_never_mention_hovering():
    fig = make_influence(_relevance(), tokens=TOKENS, method="rollout", scale_without=(0,), canvas=SINGLE)
    texts = [fig["layout"]["title"]["text"], *(a["text"] for a in fig["layout"]["annotations"])]
    assert not any("hover" in text.lower() for text in texts)


def test_leading_layers_too_faint_to_see_are_left_out_and_said():
    """Issue 27 item 6: class relevance left five of six columns blank."""
    frame = _relevance(layers=6)
    frame.loc[frame["layer"] <= 3, ["pretrained", "finetuned"]] *= 0.01  # layers 1–3: ~1 % of the peak
    frame["difference"] = frame["finetuned"] - frame["pretrained"]
    fig = make_influence(frame, tokens=TOKENS, method="class_relevance", scale_without=(0, 5))
    assert [list(t["x"]) for t in fig["data"]] == [["after 4", "after 5", "after 6"]] * 3
    notes = " ".join(a["text"] for a in fig["layout"]["annotations"])
    assert "Layers 1–3 not drawn" in notes and "5%" in notes
    kept = make_influence(_relevance(layers=6), tokens=TOKENS, method="rollout", scale_without=(0, 5))
    assert len(kept["data"][0]["x"]) == 6  # nothing faint: every layer drawn


def test_word_query_title_is_short_and_its_colour_bars_stay_right_of_the_panels():
    """Issue 27 item 9: the word-query title was cut and its colour-bar ticks lay over the next panel."""
    pre, ft = (make_run(random_attention(3, 4, 6, seed=s)) for s in (1, 2))
    fig = make_word_query(attention_received(pre, ft, [2]), word="fine", shown_heads=(0, 1))
    plotly_figure(fig)
    assert fig["layout"]["title"]["text"] == "Word query: attention 'fine' receives"
    notes = fig["layout"]["annotations"][-1]["text"]
    assert "Mean over all tokens" in notes and "veiled" in notes
    for bar in _bars(fig):
        assert (bar["x"], bar["xanchor"]) == (1.0, "left")
    assert {s["yref"] for s in fig["layout"]["shapes"]} == {"y"}  # the panels share their layer axis


def test_thumbnails_ask_for_a_click_in_the_page_only():
    maps = random_attention(2, 3, 5, seed=4)
    assert "click" in make_thumbnails(maps, maps * 0.5)["layout"]["title"]["text"]
    static = make_thumbnails(maps, maps * 0.5, static=True)
    assert "click" not in static["layout"]["title"]["text"].lower()
    assert static["data"][0]["colorbar"]["ticktext"][0].startswith("−")  # plain decimals with a minus sign


def test_the_matrix_follows_the_layer_range():
    """Issue 27 item 12: with layers 3–5 chosen the matrix still showed layer 6."""
    ranged = ViewOptions(layers=(3, 5), measure="raw_attention")
    assert matrix_selection(ranged, (6, None)) == ((5, None), "the last of layers 3–5")
    assert matrix_selection(ranged, (4, None)) == ((4, None), "")
    assert matrix_selection(ViewOptions(), (6, None)) == ((6, None), "")
    assert matrix_selection(ranged, (6, 2)) == ((6, 2), "outside the chosen layers 3–5")  # a chosen head stays
    assert matrix_caption(ranged, (6, None), 12).startswith("layer 5 (the last of layers 3–5), mean of all heads")
    assert matrix_caption(ranged, (6, 2), 12) == "layer 6, head 2 (outside the chosen layers 3–5)"


def test_the_rendered_matrix_draws_a_layer_inside_the_range(tiny_app):
    from app.service.registry import pair_service
    from app.views.render import render

    service = pair_service(server=tiny_app.server)
    analysis = service.analyse("a fine , moving film")
    options = ViewOptions(layers=(1, 1), measure="raw_attention")
    fig = render("matrix", service, analysis, options, None, Canvas())
    assert "layer 1 (the last of layers 1–1)" in fig["layout"]["title"]["text"]
    expected = service.matrices(analysis, service.checked(analysis, options), 1, None)
    pre = expected[expected["model"] == "pretrained"]
    z = np.asarray(fig["data"][0]["z"])
    np.testing.assert_allclose(z[pre["query_idx"], pre["key_idx"]], pre["weight"], atol=1e-4)


@pytest.mark.browser
@pytest.mark.parametrize("preset", ["single", "double", "slide"])
def test_matrix_and_token_scores_files_meet_the_figure_standard(preset):
    """Measured in Chromium from the exported SVG (colour bars, plot areas and labels), on a 27-token input."""
    from playwright.sync_api import sync_playwright

    from app.core.options import ExportOptions
    from app.export.files import render_bytes
    from app.testing.figure_standard import check_svg
    from app.testing.servers import CHROMIUM

    export = ExportOptions.create("svg", preset=preset)
    width, _, font_px = export.pixels()
    canvas = Canvas(width=width, font_px=font_px, static=True)
    frame = _relevance(layers=6)
    figures = [
        make_matrix(_matrices(27), tokens=TOKENS27, canvas=canvas, caption="layer 2, mean of all heads"),
        make_influence(frame, tokens=TOKENS, method="rollout", scale_without=(0, 5), canvas=canvas),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1400})
        found = {i: check_svg(tab, render_bytes(fig, export), fig) for i, fig in enumerate(figures)}
        browser.close()
    assert not any(found.values()), found


def test_a_repeated_token_is_told_apart_by_its_position_in_every_token_hover():
    """``a fine , film , a`` repeats "a" and ",": each occurrence's hover names its position (#n) in the token
    scores, the sentence view and the matrix."""
    tokens = ("[CLS]", "a", "fine", ",", "film", ",", "a", "[SEP]")
    pre, ft = (make_run(random_attention(2, 2, len(tokens), seed=s)) for s in (1, 2))
    frame = compare_relevance(pre, ft, "rollout")
    influence = make_influence(frame, tokens=tokens, method="rollout", scale_without=(0, 7))
    rows = [row[0] for row in influence["data"][0]["text"]]
    assert rows[1] == "a (#1)" and rows[6] == "a (#6)" and rows[3] == ", (#3)" and len(set(rows)) == len(rows)
    sentence = make_sentence(frame, tokens=tokens)
    said = next(t for t in sentence["data"] if t.get("hovertext"))["hovertext"]
    assert "a (#1)" in said and "a (#6)" in said and len(set(said)) == len(said)
    matrix = make_matrix(attention_matrices(pre, ft, 2), tokens=tokens)
    assert matrix["data"][0]["x"][1] == "a (#1)" and matrix["data"][0]["x"][6] == "a (#6)"  # hover: "a (#6) → a (#1)"
