"""Pure figure functions on small frames: trace types, colours per status, axis labels, no NaN."""

import itertools
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.io.json import to_json_plotly

from app.figures import make_head_grid, make_influence, make_matrix, make_sankey, make_sentence, make_similarity
from app.figures.models import mode_colour, reach_colours, shown_models, shown_panels, single_panel
from app.figures.sankey import SINK_COLOUR
from app.figures.scatter import selected_trace_index
from app.figures.sentence import wrap_tokens
from app.figures.theme import DIVERGING, FINETUNED, PRETRAINED, SHARED, STATUS_COLOURS, Canvas
from attention import (
    attention_matrices,
    compare_graphs,
    compare_heads,
    compare_relevance,
    graph_for,
    head_embedding,
)
from tests.conftest import TOKENS, make_run, plotly_figure, random_attention


@pytest.fixture(scope="module")
def runs():
    pre = random_attention(3, 4, 6, seed=10, concentration=0.3)
    ft = random_attention(3, 4, 6, seed=11, concentration=0.3)
    return make_run(pre), make_run(ft)


@pytest.fixture(scope="module")
def graphs(runs):
    return compare_graphs(graph_for(runs[0], tau=0.12), graph_for(runs[1], tau=0.12))


def _link_rgb(colour: str) -> str:
    r, g, b = (int(x) for x in colour[5:].split(",")[:3])
    return f"#{r:02X}{g:02X}{b:02X}"


def test_one_owner_decides_which_models_each_mode_draws_and_their_colours():
    assert shown_models("comparison") == ("pretrained", "finetuned") and shown_models("finetuned") == ("finetuned",)
    assert shown_panels("comparison") == ("pretrained", "finetuned", "difference")
    assert shown_panels("pretrained") == ("pretrained",)
    assert single_panel("comparison") == "difference" and single_panel("finetuned") == "finetuned"
    assert mode_colour("comparison", "pretrained_only") == PRETRAINED
    assert mode_colour("finetuned", "shared") == FINETUNED  # one model: its colour, whatever the status
    reached = np.array([[True, True], [True, False], [False, True]])  # [token, model]
    assert reach_colours("comparison", reached).tolist() == [SHARED, PRETRAINED, FINETUNED]
    assert reach_colours("pretrained", reached[:, :1]).tolist() == [PRETRAINED] * 3


def test_sankey_comparison_colours_links_by_status_and_has_a_legend(graphs):
    fig = plotly_figure(
        make_sankey(graphs.edges, graphs.nodes, tokens=TOKENS, sources=(0,), layers=(1, 3), tau=0.3, alpha=0.5)
    )
    sankey = fig.data[0]
    assert isinstance(sankey, go.Sankey)
    attention = graphs.edges[graphs.edges["kind"] == "attention"]
    assert len(set(attention["status"])) >= 2
    drawn = {_link_rgb(c) for c in sankey.link.color}
    assert {STATUS_COLOURS[s] for s in attention["status"]} <= drawn
    assert drawn <= set(STATUS_COLOURS.values())  # sink and residual links too: which models send them
    assert SINK_COLOUR.upper() in set(sankey.node.color)  # [CLS] / [SEP] absorb: khaki sink nodes
    assert not np.isnan(np.asarray(sankey.link.value, dtype=float)).any()
    assert set(sankey.node.label) <= set(TOKENS)
    legend = [t.name for t in fig.data[1:]]
    assert legend == ["both models", "only pre-trained", "only fine-tuned", "residual (pale)", "sink", "traced token"]
    assert "Attention graph from [CLS]" in fig.layout.title.text and "layers 1–3" in fig.layout.title.text


def test_sankey_link_widths_are_the_flows_and_hovers_give_both_models(graphs):
    fig = plotly_figure(
        make_sankey(
            graphs.edges, graphs.nodes, tokens=TOKENS, sources=(0,), layers=(1, 3), tau=0.3, alpha=0.5, mode="finetuned"
        )
    )
    ft_edges = graphs.edges[graphs.edges["in_graph_finetuned"]]
    assert sorted(np.round(fig.data[0].link.value, 9)) == sorted(np.round(ft_edges["flow_finetuned"], 9))
    assert {_link_rgb(c) for c in fig.data[0].link.color} == {FINETUNED}  # sink links too: the model's colour
    assert [t.name for t in fig.data[1:]] == ["fine-tuned ≥ τ", "residual (pale)", "sink", "traced token"]
    assert any("of its trace" in h for h in fig.data[0].link.customdata)


def test_comparison_colours_say_where_the_attention_is_not_where_a_trace_went():
    """Both models attend from token 1 to token 2 (0.8) in layer 1, but only the pre-trained trace reaches token 1
    (its [CLS] attends to 1 in layer 2; the fine-tuned [CLS] attends to 3). The edge must not be called
    pre-trained only: it is ≥ τ in both, and the hover gives the fine-tuned weight and says its trace missed it."""
    n = 4
    layer1 = np.full((n, n), 0.05)
    layer1[1] = [0.05, 0.1, 0.8, 0.05]
    pre2, ft2 = np.full((n, n), 0.25), np.full((n, n), 0.25)
    pre2[0], ft2[0] = [0.1, 0.8, 0.05, 0.05], [0.1, 0.05, 0.05, 0.8]
    pre = make_run(np.stack([layer1, pre2])[:, None])
    ft = make_run(np.stack([layer1, ft2])[:, None])
    settings = {"tau": 0.5, "sinks": False}
    graphs = compare_graphs(graph_for(pre, **settings), graph_for(ft, **settings), weights=(pre.weights, ft.weights))
    edge = graphs.edges.set_index(["layer", "query_idx", "key_idx", "kind"]).loc[(1, 1, 2, "attention")]
    assert edge.status == "shared" and edge.in_graph_pretrained and not edge.in_graph_finetuned
    assert edge.weight_finetuned == pytest.approx(0.8)
    tokens = [f"t{i}" for i in range(n)]
    fig = plotly_figure(
        make_sankey(graphs.edges, graphs.nodes, tokens=tokens, sources=(0,), layers=(1, 2), tau=0.5, alpha=0.5)
    )
    hovers = list(fig.data[0].link.customdata)
    hover = next(h for h in hovers if "<b>t1</b> attends to <b>t2</b>" in h)
    colour = fig.data[0].link.color[hovers.index(hover)]
    assert _link_rgb(colour) == STATUS_COLOURS["shared"]
    assert "attention ≥ τ in both models" in hover and "fine-tuned 0.800" in hover
    assert "fine-tuned: not reached by its trace" in hover
    ft_only = graphs.edges.set_index(["layer", "query_idx", "key_idx", "kind"]).loc[(2, 0, 3, "attention")]
    assert ft_only.status == "finetuned_only" and ft_only.weight_pretrained == pytest.approx(0.05)


def test_sankey_highlights_the_selected_heads_links(graphs):
    layer = int(graphs.edges.loc[graphs.edges["kind"] == "attention", "layer"].max())
    fig = plotly_figure(
        make_sankey(
            graphs.edges,
            graphs.nodes,
            tokens=TOKENS,
            sources=(0,),
            layers=(1, 3),
            selected=(layer, 0),
            tau=0.3,
            alpha=0.5,
        )
    )
    opacities = {c.rsplit(",", 1)[1].strip(" )") for c in fig.data[0].link.color}
    assert "0.90" in opacities or "0.12" in opacities


def test_sankey_hidden_tokens_are_left_out_and_a_hidden_source_is_said(graphs):
    kwargs = {"tokens": TOKENS, "sources": (0,), "layers": (1, 3), "tau": 0.3, "alpha": 0.5}
    fig = plotly_figure(make_sankey(graphs.edges, graphs.nodes, hidden=(5,), **kwargs))
    assert "[SEP]" not in set(fig.data[0].node.label)
    hidden = plotly_figure(make_sankey(graphs.edges, graphs.nodes, hidden=(0, 5), **kwargs))
    assert "is hidden" in hidden.layout.annotations[0].text and len(hidden.data[0].link.value)  # drawn: the source


def test_sankey_without_edges_explains_why(graphs):
    empty = graphs.edges.iloc[0:0]
    fig = plotly_figure(make_sankey(empty, graphs.nodes, tokens=TOKENS, sources=(0,), layers=(1, 3), tau=0.9))
    assert "Lower τ" in fig.layout.annotations[0].text and not fig.data


def test_head_grid_metrics_and_axes(runs):
    heads = compare_heads(*runs)
    fig = plotly_figure(make_head_grid(heads, metric="js_divergence", selected=(2, 1)))
    heatmap = fig.data[0]
    assert np.asarray(heatmap.z).shape == (3, 4) and not np.isnan(np.asarray(heatmap.z, dtype=float)).any()
    assert fig.layout.xaxis.title.text == "head" and fig.layout.yaxis.title.text == "layer"
    assert fig.layout.shapes[0].x0 == 0.5 and fig.layout.shapes[0].y0 == 1.5
    diff = plotly_figure(make_head_grid(heads, metric="to_cls", mode="comparison"))
    assert diff.data[0].zmid == 0 and list(diff.data[0].colorscale[0])[1] == PRETRAINED
    single = plotly_figure(make_head_grid(heads, metric="entropy", mode="pretrained"))
    np.testing.assert_allclose(np.asarray(single.data[0].z)[0, 0], heads.iloc[0]["entropy_pretrained"])
    with pytest.raises(ValueError, match="metric"):
        make_head_grid(heads, metric="nonsense")


def test_matrix_panels_per_mode_and_token_axes(runs):
    frame = attention_matrices(*runs, layer=2)
    fig = plotly_figure(make_matrix(frame, tokens=TOKENS, caption="layer 2"))
    assert [type(t) for t in fig.data] == [go.Heatmap] * 3
    assert tuple(fig.layout.xaxis.ticktext) == TOKENS and fig.layout.yaxis.autorange == "reversed"
    assert [list(c) for c in fig.data[2].colorscale] == [list(c) for c in DIVERGING]
    np.testing.assert_allclose(
        np.asarray(fig.data[1].z), runs[1].weights[1].mean(axis=0), atol=5e-5
    )  # rounded to 4 decimals for the payload
    assert len(make_matrix(frame, tokens=TOKENS, mode="pretrained")["data"]) == 1


def test_attention_matrices_single_head_and_max():
    from attention.extraction import AttentionRun  # noqa: F401

    pre, ft = make_run(random_attention(2, 3, 6, seed=1)), make_run(random_attention(2, 3, 6, seed=2))
    frame = attention_matrices(pre, ft, 1, heads=[2])
    diff = frame[frame["model"] == "difference"]["weight"].to_numpy().reshape(6, 6)
    np.testing.assert_allclose(diff, ft.weights[0, 2] - pre.weights[0, 2], atol=1e-6)
    maxed = attention_matrices(pre, ft, 1, aggregation="max")
    np.testing.assert_allclose(
        maxed[maxed["model"] == "pretrained"]["weight"].to_numpy().reshape(6, 6), pre.weights[0].max(axis=0), atol=1e-6
    )


@pytest.mark.parametrize("method", ["graph", "rollout", "flow", "raw_attention"])
def test_influence_heatmap_has_layers_on_x_and_no_nan(runs, method):
    frame = compare_relevance(*runs, method, layers=(2, 3))
    fig = plotly_figure(make_influence(frame, tokens=TOKENS, method=method))
    assert [list(t.x) for t in fig.data] == [["after 2", "after 3"]] * 3
    assert not any(np.isnan(np.asarray(t.z, dtype=float)).any() for t in fig.data)
    assert fig.layout.xaxis.title.text == "layer"


def test_similarity_scatter_links_models_colours_layers_and_marks_selection(runs):
    embedding = head_embedding(*runs)
    fig = plotly_figure(make_similarity(embedding, selected=(3, 2)))
    lines, pre, ft, chosen, _labels = fig.data
    assert lines.mode == "lines" and pre.name == "pre-trained" and ft.name == "fine-tuned"
    assert pre.marker.line.color == PRETRAINED and ft.marker.line.color == FINETUNED
    assert list(pre.marker.color) == list(embedding[embedding.model == "pretrained"]["layer"])
    assert len(chosen.x) == 2 and selected_trace_index("comparison") == 3
    single = plotly_figure(make_similarity(embedding, mode="finetuned"))
    assert len(single.data) == 3 and len(single.data[1].x) == 0 and selected_trace_index("finetuned") == 1


def _boxes(fig) -> list[tuple[float, float, float, float]]:
    return [(shape.x0, shape.x1, shape.y0, shape.y1) for shape in fig.layout.shapes]


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def test_sentence_view_lays_tokens_out_as_text_with_a_shared_scale_and_a_difference_row(runs):
    frame = compare_relevance(*runs, "graph")
    fig = plotly_figure(make_sentence(frame, tokens=TOKENS, scale_without=(0,), canvas=Canvas(width=700)))
    text = [t for t in fig.data if t.mode == "text"]
    assert [t.hovertemplate.split("<extra>")[1] for t in text] == [
        "pre-trained</extra>",
        "fine-tuned</extra>",
        "fine-tuned − pre-trained</extra>",
    ]
    assert all(list(t.text) == list(TOKENS) for t in text)
    values = frame[frame["layer"] == 3]
    np.testing.assert_allclose(np.asarray(text[1].customdata, dtype=float), values["finetuned"])
    np.testing.assert_allclose(np.asarray(text[2].customdata, dtype=float), values["finetuned"] - values["pretrained"])
    # one scale for both models: 0 to the largest value over the counted tokens; a diverging one for the difference
    bars = [t.marker for t in fig.data if t.mode == "markers"]
    peak = values.loc[values.token_idx > 0, ["pretrained", "finetuned"]].max().max()
    assert (bars[0].cmin, bars[0].cmax) == (0.0, pytest.approx(peak))
    assert bars[1].cmin == -bars[1].cmax and bars[1].colorscale[0][1].lower() == PRETRAINED.lower()
    # [CLS] (scale_without) is uncoloured; the strongest counted word is at full colour in its row
    boxes = fig.layout.shapes
    assert boxes[0].fillcolor == "rgba(0,0,0,0)" and boxes[len(TOKENS)].fillcolor == "rgba(0,0,0,0)"
    assert "after layer 3" in fig.layout.title.text
    # boxes never overlap and stay inside the text column
    placed = _boxes(fig)
    assert not any(_overlap(a, b) for k, a in enumerate(placed) for b in placed[k + 1 :])
    assert all(0 <= x0 < x1 <= fig.layout.xaxis.range[1] for x0, x1, _, _ in placed)


def test_wrap_tokens_wraps_at_the_width_and_breaks_before_a_segment():
    labels = ["word"] * 30
    placed = wrap_tokens(labels, width=200, font_px=10, breaks=(20,))
    assert max(x1 for _, x1, _ in placed) <= 200
    lines = [line for _, _, line in placed]
    assert lines == sorted(lines) and lines[-1] > 3
    assert placed[20][0] == 0 and placed[20][2] > placed[19][2]  # the second segment starts a line
    for (_, a1, la), (b0, _, lb) in itertools.pairwise(placed):
        assert lb > la or b0 >= a1  # left to right on a line, never overlapping
    assert wrap_tokens(["x" * 80], width=100, font_px=10)[0][0] == 0  # wider than the line: a line of its own


def test_sentence_view_marks_the_second_segment_and_uses_a_signed_scale_for_negative_scores(runs):
    frame = compare_relevance(*runs, "graph")
    frame.loc[frame.token_idx == 2, "finetuned"] = -0.5
    fig = plotly_figure(make_sentence(frame, tokens=TOKENS, segments=(0, 0, 0, 1, 1, 1), canvas=Canvas(width=2000)))
    assert any(a.text == "segment B ↓" for a in fig.layout.annotations)
    rows = {round(shape.y0) for shape in fig.layout.shapes}
    assert len(rows) == 6  # two lines (segments) of three rows each
    bar = next(t.marker for t in fig.data if t.mode == "markers")
    assert bar.cmin == -bar.cmax == pytest.approx(-0.5)


def test_sentence_and_influence_say_when_a_model_has_no_classes(runs):
    frame = compare_relevance(*runs, "rollout")
    frame["pretrained"] = np.nan
    message = {"pretrained": "m has no classification head: it has no classes to explain."}
    sentence = plotly_figure(
        make_sentence(frame, tokens=TOKENS, method="class_relevance", target="good", missing=message)
    )
    assert [t.mode for t in sentence.data] == ["text", "markers"]  # the fine-tuned row and its colour bar only
    assert any("no classification head" in a.text for a in sentence.layout.annotations)
    assert "class 'good'" in sentence.layout.title.text
    single = plotly_figure(
        make_influence(frame, tokens=TOKENS, method="class_relevance", mode="pretrained", missing=message)
    )
    assert not single.data and "no classification head" in single.layout.annotations[0].text


def test_figures_serialise_small_for_a_64_token_input():
    pre, ft = (make_run(random_attention(6, 12, 64, seed=s, concentration=0.2)) for s in (1, 2))
    graphs = compare_graphs(graph_for(pre, tau=0.05), graph_for(ft, tau=0.05))
    tokens = pre.tokens
    figures = [
        make_sankey(graphs.edges, graphs.nodes, tokens=tokens, sources=(0,), layers=(1, 6), tau=0.05, alpha=0.5),
        make_head_grid(compare_heads(pre, ft)),
        make_matrix(attention_matrices(pre, ft, 6), tokens=tokens),
        make_influence(compare_relevance(pre, ft, "flow"), tokens=tokens),
        make_similarity(head_embedding(pre, ft)),
        make_sentence(compare_relevance(pre, ft, "rollout"), tokens=tokens),
    ]
    for fig in figures:
        plotly_figure(fig)
        payload = to_json_plotly(fig)  # what Dash sends
        assert len(payload.encode()) < 1_000_000
        json.loads(payload)
    assert SHARED.startswith("#")


def test_faithfulness_figure_has_a_line_per_method_with_spread():
    import pandas as pd

    from app.figures import make_faithfulness

    table = pd.DataFrame(
        [
            ("rollout", 1, "blank_out", 0.1, 0.2, 5),
            ("rollout", 2, "blank_out", 0.2, 0.1, 5),
            ("class_relevance", 1, "blank_out", 0.3, 0.2, 5),
            ("class_relevance", 2, "blank_out", 0.4, 0.2, 4),
            ("input_x_gradient", 0, "blank_out", 0.05, 0.3, 5),
            ("rollout", 2, "input_x_gradient", 0.9, 0.1, 5),
        ],
        columns=["method", "layer", "reference", "spearman_mean", "spearman_std", "n"],
    )
    fig = plotly_figure(make_faithfulness(table))
    names = [t.name for t in fig.data]
    assert names == ["class relevance (gradient × attention)", "input × gradient", "attention rollout"]
    assert list(fig.data[2].y) == [0.1, 0.2]
    np.testing.assert_allclose(fig.data[2].error_y.array, 1.96 * np.array([0.2, 0.1]) / np.sqrt(5), atol=1e-4)
    assert fig.data[2].x[0] != fig.data[0].x[0]  # methods shifted apart, so their intervals stay visible
    assert "blank-out, 5 sentences" in fig.layout.title.text
    assert list(fig.layout.xaxis.ticktext) == ["emb.", "1", "2"]


def test_the_thumbnail_grid_places_every_head_where_a_click_finds_it():
    from app.figures.thumbnails import GAP, head_at, make_thumbnails, thumbnail_grid

    rng = np.random.default_rng(3)
    maps = rng.dirichlet(np.ones(5), size=(3, 4, 5)).astype(np.float32)  # [layer, head, query, key]
    grid = thumbnail_grid(maps)
    step = 5 + GAP
    for layer in (1, 2, 3):
        for head in range(4):
            row, col = (3 - layer) * step, head * step
            np.testing.assert_array_equal(grid[row : row + 5, col : col + 5], maps[layer - 1, head])
            assert head_at(col + 4, row + 2, layers=3, tokens=5) == (layer, head)
    fig = make_thumbnails(maps, maps * 0.5, mode="comparison", selected=(2, 1))
    z = fig["data"][0]["z"]
    assert z.dtype == np.int8 and z.min() >= -127  # 8-bit levels: a small payload
    assert fig["data"][0]["colorbar"]["ticktext"][0].startswith("−")  # labelled in weights, not levels
    assert len(fig["layout"]["shapes"]) == 1
    single = make_thumbnails(maps, maps, mode="pretrained")
    assert single["data"][0]["z"].dtype == np.uint8 and single["data"][0]["z"].max() == 255
    plotly_figure(single)


def test_the_network_places_tokens_on_rings_and_finds_every_path_through_a_token(graphs):
    from app.figures.network import make_network, node_positions, path_edges

    placed = node_positions([0, 1, 2, 3], range(0, 4), arrangement="rings", first_depth=0)
    radii = {d: round(float(np.hypot(*placed[(d, 0)])), 6) for d in range(4)}
    assert radii[0] == 1.0 and radii[3] == pytest.approx(0.2) and radii[0] > radii[1] > radii[2] > radii[3]
    angles = {round(float(np.arctan2(*placed[(d, 2)][::-1])), 6) for d in range(4)}
    assert len(angles) == 1  # one token, one angle on every ring
    edges = pd.DataFrame({"layer": [1, 1, 2, 2, 3], "query_idx": [0, 1, 0, 2, 0], "key_idx": [1, 2, 0, 3, 2]})
    # through (depth 1, token 0): from the input its edge 1:0<-1, then 2:0<-0 and 3:0<-... nothing from 0 at layer 3
    through = path_edges(edges, 1, 0)
    assert sorted(map(tuple, through[["layer", "query_idx", "key_idx"]].to_numpy().tolist())) == [(1, 0, 1), (2, 0, 0)]
    fig = plotly_figure(
        make_network(graphs.edges, graphs.nodes, tokens=TOKENS, sources=(0,), layers=(1, 3), tau=0.12, highlight=(3, 0))
    )
    highlight = next(t for t in fig.data if t.name == "highlight")
    assert len(highlight.x) > 0 and "token rings" not in fig.layout.title.text and "rings" in fig.layout.title.text
    hidden = plotly_figure(
        make_network(graphs.edges, graphs.nodes, tokens=TOKENS, sources=(0,), layers=(1, 3), tau=0.12, hidden=(0,))
    )
    assert "is hidden" in hidden.layout.annotations[0].text


@pytest.mark.parametrize(
    "scale", ["Viridis", "RdBu", "DIVERGING", "RELEVANCE_SCALE", "SIGNED_SCALE", ["rgb(0,0,0)", "#FFFFFF"]]
)
def test_colours_at_are_plotly_s_own_sampled_colours(scale):
    """:func:`colours_at` parses a scale once; every colour must still be what plotly's ``sample_colorscale``
    gives (its interpolation and its half-to-even rounding to 0-255), ends and clipped values included."""
    from plotly.colors import sample_colorscale

    from app.figures import sentence, theme
    from app.figures.theme import colours_at, readable_text_colour

    if isinstance(scale, str):
        scale = getattr(theme, scale, None) or getattr(sentence, scale, None) or scale
    ties = [k / 510 for k in range(511)]  # 255 of these land on x.5 of 255 for black to white: half to even
    fractions = [*np.random.default_rng(3).random(3000), *ties, 1 / 3, -0.2, 1.7]
    clipped = [min(max(f, 0.0), 1.0) for f in fractions]
    ours = colours_at(scale, fractions)
    assert ours == sample_colorscale(scale, clipped)
    assert {readable_text_colour(colour) for colour in ours} <= {"#000000", "#FFFFFF"}
    grey = colours_at([[0, "rgb(0, 0, 0)"], [1, "rgb(255, 255, 255)"]], ties)
    assert grey == sample_colorscale([[0, "rgb(0, 0, 0)"], [1, "rgb(255, 255, 255)"]], ties)
