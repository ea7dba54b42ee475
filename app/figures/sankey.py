"""View 1: the attention graph as a Sankey diagram: the traced token(s) on the right, the inputs on the left, each
link as wide as the share of the traced mass it carries (see docs/method.md §1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.figures.theme import (
    MODEL_COLOURS,
    MODEL_LABELS,
    REACH_LABELS,
    STATUS_COLOURS,
    STATUS_LABELS,
    Canvas,
    Figure,
    empty_figure,
    figure,
    layout,
    rgba,
)

SINK_COLOUR = "#C9B26B"  # khaki: unlike the grey of "both models" and either model's colour
NODE_PAD = 15  # px between two nodes of a column: a label's height
NODES_PX = 220  # px of the fullest column left for the nodes themselves
MIN_PLOT_PX = 320
DOMAIN_TOP = 0.92  # the Sankey's top edge (paper); the column titles sit above it


def _stacked_layout(
    columns: dict[int, list[int]],
    index: dict[tuple[int, int], int],
    sources: list[int],
    targets: list[int],
    values: list[float],
) -> tuple[list[float], float]:
    """Vertical centres (0 = top, 1 = bottom of the domain) of every node, stacked per column in order, and the
    plot height in px.

    Plotly draws a node ``max(inflow, outflow) · k`` px tall with d3-sankey's ``k = min over columns of
    (H - (n - 1) · pad) / Σ values``. The pad is a label's height, so two neighbours' centres are always at least
    a label apart; the plot is tall enough for the fullest column's pads plus :data:`NODES_PX` of nodes. Stacking
    with that same ``k`` keeps every node inside the domain: no node, link or label covers another label, the
    title or the column titles."""
    inflow, outflow = np.zeros(len(index)), np.zeros(len(index))
    np.add.at(inflow, targets, values)
    np.add.at(outflow, sources, values)
    size = np.maximum(inflow, outflow)
    stacks = [[index[(depth, token)] for token in column] for depth, column in columns.items() if column]
    plot = max(MIN_PLOT_PX, (max(len(stack) for stack in stacks) - 1) * NODE_PAD + NODES_PX)
    scale = min((plot - (len(stack) - 1) * NODE_PAD) / max(size[stack].sum(), 1e-12) for stack in stacks)
    centres = np.zeros(len(index))
    for stack in stacks:
        top = (plot - size[stack].sum() * scale - (len(stack) - 1) * NODE_PAD) / 2  # a short column is centred
        for node in stack:
            centres[node] = (top + size[node] * scale / 2) / plot
            top += size[node] * scale + NODE_PAD
    return np.clip(centres, 0.001, 0.999).tolist(), plot


def _models(mode: str) -> tuple[str, ...]:
    return ("pretrained", "finetuned") if mode == "comparison" else (mode,)


def visible_edges(edges: pd.DataFrame, mode: str, hidden: Sequence[int]) -> pd.DataFrame:
    """Edges of the shown model(s)' graphs, without hidden tokens, with the columns the graph views draw from
    (``layer, query_idx, key_idx, kind, status`` and per shown model ``flow_*``, ``weight_*``, ``heads_*``); ``value``
    = the flow drawn (comparison: the mean of both models' flows, an edge one trace does not reach counting 0)."""
    models = _models(mode)
    keep = (
        np.ones(len(edges), dtype=bool) if mode == "comparison" else edges[f"in_graph_{mode}"].to_numpy(bool, copy=True)
    )
    if len(hidden):
        keep &= ~np.isin(edges["query_idx"].to_numpy(), hidden) & ~np.isin(edges["key_idx"].to_numpy(), hidden)
    value = np.nan_to_num(np.stack([edges[f"flow_{m}"].to_numpy(float) for m in models], axis=1), nan=0.0).mean(axis=1)
    rows = np.flatnonzero(keep & (value > 0))
    columns = [
        "layer",
        "query_idx",
        "key_idx",
        "kind",
        *(f"{c}_{m}" for c in ("flow", "weight", "heads") for m in models),
    ]
    shown = {c: edges[c].to_numpy()[rows] for c in columns}
    return pd.DataFrame({**shown, "status": edges["status"].array.take(rows), "value": value[rows]})


def drawn_graph(
    edges: pd.DataFrame,
    tokens: Sequence[str],
    sources: Sequence[int],
    layers: tuple[int, int],
    mode: str,
    hidden: Sequence[int],
    tau: float | None,
    source_names: str,
) -> tuple[str, pd.DataFrame | str]:
    """What the graph views (Sankey, network) draw: the traced tokens' name and the visible edges, or instead of
    the edges a sentence saying why there is nothing to draw (the traced token is hidden, nothing passes τ)."""
    name = source_names or ", ".join(tokens[s] for s in sources[:4])
    if sources and all(s in set(hidden) for s in sources):
        return name, f"The traced token ({name}) is hidden. Untick 'Hide special tokens' or pick words to trace from."
    shown = visible_edges(edges, mode, hidden)
    if shown.empty:
        return name, f"Nothing from {name} passes τ = {tau:g} in layers {layers[0]}–{layers[1]}. Lower τ."
    return name, shown


def _number(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.3f}"


def _percent(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{100 * value:.1f} %"


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
) -> Figure:
    """Sankey of a :class:`~attention.compare.GraphComparison` (``edges``, ``nodes`` frames, token or word level).

    ``measure`` names what the graph is drawn over (raw attention, or a context-mixing measure such as ALTI:
    title and legend say so); ``residual_in_maps``: the measure holds the residual, so no residual share α.

    One column per depth ``first-1 .. last``; a link per drawn edge ``(l, query -> key)`` from the key at depth
    ``l-1`` to the query at depth ``l``, as wide as the share of the traced mass it carries. Sinks (grey) hold the
    mass absorbed from attention into special tokens and are never expanded. In ``comparison`` mode links are
    coloured by which graphs draw them; ``selected`` = (layer, head) highlights the links that head passes. On a
    narrow ``canvas`` (a single-column figure) only the input and the traced token are labelled: the columns are
    closer than a word is long (every node names its token in the hover). ``segments`` (per drawn position, 1 for
    a pair's second segment) is said in the hover ("segment B").
    """
    canvas = canvas or Canvas()
    narrow = canvas.width / max(layers[1] - layers[0] + 2, 1) < 80  # px between two columns
    first, last = layers
    name, shown = drawn_graph(edges, tokens, sources, layers, mode, hidden, tau, source_names)
    if isinstance(shown, str):
        return empty_figure(shown)

    models = _models(mode)
    node_columns = [
        "depth",
        "token_idx",
        "sink",
        *(f"{c}_{m}" for c in ("mass", "absorbed", "reached") for m in models),
    ]
    mass, absorbed = (
        np.nan_to_num(np.stack([nodes[f"{c}_{m}"].to_numpy(float) for m in models], axis=1), nan=0.0).mean(axis=1)
        for c in ("mass", "absorbed")
    )
    keep = ((mass > 0) | (absorbed > 0)) & ~np.isin(nodes["token_idx"].to_numpy(), hidden)
    drawn = _records(nodes, node_columns, np.flatnonzero(keep))
    layer, query, key = (shown[c].to_numpy() for c in ("layer", "query_idx", "key_idx"))
    linked = set(zip((layer - 1).tolist(), key.tolist(), strict=True)) | set(
        zip(layer.tolist(), query.tolist(), strict=True)
    )
    facts = {(int(r.depth), int(r.token_idx)): r for r in drawn}
    columns: dict[int, list[int]] = {
        depth: sorted(t for (d, t) in facts if d == depth and (d, t) in linked) for depth in range(first - 1, last + 1)
    }

    index: dict[tuple[int, int], int] = {}
    labels, xs, colours, hovers = [], [], [], []
    span = last - first + 1
    for depth, column in columns.items():
        for token in column:
            row = facts[(depth, token)]
            index[(depth, token)] = len(labels)
            labels.append(tokens[token] if not narrow or depth in (first - 1, last) else "")
            xs.append(min(max((depth - first + 1) / span, 0.001), 0.999))
            colours.append("#333333" if depth == last else (SINK_COLOUR if row.sink else node_colour(row, mode)))
            where = "input" if depth == 0 else f"after layer {depth}"
            shares = "; ".join(
                f"{MODEL_LABELS[m]} {_percent(getattr(row, f'mass_{m}'))}"
                + (f" + absorbed {_percent(getattr(row, f'absorbed_{m}'))}" if row.sink else "")
                for m in models
            )
            role = "sink: attention into it is absorbed, not traced further<br>" if row.sink else ""
            segment = " · segment B" if segments is not None and segments[token] == 1 else ""
            hovers.append(
                f"<b>{tokens[token]}</b> (#{token}{segment}), {where}<br>{role}share of the traced mass: {shares}"
            )

    edge_columns = ["layer", "query_idx", "key_idx", "kind", "status", "value",
                    *(f"{c}_{m}" for c in ("flow", "weight", "heads") for m in models)]  # fmt: skip
    link_source, link_target, values, link_colours, link_hovers = [], [], [], [], []
    heads_text: dict = {}  # the same few head lists recur on many edges: joined once
    for edge in _records(shown, edge_columns):
        key, query = (edge.layer - 1, edge.key_idx), (edge.layer, edge.query_idx)
        if key not in index or query not in index:
            continue
        colour = STATUS_COLOURS[edge.status] if mode == "comparison" else MODEL_COLOURS[mode]
        opacity = 0.25 if edge.kind == "residual" else 0.55
        if edge.kind == "sink":
            colour, opacity = SINK_COLOUR, 0.35
        if selected is not None and selected[1] is not None and edge.layer == selected[0] and edge.kind == "attention":
            heads = set().union(*(_heads(getattr(edge, f"heads_{m}")) for m in models))
            opacity = 0.9 if selected[1] in heads else 0.12
        link_source.append(index[key])
        link_target.append(index[query])
        values.append(float(edge.value))
        link_colours.append(rgba(colour, opacity))
        link_hovers.append(_link_hover(edge, tokens, models, mode, heads_text, measure))

    margins = 100  # px: the layout's top and bottom margins
    ys, plot_px = _stacked_layout(columns, index, link_source, link_target, values)
    height = int(np.ceil(plot_px / DOMAIN_TOP + margins))
    sankey = {
        "type": "sankey",
        "arrangement": "fixed",
        "node": {
            "label": labels,
            "x": xs,
            "y": ys,
            "color": colours,
            "pad": NODE_PAD,
            "thickness": 12,
            "customdata": hovers,
            "hovertemplate": "%{customdata}<extra></extra>",
            "line": {"width": 0},
        },
        "link": {
            "source": link_source,
            "target": link_target,
            "value": values,
            "color": link_colours,
            "customdata": link_hovers,
            "hovertemplate": "%{customdata}<extra></extra>",
        },
        "domain": {"x": [0.0, 1.0], "y": [0.0, DOMAIN_TOP]},
    }
    column_titles = [
        {
            "x": min(max((depth - first + 1) / span, 0.0), 1.0),
            "y": 0.95,
            "xref": "paper",
            "yref": "paper",
            "yanchor": "bottom",
            "text": ("in" if narrow else "input") if depth == 0 else (str(depth) if narrow else f"after layer {depth}"),
            "showarrow": False,
            "font": {"size": 11, "color": "#555"},
        }
        for depth in range(first - 1, last + 1)
    ]
    over = "residual in the maps" if residual_in_maps else f"residual α = {alpha:g}"
    kind = "Attention graph" if measure.startswith("raw attention") else f"Contribution graph ({measure})"
    title = f"{kind} from {name}: share of its mass on each edge, layers {first}–{last} (τ = {tau:g}, {over})"
    if mode != "comparison":
        title += f", {MODEL_LABELS[mode]}"
    if narrow:
        title += "; columns: after layer n"
    return figure(
        [sankey, *legend_traces(mode, measure)],
        layout(
            title,
            height=height,
            meta={"min_height": height},  # exports keep a label's room per node
            annotations=column_titles,
            xaxis={"visible": False},
            yaxis={"visible": False},
            legend={"orientation": "h", "y": -0.04, "x": 0.0},
            margin={"l": 60, "r": 20, "t": 60, "b": 40},
        ),
    )


def legend_traces(mode: str, measure: str = "raw attention (the paper's)") -> list[dict]:
    """The legend of the graph views (links have no legend of their own: one empty marker trace per colour):
    squares for where the attention (or the ``measure``'s contribution) is (links), circles for which traces
    reach a token (nodes)."""
    what = "attention" if measure.startswith("raw attention") else f"{measure} contribution"
    if mode == "comparison":
        legend = {key: label.replace("attention", what) for key, label in STATUS_LABELS.items()}
    else:
        legend = {mode: f"{MODEL_LABELS[mode]} {what} ≥ τ"}
    legend["sink"] = "absorbed by [CLS] / [SEP] (sink)"
    entries = [
        _legend_entry(label, SINK_COLOUR if key == "sink" else STATUS_COLOURS.get(key) or MODEL_COLOURS[mode])
        for key, label in legend.items()
    ]
    if mode == "comparison":
        entries += [_legend_entry(label, STATUS_COLOURS[key], symbol="circle") for key, label in REACH_LABELS.items()]
    return entries


def _legend_entry(label: str, colour: str, *, symbol: str = "square") -> dict:
    return {
        "type": "scatter",
        "x": [None],
        "y": [None],
        "mode": "markers",
        "name": label,
        "marker": {"size": 11, "symbol": symbol, "color": colour},
    }


def node_colour(row, mode: str) -> str:
    if mode != "comparison":
        return MODEL_COLOURS[mode]
    reached = (row.reached_pretrained, row.reached_finetuned)
    return STATUS_COLOURS["shared" if all(reached) else ("pretrained_only" if reached[0] else "finetuned_only")]


def _joined(value, known: dict) -> str:
    """``0, 3, 5`` for the heads of an edge column value, ``–`` for none (``known``: those already joined)."""
    heads = _heads(value)
    if heads not in known:
        known[heads] = ", ".join(map(str, heads)) or "–"
    return known[heads]


def _heads(value) -> tuple[int, ...]:
    """Heads of an edge column value: a tuple, or NaN where the model has no such edge."""
    return value if isinstance(value, tuple) else ()


def _records(frame: pd.DataFrame, columns: list[str], rows: np.ndarray | None = None) -> list:
    """``columns`` of ``frame`` (at ``rows``, default all) as named tuples, read column by column as Python lists:
    selecting several columns at once or iterating Arrow-backed strings row by row costs more than the figure."""
    from collections import namedtuple

    row = namedtuple("Row", columns)
    values = [frame[c].to_numpy() if rows is None else frame[c].to_numpy()[rows] for c in columns]
    return list(map(row._make, zip(*(v.tolist() for v in values), strict=True)))


def _link_hover(
    edge, tokens: Sequence[str], models: tuple[str, ...], mode: str, heads_text: dict, measure: str
) -> str:
    """A link's hover: what moves along it, each model's value and share of its trace; over a context-mixing
    ``measure`` the value is the measure's share (one map per layer: no heads to list)."""
    query, key = tokens[edge.query_idx], tokens[edge.key_idx]
    raw = measure.startswith("raw attention")

    def carried(model: str) -> str:
        flow = getattr(edge, f"flow_{model}")
        share = "not reached by its trace" if flow != flow else f"carries {_percent(flow)} of its trace"
        return f"{MODEL_LABELS[model]}: {share}"

    shares = "<br>".join(carried(m) for m in models)
    if edge.kind == "residual":
        return f"layer {edge.layer}: <b>{query}</b> keeps its residual share<br>{shares}"
    weights = ", ".join(f"{MODEL_LABELS[m]} {_number(getattr(edge, f'weight_{m}'))}" for m in models)
    heads = "; ".join(f"{MODEL_LABELS[m]} {_joined(getattr(edge, f'heads_{m}'), heads_text)}" for m in models)
    status = ""
    if mode == "comparison" and edge.kind == "attention":
        status = STATUS_LABELS[edge.status].replace("attention", "attention" if raw else f"{measure} contribution")
        status += "<br>"
    if not raw:
        what = "draws on the sink" if edge.kind == "sink" else "draws on"
        return (
            f"layer {edge.layer}: <b>{query}</b> {what} <b>{key}</b><br>{status}{measure} share: {weights}<br>"
            f"{shares}"
        )
    what = "attends to the sink" if edge.kind == "sink" else "attends to"
    return (
        f"layer {edge.layer}: <b>{query}</b> {what} <b>{key}</b><br>{status}head-mean attention: {weights}<br>"
        f"{shares}<br>heads ≥ τ: {heads}"
    )
