"""View 1: the attention graph as a Sankey diagram: the traced token(s) on the right, the inputs on the left, each
link as wide as the share of the traced mass it carries (see docs/method.md §1).

Laid out for its :class:`~app.figures.theme.Canvas` (the card in the page, or an export's width and text size):
every node is labelled (a label longer than the room to the next column is shortened with "…"), nodes of a column
are a label's height apart, and the legend, caption and notes (:mod:`app.figures.graph_legend`) are measured, so an
export keeps the figure's own height (``meta.natural_size``). A view that shows (almost) none of the words says why
and what would change it (:mod:`app.figures.graph_notes`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.figures.graph_drawn import (
    GraphViewParts,
    graph_kind,
    graph_title,
    graph_view_parts,
    model_mean,
    offered_fixes,
    quantity,
    records,
)
from app.figures.graph_legend import (
    LINE,
    SINK_COLOUR,
    SOURCE_COLOUR,
    bottom_block,
    legend_entries,
    legend_traces,
    sankey_caption,
    shorten,
    text_px,
    top_notes,
)
from app.figures.graph_notes import GraphNote, Shares
from app.figures.models import reach_colours, shown_models
from app.figures.sankey_links import LINK_ALPHA, Node, link_arrays, node_hover
from app.figures.theme import MODEL_LABELS, Canvas, Figure, empty_figure, figure, layout

__all__ = ["LINK_ALPHA", "SINK_COLOUR", "make_sankey", "sankey_frame", "sankey_layers_that_fit"]

MIN_LABEL_EM = 3.5  # the least room a label gets right of its node (about four letters), in font sizes


@dataclass(frozen=True)
class SankeyFrame:
    """Where the Sankey's columns go, in px of the plot (its left edge at 0): ``xs`` per depth ``first-1 .. last``,
    ``room`` for a label between its node and the next column, node ``thickness`` and ``pad`` (a label's height),
    ``narrow``: column titles as bare numbers."""

    font: float
    thickness: int
    pad: int
    margin: float
    width: float
    xs: dict[int, float]
    room: float
    narrow: bool


def sankey_frame(canvas: Canvas, layers: tuple[int, int], last_label_px: float) -> SankeyFrame:
    """The columns of ``layers`` on ``canvas``: evenly spaced, the last one further right by the width of its
    labels (``last_label_px``; they sit left of their nodes, so the column before keeps its full room)."""
    font = canvas.font_px
    thickness = int(min(max(round(0.9 * font), 8), 14))
    margin = thickness / 2 + 1  # the outer columns' nodes are centred on the plot's edges
    width = canvas.width - 2 * margin
    first, last = layers
    span = max(last - first + 1, 1)
    step = (width - last_label_px) / span
    xs = {depth: (depth - first + 1) * step for depth in range(first - 1, last)} | {last: width}
    narrow = text_px("after layer 12", font) > step - 8
    return SankeyFrame(font, thickness, math.ceil(font * 1.25), margin, width, xs, step - thickness - 6, narrow)


def sankey_layers_that_fit(canvas: Canvas) -> int:
    """How many layers a Sankey on ``canvas`` can show with every node labelled (at least :data:`MIN_LABEL_EM`
    of room per label, the traced token's label beside the last column)."""
    frame = sankey_frame(canvas, (1, 1), 0.0)
    return max(
        1, int((frame.width - text_px("[CLS]", frame.font) - 6) // (MIN_LABEL_EM * frame.font + frame.thickness + 6))
    )


def _stacked_layout(
    columns: dict[int, list[int]],
    index: dict[Node, int],
    link: dict[str, list],
    *,
    pad: int,
    nodes_px: float,
) -> tuple[list[float], float]:
    """Vertical centres (0 = top, 1 = bottom of the plot) of every node, stacked per column in order, and the
    plot height in px.

    Plotly draws a node ``max(inflow, outflow) · k`` px tall with d3-sankey's ``k = min over columns of
    (H - (n - 1) · pad) / Σ values``. The pad is a label's height, so two neighbours' centres are always at least
    a label apart; the plot is tall enough for the fullest column's pads plus ``nodes_px`` of nodes. Stacking
    with that same ``k`` keeps every node inside the plot: no node, link or label covers another label."""
    inflow, outflow = np.zeros(len(index)), np.zeros(len(index))
    np.add.at(inflow, link["target"], link["value"])
    np.add.at(outflow, link["source"], link["value"])
    size = np.maximum(inflow, outflow)
    stacks = [[index[(depth, token)] for token in column] for depth, column in columns.items() if column]
    plot = max(nodes_px * 1.5, (max(len(stack) for stack in stacks) - 1) * pad + nodes_px)
    scale = min((plot - (len(stack) - 1) * pad) / max(size[stack].sum(), 1e-12) for stack in stacks)
    centres = np.zeros(len(index))
    for stack in stacks:
        top = (plot - size[stack].sum() * scale - (len(stack) - 1) * pad) / 2  # a short column is centred
        for node in stack:
            centres[node] = (top + size[node] * scale / 2) / plot
            top += size[node] * scale + pad
    return np.clip(centres, 0.001, 0.999).tolist(), plot


def make_sankey(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    *,
    tokens: Sequence[str],
    sources: Sequence[int],
    layers: tuple[int, int],
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    tau: float | None = None,
    alpha: float | None = None,
    hidden: Sequence[int] = (),
    source_names: str = "",
    canvas: Canvas | None = None,
    segments: Sequence[int] | None = None,
    measure: str = "raw attention (the paper's)",
    residual_in_maps: bool = False,
    special: Sequence[int] = (),
    sinks: bool = True,
    trace_all: bool = False,
    notes: Sequence[str] = (),
    fix_shares: Mapping[tuple, Mapping[str, Shares]] | None = None,
    parts: GraphViewParts | None = None,
) -> Figure:
    """Sankey of a :class:`~attention.compare.GraphComparison` (``edges``, ``nodes`` frames, token or word level).

    ``measure`` names what the graph is drawn over (raw attention, or a context-mixing measure such as ALTI:
    title and legend say so); ``residual_in_maps``: the measure holds the residual, so no residual share α.

    One column per depth ``first-1 .. last``; a link per drawn edge ``(l, query -> key)`` from the key at depth
    ``l-1`` to the query at depth ``l``, as wide as the share of the traced mass it carries (comparison: the mean
    of both models' shares). Sinks (khaki nodes) hold the mass absorbed from attention into special tokens and are
    never expanded. In ``comparison`` mode attention links are coloured by where the attention is ≥ τ; residual
    and sink links are split into what both models send (grey) and the extra one model sends (its colour).
    ``selected`` = (layer, head) highlights the links that head passes. ``segments`` (per drawn position, 1 for a
    pair's second segment) is said in the hover ("segment B"). ``special`` (drawn positions of special tokens),
    ``sinks`` and ``trace_all`` let the figure say why it shows none of the words and ``fix_shares`` which option
    changes help (:func:`graph_notes`); ``notes`` are printed first (e.g. which layers of a longer range are shown).
    """
    canvas = canvas or Canvas()
    parts = parts or graph_view_parts(
        edges, nodes, tokens=tokens, sources=sources, layers=layers, mode=mode, hidden=hidden, tau=tau,
        source_names=source_names, measure=measure, special=special, sinks=sinks, trace_all=trace_all,
        fix_shares=fix_shares,
    )  # fmt: skip
    name, shown = parts.name, parts.shown
    if isinstance(shown, GraphNote):
        return empty_figure(shown.text)
    models = shown_models(mode)
    facts, columns = _drawn_nodes(nodes, shown, models, hidden, layers, sources)
    index, node = _node_arrays(facts, columns, tokens, mode=mode, layers=layers, segments=segments)
    link = link_arrays(shown, index, tokens, mode=mode, selected=selected, measure=measure)
    last_px = max(text_px(node["label"][index[(layers[1], t)]], canvas.font_px) for t in columns[layers[1]])
    frame = sankey_frame(canvas, layers, min(last_px, 0.4 * canvas.width) + 6)
    nodes_px = min(220.0, max(110.0, 0.25 * canvas.width))
    ys, nodes_plot = _stacked_layout(columns, index, link, pad=frame.pad, nodes_px=nodes_px)
    plot_px = nodes_plot + frame.pad  # half a label's height over the top node and under the bottom one
    node["label"] = _fitted_labels(node["label"], node["depth"], frame, last=layers[1])
    node["x"] = [min(max(frame.xs[d] / frame.width, 0.001), 0.999) for d in node.pop("depth")]
    title = _sankey_title(name, layers, mode=mode, tau=tau, alpha=alpha, measure=measure,
                          residual_in_maps=residual_in_maps)  # fmt: skip
    drawn_notes = parts.notes
    said = [*notes, *(note.text for note in drawn_notes)]
    caption = ("Columns: the input, then the tokens after layer n. " if frame.narrow else "") + sankey_caption(
        mode, quantity(measure)
    )
    trace = _sankey_trace(node, ys, link, frame, margin=frame.pad / 2 / plot_px)
    return _sankey_figure(trace, title, said, caption, frame=frame, canvas=canvas,
                          plot_px=plot_px, mode=mode, layers=layers, fixes=offered_fixes(drawn_notes))  # fmt: skip


def _sankey_figure(
    trace: dict,
    title: str,
    notes: list[str],
    caption: str,
    *,
    frame: SankeyFrame,
    canvas: Canvas,
    plot_px: float,
    mode: str,
    layers: tuple[int, int],
    fixes: list[dict] | None = None,
) -> Figure:
    """The figure around the Sankey ``trace``: the title, the ``notes`` and the column titles over it, the legend
    and the ``caption`` under it, all measured in px for ``canvas``; an export keeps this height."""
    font = canvas.font_px
    heading = font * LINE + 4  # the column titles' row
    top_block = top_notes(notes, width=canvas.width - 2 * frame.margin, font_px=font, above_px=heading)
    entries = legend_entries(mode, view="sankey")
    bottom = bottom_block(entries, caption, width=canvas.width - 2 * frame.margin, plot_px=plot_px, font_px=font)
    head, head_px = graph_title(title, canvas)
    top = head_px + top_block.height + heading
    height = math.ceil(top + plot_px + bottom.height)
    return figure(
        [trace, *legend_traces(entries, font)],
        layout(
            "",
            height=height,
            # an export keeps this height and these margins; the page offers the fixes as buttons
            meta={"natural_size": True, "min_height": height, "fixes": list(fixes or [])},
            font={"size": font},
            annotations=[*top_block.annotations, *_column_titles(layers, frame), *bottom.annotations],
            xaxis={"visible": False},
            yaxis={"visible": False},
            legend=bottom.legend,
            margin={"l": frame.margin, "r": frame.margin, "t": top, "b": bottom.height, "autoexpand": False},
        )
        | {"title": head},
    )


def _drawn_nodes(
    nodes: pd.DataFrame,
    shown: pd.DataFrame,
    models: Sequence[str],
    hidden: Sequence[int],
    layers: tuple[int, int],
    sources: Sequence[int],
) -> tuple[dict[Node, tuple], dict[int, list[int]]]:
    """The nodes drawn: ``(depth, token) ->`` its row of ``nodes`` (a named tuple) for every node that holds mass
    and is not hidden (a hidden traced token stays at the last depth), and per depth ``first-1 .. last`` the
    sorted tokens of those that a ``shown`` edge links."""
    first, last = layers
    node_columns = [
        "depth",
        "token_idx",
        "sink",
        *(f"{c}_{m}" for c in ("mass", "absorbed", "reached") for m in models),
    ]
    mass, absorbed = (model_mean(nodes, c, models) for c in ("mass", "absorbed"))
    traced = (nodes["depth"].to_numpy() == last) & np.isin(nodes["token_idx"].to_numpy(), list(sources))
    keep = ((mass > 0) | (absorbed > 0)) & (~np.isin(nodes["token_idx"].to_numpy(), list(hidden)) | traced)
    drawn = records(nodes, node_columns, np.flatnonzero(keep))
    layer, query, key = (shown[c].to_numpy() for c in ("layer", "query_idx", "key_idx"))
    linked = set(zip((layer - 1).tolist(), key.tolist(), strict=True)) | set(
        zip(layer.tolist(), query.tolist(), strict=True)
    )
    facts = {(int(r.depth), int(r.token_idx)): r for r in drawn}
    columns: dict[int, list[int]] = {
        depth: sorted(t for (d, t) in facts if d == depth and (d, t) in linked) for depth in range(first - 1, last + 1)
    }
    return facts, columns


def _node_arrays(
    facts: dict[Node, tuple],
    columns: dict[int, list[int]],
    tokens: Sequence[str],
    *,
    mode: str,
    layers: tuple[int, int],
    segments: Sequence[int] | None,
) -> tuple[dict[Node, int], dict[str, list]]:
    """Plotly's node index of every drawn ``(depth, token)``, and the per-node lists ``label, depth, color,
    customdata`` (the hover) in that order: column by column, each column top to bottom."""
    last = layers[1]
    models = shown_models(mode)
    index: dict[Node, int] = {}
    node: dict[str, list] = {"label": [], "depth": [], "color": [], "customdata": []}
    for depth, column in columns.items():
        for token in column:
            row = facts[(depth, token)]
            index[(depth, token)] = len(node["label"])
            node["label"].append(tokens[token])
            node["depth"].append(depth)
            colour = SOURCE_COLOUR if depth == last else (SINK_COLOUR if row.sink else node_colour(row, mode))
            node["color"].append(colour)
            node["customdata"].append(node_hover(row, depth, token, tokens, models, segments))
    return index, node


def _fitted_labels(labels: list[str], depths: list[int], frame: SankeyFrame, *, last: int) -> list[str]:
    """Every label shortened to the room it has: right of its node up to the next column (``frame.room``), the
    last column's left of its node (its own room, :func:`sankey_frame`)."""
    last_room = frame.xs[last] - frame.xs.get(last - 1, 0.0) - frame.room - frame.thickness - 8
    return [
        shorten(label, last_room if depth == last else frame.room, frame.font)
        for label, depth in zip(labels, depths, strict=True)
    ]


def _sankey_trace(
    node: dict[str, list], ys: list[float], link: dict[str, list], frame: SankeyFrame, *, margin: float
) -> dict:
    """The Sankey trace from :func:`_node_arrays`' node lists (``x`` and fitted labels set), their vertical
    centres ``ys`` (in the trace's domain: the plot less ``margin`` above and below) and :func:`link_arrays`' link
    lists."""
    return {
        "type": "sankey",
        "arrangement": "fixed",
        "node": {
            "label": node["label"],
            "x": node["x"],
            "y": ys,
            "color": node["color"],
            "pad": frame.pad,
            "thickness": frame.thickness,
            "customdata": node["customdata"],
            "hovertemplate": "%{customdata}<extra></extra>",
            "line": {"width": 0},
        },
        "link": {
            **link,
            "hovertemplate": "%{customdata}<extra></extra>",
        },
        # no white halo: Chromium prints a text shadow as copies of the text, which a PDF reader reads as "fiiilm"
        "textfont": {"size": frame.font, "shadow": "none"},
        "domain": {"x": [0.0, 1.0], "y": [margin, 1.0 - margin]},
    }


def _column_titles(layers: tuple[int, int], frame: SankeyFrame) -> list[dict]:
    """An annotation above each column ``first-1 .. last``: ``input`` / ``after layer n`` (narrow: ``in`` / n);
    the outer ones aligned with the plot's edges, never cut."""
    first, last = layers
    titles = []
    for depth in range(first - 1, last + 1):
        text = (
            ("in" if frame.narrow else "input")
            if depth == 0
            else (str(depth) if frame.narrow else f"after layer {depth}")
        )
        anchor = "left" if depth == first - 1 else ("right" if depth == last else "center")
        titles.append({
            "x": frame.xs[depth] / frame.width, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": anchor,
            "xshift": -frame.thickness / 2 if anchor == "left" else (frame.thickness / 2 if anchor == "right" else 0),
            "yanchor": "bottom", "yshift": 2, "text": text, "showarrow": False,
            "font": {"size": frame.font, "color": "#555555"},
        })  # fmt: skip
    return titles


def _sankey_title(
    name: str,
    layers: tuple[int, int],
    *,
    mode: str,
    tau: float | None,
    alpha: float | None,
    measure: str,
    residual_in_maps: bool,
) -> str:
    """What the Sankey shows: graph kind, traced tokens, layers, τ, the residual share and the model drawn."""
    over = "residual in the maps" if residual_in_maps else f"residual α = {alpha:g}"
    kind = graph_kind("graph", measure)
    title = f"{kind} from {name}: share of its mass on each edge, layers {layers[0]}–{layers[1]} (τ = {tau:g}, {over})"
    if mode != "comparison":
        title += f", {MODEL_LABELS[mode]}"
    return title


def node_colour(row, mode: str) -> str:
    """A node's colour: the model's, or in comparison mode by which traces reach it (``row.reached_*``)."""
    reached = np.array([[getattr(row, f"reached_{m}") for m in shown_models(mode)]], dtype=bool)  # [1, model]
    return reach_colours(mode, reached)[0]
