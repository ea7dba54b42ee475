"""View 1: the attention graph as a Sankey diagram: the traced token(s) on the right, the inputs on the left, each
link as wide as the share of the traced mass it carries (see docs/method.md §1)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.figures.models import mode_colour, reach_colours, shown_models
from app.figures.theme import (
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
MARGINS_PX = 100  # the layout's top and bottom margins

Node = tuple[int, int]  # (depth, drawn position)


def _stacked_layout(
    columns: dict[int, list[int]],
    index: dict[Node, int],
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


def _model_mean(frame: pd.DataFrame, column: str, models: Sequence[str]) -> np.ndarray:
    """``[rows]``: the mean over ``models`` of the columns ``{column}_{model}``, NaN (not reached) counting 0."""
    stacked = np.stack([frame[f"{column}_{m}"].to_numpy(float) for m in models], axis=1)  # [rows, model]
    return np.nan_to_num(stacked, nan=0.0).mean(axis=1)


def visible_edges(edges: pd.DataFrame, mode: str, hidden: Sequence[int]) -> pd.DataFrame:
    """Edges of the shown model(s)' graphs, without hidden tokens, with the columns the graph views draw from
    (``layer, query_idx, key_idx, kind, status`` and per shown model ``flow_*``, ``weight_*``, ``heads_*``); ``value``
    = the flow drawn (comparison: the mean of both models' flows, an edge one trace does not reach counting 0)."""
    models = shown_models(mode)
    keep = (
        np.ones(len(edges), dtype=bool) if mode == "comparison" else edges[f"in_graph_{mode}"].to_numpy(bool, copy=True)
    )
    if len(hidden):
        keep &= ~np.isin(edges["query_idx"].to_numpy(), hidden) & ~np.isin(edges["key_idx"].to_numpy(), hidden)
    value = _model_mean(edges, "flow", models)
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


def is_raw_attention(measure: str) -> bool:
    """Whether the graph is drawn over raw attention (``measure`` its label), not a context-mixing measure."""
    return measure.startswith("raw attention")


def graph_kind(noun: str, measure: str) -> str:
    """The title's name of a graph view: ``Attention <noun>``, or ``Contribution <noun> (<measure>)``."""
    return f"Attention {noun}" if is_raw_attention(measure) else f"Contribution {noun} ({measure})"


def _quantity(measure: str) -> str:
    """What a link carries, in the legend and hovers: ``attention``, or ``<measure> contribution``."""
    return "attention" if is_raw_attention(measure) else f"{measure} contribution"


def _number(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.3f}"


def percent(value: float) -> str:
    """A share as ``12.3 %``; ``–`` where the model has none (NaN)."""
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
    name, shown = drawn_graph(edges, tokens, sources, layers, mode, hidden, tau, source_names)
    if isinstance(shown, str):
        return empty_figure(shown)
    models = shown_models(mode)
    facts, columns = _drawn_nodes(nodes, shown, models, hidden, layers)
    index, node = _node_arrays(facts, columns, tokens, mode=mode, layers=layers, narrow=narrow, segments=segments)
    link = _link_arrays(shown, index, tokens, mode=mode, selected=selected, measure=measure)
    ys, plot_px = _stacked_layout(columns, index, link["source"], link["target"], link["value"])
    height = int(np.ceil(plot_px / DOMAIN_TOP + MARGINS_PX))
    title = _sankey_title(name, layers, mode=mode, tau=tau, alpha=alpha, measure=measure,
                          residual_in_maps=residual_in_maps, narrow=narrow)  # fmt: skip
    return figure(
        [_sankey_trace(node, ys, link), *legend_traces(mode, measure)],
        layout(
            title,
            height=height,
            meta={"min_height": height},  # exports keep a label's room per node
            annotations=_column_titles(layers, narrow=narrow),
            xaxis={"visible": False},
            yaxis={"visible": False},
            legend={"orientation": "h", "y": -0.04, "x": 0.0},
            margin={"l": 60, "r": 20, "t": 60, "b": 40},
        ),
    )


def _drawn_nodes(
    nodes: pd.DataFrame, shown: pd.DataFrame, models: Sequence[str], hidden: Sequence[int], layers: tuple[int, int]
) -> tuple[dict[Node, tuple], dict[int, list[int]]]:
    """The nodes drawn: ``(depth, token) ->`` its row of ``nodes`` (a named tuple) for every node that holds mass
    and is not hidden, and per depth ``first-1 .. last`` the sorted tokens of those that a ``shown`` edge links."""
    first, last = layers
    node_columns = [
        "depth",
        "token_idx",
        "sink",
        *(f"{c}_{m}" for c in ("mass", "absorbed", "reached") for m in models),
    ]
    mass, absorbed = (_model_mean(nodes, c, models) for c in ("mass", "absorbed"))
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
    return facts, columns


def _node_arrays(
    facts: dict[Node, tuple],
    columns: dict[int, list[int]],
    tokens: Sequence[str],
    *,
    mode: str,
    layers: tuple[int, int],
    narrow: bool,
    segments: Sequence[int] | None,
) -> tuple[dict[Node, int], dict[str, list]]:
    """Plotly's node index of every drawn ``(depth, token)``, and the per-node lists ``label, x, color,
    customdata`` (the hover) in that order: column by column, each column top to bottom."""
    first, last = layers
    models = shown_models(mode)
    span = last - first + 1
    index: dict[Node, int] = {}
    node: dict[str, list] = {"label": [], "x": [], "color": [], "customdata": []}
    for depth, column in columns.items():
        for token in column:
            row = facts[(depth, token)]
            index[(depth, token)] = len(node["label"])
            node["label"].append(tokens[token] if not narrow or depth in (first - 1, last) else "")
            node["x"].append(min(max((depth - first + 1) / span, 0.001), 0.999))
            node["color"].append("#333333" if depth == last else (SINK_COLOUR if row.sink else node_colour(row, mode)))
            node["customdata"].append(_node_hover(row, depth, token, tokens, models, segments))
    return index, node


def _node_hover(
    row, depth: int, token: int, tokens: Sequence[str], models: Sequence[str], segments: Sequence[int] | None
) -> str:
    """A node's hover: its token, depth, whether it is a sink, and each shown model's share of the traced mass."""
    where = "input" if depth == 0 else f"after layer {depth}"
    shares = "; ".join(
        f"{MODEL_LABELS[m]} {percent(getattr(row, f'mass_{m}'))}"
        + (f" + absorbed {percent(getattr(row, f'absorbed_{m}'))}" if row.sink else "")
        for m in models
    )
    role = "sink: attention into it is absorbed, not traced further<br>" if row.sink else ""
    segment = " · segment B" if segments is not None and segments[token] == 1 else ""
    return f"<b>{tokens[token]}</b> (#{token}{segment}), {where}<br>{role}share of the traced mass: {shares}"


def _link_arrays(
    shown: pd.DataFrame,
    index: dict[Node, int],
    tokens: Sequence[str],
    *,
    mode: str,
    selected: tuple[int, int | None] | None,
    measure: str,
) -> dict[str, list]:
    """The per-link lists ``source, target, value, color, customdata`` (the hover) of every ``shown`` edge whose
    two ends are drawn nodes (``index``)."""
    models = shown_models(mode)
    edge_columns = ["layer", "query_idx", "key_idx", "kind", "status", "value",
                    *(f"{c}_{m}" for c in ("flow", "weight", "heads") for m in models)]  # fmt: skip
    link: dict[str, list] = {"source": [], "target": [], "value": [], "color": [], "customdata": []}
    heads_text: dict = {}  # the same few head lists recur on many edges: joined once
    for edge in _records(shown, edge_columns):
        key, query = (edge.layer - 1, edge.key_idx), (edge.layer, edge.query_idx)
        if key not in index or query not in index:
            continue
        link["source"].append(index[key])
        link["target"].append(index[query])
        link["value"].append(float(edge.value))
        link["color"].append(_link_colour(edge, mode, models, selected))
        link["customdata"].append(_link_hover(edge, tokens, models, mode, heads_text, measure))
    return link


def _link_colour(edge, mode: str, models: Sequence[str], selected: tuple[int, int | None] | None) -> str:
    """A link's ``rgba`` colour: by status or model, khaki for a sink, lighter for a residual; with a selected
    head, the attention links of its layer that it passes stand out and the others fade."""
    colour = mode_colour(mode, edge.status)
    opacity = 0.25 if edge.kind == "residual" else 0.55
    if edge.kind == "sink":
        colour, opacity = SINK_COLOUR, 0.35
    if selected is not None and selected[1] is not None and edge.layer == selected[0] and edge.kind == "attention":
        heads = set().union(*(_heads(getattr(edge, f"heads_{m}")) for m in models))
        opacity = 0.9 if selected[1] in heads else 0.12
    return rgba(colour, opacity)


def _sankey_trace(node: dict[str, list], ys: list[float], link: dict[str, list]) -> dict:
    """The Sankey trace from :func:`_node_arrays`' node lists, their vertical centres ``ys`` and
    :func:`_link_arrays`' link lists."""
    return {
        "type": "sankey",
        "arrangement": "fixed",
        "node": {
            "label": node["label"],
            "x": node["x"],
            "y": ys,
            "color": node["color"],
            "pad": NODE_PAD,
            "thickness": 12,
            "customdata": node["customdata"],
            "hovertemplate": "%{customdata}<extra></extra>",
            "line": {"width": 0},
        },
        "link": {
            **link,
            "hovertemplate": "%{customdata}<extra></extra>",
        },
        "domain": {"x": [0.0, 1.0], "y": [0.0, DOMAIN_TOP]},
    }


def _column_titles(layers: tuple[int, int], *, narrow: bool) -> list[dict]:
    """An annotation above each column ``first-1 .. last``: ``input`` / ``after layer n`` (narrow: ``in`` / n)."""
    first, last = layers
    span = last - first + 1
    return [
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


def _sankey_title(
    name: str,
    layers: tuple[int, int],
    *,
    mode: str,
    tau: float | None,
    alpha: float | None,
    measure: str,
    residual_in_maps: bool,
    narrow: bool,
) -> str:
    """What the Sankey shows: graph kind, traced tokens, layers, τ, the residual share and the model drawn."""
    over = "residual in the maps" if residual_in_maps else f"residual α = {alpha:g}"
    kind = graph_kind("graph", measure)
    title = f"{kind} from {name}: share of its mass on each edge, layers {layers[0]}–{layers[1]} (τ = {tau:g}, {over})"
    if mode != "comparison":
        title += f", {MODEL_LABELS[mode]}"
    if narrow:
        title += "; columns: after layer n"
    return title


def legend_traces(mode: str, measure: str = "raw attention (the paper's)") -> list[dict]:
    """The legend of the graph views (links have no legend of their own: one empty marker trace per colour):
    squares for where the attention (or the ``measure``'s contribution) is (links), circles for which traces
    reach a token (nodes)."""
    what = _quantity(measure)
    if mode == "comparison":
        legend = {key: label.replace("attention", what) for key, label in STATUS_LABELS.items()}
    else:
        legend = {mode: f"{MODEL_LABELS[mode]} {what} ≥ τ"}
    legend["sink"] = "absorbed by [CLS] / [SEP] (sink)"
    entries = [
        _legend_entry(label, SINK_COLOUR if key == "sink" else mode_colour(mode, key)) for key, label in legend.items()
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
    """A node's colour: the model's, or in comparison mode by which traces reach it (``row.reached_*``)."""
    reached = np.array([[getattr(row, f"reached_{m}") for m in shown_models(mode)]], dtype=bool)  # [1, model]
    return reach_colours(mode, reached)[0]


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
    row = namedtuple("Row", columns)
    values = [frame[c].to_numpy() if rows is None else frame[c].to_numpy()[rows] for c in columns]
    return list(map(row._make, zip(*(v.tolist() for v in values), strict=True)))


def _link_hover(
    edge, tokens: Sequence[str], models: tuple[str, ...], mode: str, heads_text: dict, measure: str
) -> str:
    """A link's hover: what moves along it, each model's value and share of its trace; over a context-mixing
    ``measure`` the value is the measure's share (one map per layer: no heads to list)."""
    query, key = tokens[edge.query_idx], tokens[edge.key_idx]
    raw = is_raw_attention(measure)

    def carried(model: str) -> str:
        flow = getattr(edge, f"flow_{model}")
        share = "not reached by its trace" if flow != flow else f"carries {percent(flow)} of its trace"
        return f"{MODEL_LABELS[model]}: {share}"

    shares = "<br>".join(carried(m) for m in models)
    if edge.kind == "residual":
        return f"layer {edge.layer}: <b>{query}</b> keeps its residual share<br>{shares}"
    weights = ", ".join(f"{MODEL_LABELS[m]} {_number(getattr(edge, f'weight_{m}'))}" for m in models)
    heads = "; ".join(f"{MODEL_LABELS[m]} {_joined(getattr(edge, f'heads_{m}'), heads_text)}" for m in models)
    status = ""
    if mode == "comparison" and edge.kind == "attention":
        status = STATUS_LABELS[edge.status].replace("attention", _quantity(measure))
        status += "<br>"
    what = ("attends to" if raw else "draws on") + (" the sink" if edge.kind == "sink" else "")
    value = "head-mean attention" if raw else f"{measure} share"
    listed = f"<br>heads ≥ τ: {heads}" if raw else ""
    return f"layer {edge.layer}: <b>{query}</b> {what} <b>{key}</b><br>{status}{value}: {weights}<br>{shares}{listed}"
