"""The Sankey's links and hovers: a link per drawn edge, coloured by which models draw it (in comparison mode a
residual or sink edge is two bands: what both models send and the extra one sends), and what each hover says."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from app.figures.graph_drawn import percent, quantity, records
from app.figures.graph_notes import is_raw_attention
from app.figures.models import mode_colour, shown_models
from app.figures.theme import MODEL_COLOURS, MODEL_LABELS, STATUS_COLOURS, STATUS_LABELS, rgba

LINK_ALPHA = {"attention": 0.55, "sink": 0.45, "residual": 0.22}  # residual links: the palest tint

Node = tuple[int, int]  # (depth, drawn position)


def link_arrays(
    shown: pd.DataFrame,
    index: dict[Node, int],
    tokens: Sequence[str],
    *,
    mode: str,
    selected: tuple[int, int | None] | None,
    measure: str,
) -> dict[str, list]:
    """The per-link lists ``source, target, value, color, customdata`` (the hover) of every ``shown`` edge whose
    two ends are drawn nodes (``index``); in comparison mode a residual or sink edge is two links
    (:func:`_split_bands`)."""
    models = shown_models(mode)
    edge_columns = ["layer", "query_idx", "key_idx", "kind", "status", "value",
                    *(f"{c}_{m}" for c in ("flow", "weight", "heads") for m in models)]  # fmt: skip
    link: dict[str, list] = {"source": [], "target": [], "value": [], "color": [], "customdata": []}
    heads_text: dict = {}  # the same few head lists recur on many edges: joined once
    for edge in records(shown, edge_columns):
        key, query = (edge.layer - 1, edge.key_idx), (edge.layer, edge.query_idx)
        if key not in index or query not in index:
            continue
        hover = _link_hover(edge, tokens, models, mode, heads_text, measure)
        bands = (
            _split_bands(edge)
            if mode == "comparison" and edge.kind != "attention"
            else [(float(edge.value), _link_colour(edge, mode, models, selected), "")]
        )
        for value, colour, said in bands:
            link["source"].append(index[key])
            link["target"].append(index[query])
            link["value"].append(value)
            link["color"].append(colour)
            link["customdata"].append(hover + said)
    return link


def _split_bands(edge) -> list[tuple[float, str, str]]:
    """A residual or sink edge in comparison mode as (value, colour, what the hover adds) bands: grey for the
    share both models send (the smaller flow), the model's colour for the extra only the model with the larger
    flow sends, at half width — so the two bands together are the mean of both models' shares, as every link."""
    flows = {m: 0.0 if v != v else float(v) for m in ("pretrained", "finetuned") for v in [getattr(edge, f"flow_{m}")]}
    both = min(flows.values())
    more = max(flows, key=flows.get)
    extra = flows[more] - both
    alpha = LINK_ALPHA[edge.kind]
    bands = []
    if both > 0:
        bands.append((both, rgba(STATUS_COLOURS["shared"], alpha), f"<br>grey band: {percent(both)} both models send"))
    if extra > 1e-12:
        said = f"<br>{MODEL_LABELS[more]} band: {percent(extra)} more that only the {MODEL_LABELS[more]} model sends"
        bands.append((extra / 2, rgba(MODEL_COLOURS[more], alpha), said + " (at half width: widths are means)"))
    return bands


def _link_colour(edge, mode: str, models: Sequence[str], selected: tuple[int, int | None] | None) -> str:
    """A link's ``rgba`` colour: by status or model, paler for a sink and palest for a residual; with a selected
    head, the attention links of its layer that it passes stand out and the others fade."""
    colour = mode_colour(mode, edge.status)
    opacity = LINK_ALPHA[edge.kind]
    if selected is not None and selected[1] is not None and edge.layer == selected[0] and edge.kind == "attention":
        heads = set().union(*(_heads(getattr(edge, f"heads_{m}")) for m in models))
        opacity = 0.9 if selected[1] in heads else 0.12
    return rgba(colour, opacity)


def _link_hover(edge, tokens: Sequence[str], models: tuple[str, ...], mode: str, heads_text: dict, measure: str) -> str:
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
        status = STATUS_LABELS[edge.status].replace("attention", quantity(measure))
        status += "<br>"
    what = ("attends to" if raw else "draws on") + (" the sink" if edge.kind == "sink" else "")
    value = "head-mean attention" if raw else f"{measure} share"
    listed = f"<br>heads ≥ τ: {heads}" if raw else ""
    return f"layer {edge.layer}: <b>{query}</b> {what} <b>{key}</b><br>{status}{value}: {weights}<br>{shares}{listed}"


def _joined(value, known: dict) -> str:
    """``0, 3, 5`` for the heads of an edge column value, ``–`` for none (``known``: those already joined)."""
    heads = _heads(value)
    if heads not in known:
        known[heads] = ", ".join(map(str, heads)) or "–"
    return known[heads]


def _heads(value) -> tuple[int, ...]:
    """Heads of an edge column value: a tuple, or NaN where the model has no such edge."""
    return value if isinstance(value, tuple) else ()


def _number(value: float) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"  # NaN != NaN


def node_hover(
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
