"""What the graph views (Sankey, network) draw, shared by both: the visible edges of the two models' graphs, the
notes that say what hiding leaves out and why a view shows (almost) none of the words
(:mod:`app.figures.graph_notes`), the names of what a link carries, and the title's place."""

from __future__ import annotations

import functools
import textwrap
from collections import namedtuple
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from app.figures.graph_legend import LINE, wrap
from app.figures.graph_notes import (
    GraphNote,
    Shares,
    diagnose,
    empty_note,
    fix_label,
    hidden_note,
    is_raw_attention,
    weigh_fixes,
)
from app.figures.models import shown_models
from app.figures.theme import Canvas


def model_mean(frame: pd.DataFrame, column: str, models: Sequence[str]) -> np.ndarray:
    """``[rows]``: the mean over ``models`` of the columns ``{column}_{model}``, NaN (not reached) counting 0."""
    stacked = np.stack([frame[f"{column}_{m}"].to_numpy(float) for m in models], axis=1)  # [rows, model]
    return np.nan_to_num(stacked, nan=0.0).mean(axis=1)


def visible_edges(
    edges: pd.DataFrame, mode: str, hidden: Sequence[int], sources: Sequence[int] = (), last: int | None = None
) -> pd.DataFrame:
    """Edges of the shown model(s)' graphs, without hidden tokens (a hidden traced token stays, as the query of
    layer ``last``), with the columns the graph views draw from (``layer, query_idx, key_idx, kind, status`` and
    per shown model ``flow_*``, ``weight_*``, ``heads_*``); ``value`` = the flow drawn (comparison: the mean of both
    models' flows, an edge one trace does not reach counting 0)."""
    models = shown_models(mode)
    keep = (
        np.ones(len(edges), dtype=bool) if mode == "comparison" else edges[f"in_graph_{mode}"].to_numpy(bool, copy=True)
    )
    if len(hidden):
        layer, query, key = (edges[c].to_numpy() for c in ("layer", "query_idx", "key_idx"))
        traced = (layer == last) & np.isin(query, list(sources))
        keep &= (~np.isin(query, list(hidden)) | traced) & ~np.isin(key, list(hidden))
    value = model_mean(edges, "flow", models)
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
    measure: str = "raw attention (the paper's)",
) -> tuple[str, pd.DataFrame | GraphNote]:
    """What the graph views (Sankey, network) draw: the traced tokens' name and the visible edges, or instead of
    the edges a :class:`~app.figures.graph_notes.GraphNote` saying why there is nothing to draw (nothing passes
    τ, or all that does runs through hidden tokens). A hidden traced token is drawn all the same, as the source."""
    name = source_names or ", ".join(tokens[s] for s in sources[:4])
    shown = visible_edges(edges, mode, hidden, sources, layers[1])
    if shown.empty:
        hidden_only = len(hidden) > 0 and not visible_edges(edges, mode, ()).empty
        traced_hidden = bool(sources) and set(sources) <= set(hidden)
        return name, empty_note(name, tau=tau or 0.0, layers=layers, measure=measure, hidden_only=hidden_only,
                                traced_hidden=traced_hidden)  # fmt: skip
    return name, shown


class GraphViewParts(namedtuple("GraphViewParts", "name shown notes")):
    """What the Sankey and the network both draw from one graph and one set of options: the traced tokens' ``name``,
    the ``shown`` edges (:func:`visible_edges`, or the :class:`GraphNote` saying why there are none) and the
    ``notes`` printed over the drawing (:func:`graph_notes`)."""


def graph_view_parts(edges: pd.DataFrame, nodes: pd.DataFrame, **drawn) -> GraphViewParts:
    """:class:`GraphViewParts` from the graph views' arguments (it reads ``tokens, sources, layers, mode, hidden,
    tau, source_names, measure, special, sinks, trace_all, fix_shares``; any other is ignored): computed once when
    both views are drawn."""
    name, shown = drawn_graph(edges, drawn["tokens"], drawn["sources"], drawn["layers"], drawn["mode"],
                              drawn["hidden"], drawn["tau"], drawn["source_names"], drawn["measure"])  # fmt: skip
    if isinstance(shown, GraphNote):
        return GraphViewParts(name, shown, [])
    notes = graph_notes(nodes, **{key: drawn[key] for key in ("tokens", "sources", "layers", "mode", "hidden",
                                                              "special", "tau", "sinks", "measure", "trace_all",
                                                              "fix_shares")})  # fmt: skip
    return GraphViewParts(name, shown, notes)


def graph_notes(
    nodes: pd.DataFrame,
    *,
    tokens: Sequence[str],
    sources: Sequence[int],
    layers: tuple[int, int],
    mode: str,
    hidden: Sequence[int],
    special: Sequence[int],
    tau: float | None,
    sinks: bool,
    measure: str,
    trace_all: bool,
    fix_shares: Mapping[tuple, Mapping[str, Shares]] | None = None,
) -> list[GraphNote]:
    """The notes a graph view prints over the drawing (their ``text``): what hiding leaves out, and why the view
    shows (almost) none of the words with what would change it — only the changes that help, best first, when
    ``fix_shares`` says what each would give (:func:`~app.figures.graph_notes.weigh_fixes`)."""
    hiding = hidden_note(nodes, first_layer=layers[0], hidden=hidden, sources=sources, tokens=tokens, mode=mode)
    lopsided = diagnose(nodes, layers=layers, special=special, sources=sources, mode=mode, tau=tau or 0.0,
                        sinks=sinks, measure=measure, trace_all=trace_all,
                        special_names=special_names(nodes, tokens, special))  # fmt: skip
    if lopsided is not None and fix_shares is not None:
        lopsided = weigh_fixes(lopsided, fix_shares)
    return [note for note in (hiding, lopsided) if note is not None]


def special_names(nodes: pd.DataFrame, tokens: Sequence[str], special: Sequence[int]) -> str:
    """How a graph note names where the specials' share sits: the drawn special tokens ("[CLS] / [SEP]", "<bos>")
    and any other sink, quoted (a decoder's first word: "“a”")."""
    sinks = [int(p) for p in nodes.loc[nodes["sink"].astype(bool), "token_idx"].unique() if p not in set(special)]
    named = [tokens[p] for p in special if p < len(tokens)] + [f"“{tokens[p]}”" for p in sinks if p < len(tokens)]
    return " / ".join(dict.fromkeys(named)) or "the special tokens"


def offered_fixes(notes: Sequence[GraphNote]) -> list[dict]:
    """The option changes a page offers as buttons under a graph view: those of ``notes`` that were tried and help,
    best first, each ``{"change": {field: value}, "label": "Lower τ to 0.01 (36 % to the words)"}`` (kept in the
    figure's ``layout.meta.fixes``)."""
    offered = []
    for note in notes:
        if not note.tried:
            continue
        for change, gain in zip(note.fixes, note.gains, strict=True):
            label = fix_label(change)
            label = f"{label[0].upper()}{label[1:]} ({100 * gain:.0f}\u00a0% to the words)"
            offered.append({"change": dict(change), "label": label})
    return offered


def graph_kind(noun: str, measure: str) -> str:
    """The title's name of a graph view: ``Attention <noun>``, or ``Contribution <noun> (<measure>)``."""
    return f"Attention {noun}" if is_raw_attention(measure) else f"Contribution {noun} ({measure})"


def quantity(measure: str) -> str:
    """What a link carries, in the legend and hovers: ``attention``, or ``<measure> contribution``."""
    return "attention" if is_raw_attention(measure) else f"{measure} contribution"


def percent(value: float) -> str:
    """A share as ``12.3 %``; ``–`` where the model has none (NaN)."""
    return "–" if value is None or value != value else f"{100 * value:.1f} %"  # NaN != NaN: np.isnan costs ~4×


def graph_title(text: str, canvas: Canvas) -> tuple[dict, float]:
    """A graph view's title settings, at the top left and growing downwards, and the px from the figure's top to
    below it. In the page it is wrapped to the canvas; an export wraps it itself and adds the room of its extra
    lines to the top margin."""
    size = canvas.font_px * 1.15
    if canvas.static:  # wrapped as app.export.files.wrapped_title does: 0.55 em per character
        lines = len(textwrap.wrap(text, max(int((canvas.width - 20) / (0.55 * size)), 10)))
    else:
        shown = wrap(text, canvas.width - 16, size)
        text, lines = "<br>".join(shown), len(shown)
    settings = {
        "text": text,
        "x": 0.0,
        "xanchor": "left",
        "xref": "container",
        "yref": "container",
        "y": 1.0,
        "yanchor": "top",
        # plotly lifts a title of several lines anchored at its top by 0.7 em (one line sits 0.5 em low)
        "pad": {"l": 8, "t": 6 + (0.7 * size if lines > 1 else 0.0)},
        "font": {"size": size},
    }
    return settings, 8 + size * LINE * (1 if canvas.static else max(lines, 1))


@functools.cache
def _row_type(columns: tuple[str, ...]) -> type:
    """The named tuple type of :func:`records`' rows for ``columns`` (made once: making one costs ~0.25 ms)."""
    return namedtuple("Row", columns)


def records(frame: pd.DataFrame, columns: list[str], rows: np.ndarray | None = None) -> list:
    """``columns`` of ``frame`` (at ``rows``, default all) as named tuples, read column by column as Python lists:
    selecting several columns at once or iterating Arrow-backed strings row by row costs more than the figure."""
    row = _row_type(tuple(columns))
    values = [frame[c].to_numpy() if rows is None else frame[c].to_numpy()[rows] for c in columns]
    return list(map(row._make, zip(*(v.tolist() for v in values), strict=True)))
