"""View 6: the input as text, each token on a background coloured by how much it matters (the chosen relevance
method), laid out and wrapped like a paragraph.

Comparison mode interleaves three rows per line of text — pre-trained, fine-tuned, and fine-tuned − pre-trained —
so one word's boxes are stacked and line up. Tokens are set in a monospaced font, so a box's width is known exactly
from its characters and boxes never overlap (:func:`wrap_tokens`); the layout is computed for the pixel width of
the card (or the export), given as a :class:`~app.figures.theme.Canvas`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.core.options import CLASS_METHODS, METHODS
from app.figures.models import shown_models
from app.figures.theme import (
    DIVERGING,
    MODEL_LABELS,
    MONO_EM,
    MONO_FONT,
    Canvas,
    Figure,
    colours_at,
    figure,
    layout,
    readable_text_colour,
    symmetric_range,
)
from attention.relevance_methods import relevance_method

RELEVANCE_SCALE = [[0.0, "#FFFFFF"], [0.5, "#B79FD1"], [1.0, "#4A2377"]]  # white -> purple: neither model's colour
SIGNED_SCALE = [[0.0, "#1B7837"], [0.5, "#FFFFFF"], [1.0, "#4A2377"]]  # green <- 0 -> purple (input × gradient)
PAD = 3  # px of background on each side of a token's text
SMALLEST = 7 * 96 / 72 + 0.05  # px: 7 pt, the smallest text a figure may have (labels, ticks, notes)
GAP = 4  # px between two boxes on a line
LABEL_WIDTH = 84  # px of left margin for the row labels on a wide canvas
SANS_EM = 0.56  # advance of a letter of the row labels' sans-serif font, in em (Arial / Helvetica: ~0.5-0.56)
RIGHT = 12  # px of right margin
COLOURBAR_ROOM = 58  # px below the text for the horizontal colour bars, plus one line of their tick labels
TITLE_ROOM = 46  # px above the text for the title
ROW_LABELS = {"pretrained": "pre-trained", "finetuned": "fine-tuned", "difference": "difference"}
NARROW = 640  # px: below this canvas width, stacked colour bars and a left margin just wide enough for the labels


def summary_layer(relevance: pd.DataFrame) -> int:
    """The layer the sentence view summarises: the deepest in the frame (0 for input × gradient, or for a frame
    with no layer: neither model could be explained)."""
    deepest = relevance["layer"].max() if len(relevance) else np.nan
    return 0 if pd.isna(deepest) else int(deepest)


def method_phrase(method: str, *, target: str | None, source: str, layer: int, measure: str | None = None) -> str:
    """What a relevance number means, in words: for the titles of the sentence and influence views; a graph
    method names the ``measure`` it ran over."""
    if method in CLASS_METHODS:
        what = METHODS[method]
        cls = f"class '{target}'" if target else "the predicted class"
        layered = relevance_method(method).layered and layer
        return f"{what} for {cls}" + (f", after layer {layer}" if layered else "")
    over = f" over {measure}" if measure else ""
    return f"{METHODS[method]}{over} of {source}" + (f", after layer {layer}" if layer else "")


def wrap_tokens(
    labels: Sequence[str], *, width: float, font_px: float, breaks: Sequence[int] = ()
) -> list[tuple[float, float, int]]:
    """Place tokens as text: ``(x0, x1, line)`` per token, in px from the left, wrapping at ``width``.

    A box is the text's width in the monospaced font (``len × MONO_EM × font_px``) plus :data:`PAD` on each
    side; boxes on a line are :data:`GAP` apart. A token wider than the line gets a line of its own. ``breaks``
    are token positions that start a new line (the second segment of a pair).
    """
    placed, x, line = [], 0.0, 0
    for index, label in enumerate(labels):
        box = len(label) * MONO_EM * font_px + 2 * PAD
        if (x > 0 and x + box > width) or (index in breaks and x > 0):
            x, line = 0.0, line + 1
        placed.append((x, x + box, line))
        x += box + GAP
    return placed


def sentence_scale(values: np.ndarray) -> tuple[list, float, float]:
    """``(colour scale, zmin, zmax)`` for the model rows, from the values that count (finite, not special):
    0 → max when none is negative (class relevance, attention methods), else symmetric around 0 (input ×
    gradient). The top of the scale is the largest word value of either model, so the rows compare and exactly
    the strongest word reaches full colour (documented in docs/method.md §0)."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        bound = symmetric_range(finite)
        return SIGNED_SCALE, -bound, bound
    peak = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return RELEVANCE_SCALE, 0.0, peak


@dataclass(frozen=True)
class _Scores:
    """The deepest layer's scores as the sentence view draws them, per token in order (``[tokens]`` arrays)."""

    layer: int
    positions: np.ndarray  # [tokens] the tokens' positions (``token_idx``)
    labels: list[str]  # [tokens] their text
    counted: np.ndarray  # [tokens] bool: sets the colour scale (not special, not traced)
    values: dict[str, np.ndarray]  # row -> [tokens] scores; rows: the present models and maybe "difference"
    present: list[str]  # the shown models that have rows (not ``missing``)
    rows: list[str]  # the rows of each line of text: ``present``, plus "difference" when both models are
    scales: dict[str, tuple[list, float, float]]  # row -> (colour scale, low, high)


def _scores(
    relevance: pd.DataFrame, tokens: Sequence[str], *, mode: str, missing: dict[str, str], scale_without: Sequence[int]
) -> _Scores:
    """The :class:`_Scores` of a relevance frame (``layer, token_idx, pretrained, finetuned``): both model rows
    on one :func:`sentence_scale`, the difference on a diverging scale symmetric around 0."""
    present = [m for m in shown_models(mode) if m not in missing]
    rows_shown = present + (["difference"] if len(present) == 2 else [])
    layer = summary_layer(relevance)
    at = np.flatnonzero(relevance["layer"].to_numpy() == layer)  # numpy: a frame's boolean selection costs more
    at = at[np.argsort(relevance["token_idx"].to_numpy()[at], kind="stable")]
    positions = relevance["token_idx"].to_numpy()[at]
    labels = [str(label) for label in np.asarray(tokens, dtype=object)[positions]]
    counted = ~np.isin(positions, list(scale_without))
    values = {m: relevance[m].to_numpy(dtype=float)[at] for m in present}
    if len(present) == 2:
        values["difference"] = values["finetuned"] - values["pretrained"]
    model_values = np.concatenate([values[m][counted] for m in present]) if present else np.zeros(0)
    scale, zmin, zmax = sentence_scale(model_values)
    diff_bound = symmetric_range(values["difference"][counted]) if "difference" in values else 1.0
    scales = {m: (scale, zmin, zmax) for m in present} | {"difference": (DIVERGING, -diff_bound, diff_bound)}
    return _Scores(layer, positions, labels, counted, values, present, rows_shown, scales)


@dataclass(frozen=True)
class _Page:
    """Where the sentence view puts things, in px (y down from the top of the plot area)."""

    font: float  # the text's size
    row_height: float  # one row of boxes
    group: float  # one line of text: all its rows and the space below them
    top: float  # the notes of the missing models above the first line
    notes: list[dict]  # their annotations
    narrow: bool  # short row labels, stacked colour bars
    label_width: int  # the left margin, for the row labels
    row_labels: dict[str, str]
    text_width: float  # the width the text wraps at
    bars: int  # colour bars: 1, or 2 with a difference row
    room: int  # the bottom margin, for the colour bars
    starts: list[int]  # token indices that begin a pair's second segment
    placed: list[tuple[float, float, int]]  # [tokens] (x0, x1, line) of :func:`wrap_tokens`
    lines: int
    height: float  # the plot area


def _page(scores: _Scores, canvas: Canvas, *, mode: str, missing: dict[str, str], segments) -> _Page:
    """The :class:`_Page` of ``scores`` on ``canvas``: tokens wrapped to the text width, a note per missing
    model above them."""
    font = canvas.font_px
    line_height, row_height = font * 2.0, font * 1.55
    narrow = canvas.width < NARROW
    longest = max(len(ROW_LABELS[row]) for row in scores.rows) if scores.rows else 0  # the labels, never cut
    label_width = int(longest * SANS_EM * _label_size(font)) + 10 if narrow else LABEL_WIDTH
    text_width = canvas.width - label_width - RIGHT
    bars = 2 if "difference" in scores.rows else 1
    room = int((COLOURBAR_ROOM + font) * (bars if narrow else 1))
    starts = _segment_starts(scores.positions, segments)
    placed = wrap_tokens(scores.labels, width=text_width, font_px=font, breaks=starts)
    lines = placed[-1][2] + 1 if placed else 0
    notes, top = [], 0.0
    size = _note_size(font)
    for model in (m for m in shown_models(mode) if m in missing):  # a model with no rows: say why, wrapped
        said = textwrap.wrap(f"{MODEL_LABELS[model]}: {missing[model]}", width=int(text_width / (SANS_EM * size)))
        notes.append(_note("<br>".join(said), y=top, font_px=font))
        top += size * 1.45 * len(said) + font * 0.8  # plotly's line height is ~1.3 em: room to spare
    group = row_height * len(scores.rows) + line_height * 0.6
    height = top + group * max(lines, 1)
    return _Page(font, row_height, group, top, notes, narrow, label_width, ROW_LABELS, text_width, bars, room,
                 starts, placed, lines, height)  # fmt: skip


def make_sentence(
    relevance: pd.DataFrame,
    *,
    tokens: Sequence[str],
    method: str = "class_relevance",
    mode: str = "comparison",
    scale_without: Sequence[int] = (),
    target: str | None = None,
    source: str = "[CLS]",
    missing: dict[str, str] | None = None,
    segments: Sequence[int] | None = None,
    canvas: Canvas | None = None,
    measure: str | None = None,
) -> Figure:
    """The input as wrapped text from a relevance frame (``layer, token_idx, pretrained, finetuned``) at its
    deepest layer: one row of boxes per model per line, plus the difference in comparison mode.

    Both model rows share one colour scale (:func:`sentence_scale`) with its colour bar; the difference row has
    a diverging one. Tokens in ``scale_without`` (special tokens, the traced tokens) do not set the scale and are
    drawn uncoloured with a grey outline; every value is in the hover. ``missing[model]`` is a sentence shown
    instead of that model's rows (e.g. no classification head); there is then no difference row. ``segments``
    (per token, 0/1) starts the second segment of a pair on a new line, marked "segment B".
    """
    canvas = canvas or Canvas()
    missing = missing or {}
    scores = _scores(relevance, tokens, mode=mode, missing=missing, scale_without=scale_without)
    page = _page(scores, canvas, mode=mode, missing=missing, segments=segments)
    shapes, traces, annotations = [], [], list(page.notes)
    for r, row in enumerate(scores.rows):
        boxes, trace, row_labels = _text_row(scores, page, r, row)
        shapes += boxes
        annotations += row_labels
        traces.append(trace)
        if row in ("finetuned", "difference") or (row == scores.rows[0] and len(scores.present) == 1):
            x, length, bottom = _bar_place(0 if row != "difference" else 1, bars=page.bars, narrow=page.narrow)
            bottom += page.font  # slack below the tick labels: a PDF viewer's font may be a little taller
            total = page.height + TITLE_ROOM + page.room
            row_scale, low, high = scores.scales[row]
            traces.append(_colour_bar(row_scale, low, high, x=x, length=length, y=bottom / total, font=page.font))
            annotations.append(_colour_bar_title(row, len(scores.present), x=x, shift=bottom + 32 - page.room,
                                                 font=page.font, method=method))  # fmt: skip
    for start in page.starts:
        x0, _, line = page.placed[start]
        annotations.append(_segment_mark(x0, page.top + line * page.group - 1, page.font))
    title = "Sentence: " + method_phrase(method, target=target, source=source, layer=scores.layer, measure=measure)
    margin = {"l": page.label_width, "r": RIGHT, "t": TITLE_ROOM, "b": page.room}
    drawn = figure(
        traces,
        layout(
            title,
            width=canvas.width,
            height=int(page.height + margin["t"] + margin["b"]),
            margin=margin,
            annotations=annotations,
            xaxis={"visible": False, "range": [0, page.text_width], "fixedrange": True},
            yaxis={"visible": False, "range": [page.height, 0], "fixedrange": True},
            hovermode="closest",
            meta={"natural_size": True},
        ),
    )
    drawn["layout"]["shapes"] = shapes  # one box per token and row, never a None in them (:func:`_box`): not walked
    return drawn


def _text_row(scores: _Scores, page: _Page, r: int, row: str) -> tuple[list[dict], dict, list[dict]]:
    """Row ``r`` (``row``: a model or the difference) of every line of text: a box per token coloured by its
    score (uncoloured, outlined: not counted or not finite), the text trace with the scores in its hover, and
    the row's label on every line."""
    row_scale, low, high = scores.scales[row]
    values = scores.values[row]
    shapes, xs, ys, colours = [], [], [], []
    coloured = scores.counted & np.isfinite(values)
    fills = iter(colours_at(row_scale, (values[coloured] - low) / (high - low)))
    for i, (x0, x1, line) in enumerate(page.placed):
        y0 = page.top + line * page.group + r * page.row_height
        fill = next(fills) if coloured[i] else None
        shapes.append(_box(x0, x1, y0, y0 + page.row_height - 2, fill))
        xs.append((x0 + x1) / 2)
        ys.append(y0 + (page.row_height - 2) / 2)
        colours.append(readable_text_colour(fill) if fill else "#555555")
    labels = [
        _row_label(page.row_labels[row], y=page.top + line * page.group + (r + 0.5) * page.row_height, font=page.font)
        for line in range(page.lines)
    ]
    trace = {
        "type": "scatter",
        "mode": "text",
        "x": xs,
        "y": ys,
        "text": list(scores.labels),
        "customdata": values,
        # the token and its position (#n), which tells a repeated word's occurrences apart
        "hovertext": [f"{label} (#{p})" for label, p in zip(scores.labels, scores.positions.tolist(), strict=True)],
        "textfont": {"family": MONO_FONT, "size": page.font, "color": colours},
        "hovertemplate": "<b>%{hovertext}</b>: %{customdata:.4f}<extra>" + MODEL_LABELS[row] + "</extra>",
        "showlegend": False,
    }
    return shapes, trace, labels


def _segment_starts(positions: np.ndarray, segments: Sequence[int] | None) -> list[int]:
    """Indices (into ``positions``) where the second segment of a pair begins."""
    if segments is None:
        return []
    segment = np.asarray(segments)[positions]
    return [i for i in range(1, len(segment)) if segment[i] != segment[i - 1]]


def _box(x0: float, x1: float, y0: float, y1: float, fill: str | None) -> dict:
    line = {"width": 0} if fill else {"width": 1, "color": "#AAAAAA"}
    return {
        "type": "rect",
        "xref": "x",
        "yref": "y",
        "x0": x0,
        "x1": x1,
        "y0": y0,
        "y1": y1,
        "fillcolor": fill or "rgba(0,0,0,0)",
        "line": line,
        "layer": "below",
    }


def _bar_place(slot: int, *, bars: int, narrow: bool) -> tuple[float, float, float]:
    """``(x, length, bottom px)`` of colour bar ``slot`` (0: the models' scale, 1: the difference): side by side
    below the text, or stacked on a narrow canvas."""
    if narrow:
        return 0.0, 0.9, float(COLOURBAR_ROOM * (bars - 1 - slot))
    return (0.0 if slot == 0 else 0.55), 0.42, 0.0


def _colour_bar_title(row: str, models: int, *, x: float, shift: float, font: float, method: str = "") -> dict:
    """The title above a colour bar of :func:`_colour_bar` (Plotly's own title overlaps a horizontal bar);
    ``shift`` is the px from the plot's bottom edge to the title's baseline (negative: below it). DecompX's bar
    says what its sign means."""
    what = relevance_method(method).unit if method else "score"
    return {
        "text": (f"{what} (both model rows)" if models == 2 else what)
        if row != "difference"
        else "difference: fine-tuned − pre-trained",
        "x": x,
        "y": 0,
        "yshift": shift,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "left",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": max(font - 2, SMALLEST), "color": "#333"},
    }


def _colour_bar(scale: list, low: float, high: float, *, x: float, length: float, y: float, font: float) -> dict:
    """An invisible trace that draws one horizontal colour bar below the text, its bottom at ``y`` (fraction of
    the figure's height)."""
    return {
        "type": "scatter",
        "mode": "markers",
        "x": [None],
        "y": [None],
        "hoverinfo": "skip",
        "showlegend": False,
        "marker": {
            "color": [low],
            "colorscale": scale,
            "cmin": low,
            "cmax": high,
            "showscale": True,
            "colorbar": {
                "orientation": "h",
                "thickness": 8,
                "len": length,
                "x": x,
                "xanchor": "left",
                "y": y,
                "yref": "container",
                "yanchor": "bottom",
                "ypad": 4,
                "tickfont": {"size": max(font - 3, SMALLEST)},
                "nticks": 5,
                "tickangle": 0,
            },
        },
    }


def _row_label(text: str, *, y: float, font: float) -> dict:
    return {
        "text": text,
        "x": 0,
        "xshift": -6,
        "y": y,
        "xref": "paper",
        "yref": "y",
        "xanchor": "right",
        "yanchor": "middle",
        "showarrow": False,
        "font": {"size": _label_size(font), "color": "#555"},
    }


def _label_size(font: float) -> float:
    """The row labels' text size for a text of ``font`` px: a little smaller, never under 7 pt."""
    return max(font - 3, SMALLEST)


def _note_size(font: float) -> float:
    """The notes' text size (a model with no rows) for a text of ``font`` px: a little smaller, never under 7 pt."""
    return max(font - 2, SMALLEST)


def _segment_mark(x: float, y: float, font: float) -> dict:
    return {
        "text": "segment B ↓",
        "x": x,
        "y": y,
        "xref": "x",
        "yref": "y",
        "xanchor": "left",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": max(font - 4, SMALLEST), "color": "#555"},
    }


def _note(text: str, *, y: float, font_px: float) -> dict:
    return {
        "text": text,
        "x": 0,
        "y": y,
        "xref": "x",
        "yref": "y",
        "xanchor": "left",
        "yanchor": "top",
        "align": "left",
        "showarrow": False,
        "font": {"size": _note_size(font_px), "color": "#555"},
    }
