"""bertviz's head view (Vig, 2019) of one layer: the input's tokens twice, queries on the left and keys on the right,
and a line from each query to every key it attends to, one colour per head, as opaque as the attention weight.

In comparison mode the pre-trained and the fine-tuned model stand side by side, on one pair of axes in pixels of the
plot area (so both models' lines of one head and step are one trace: few traces to draw). Plotly draws one opacity per
trace, so a line's opacity is its weight in four steps (:data:`STEPS`, each drawn at its middle weight), and weights
under :data:`MIN_WEIGHT` are not drawn; the caption says both. The traces of one head share a legend group, so
clicking a head in the legend hides it in both models and double-clicking shows it alone, as bertviz's colour tiles
do. Each line trace's ``meta = {"q": [...], "k": [...], "p": [...], "o": opacity}`` holds its segments' query, key
and panel, and ``layout.meta`` each panel's query and key x (``columns``) and a label's width (``label``), so the page
draws only a hovered token's lines in the browser (``app/dashboard/callbacks/headview.py``); a static figure draws
them all.

The figure lays its labels out itself for a :class:`~app.figures.theme.Canvas` (``layout.meta.natural_size``): a
row per token (a long input is folded by the service first), so it grows with the input and never squeezes labels.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.figures.models import shown_models
from app.figures.theme import MODEL_LABELS, Canvas, Figure, figure, layout

# One colour per head: d3's category10 (bertviz's own, in its order), then darker tones for heads 10-15 (so 12- and
# 16-head models get distinct colours); a model with more heads cycles.
HEAD_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#8c6d31", "#843c39", "#7b4173", "#637939", "#3182bd",
)  # fmt: skip
MIN_WEIGHT = 0.05  # lighter lines are not drawn (bertviz draws them at opacity ≈ weight / heads: invisible anyway)
STEPS = ((0.05, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 1.0))  # weight ranges, each drawn at its middle
CHAR_EM = 0.56  # a label's advance per character, in em (Inter / Helvetica lower case, with room)
ROW_EM = 1.45  # a token's row, in em: two labels never touch
QUERY, KEY = 0, 1  # a token's side, in its hover target's customdata [side, position]


def head_colour(head: int) -> str:
    return HEAD_COLOURS[head % len(HEAD_COLOURS)]


def step_of(weights: np.ndarray) -> np.ndarray:
    """The step (index into :data:`STEPS`) of each weight; -1 below :data:`MIN_WEIGHT`."""
    edges = np.array([low for low, _ in STEPS[1:]])
    return np.where(weights >= MIN_WEIGHT, np.searchsorted(edges, weights, side="right"), -1)


def step_opacity(step: int) -> float:
    low, high = STEPS[step]
    return round((low + high) / 2, 3)


@dataclass(frozen=True)
class _Plan:
    """Where everything goes on the canvas, in px: the legend of heads under the title, then per panel the model's
    name, "query" / "key" and a row per token, then the caption. x is measured from the plot area's left edge."""

    font: float
    row: float  # px per token
    chars: int  # characters a label may show before it is cut with "…"
    inner: float  # px of the plot area's width
    columns: list[tuple[int, int]]  # per panel, the x of its query dots and of its key dots (whole px: short JSON)
    label: float  # px of one column of labels
    entry: float  # px of a legend entry's text
    legend: float  # px of the legend's rows
    headers: float  # px of the model names and "query" / "key" above the rows
    top: float  # margin above the rows: title, legend, headers
    caption: list[str]  # its lines
    bottom: float  # margin below the rows: the caption
    side: float  # left and right margins


def _plan(tokens: Sequence[str], panels: int, heads: int, canvas: Canvas, caption: str, *, keep: int = 0) -> _Plan:
    """Labels as wide as the longest token (cut with "…" when the lines would get less than a quarter of a panel;
    never shorter than ``keep`` characters, e.g. a fold's "other (n)"), a row per token, the legend above and the
    caption below, wrapped to the canvas."""
    font, side = canvas.font_px, 6.0
    gap = 2.5 * font if panels > 1 else 0.0
    inner = canvas.width - 2 * side
    panel = (inner - gap * (panels - 1)) / panels
    char = CHAR_EM * font
    room = (panel - max(2.5 * font, panel / 4)) / 2 - 10  # px of text a column of labels may take
    longest = max((len(t) for t in tokens), default=1)
    chars = max(min(longest, int(room / char)), keep, 3)
    label = min(chars, longest) * char + 10
    columns = [(round(i * (panel + gap) + label), round((i + 1) * panel + i * gap - label)) for i in range(panels)]
    entry = len(f"H{heads - 1}") * char + 4  # plotly adds 45 px to it: the line's sample and the gaps
    rows = math.ceil(heads / max(int(inner // (entry + 45)), 1))
    legend = rows * (max(1.3 * font, 16) + 3) + 10  # plotly's own row height and padding
    lines = textwrap.wrap(caption, width=max(int(inner / (0.56 * font)), 20))
    headers = 2 * font * 1.4 + 6
    top = 8 + 1.15 * font * 1.35 + 8 + legend + 8 + headers
    bottom = 10 + len(lines) * font * 1.3 + 6
    return _Plan(font, font * ROW_EM, chars, inner, columns, label, entry, legend, headers, top, lines, bottom, side)


def _cut(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _line_traces(maps: Sequence[np.ndarray], plan: _Plan, heads: Sequence[int], shown: set[int]) -> list[dict]:
    """One trace per head and weight step over every panel (``maps[panel]`` ``[head, query, key]``): each segment
    from its query's dot to its key's dot, with its query, key and panel in ``meta``; heads outside ``shown`` start
    hidden (``legendonly``: a legend click shows them)."""
    steps = [step_of(weights) for weights in maps]
    traces = []
    for head in heads:
        for step in range(len(STEPS)):
            found = [np.nonzero(panel[head] == step) for panel in steps]
            query = np.concatenate([q for q, _ in found])
            if not query.size:
                continue
            key = np.concatenate([k for _, k in found])
            panel = np.repeat(np.arange(len(found)), [q.size for q, _ in found])
            xs = np.full(query.size * 3, None, dtype=object)
            ys = xs.copy()
            xs[0::3], xs[1::3] = (np.array([column[side] for column in plan.columns])[panel] for side in (0, 1))
            ys[0::3], ys[1::3] = query, key
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": xs.tolist(),
                    "y": ys.tolist(),
                    "line": {"color": head_colour(head), "width": round(max(1.0, plan.font / 8), 2)},
                    "opacity": step_opacity(step),
                    "legendgroup": f"head {head}",
                    "showlegend": False,
                    "hoverinfo": "skip",
                    "visible": True if head in shown else "legendonly",
                    "uid": f"{head}-{step}",
                    "meta": {"q": query.tolist(), "k": key.tolist(), "p": panel.tolist(), "o": step_opacity(step)},
                }
            )
    return traces


def _token_traces(tokens: Sequence[str], shown: Sequence[str], plan: _Plan, canvas: Canvas) -> list[dict]:
    """Every panel's two columns of labels (queries right-aligned at their dots, keys left-aligned) with a dot where
    the lines end; in the page, an invisible target over each label (its customdata ``[side, position]`` tells the
    page whose lines to show when it is hovered)."""
    rows = list(range(len(tokens))) * len(plan.columns)
    traces = []
    for side, where in ((QUERY, "middle left"), (KEY, "middle right")):
        dots = [x for column in plan.columns for x in [column[side]] * len(tokens)]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "x": dots,
                "y": rows,
                "text": list(shown) * len(plan.columns),
                "textposition": where,
                "textfont": {"size": plan.font, "color": "#222222"},
                "marker": {"size": max(plan.font * 0.35, 3), "color": "#555555"},
                "cliponaxis": False,
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
        if canvas.static:
            continue
        middle = (plan.label / 2 + 4) * (-1 if side == QUERY else 1)  # from the dot to the label's middle, px
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": [round(x + middle, 1) for x in dots],
                "y": rows,
                "marker": {"size": plan.row, "opacity": 0, "symbol": "square"},
                "customdata": [[side, row] for row in rows],
                "hoverinfo": "none",  # no box over the words: the page marks the token and draws its lines
                "showlegend": False,
            }
        )
    return traces


def _legend_traces(heads: Sequence[int], shown: set[int]) -> list[dict]:
    """One legend entry per head (a line in its colour), in the legend group of its lines."""
    return [
        {
            "type": "scatter",
            "mode": "lines",
            "x": [None],
            "y": [None],
            "name": f"H{head}",
            "line": {"color": head_colour(head), "width": 3},
            "legendgroup": f"head {head}",
            "visible": True if head in shown else "legendonly",
            "uid": f"legend-{head}",
        }
        for head in heads
    ]


def headview_caption(
    *, layer: int, folded: bool, static: bool, shown: Sequence[int], heads: int, renormalised: bool = False
) -> str:
    """What the lines, colours and opacities say (and, in the page, how to use them)."""
    steps = ", ".join(f"{low:g}–{high:g}" for low, high in STEPS[:-1]) + f", ≥ {STEPS[-1][0]:g}"
    text = (
        f"Each line joins a query token (left) to a key it attends to (right) in layer {layer}; colour: the head "
        f"(legend, H0 = head 0); opacity: the attention weight, in steps ({steps}); weights under {MIN_WEIGHT:g} are "
        "not drawn."
    )
    if len(shown) < heads:
        text += f" Heads shown: {', '.join(str(h) for h in shown)} (the 'Heads' filter)."
    if renormalised:
        text += " Hidden tokens left out, each query's weights renormalised to sum to 1."
    if folded:
        text += " 'other (n)' stands for the n least relevant tokens: attention to it is summed, from it averaged."
    if not static:
        text += (
            " Hover a token to see only its lines (in both models); click a head in the legend to hide it, "
            "double-click to show it alone."
        )
    return text


def make_headview(
    maps: Mapping[str, np.ndarray],
    *,
    tokens: Sequence[str],
    layer: int,
    which: str,
    mode: str = "comparison",
    heads: Sequence[int] | None = None,
    folded: bool = False,
    renormalised: bool = False,
    canvas: Canvas | None = None,
) -> Figure:
    """The head view of one layer from ``maps[model]`` ``[head, query, key]`` (rows sum to 1) for the models ``mode``
    shows, over the drawn ``tokens`` (labels: sub-words marked, a long input folded, ``folded`` then says so in the
    caption; ``renormalised``: rows rescaled after hiding tokens). ``which`` says why this layer (e.g. "the selected
    head's layer"). ``heads`` (None: all) are shown: in the page the others start hidden in the legend; a static
    figure (``canvas.static``) draws only them."""
    canvas = canvas or Canvas()
    models = shown_models(mode)
    num_heads = int(maps[models[0]].shape[0])
    shown = list(range(num_heads)) if heads is None else sorted(heads)
    listed = shown if canvas.static else list(range(num_heads))  # a file has no legend to click heads back in
    caption = headview_caption(
        layer=layer, folded=folded, static=canvas.static, shown=shown, heads=num_heads, renormalised=renormalised
    )
    keep = len(tokens[-1]) if folded and tokens else 0  # "other (n)" is never cut
    plan = _plan(tokens, len(models), len(listed), canvas, caption, keep=keep)
    labels = [_cut(token, plan.chars) for token in tokens]
    plot_height = max(len(tokens), 1) * plan.row
    data = [
        *_line_traces([maps[model] for model in models], plan, listed, set(shown)),
        *_token_traces(tokens, labels, plan, canvas),
        *_legend_traces(listed, set(shown)),
    ]
    annotations = [note for index, model in enumerate(models) for note in _panel_headers(model, index, plan)]
    annotations.append(_caption_note(plan, plot_height))
    height = int(plan.top + plot_height + plan.bottom)
    drawn = _headview_layout(plan, canvas.width, height, len(tokens), annotations, revision=(mode, shown))
    drawn["title"] |= {"text": f"Head view: layer {layer}, {which}"}
    return figure(data, drawn)


def _panel_headers(model: str, index: int, plan: _Plan) -> list[dict]:
    """The model's name over its panel, and "query" / "key" over its two columns of labels (their y in px above
    the rows)."""
    query, key = plan.columns[index]
    common = {"showarrow": False, "xref": "x", "yref": "paper", "yanchor": "bottom", "y": 1}
    column = {**common, "yshift": 4, "font": {"size": plan.font, "color": "#555555"}}
    name = {
        **common,
        "text": f"<b>{MODEL_LABELS[model]}</b>",
        "x": (query + key) / 2,
        "xanchor": "center",
        "yshift": plan.font * 1.4 + 6,
        "font": {"size": plan.font * 1.05},
    }
    return [
        name,
        {**column, "text": "query", "x": query, "xanchor": "right"},
        {**column, "text": "key", "x": key, "xanchor": "left"},
    ]


def _caption_note(plan: _Plan, plot_height: float) -> dict:
    return {
        "text": "<br>".join(plan.caption),
        "showarrow": False,
        "xref": "paper",
        "x": 0,
        "xanchor": "left",
        "yref": "paper",
        "y": -10 / plot_height,
        "yanchor": "top",
        "align": "left",
        "font": {"size": plan.font, "color": "#444444"},
    }


def _headview_layout(plan: _Plan, width: int, height: int, rows: int, annotations: list[dict], *, revision) -> dict:
    """Fixed size (the labels are laid out for this canvas), one pair of hidden axes in px of the plot area (x) and
    rows (y, the first token on top), the legend of heads above the panels and the caption below them;
    ``revision`` keeps the heads a reader hid in the legend hidden while the page redraws that choice."""
    plot_height = max(rows, 1) * plan.row
    legend = {
        "orientation": "h",
        "x": 0,
        "xanchor": "left",
        "y": 1 + (plan.headers + 8) / plot_height,
        "yanchor": "bottom",
        "traceorder": "normal",  # one entry after the other (each head is its own group: no gaps between groups)
        "tracegroupgap": 0,
        "entrywidth": plan.entry,
        "entrywidthmode": "pixels",
        "itemwidth": 30,
        "font": {"size": plan.font},
        "bgcolor": "rgba(0,0,0,0)",
    }
    hidden = {"visible": False, "fixedrange": True}
    drawn = layout(
        "",
        width=width,
        height=height,
        margin={"l": plan.side, "r": plan.side, "t": plan.top, "b": plan.bottom},
        font={"size": plan.font},
        xaxis={**hidden, "range": [0, plan.inner]},
        yaxis={**hidden, "range": [rows - 0.5, -0.5]},
        annotations=annotations,
        legend=legend,
        hovermode="closest",
        hoverdistance=int(plan.label / 2 + 8),
        uirevision=f"headview {revision}",
        meta={"natural_size": True, "columns": plan.columns, "label": round(plan.label, 1)},
    )
    drawn["title"] |= {"yref": "container", "y": 1 - 8 / height, "yanchor": "top", "font": {"size": plan.font * 1.15}}
    return drawn
