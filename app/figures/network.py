"""View 7: the attention graph as a network ("token rings", DeRose et al. 2020): one ring (or column) per depth,
the input outermost (leftmost), every token at the same angle (row) on every ring, graph edges between adjacent
rings in the comparison colours, and hovering a token highlights every path through it.

Edges are the Sankey's (:func:`app.figures.sankey.visible_edges`): the attention graph of docs/method.md §1, the
same colours and legend. Widths come in three steps of the share of the traced mass an edge carries; the exact
share is in the Sankey's hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.figures.sankey import SINK_COLOUR, legend_traces, node_colour, visible_edges
from app.figures.theme import (
    MODEL_COLOURS,
    MODEL_LABELS,
    STATUS_COLOURS,
    Canvas,
    Figure,
    empty_figure,
    figure,
    layout,
    rgba,
)
from app.options import ARRANGEMENTS

WIDTHS = ((0.02, 1.0), (0.10, 2.5), (math.inf, 5.0))  # (share below which, line width px)
HIGHLIGHT = "#111111"
NEUTRAL = "#BBBBBB"


def node_positions(
    positions: Sequence[int], depths: Sequence[int], *, arrangement: str, first_depth: int
) -> dict[tuple[int, int], tuple[float, float]]:
    """``(depth, position) -> (x, y)``. Rings: depth ``first_depth`` on the outer ring (radius 1), the deepest on
    the inner ring, token ``k`` of ``n`` at the angle ``90° − 360° · k / n`` on every ring (clockwise from the
    top). Columns: x = depth, y = −k."""
    depths = sorted(depths)
    n = max(len(positions), 1)
    placed = {}
    for rank, position in enumerate(positions):
        angle = math.pi / 2 - 2 * math.pi * rank / n
        for depth in depths:
            if arrangement == "rings":
                radius = 1.0 - 0.8 * (depth - first_depth) / max(depths[-1] - first_depth, 1)
                placed[(depth, position)] = (radius * math.cos(angle), radius * math.sin(angle))
            else:
                placed[(depth, position)] = (float(depth), -float(rank))
    return placed


def path_edges(edges: pd.DataFrame, depth: int, token: int) -> pd.DataFrame:
    """The edges on any path through ``(depth, token)``: every edge that leads to it from the input side and
    every edge it leads to towards the traced token (edges ``layer, query_idx, key_idx``: key at ``layer − 1``,
    query at ``layer``)."""
    keep = np.zeros(len(edges), dtype=bool)
    layers, queries, keys = (edges[c].to_numpy() for c in ("layer", "query_idx", "key_idx"))
    frontier = {token}
    for layer in range(depth, 0, -1):  # towards the input: edges whose query is on a path
        hit = (layers == layer) & np.isin(queries, list(frontier))
        keep |= hit
        frontier = set(keys[hit].tolist())
    frontier = {token}
    for layer in range(depth + 1, int(layers.max(initial=0)) + 1):  # towards the output
        hit = (layers == layer) & np.isin(keys, list(frontier))
        keep |= hit
        frontier = set(queries[hit].tolist())
    return edges[keep]


def segments(edges: pd.DataFrame, placed: dict) -> tuple[list, list]:
    """``x, y`` of line segments (None-separated) for ``edges``, from key at ``layer − 1`` to query at ``layer``."""
    xs, ys = [], []
    for layer, query, key in edges[["layer", "query_idx", "key_idx"]].itertuples(index=False):
        start, end = placed.get((layer - 1, key)), placed.get((layer, query))
        if start is None or end is None:
            continue
        xs += [start[0], end[0], None]
        ys += [start[1], end[1], None]
    return xs, ys


def make_network(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    *,
    tokens: Sequence[str],
    sources: Sequence[int],
    layers: tuple[int, int],
    mode: str = "comparison",
    arrangement: str = "rings",
    hidden: Sequence[int] = (),
    tau: float | None = None,
    source_names: str = "",
    highlight: tuple[int, int] | None = None,
    canvas: Canvas | None = None,
) -> Figure:
    """The network of a :class:`~attention.compare.GraphComparison` (``edges``, ``nodes``): a dot per token and
    depth (grey where no trace reaches it; otherwise sized by its share of the traced mass and coloured by which
    traces reach it), a line per drawn edge coloured as in the Sankey. ``highlight`` = (depth, token) draws the
    paths through that token in black (the page sets it on hover). Labels are thinned to one in k when the
    ``canvas`` leaves less than a line of text per token (every token is named in its hover)."""
    canvas = canvas or Canvas()
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {', '.join(ARRANGEMENTS)}, got {arrangement!r}")
    first, last = layers
    name = source_names or ", ".join(tokens[s] for s in sources[:4])
    shown = visible_edges(edges, mode, hidden)
    if shown.empty:
        return empty_figure(f"Nothing from {name} passes τ = {tau:g} in layers {first}–{last}. Lower τ.")
    models = ("pretrained", "finetuned") if mode == "comparison" else (mode,)
    positions = [p for p in range(len(tokens)) if p not in set(hidden)]
    placed = node_positions(positions, range(first - 1, last + 1), arrangement=arrangement, first_depth=first - 1)

    traces = []
    for (status, kind), group in shown.groupby(["status", "kind"], sort=True):
        colour = (
            SINK_COLOUR if kind == "sink" else (STATUS_COLOURS[status] if mode == "comparison" else MODEL_COLOURS[mode])
        )
        low = 0.0
        for high, width in WIDTHS:
            bucket = group[(group["value"] >= low) & (group["value"] < high)]
            low = high
            if bucket.empty:
                continue
            xs, ys = segments(bucket, placed)
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": xs,
                    "y": ys,
                    "line": {"color": rgba(colour, 0.35 if kind == "residual" else 0.6), "width": width},
                    "hoverinfo": "skip",
                    "showlegend": False,
                }
            )
    path_x, path_y = segments(path_edges(shown, *highlight), placed) if highlight else ([], [])
    traces.append(
        {
            "type": "scatter",
            "mode": "lines",
            "x": path_x,
            "y": path_y,
            "line": {"color": HIGHLIGHT, "width": 2},
            "hoverinfo": "skip",
            "showlegend": False,
            "name": "highlight",
        }
    )
    traces.append(_node_trace(nodes, placed, tokens, models, mode, last))
    traces += legend_traces(mode)
    room = math.pi * (canvas.width - 120) * 0.45 if arrangement == "rings" else 18 * len(positions)  # px
    every = max(1, math.ceil(len(positions) * canvas.font_px * 2.6 / max(room, 1)))
    annotations = _labels(positions[::every], tokens, placed, arrangement, first - 1)
    where = f"rings: input outside, after layer {last} inside" if arrangement == "rings" else "columns"
    thinned = f"; 1 label in {every}" if every > 1 else ""
    title = f"Attention network from {name} ({where}; τ = {tau:g}{thinned}). Hover a token to see its paths."
    axis = {"visible": False, "fixedrange": False}
    square = {"scaleanchor": "x", "scaleratio": 1} if arrangement == "rings" else {}
    return figure(
        traces,
        layout(
            title,
            height=(height := 620 if arrangement == "rings" else max(420, 18 * len(positions) + 160)),
            meta={"min_height": height if arrangement == "columns" else canvas.width + 60},
            xaxis=axis,
            yaxis={**axis, **square},
            annotations=annotations,
            legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0.0},
            hovermode="closest",
            margin={"l": 20, "r": 20, "t": 60, "b": 60},
        ),
    )


def _node_trace(nodes: pd.DataFrame, placed: dict, tokens, models, mode: str, last: int) -> dict:
    xs, ys, sizes, colours, hovers, ids = [], [], [], [], [], []
    facts = {(int(r.depth), int(r.token_idx)): r for r in nodes.itertuples(index=False)}
    for (depth, token), (x, y) in placed.items():
        row = facts.get((depth, token))
        mass = 0.0 if row is None else float(np.nanmean([getattr(row, f"mass_{m}") for m in models]))
        reached = row is not None and any(bool(getattr(row, f"reached_{m}")) for m in models)
        xs.append(x)
        ys.append(y)
        sizes.append(5 + 22 * math.sqrt(max(mass, 0.0)) if reached else 4)
        if not reached:
            colours.append(NEUTRAL)
        elif row.sink:
            colours.append(SINK_COLOUR)
        else:
            colours.append(node_colour(row, mode))
        where = "input" if depth == 0 else f"after layer {depth}"
        share = "; ".join(
            f"{MODEL_LABELS[m]} {100 * getattr(row, f'mass_{m}'):.1f} %" if row is not None else "–" for m in models
        )
        hovers.append(f"<b>{tokens[token]}</b> (#{token}), {where}<br>share of the traced mass: {share}")
        ids.append([depth, token])
    return {
        "type": "scatter",
        "mode": "markers",
        "x": xs,
        "y": ys,
        "customdata": ids,
        "hovertext": hovers,
        "hovertemplate": "%{hovertext}<extra></extra>",
        "marker": {"size": sizes, "color": colours, "line": {"width": 0.5, "color": "white"}},
        "showlegend": False,
        "name": "tokens",
    }


def _labels(positions, tokens, placed, arrangement: str, outer: int) -> list[dict]:
    """Token labels on the input ring (outside it) or beside the input column; the traced end is labelled by
    the title. Every token's name is also in its hover."""
    labels = []
    for position in positions:
        x, y = placed[(outer, position)]
        if arrangement == "rings":
            angle = math.degrees(math.atan2(y, x))
            labels.append(
                {
                    "x": x * 1.06,
                    "y": y * 1.06,
                    "text": tokens[position],
                    "showarrow": False,
                    "textangle": -angle if -90 <= angle <= 90 else 180 - angle,
                    "xanchor": "left" if -90 <= angle <= 90 else "right",
                    "font": {"size": 10, "color": "#333"},
                }
            )
        else:
            labels.append({"x": x, "y": y, "text": tokens[position], "showarrow": False, "xanchor": "right",
                           "xshift": -8, "font": {"size": 10, "color": "#333"}})  # fmt: skip
    if arrangement == "columns":
        for depth in sorted({d for d, _ in placed}):
            labels.append({"x": depth, "y": 1, "yshift": 4, "text": "input" if depth == 0 else f"after layer {depth}",
                           "showarrow": False, "yanchor": "bottom", "font": {"size": 11, "color": "#555"}})  # fmt: skip
    return labels
