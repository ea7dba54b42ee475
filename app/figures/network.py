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

from app.core.options import ARRANGEMENTS
from app.figures.models import mode_colour, reach_colours, shown_models
from app.figures.sankey import SINK_COLOUR, drawn_graph, graph_kind, legend_traces, percent
from app.figures.theme import (
    MODEL_LABELS,
    Canvas,
    Figure,
    empty_figure,
    figure,
    layout,
    rgba,
)

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


def line_segments(edges: pd.DataFrame, placed: dict) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` of line segments (NaN-separated, plotly's line break) for ``edges``, from the key at
    ``layer − 1`` to the query at ``layer``; edges with an end not placed (hidden) are left out."""
    if edges.empty:
        return np.zeros(0), np.zeros(0)
    layers, queries, keys = (edges[c].to_numpy() for c in ("layer", "query_idx", "key_idx"))
    return _segments(_grid(placed), layers, queries, keys)


def _grid(placed: dict) -> np.ndarray:
    """``[depth, position, 2]``: the ``(x, y)`` of each placed node, NaN where none is."""
    depth = max(d for d, _ in placed) + 1
    width = max(p for _, p in placed) + 1
    grid = np.full((depth, width, 2), np.nan)
    for (d, p), xy in placed.items():
        grid[d, p] = xy
    return grid


def _segments(grid: np.ndarray, layers, queries, keys) -> tuple[np.ndarray, np.ndarray]:
    """:func:`line_segments` of edges given as arrays, on a :func:`_grid` of the placed nodes."""
    start, end = grid[layers - 1, keys], grid[layers, queries]  # [edge, 2]
    keep = ~(np.isnan(start).any(axis=1) | np.isnan(end).any(axis=1))
    points = np.stack([start[keep], end[keep], np.full((keep.sum(), 2), np.nan)], axis=1).reshape(-1, 2)
    return points[:, 0], points[:, 1]


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
    segments: Sequence[int] | None = None,
    measure: str = "raw attention (the paper's)",
    residual_in_maps: bool = False,
) -> Figure:
    """The network of a :class:`~attention.compare.GraphComparison` (``edges``, ``nodes``) over ``measure``
    (named in the title and legend; ``residual_in_maps`` is accepted for symmetry with the Sankey): a dot per token and
    depth (grey where no trace reaches it; otherwise sized by its share of the traced mass and coloured by which
    traces reach it), a line per drawn edge coloured as in the Sankey. ``highlight`` = (depth, token) draws the
    paths through that token in black (the page sets it on hover). Labels are thinned to one in k when the
    ``canvas`` leaves less than a line of text per token (every token is named in its hover). A pair's second
    segment (``segments`` 1) is set off by dashed lines."""
    canvas = canvas or Canvas()
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {', '.join(ARRANGEMENTS)}, got {arrangement!r}")
    first, last = layers
    name, shown = drawn_graph(edges, tokens, sources, layers, mode, hidden, tau, source_names)
    if isinstance(shown, str):
        return empty_figure(shown)
    positions = [p for p in range(len(tokens)) if p not in set(hidden)]
    placed = node_positions(positions, range(first - 1, last + 1), arrangement=arrangement, first_depth=first - 1)
    traces = [
        *_edge_traces(shown, placed, mode),
        _highlight_trace(shown, placed, highlight),
        _node_trace(nodes, placed, tokens, mode),
        *legend_traces(mode, measure),
    ]
    room = math.pi * (canvas.width - 120) * 0.45 if arrangement == "rings" else 18 * len(positions)  # px
    every = max(1, math.ceil(len(positions) * canvas.font_px * 2.6 / max(room, 1)))
    where = f"rings: input outside, after layer {last} inside" if arrangement == "rings" else "columns"
    thinned = f"; 1 label in {every}" if every > 1 else ""
    kind = graph_kind("network", measure)
    title = f"{kind} from {name} ({where}; τ = {tau:g}{thinned}). Hover a token to see its paths."
    return figure(
        traces,
        _network_layout(
            title,
            arrangement=arrangement,
            tokens=len(positions),
            canvas=canvas,
            annotations=_labels(positions[::every], tokens, placed, arrangement, first - 1),
            shapes=_segment_dividers(positions, segments, arrangement, first - 1, last),
        ),
    )


def _edge_traces(shown: pd.DataFrame, placed: dict, mode: str) -> list[dict]:
    """One line trace per edge status, kind and width step (:data:`WIDTHS`) of the ``shown`` edges, in the
    order of :func:`_edge_groups`."""
    grid = _grid(placed)
    layer, query, key, kind, value = (shown[c].to_numpy() for c in ("layer", "query_idx", "key_idx", "kind", "value"))
    status = shown["status"].to_numpy()
    traces = []
    for status_name, kind_name in _edge_groups(shown["status"], kind):
        colour = SINK_COLOUR if kind_name == "sink" else mode_colour(mode, status_name)
        group = (status == status_name) & (kind == kind_name)
        low = 0.0
        for high, width in WIDTHS:
            bucket = group & (value >= low) & (value < high)
            low = high
            if not bucket.any():
                continue
            xs, ys = _segments(grid, layer[bucket], query[bucket], key[bucket])
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": xs,
                    "y": ys,
                    "line": {"color": rgba(colour, 0.35 if kind_name == "residual" else 0.6), "width": width},
                    "hoverinfo": "skip",
                    "showlegend": False,
                }
            )
    return traces


def _highlight_trace(shown: pd.DataFrame, placed: dict, highlight: tuple[int, int] | None) -> dict:
    """The black lines of every path through ``highlight`` = (depth, token); always present (empty without one)."""
    path_x, path_y = line_segments(path_edges(shown, *highlight), placed) if highlight else (np.zeros(0), np.zeros(0))
    return {
        "type": "scatter",
        "mode": "lines",
        "x": path_x,
        "y": path_y,
        "line": {"color": HIGHLIGHT, "width": 2},
        "hoverinfo": "skip",
        "showlegend": False,
        "name": "highlight",
    }


def _network_layout(
    title: str, *, arrangement: str, tokens: int, canvas: Canvas, annotations: list[dict], shapes: list[dict]
) -> dict:
    """The network's layout for ``tokens`` drawn positions: hidden axes (square for rings), the legend below."""
    axis = {"visible": False, "fixedrange": False}
    square = {"scaleanchor": "x", "scaleratio": 1} if arrangement == "rings" else {}
    height = 620 if arrangement == "rings" else max(420, 18 * tokens + 160)
    return layout(
        title,
        height=height,
        meta={"min_height": height if arrangement == "columns" else canvas.width + 60},
        xaxis=axis,
        yaxis={**axis, **square},
        annotations=annotations,
        shapes=shapes,
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0.0},
        hovermode="closest",
        margin={"l": 20, "r": 20, "t": 60, "b": 60},
    )


def _edge_groups(status: pd.Series, kind: np.ndarray) -> list[tuple[str, str]]:
    """The ``(status, kind)`` pairs present, in the order the traces are drawn (status in its categories' order,
    then kind alphabetically): later traces are drawn on top."""
    values = status.to_numpy()
    rank = {c: i for i, c in enumerate(status.cat.categories)} if isinstance(status.dtype, pd.CategoricalDtype) else {}
    present = set(zip(values.tolist(), kind.tolist(), strict=True))
    return sorted(present, key=lambda pair: (rank.get(pair[0], pair[0]), pair[1]))


def _node_trace(nodes: pd.DataFrame, placed: dict, tokens: Sequence[str], mode: str) -> dict:
    """One marker per token and depth: grey and small where no trace reaches it, else sized by its share of the
    traced mass (mean over the shown models) and coloured by which traces reach it (khaki: a sink)."""
    depth = np.fromiter((d for d, _ in placed), dtype=np.int64, count=len(placed))
    position = np.fromiter((p for _, p in placed), dtype=np.int64, count=len(placed))
    xy = np.array(list(placed.values()), dtype=float).reshape(-1, 2)
    node_depth, node_token = nodes["depth"].to_numpy(), nodes["token_idx"].to_numpy()
    row = np.full((max(depth.max(initial=0), node_depth.max(initial=0)) + 1,
                   max(position.max(initial=0), node_token.max(initial=0)) + 1), -1)  # fmt: skip
    row[node_depth, node_token] = np.arange(len(nodes))
    found = row[depth, position]  # the node row of each placed token, -1 where the graphs have none
    has = found >= 0
    models = shown_models(mode)

    def column(name: str, missing) -> np.ndarray:
        values = nodes[name].to_numpy()
        out = np.full(len(found), missing, dtype=float if isinstance(missing, float) else bool)
        out[has] = values[found[has]]
        return out

    masses = np.stack([column(f"mass_{m}", np.nan) for m in models], axis=1)  # [placed, model]
    counted = (~np.isnan(masses)).sum(axis=1)
    total = np.where(np.isnan(masses), 0.0, masses).sum(axis=1)
    mass = np.clip(np.where(counted > 0, total / np.maximum(counted, 1), 0.0), 0.0, None)
    reach = np.stack([column(f"reached_{m}", False) for m in models], axis=1)
    colours = reach_colours(mode, reach)
    colours[column("sink", False)] = SINK_COLOUR
    reached = reach.any(axis=1)
    colours[~reached] = NEUTRAL
    shares = [
        "; ".join(f"{MODEL_LABELS[m]} {percent(v)}" for m, v in zip(models, values, strict=True))
        for values in masses.tolist()
    ]
    hovers = [
        f"<b>{tokens[p]}</b> (#{p}), {'input' if d == 0 else f'after layer {d}'}<br>share of the traced mass: {share}"
        for d, p, share in zip(depth.tolist(), position.tolist(), shares, strict=True)
    ]
    return {
        "type": "scatter",
        "mode": "markers",
        "x": xy[:, 0],
        "y": xy[:, 1],
        "customdata": np.stack([depth, position], axis=1).tolist(),
        "hovertext": hovers,
        "hovertemplate": "%{hovertext}<extra></extra>",
        "marker": {
            "size": np.where(reached, 5 + 22 * np.sqrt(mass), 4.0),
            "color": colours.tolist(),
            "line": {"width": 0.5, "color": "white"},
        },
        "showlegend": False,
        "name": "tokens",
    }


def _segment_dividers(positions, segments, arrangement: str, outer: int, inner: int) -> list[dict]:
    """Dashed lines where a pair's second segment begins and ends: radial in rings, across in columns."""
    if segments is None or not any(segments[p] == 1 for p in positions):
        return []
    n = len(positions)
    ranks = [r for r in range(n) if segments[positions[r]] != segments[positions[r - 1]]] if n > 1 else []
    line = {"color": "#555555", "width": 1, "dash": "dash"}
    shapes = []
    for rank in ranks:  # between position rank - 1 and rank
        if arrangement == "rings":
            angle = math.pi / 2 - 2 * math.pi * (rank - 0.5) / n
            shapes.append({"type": "line", "x0": 0.15 * math.cos(angle), "y0": 0.15 * math.sin(angle),
                           "x1": 1.1 * math.cos(angle), "y1": 1.1 * math.sin(angle), "line": line})  # fmt: skip
        else:
            shapes.append({"type": "line", "x0": outer - 0.3, "x1": inner + 0.3, "y0": -(rank - 0.5),
                           "y1": -(rank - 0.5), "line": line})  # fmt: skip
    return shapes


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
