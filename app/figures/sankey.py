"""View 1: the attention graph as a Sankey diagram, inputs on the left, traced tokens on the right."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.figures.theme import (
    MODEL_COLOURS,
    MODEL_LABELS,
    STATUS_COLOURS,
    STATUS_LABELS,
    Figure,
    empty_figure,
    figure,
    layout,
    rgba,
)

_MODEL_STATUSES = {"pretrained": ("shared", "pretrained_only"), "finetuned": ("shared", "finetuned_only")}


def _visible_edges(edges: pd.DataFrame, mode: str, aggregation: str) -> pd.DataFrame:
    column = "weight_max" if aggregation == "max" else "weight"
    if mode == "comparison":
        shown = edges.copy()
        shown["value"] = shown[[f"{column}_pretrained", f"{column}_finetuned"]].mean(axis=1)
    else:
        shown = edges[edges["status"].isin(_MODEL_STATUSES[mode])].copy()
        shown["value"] = shown[f"{column}_{mode}"]
    return shown


def _heads_of(value) -> tuple[int, ...]:
    """Heads of an edge column value: a tuple, or NaN where the model has no such edge."""
    return value if isinstance(value, tuple) else ()


def _heads_text(value) -> str:
    return ", ".join(str(h) for h in _heads_of(value)) or "–"


def make_sankey(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    *,
    tokens: Sequence[str],
    sources: Sequence[int],
    layers: tuple[int, int],
    mode: str = "comparison",
    aggregation: str = "mean",
    selected: tuple[int, int | None] | None = None,
    tau: float | None = None,
) -> Figure:
    """Sankey of a :class:`~attention.compare.GraphComparison` (``edges``, ``nodes`` frames).

    One column of token nodes per depth ``first-1 .. last``; a link per edge ``(l, query -> key)`` from the key at
    depth ``l-1`` to the query at depth ``l``, sized by the edge weight (mean or max over heads). In ``comparison``
    mode links are coloured shared / pre-trained only / fine-tuned only; ``pretrained`` / ``finetuned`` show one
    model. ``selected`` = (layer, head) highlights that head's links.
    """
    first, last = layers
    shown = _visible_edges(edges, mode, aggregation)
    source_names = ", ".join(tokens[s] for s in sources[:4]) + (" …" if len(sources) > 4 else "")
    if shown.empty:
        where = f"τ = {tau:g}" if tau is not None else "the threshold"
        return empty_figure(
            f"No attention from {source_names} reaches {where} in layers {first}–{last}. Lower τ, or select more heads."
        )

    # Node columns: depth `last` holds the sources; depth d < last holds what layer d+1 reached.
    reached = nodes.copy()
    models = ("pretrained", "finetuned") if mode == "comparison" else (mode,)
    reached["any"] = reached[[f"reached_{m}" for m in models]].any(axis=1)
    columns: dict[int, list[int]] = {last: sorted(int(s) for s in sources)}
    for depth in range(first - 1, last):
        rows = reached[(reached["layer"] == depth + 1) & reached["any"]]
        columns[depth] = sorted(int(t) for t in rows["token_idx"])
    node_facts = {  # (layer, token) -> row, built once: per-node .loc lookups cost milliseconds
        (int(r.layer), int(r.token_idx)): r for r in nodes.itertuples(index=False)
    }

    index: dict[tuple[int, int], int] = {}
    labels, xs, ys, colours, hovers = [], [], [], [], []
    span = last - first + 1
    for depth in range(first - 1, last + 1):
        column = columns.get(depth, [])
        for rank, token in enumerate(column):
            index[(depth, token)] = len(labels)
            labels.append(tokens[token])
            xs.append(min(max((depth - first + 1) / span, 0.001), 0.999))
            ys.append(min(max((rank + 0.5) / max(len(column), 1), 0.001), 0.999))
            if depth == last:
                colours.append("#333333")
                hovers.append(f"<b>{tokens[token]}</b> (#{token}) · traced from here, depth {depth}")
                continue
            row = node_facts[(depth + 1, token)]
            by_model = [row.reached_pretrained, row.reached_finetuned]
            status = "shared" if all(by_model) else ("pretrained_only" if by_model[0] else "finetuned_only")
            colours.append(STATUS_COLOURS[status] if mode == "comparison" else MODEL_COLOURS[mode])
            hovers.append(
                f"<b>{tokens[token]}</b> (#{token}) · depth {depth}<br>"
                f"influence I<sub>{depth + 1}</sub>: pre-trained {row.influence_pretrained:.2f}, "
                f"fine-tuned {row.influence_finetuned:.2f}"
            )

    link_source, link_target, values, link_colours, link_hovers = [], [], [], [], []
    for edge in shown.itertuples(index=False):
        key, query = (edge.layer - 1, edge.key_idx), (edge.layer, edge.query_idx)
        if key not in index or query not in index:
            continue
        colour = STATUS_COLOURS[edge.status] if mode == "comparison" else MODEL_COLOURS[mode]
        opacity = 0.55
        if selected is not None and selected[1] is not None and edge.layer == selected[0]:
            shown_models = ("pretrained", "finetuned") if mode == "comparison" else (mode,)
            heads = set().union(*(_heads_of(getattr(edge, f"heads_{m}")) for m in shown_models))
            opacity = 0.9 if selected[1] in heads else 0.12

        link_source.append(index[key])
        link_target.append(index[query])
        values.append(float(edge.value))
        link_colours.append(rgba(colour, opacity))
        pre = "–" if np.isnan(edge.weight_pretrained) else f"{edge.weight_pretrained:.3f}"
        fine = "–" if np.isnan(edge.weight_finetuned) else f"{edge.weight_finetuned:.3f}"
        link_hovers.append(
            f"layer {edge.layer}: <b>{tokens[edge.query_idx]}</b> attends to <b>{tokens[edge.key_idx]}</b><br>"
            f"{STATUS_LABELS[edge.status]} · weight pre-trained {pre}, fine-tuned {fine}<br>"
            f"heads ≥ τ: pre-trained {_heads_text(edge.heads_pretrained)}; "
            f"fine-tuned {_heads_text(edge.heads_finetuned)}"
        )

    sankey = {
        "type": "sankey",
        "arrangement": "fixed",
        "node": {
            "label": labels,
            "x": xs,
            "y": ys,
            "color": colours,
            "pad": 6,
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
    }
    legend = STATUS_LABELS if mode == "comparison" else {mode: MODEL_LABELS[mode]}
    legend_traces = [  # Sankey links have no legend of their own: one empty marker trace per colour
        {
            "type": "scatter",
            "x": [None],
            "y": [None],
            "mode": "markers",
            "name": label,
            "marker": {"size": 12, "symbol": "square", "color": STATUS_COLOURS.get(key) or MODEL_COLOURS[mode]},
        }
        for key, label in legend.items()
    ]
    columns_titles = [
        {
            "x": min(max((depth - first + 1) / span, 0.0), 1.0),
            "y": 1.06,
            "xref": "paper",
            "yref": "paper",
            "text": "input" if depth == 0 else f"layer {depth}",
            "showarrow": False,
            "font": {"size": 11, "color": "#555"},
        }
        for depth in range(first - 1, last + 1)
    ]
    title = f"Attention flow from {source_names}, layers {first}–{last}"
    if mode != "comparison":
        title += f" ({MODEL_LABELS[mode]})"
    return figure(
        [sankey, *legend_traces],
        layout(
            title,
            height=max(420, 26 * max(len(c) for c in columns.values()) + 140),
            annotations=columns_titles,
            xaxis={"visible": False},
            yaxis={"visible": False},
            legend={"orientation": "h", "y": -0.04, "x": 0.0},
            margin={"l": 60, "r": 20, "t": 80, "b": 40},
        ),
    )
