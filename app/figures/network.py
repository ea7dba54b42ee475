"""View 7: the attention graph as a network ("token rings", DeRose et al. 2020): one ring (or column) per depth,
the input outermost (leftmost), every token at the same angle (row) on every ring, graph edges between adjacent
rings in the comparison colours, and hovering a token (in the page) highlights every path through it.

Edges are the Sankey's (:func:`app.figures.sankey.visible_edges`): the attention graph of docs/method.md §1, the
same colours and legend. Widths come in three steps of the share of the traced mass an edge carries; the exact
share is in the Sankey's hover. Laid out for its :class:`~app.figures.theme.Canvas`: the input ring's tokens run
down its right side and up its left side, evenly spaced in height, so their labels stand level beside them and
never overlap; a label is shortened before any is left out, and a thinned ring says so in the caption.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from app.core.options import ARRANGEMENTS
from app.figures.graph_drawn import (
    GraphViewParts,
    graph_kind,
    graph_title,
    graph_view_parts,
    offered_fixes,
    percent,
    quantity,
)
from app.figures.graph_legend import (
    LINE,
    NEUTRAL,
    SINK_COLOUR,
    bottom_block,
    legend_entries,
    legend_traces,
    network_caption,
    shorten,
    text_px,
    top_notes,
)
from app.figures.graph_notes import GraphNote, Shares
from app.figures.models import mode_colour, reach_colours, shown_models
from app.figures.sankey_links import LINK_ALPHA
from app.figures.theme import MODEL_LABELS, Canvas, Figure, empty_figure, figure, layout, rgba

WIDTHS = ((0.02, 1.0), (0.10, 2.5), (math.inf, 5.0))  # (share below which, line width px)
WIDTH_STEPS = "< 2 %, 2–10 %, ≥ 10 %"  # the steps of WIDTHS, in the caption
HIGHLIGHT = "#111111"
MARGIN = 4  # px left and right of the drawing
INNER = 0.2  # radius of the deepest ring, the input ring's being 1


def ring_angles(count: int) -> list[float]:
    """The angle (radians) of each of ``count`` tokens on every ring: the first half down the right side, the rest
    up the left side (clockwise from the top), evenly spaced in height, so labels set level beside them are evenly
    spaced too."""
    right = math.ceil(count / 2)
    left = count - right
    angles = [math.asin(1 - (2 * k + 1) / right) for k in range(right)]
    return angles + [math.pi - math.asin(-1 + (2 * k + 1) / left) for k in range(left)]


def node_positions(
    positions: Sequence[int], depths: Sequence[int], *, arrangement: str, first_depth: int
) -> dict[tuple[int, int], tuple[float, float]]:
    """``(depth, position) -> (x, y)``. Rings: depth ``first_depth`` on the outer ring (radius 1), the deepest on
    the inner ring (radius :data:`INNER`), token ``k`` at :func:`ring_angles` ``[k]`` on every ring. Columns:
    x = depth, y = −k."""
    depths = sorted(depths)
    angles = ring_angles(len(positions))
    placed = {}
    for rank, position in enumerate(positions):
        for depth in depths:
            if arrangement == "rings":
                radius = 1.0 - (1 - INNER) * (depth - first_depth) / max(depths[-1] - first_depth, 1)
                placed[(depth, position)] = (radius * math.cos(angles[rank]), radius * math.sin(angles[rank]))
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


class RingFrame:
    """Where the network goes on a canvas, in px: the input ring's radius (rings) or the row height (columns),
    the labels (shortened to fit, every ``every``-th shown), the plot's size and the data range it spans."""

    def __init__(self, canvas: Canvas, labels: Sequence[str], arrangement: str, depths: tuple[int, int]) -> None:
        font = canvas.font_px
        self.font, self.arrangement, self.depths = font, arrangement, depths
        width = canvas.width - 2 * MARGIN
        line = font * 1.25  # a label's height: the least vertical distance between two
        longest = max((text_px(label, font) for label in labels), default=0.0)
        if arrangement == "rings":
            per_side = max(math.ceil(len(labels) / 2), 1)
            room = min(longest, max(4 * font, 0.2 * width))  # a label's room beside the ring
            # a ring too small for level labels a line apart gives its labels less room, down to four letters
            while room > 4 * font and (width - 2 * (room + 8)) / per_side < line:
                room -= font
            # as wide as the canvas allows, but no taller than a page or slide holds (unless labels need it)
            self.radius = min((width - 2 * (room + 8)) / 2, max(0.28 * width, 120.0, per_side * line / 1.6))
            self.every = max(1, math.ceil(line / (2 * self.radius / per_side)))
            self.plot = 2 * self.radius + line + 8
            self.range = ((width / 2) / self.radius, (self.plot / 2) / self.radius)
        else:
            room = min(longest, max(4 * font, 0.25 * width))
            self.row = max(18.0, font * 1.4)
            self.every = 1
            self.plot = self.row * max(len(labels), 1) + 8
            self.step = (width - room - 26) / max(depths[1] - depths[0], 1)
            self.narrow = text_px("after layer 12", font) > self.step - 6
        self.room = room
        self.labels = [shorten(label, room, font) for label in labels]


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
    special: Sequence[int] = (),
    sinks: bool = True,
    trace_all: bool = False,
    notes: Sequence[str] = (),
    fix_shares: Mapping[tuple, Mapping[str, Shares]] | None = None,
    parts: GraphViewParts | None = None,
) -> Figure:
    """The network of a :class:`~attention.compare.GraphComparison` (``edges``, ``nodes``) over ``measure``
    (named in the title and legend; ``residual_in_maps`` is accepted for symmetry with the Sankey): a dot per token and
    depth (pale grey where no trace reaches it; otherwise sized by its share of the traced mass and coloured by which
    traces reach it), a line per drawn edge coloured as in the Sankey. ``highlight`` = (depth, token) draws the
    paths through that token in black (the page sets it on hover). Input labels are shortened to fit and thinned
    to one in k only when the ``canvas`` leaves less than a line of text per token (the caption says so). A
    pair's second segment (``segments`` 1) is set off by dashed lines. ``special``, ``sinks``, ``trace_all``,
    ``fix_shares`` and ``notes``: as for :func:`~app.figures.sankey.make_sankey` (why the view shows none of the
    words)."""
    canvas = canvas or Canvas()
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {', '.join(ARRANGEMENTS)}, got {arrangement!r}")
    first, last = layers
    parts = parts or graph_view_parts(
        edges, nodes, tokens=tokens, sources=sources, layers=layers, mode=mode, hidden=hidden, tau=tau,
        source_names=source_names, measure=measure, special=special, sinks=sinks, trace_all=trace_all,
        fix_shares=fix_shares,
    )  # fmt: skip
    name, shown = parts.name, parts.shown
    if isinstance(shown, GraphNote):
        return empty_figure(shown.text)
    positions = [p for p in range(len(tokens)) if p not in set(hidden) or p in set(sources)]
    placed = node_positions(positions, range(first - 1, last + 1), arrangement=arrangement, first_depth=first - 1)
    for position in set(hidden) & set(sources):  # a hidden traced token is drawn as the source only
        placed = {key: xy for key, xy in placed.items() if key[1] != position or key[0] == last}
    frame = RingFrame(canvas, [tokens[p] for p in positions], arrangement, (first - 1, last))
    traces = [
        *_edge_traces(shown, placed, mode),
        _highlight_trace(shown, placed, highlight),
        _node_trace(nodes, placed, tokens, mode, size_px=_dot_px(frame, len(positions))),
    ]
    where = f"rings: input outside, after layer {last} inside" if arrangement == "rings" else "columns"
    title = f"{graph_kind('network', measure)} from {name} ({where}; τ = {tau:g})."
    if not canvas.static:
        title += " Hover a token to see its paths."
    drawn_notes = parts.notes
    said = [*notes, *(note.text for note in drawn_notes)]
    caption = network_caption(mode, quantity(measure), WIDTH_STEPS)
    if frame.every > 1:
        caption = f"Input ring: 1 label in {frame.every} (too many tokens for this width). " + caption
    if arrangement == "columns" and frame.narrow:
        caption = "Columns: the input, then the tokens after layer n. " + caption
    labels = _labels(positions, frame, placed, first - 1, last)
    dividers = _segment_dividers(positions, segments, arrangement, first - 1, last)
    return _network_figure(traces, title, said, caption, frame=frame, canvas=canvas, mode=mode, labels=labels,
                           shapes=dividers, fixes=offered_fixes(drawn_notes))  # fmt: skip


def _dot_px(frame: RingFrame, count: int) -> float:
    """The largest dot's diameter: at most a token's slot on the input ring (or a row)."""
    slot = frame.row if frame.arrangement == "columns" else 2 * frame.radius / max(math.ceil(count / 2), 1)
    return float(min(22.0, max(6.0, slot * 1.2)))


def _network_figure(
    traces: list[dict],
    title: str,
    notes: list[str],
    caption: str,
    *,
    frame: RingFrame,
    canvas: Canvas,
    mode: str,
    labels: list[dict],
    shapes: list[dict],
    fixes: list[dict] | None = None,
) -> Figure:
    """The figure around the network's ``traces``: title and notes over it, legend and caption under it, the
    axes spanning the plot in data units (square for rings); an export keeps this height."""
    font = canvas.font_px
    heading = font * LINE + 4 if frame.arrangement == "columns" else 0.0  # the column titles' row
    top_block = top_notes(notes, width=canvas.width - 2 * MARGIN, font_px=font, above_px=heading)
    entries = legend_entries(mode, view="network")
    bottom = bottom_block(entries, caption, width=canvas.width - 2 * MARGIN, plot_px=frame.plot, font_px=font)
    head, head_px = graph_title(title, canvas)
    top = head_px + top_block.height + heading
    height = math.ceil(top + frame.plot + bottom.height)
    if frame.arrangement == "rings":
        (x_half, y_half) = frame.range
        xaxis = {"visible": False, "range": [-x_half, x_half], "fixedrange": False}
        yaxis = {"visible": False, "range": [-y_half, y_half], "scaleanchor": "x", "scaleratio": 1}
    else:
        outer, inner = frame.depths
        # left of the input column its labels, right of the last column half the largest dot
        xaxis = {"visible": False, "range": [outer - (frame.room + 12) / frame.step, inner + 13 / frame.step]}
        yaxis = {"visible": False, "range": [-(frame.plot - 4) / frame.row + 0.5, 0.5]}
    return figure(
        [*traces, *legend_traces(entries, font)],
        layout(
            "",
            height=height,
            # an export keeps this height and these margins; the page offers the fixes as buttons
            meta={"natural_size": True, "min_height": height, "fixes": list(fixes or [])},
            font={"size": font},
            xaxis=xaxis,
            yaxis=yaxis,
            annotations=[*top_block.annotations, *labels, *bottom.annotations],
            shapes=shapes,
            legend=bottom.legend,
            hovermode="closest",
            margin={"l": MARGIN, "r": MARGIN, "t": top, "b": bottom.height, "autoexpand": False},
        )
        | {"title": head},
    )


def _edge_traces(shown: pd.DataFrame, placed: dict, mode: str) -> list[dict]:
    """One line trace per edge status, kind and width step (:data:`WIDTHS`) of the ``shown`` edges, in the
    order of :func:`_edge_groups`; a residual or sink edge is coloured by which traces carry it."""
    grid = _grid(placed)
    layer, query, key, kind, value = (shown[c].to_numpy() for c in ("layer", "query_idx", "key_idx", "kind", "value"))
    status = _carried_status(shown, mode)
    traces = []
    for status_name, kind_name in _edge_groups(shown["status"], status, kind):
        colour = mode_colour(mode, status_name)
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
                    "line": {"color": rgba(colour, min(1.0, LINK_ALPHA[kind_name] + 0.1)), "width": width},
                    "hoverinfo": "skip",
                    "showlegend": False,
                }
            )
    return traces


def _carried_status(shown: pd.DataFrame, mode: str) -> np.ndarray:
    """``[edge]`` status: an attention edge's own (where it is ≥ τ); a residual or sink edge's by which models'
    traces carry it (both, or only one)."""
    status = shown["status"].to_numpy().astype(object)
    if mode != "comparison":
        return status
    pre, fine = (np.nan_to_num(shown[f"flow_{m}"].to_numpy(float)) > 0 for m in ("pretrained", "finetuned"))
    carried = np.where(pre & fine, "shared", np.where(pre, "pretrained_only", "finetuned_only"))
    other = shown["kind"].to_numpy() != "attention"
    status[other] = carried[other]
    return status


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


def _edge_groups(categories: pd.Series, status: np.ndarray, kind: np.ndarray) -> list[tuple[str, str]]:
    """The ``(status, kind)`` pairs present, in the order the traces are drawn (status in the order of the
    ``categories``' categories, then kind alphabetically): later traces are drawn on top."""
    order = categories.cat.categories if isinstance(categories.dtype, pd.CategoricalDtype) else []
    rank = {c: i for i, c in enumerate(order)}
    present = set(zip(status.tolist(), kind.tolist(), strict=True))
    return sorted(present, key=lambda pair: (rank.get(pair[0], len(rank)), pair[0], pair[1]))


def _node_trace(nodes: pd.DataFrame, placed: dict, tokens: Sequence[str], mode: str, *, size_px: float) -> dict:
    """One marker per token and depth: pale grey and small where no trace reaches it, else sized by its share of
    the traced mass (mean over the shown models; ``size_px`` across at the whole mass) and coloured by which
    traces reach it (khaki: a sink)."""
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
            "size": np.where(reached, 4 + (size_px - 4) * np.sqrt(mass), 3.0),
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
    angles = ring_angles(n)
    line = {"color": "#555555", "width": 1, "dash": "dash"}
    shapes = []
    for rank in ranks:  # between position rank - 1 and rank
        if arrangement == "rings":
            a, b = angles[rank - 1], angles[rank]
            angle = math.atan2(math.sin(a) + math.sin(b), math.cos(a) + math.cos(b))  # halfway between them
            shapes.append({"type": "line", "x0": 0.15 * math.cos(angle), "y0": 0.15 * math.sin(angle),
                           "x1": 1.05 * math.cos(angle), "y1": 1.05 * math.sin(angle), "line": line})  # fmt: skip
        else:
            shapes.append({"type": "line", "x0": outer - 0.3, "x1": inner + 0.3, "y0": -(rank - 0.5),
                           "y1": -(rank - 0.5), "line": line})  # fmt: skip
    return shapes


def _labels(positions, frame: RingFrame, placed, outer: int, inner: int) -> list[dict]:
    """Token labels (every ``frame.every``-th, shortened to fit) level beside the input ring, outside it, or left
    of the input column, whose columns get a title each; the traced end is named by the title. Every token's name
    is also in its hover."""
    font = {"size": frame.font, "color": "#333333"}
    labels = []
    for rank in range(0, len(positions), frame.every):
        if (outer, positions[rank]) not in placed:  # a hidden traced token: only at the traced end
            continue
        x, y = placed[(outer, positions[rank])]
        if frame.arrangement == "rings":
            right = x >= 0
            labels.append({"x": x, "y": y, "text": frame.labels[rank], "showarrow": False, "font": font,
                           "xanchor": "left" if right else "right", "xshift": 6 if right else -6})  # fmt: skip
        else:
            labels.append({"x": x, "y": y, "text": frame.labels[rank], "showarrow": False, "xanchor": "right",
                           "xshift": -8, "font": font})  # fmt: skip
    if frame.arrangement == "columns":
        titles = {"size": frame.font, "color": "#555555"}
        for depth in range(outer, inner + 1):
            long = "input" if depth == 0 else f"after layer {depth}"
            anchor = "left" if depth == outer else ("right" if depth == inner else "center")
            labels.append({"x": depth, "y": 1.0, "yref": "paper", "yanchor": "bottom", "yshift": 2, "xanchor": anchor,
                           "text": ("in" if depth == 0 else str(depth)) if frame.narrow else long,
                           "showarrow": False, "font": titles})  # fmt: skip
    return labels
