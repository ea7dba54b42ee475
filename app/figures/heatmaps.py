"""Views 2-4: the head grid, the attention matrices and the token scores per layer (and the word query).

The panel figures (matrices, token scores, word query) are laid out in px for the canvas they are drawn for
(:func:`_arrange`): tick labels as large as the canvas's text, every label shown when it fits (column labels turned
vertical before any is left out, and "1 label in N" said on the axis when some must be), and the colour bars in a
column right of the panels, or above their own panel when the panels are stacked (a single-column figure), so no bar
covers a panel or a label. Colour-bar numbers are plain decimals on round steps (:func:`app.figures.theme
.colorbar_ticks`), never "200μ".
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from app.core.options import DPI, HEAD_METRICS, PAIR_METRICS
from app.figures.models import DIFFERENCE, MODELS, shown_models, shown_panels, single_panel
from app.figures.sentence import SIGNED_SCALE, method_phrase
from app.figures.theme import (
    CHAR_EM,
    DIVERGING,
    MODEL_LABELS,
    MODEL_SCALES,
    NEUTRAL_SCALE,
    Canvas,
    Figure,
    axis_key,
    axis_ref,
    colorbar_ticks,
    colorbar_width,
    empty_figure,
    figure,
    layout,
    panel_title,
    symmetric_range,
    tick_labels,
)

SMALLEST_PX = 7 * DPI / 72 + 0.05  # 7 pt: no text of an export is smaller
NARROW = 640  # px: below this canvas width the matrices are stacked, one above the other
OFF_SCALE = "#D9D9D9"  # cells left off the colour scale (special and traced tokens): grey, never read as 0
EMPTY_SHARE = 0.05  # a colour this close to white is not told from white: such leading layers are not drawn
BAR = 10  # px: a colour bar's thickness
GAP = 22  # px between side-by-side panels
BAR_GAP = 16  # px between two colour bars of the right margin
_NARROW_CHARS = frozenset("ijlrtfI.,;:!|'()[]{} ")  # about 0.3 em in Arial / Helvetica
_WIDE_CHARS = frozenset("mwMW@%")  # about 0.85 em


def text_sizes(canvas: Canvas) -> tuple[float, float, float]:
    """(text, tick label, title) px on ``canvas``: the page's 12, 10 and 15 px at its 13 px font; an export's preset
    font, 0.65 of it for tick labels (never under 7 pt: so 7 pt in the column presets, 9 pt on a slide), and the
    title 15 % larger (as the export sets)."""
    if not canvas.static:
        scale = canvas.font_px / 13
        return 12 * scale, 10 * scale, 15 * scale
    return canvas.font_px, max(SMALLEST_PX, 0.65 * canvas.font_px), canvas.font_px * 1.15


def text_px(text: str, font_px: float) -> float:
    """Px ``text`` takes at ``font_px`` in Arial / Helvetica metrics, a little generous (5 %)."""
    em = sum(0.3 if c in _NARROW_CHARS else 0.85 if c in _WIDE_CHARS else 0.68 if c.isupper() else 0.56 for c in text)
    return 1.05 * em * font_px


def _width(labels: Sequence[str], font_px: float) -> float:
    return max((text_px(str(label), font_px) for label in labels), default=0.0)


def _line(font_px: float) -> float:
    return 1.3 * font_px


def _spacing(tick: float) -> float:
    """Px between two tick labels' centres that keeps their boxes (1.15 em tall, their ink well inside) from
    overlapping by more than the figure standard's 2 px: closer ones are thinned."""
    return 1.15 * tick - 1.5


def _wrap(text: str, width: float, font_px: float) -> list[str]:
    return textwrap.wrap(text, width=max(int(width / (CHAR_EM * font_px)), 12)) if text else []


def _title_lines(title: str, canvas: Canvas, title_px: float) -> list[str]:
    """The title's lines as the exporter wraps them (``app.export.files.wrapped_title``: 0.55 em a character over
    the width less 20 px), so the page and the file break it alike and the layout knows how many lines it takes."""
    return textwrap.wrap(title, width=max(int((canvas.width - 20) / (0.55 * title_px)), 10)) or [title]


@dataclass(frozen=True)
class Sides:
    """What surrounds a panel's cells: a label per row and per column, the axis titles, whether the column labels
    may be turned vertical (tokens) rather than thinned, whether the columns are counts (heads: plotly then
    picks round ticks that fit the width the page draws, which the server does not know), and ``compact`` column
    labels with their axis title, used when the full ones do not fit flat ("3" under "after layer" for "after 3")."""

    rows: Sequence[str]
    columns: Sequence[str]
    x_title: str
    y_title: str
    turn: bool = False
    numeric: bool = False
    compact: tuple[Sequence[str], str] | None = None


@dataclass(frozen=True)
class Arrangement:
    """Px layout of a panel figure (see :func:`_arrange`): paper domains of each panel, margins, height, text sizes,
    the column labels' angle, every how many row / column labels are shown (1 = all), a panel's width and the
    height above each panel for its title (and, stacked, its colour bar), and the plot area's height."""

    stacked: bool
    x_domains: list[list[float]]
    y_domains: list[list[float]]
    margin: dict
    height: int
    text: float
    tick: float
    title: float
    angle: int
    column_step: int
    row_step: int
    panel_px: float
    header: float
    plot_h: float
    title_text: str
    title_pad: float
    notes: str


PAGE_PX = 8.5 * 96  # px: a journal page's text height (9 in) less room for an export's title lines
MIN_ROW_PX = 3.0  # px: the shortest row a stacked panel gets, however many tokens


def _arrange(
    count: int,
    sides: Sides,
    canvas: Canvas,
    *,
    title: str,
    notes: Sequence[str] = (),
    stacked: bool = False,
    row_px: float = 15.0,
    square: bool = False,
    bar_px: float = 50.0,
    bars_tall: float = 0.0,
) -> Arrangement:
    """Lay ``count`` panels out on ``canvas``: side by side on one shared row axis labelled left of the first, the
    colour bars in a right margin of ``bar_px``, one above the other (``bars_tall`` px in all, at least); or
    ``stacked`` on one shared column axis labelled under the last, each colour bar above its panel. Rows are
    ``row_px`` tall, or as tall as the columns are wide (``square``, at most 24 px), or taller to hold the colour
    bars; stacked panels are shortened so the figure fits :data:`PAGE_PX`. Labels closer than :func:`_spacing` are
    thinned, column labels turned vertical first."""
    text, tick, title_px = text_sizes(canvas)
    left = _width(sides.rows, tick) + 10 + (_line(text) + 4 if sides.y_title else 0)
    right = 4 + _width(["−0.000"], tick) / 2 if stacked else bar_px + 2
    plot_w = max(canvas.width - left - right, 60.0)
    panel_w = plot_w if stacked else (plot_w - (count - 1) * GAP) / count
    column_px = panel_w / max(len(sides.columns), 1)
    flat = column_px >= _width(sides.columns, tick) + 0.3 * tick
    need = _spacing(tick) if sides.turn else _width(sides.columns, tick) + 0.3 * tick
    column_step = 1 if flat else max(1, math.ceil(need / column_px))
    row = max(row_px, min(column_px, 24.0)) if square else row_px
    if not stacked:
        row = max(row, bars_tall / max(len(sides.rows), 1))
    turned = sides.turn and not flat
    below = (_width(list(sides.columns)[::column_step], tick) if turned else _line(tick)) + 8 + _line(text) + 6
    title_lines = len(_title_lines(title, canvas, title_px))
    # an export keeps one title line here: the exporter adds the room of the others above the plot
    note_lines = [line for note in notes for line in _wrap(note, canvas.width - 20, text)]
    header = (max(_line(text), BAR + 2 + _line(tick)) + 6) if stacked else _line(text) + 4
    top = 8 + (1 if canvas.static else title_lines) * _line(title_px) + 8 + len(note_lines) * _line(text) + header
    if stacked:  # panels one above the other fit a page: rows get shorter, their labels thinned (and said)
        gaps = (count - 1) * (header + 10)
        row = max(min(row, (PAGE_PX - top - below - gaps) / (count * max(len(sides.rows), 1))), MIN_ROW_PX)
    row_step = max(1, math.ceil(_spacing(tick) / row))
    panel_h = row * len(sides.rows)
    plot_h = count * panel_h + (count - 1) * (header + 10) if stacked else panel_h
    if stacked:
        tops = [i * (panel_h + header + 10) for i in range(count)]
        y_domains = [[round(1 - (t + panel_h) / plot_h, 6), round(1 - t / plot_h, 6)] for t in tops]
        x_domains = [[0.0, 1.0]] * count
    else:
        step = (panel_w + GAP) / plot_w
        x_domains = [[round(i * step, 6), min(round(i * step + panel_w / plot_w, 6), 1.0)] for i in range(count)]
        y_domains = [[0.0, 1.0]] * count
    return Arrangement(
        stacked=stacked,
        x_domains=x_domains,
        y_domains=y_domains,
        margin={"l": round(left), "r": round(right), "t": round(top), "b": round(below), "pad": 0},
        height=round(top + plot_h + below),
        text=text,
        tick=tick,
        title=title_px,
        angle=-90 if turned else 0,
        column_step=column_step,
        row_step=row_step,
        panel_px=panel_w,
        header=header,
        plot_h=plot_h,
        # the page's title is wrapped here; an export's by the exporter, which makes room above the plot for it
        title_text=title if canvas.static else "<br>".join(_title_lines(title, canvas, title_px)),
        # plotly anchors a title's first line: its last line must clear the notes and the panels' headers
        title_pad=header + len(note_lines) * _line(text) + 6 + (title_lines - 1) * _line(title_px),
        notes="<br>".join(note_lines),
    )


def grid_shapes(
    selected: tuple[int, int | None] | None,
    num_heads: int,
    num_layers: int,
    *,
    panels: int = 1,
    shown_heads: Sequence[int] | None = None,
) -> list[dict]:
    """Layout shapes of a layers × heads grid with ``panels`` panels: an outline on the selected (layer, head)
    cell (the whole layer when ``head`` is None), and a white veil over the heads the 'Heads' filter leaves out
    (``shown_heads``; None = all)."""
    shapes = []
    for panel in range(1, panels + 1):
        refs = {"xref": axis_ref("x", panel), "yref": "y"}  # side by side panels share their y axis
        for head in sorted(set(range(num_heads)) - set(shown_heads if shown_heads is not None else range(num_heads))):
            shapes.append(
                {
                    "type": "rect",
                    **refs,
                    "x0": head - 0.5,
                    "x1": head + 0.5,
                    "y0": 0.5,
                    "y1": num_layers + 0.5,
                    "fillcolor": "rgba(255,255,255,0.72)",
                    "line": {"width": 0},
                }
            )
        if selected is not None:
            layer, head = selected
            x0, x1 = (head - 0.5, head + 0.5) if head is not None else (-0.5, num_heads - 0.5)
            shapes.append(
                {
                    "type": "rect",
                    **refs,
                    "x0": x0,
                    "x1": x1,
                    "y0": layer - 0.5,
                    "y1": layer + 0.5,
                    "line": {"color": "black", "width": 3},
                }
            )
    return shapes


def _heads_note(shown_heads: Sequence[int] | None, num_heads: int) -> str:
    if shown_heads is None or len(shown_heads) == num_heads:
        return ""
    return "heads outside the 'Heads' filter veiled"


def _by_layer_and_head(frame: pd.DataFrame, values: pd.Series) -> np.ndarray:
    """``[layer, head]``: ``values`` (one per row of ``frame``, whose ``layer`` counts from 1 and ``head`` from 0)
    on a grid of every layer and head, NaN where a head has no row."""
    grid = np.full((int(frame["layer"].max()), int(frame["head"].max()) + 1), np.nan)
    grid[frame["layer"].to_numpy() - 1, frame["head"].to_numpy()] = values.to_numpy()
    return grid


def make_head_grid(
    heads: pd.DataFrame,
    *,
    metric: str = "js_divergence",
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    shown_heads: Sequence[int] | None = None,
) -> Figure:
    """Layers x heads, coloured by ``metric`` (a column family of :func:`attention.compare_heads`).

    Metrics comparing the models (JS divergence, TV, cosine) are shown as they are; per-model statistics show
    the chosen model, or in comparison mode the fine-tuned minus pre-trained difference. Clicking a cell selects
    the head (the click's x is the head, y the layer); heads outside ``shown_heads`` are veiled.
    """
    if metric not in HEAD_METRICS:
        raise ValueError(f"metric must be one of {', '.join(HEAD_METRICS)}, got {metric!r}")
    if metric in PAIR_METRICS:
        values, label, scale, signed = heads[metric], HEAD_METRICS[metric], NEUTRAL_SCALE, False
    elif (panel := single_panel(mode)) == DIFFERENCE:
        values = heads[f"{metric}_finetuned"] - heads[f"{metric}_pretrained"]
        label, scale, signed = f"{HEAD_METRICS[metric]}: fine-tuned − pre-trained", DIVERGING, True
    else:
        values, label = heads[f"{metric}_{panel}"], f"{HEAD_METRICS[metric]} ({MODEL_LABELS[panel]})"
        scale, signed = MODEL_SCALES[panel], False
    z = _by_layer_and_head(heads, values)
    layers, num_heads = z.shape
    bound = symmetric_range(z)
    trace = {"colorscale": scale, "colorbar": {"thickness": 12, **colorbar_ticks(bound, signed=signed)}}
    if signed:
        trace |= {"zmid": 0.0, "zmin": -bound, "zmax": bound}
    heatmap = {
        "type": "heatmap",
        "z": z,
        "x": list(range(num_heads)),
        "y": list(range(1, layers + 1)),
        "hovertemplate": "layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>",
        **trace,
    }
    note = _heads_note(shown_heads, num_heads)
    return figure(
        [heatmap],
        layout(
            f"Heads: {label}" + (f" ({note})" if note else ""),
            height=120 + 38 * layers,
            xaxis={"title": {"text": "head"}, "tickmode": "linear", "dtick": 1},
            yaxis={"title": {"text": "layer"}, "tickmode": "linear", "dtick": 1},
            shapes=grid_shapes(selected, num_heads, layers, shown_heads=shown_heads),
        ),
    )


def make_word_query(
    received: pd.DataFrame,
    *,
    word: str,
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    shown_heads: Sequence[int] | None = None,
    canvas: Canvas | None = None,
) -> Figure:
    """The word query as layers × heads grids: the attention ``word`` receives in every head (a frame of
    :func:`attention.attention_received`), one panel per model on one scale plus their difference in
    comparison mode. Clicking a cell selects the head."""
    panels = shown_panels(mode)
    peak = max(float(received[list(shown_models(mode))].to_numpy().max()), 1e-9)
    traces, scales = [], {}
    for panel in panels:
        z = _by_layer_and_head(received, received[panel])
        layers, num_heads = z.shape
        bound = symmetric_range(z)
        scales[panel] = (DIVERGING, -bound, bound) if panel == DIFFERENCE else (MODEL_SCALES[panel], 0.0, peak)
        traces.append(
            {
                "z": z,
                "x": list(range(num_heads)),
                "y": list(range(1, layers + 1)),
                "hovertemplate": "layer %{y}, head %{x}<br>received %{z:.3f}<extra>" + MODEL_LABELS[panel] + "</extra>",
            }
        )
    sides = Sides(rows=[str(layer) for layer in range(1, layers + 1)], columns=[str(h) for h in range(num_heads)],
                  x_title="head", y_title="layer", numeric=True)  # fmt: skip
    note = _heads_note(shown_heads, num_heads)
    return _panel_figure(
        panels,
        traces,
        scales=scales,
        sides=sides,
        canvas=canvas or Canvas(),
        title=f"Word query: attention '{word}' receives",
        notes=["Mean over all tokens" + (f"; {note}." if note else ".")],
        row_px=38.0,
        values=(list(range(num_heads)), list(range(1, layers + 1))),
        shapes=grid_shapes(selected, num_heads, layers, panels=len(panels), shown_heads=shown_heads),
    )


def top_heads(received: pd.DataFrame, mode: str, count: int = 5) -> pd.DataFrame:
    """The heads the word query lists: in comparison mode the largest changes (by magnitude), else the heads
    where the word receives most. Columns ``layer, head, value``."""
    column = single_panel(mode)
    order = received[column].abs() if column == DIFFERENCE else received[column]
    ranked = received.assign(value=received[column], order=order).nlargest(count, "order")
    return ranked[["layer", "head", "value"]].reset_index(drop=True)


def segment_lines(start: int | None, panels: int, *, columns: bool, stacked: bool = False) -> list[dict]:
    """Dashed lines before row ``start`` (and column, when ``columns``) of every panel: where the second
    segment of a sentence pair begins. Side-by-side panels share one row axis, ``stacked`` ones one column axis."""
    if start is None:
        return []
    line = {"color": "#333333", "width": 1, "dash": "dash"}
    shapes = []
    for panel in range(1, panels + 1):
        x, y = axis_ref("x", 1 if stacked else panel), axis_ref("y", panel if stacked else 1)
        shapes.append({"type": "line", "xref": f"{x} domain", "x0": 0, "x1": 1, "yref": y, "y0": start - 0.5,
                       "y1": start - 0.5, "line": line})  # fmt: skip
        if columns:
            shapes.append({"type": "line", "yref": f"{y} domain", "y0": 0, "y1": 1, "xref": x, "x0": start - 0.5,
                           "x1": start - 0.5, "line": line})  # fmt: skip
    return shapes


Scale = tuple[list, float, float]  # a colour scale and its range (low, high)


def _bar_groups(panels: Sequence[str], scales: dict[str, Scale]) -> list[list[str]]:
    """Panels drawn on the same colours and range (e.g. both models on a signed scale): one colour bar each group."""
    groups: list[list[str]] = []
    for panel in panels:
        same = [group for group in groups if scales[group[0]] == scales[panel]]
        if same:
            same[0].append(panel)
        else:
            groups.append([panel])
    return groups


def _bar_title(group: Sequence[str]) -> str:
    """What a side-by-side colour bar is the scale of: its panel, or "both models" when they share it."""
    if len(group) > 1:
        return "both models"
    return "difference" if group[0] == DIFFERENCE else MODEL_LABELS[group[0]]


def _bars_px(panels: Sequence[str], scales: dict[str, Scale], tick: float) -> float:
    """Px of the right margin's colour bars: the widest of them with its title turned along it, and padding."""
    widest = max(colorbar_width(scales[p][2], signed=scales[p][1] < 0, font_px=tick, thickness=BAR) for p in panels)
    return 12 + widest + _line(tick) + 2


def _bars_tall(panels: Sequence[str], scales: dict[str, Scale], tick: float) -> float:
    """Px the right margin's colour bars need, one above the other: each a line of text per tick label and one
    more, or its title's length if that is longer."""
    groups = _bar_groups(panels, scales)
    each = [max((len(tick_labels(scales[g[0]][2], signed=scales[g[0]][1] < 0)) + 1) * _line(tick),
                _width([_bar_title(g)], tick) + 6) for g in groups]  # fmt: skip
    return sum(each) + (len(groups) - 1) * BAR_GAP


def _colour_bars(panels: Sequence[str], scales: dict[str, Scale], a: Arrangement) -> dict[str, dict | None]:
    """Each panel's colour bar (None: it shares an earlier panel's). Side by side: one above the other right of the
    panels, placed in px from the plot's right edge, each titled with what it is the scale of; stacked: across the
    top right of its panel, under nothing but its own header. Either way no bar covers a panel or a label, whatever
    the page's width."""
    groups = _bar_groups(panels, scales)
    gap = BAR_GAP / a.plot_h
    band = (1 - gap * (len(groups) - 1)) / len(groups)
    bars: dict[str, dict | None] = {panel: None for panel in panels}
    for g, group in enumerate(groups):
        _, low, high = scales[group[0]]
        common = {"thickness": BAR, "thicknessmode": "pixels", "outlinewidth": 0, "ticks": "outside", "ticklen": 3,
                  "tickfont": {"size": a.tick}, **colorbar_ticks(high, signed=low < 0)}  # fmt: skip
        if a.stacked:
            top = a.y_domains[panels.index(group[0])][1]
            length = min(0.45 * a.panel_px, a.panel_px - _width(["fine-tuned − pre-trained"], a.text) - 16)
            bars[group[0]] = {**common, "orientation": "h", "len": max(length, 80.0), "lenmode": "pixels",
                              "x": 1.0, "xanchor": "right", "xpad": 0, "y": top + 3 / a.plot_h, "yanchor": "bottom",
                              "ypad": 0}  # fmt: skip
        else:
            high_y = 1 - g * (band + gap)
            bars[group[0]] = {**common, "len": band, "lenmode": "fraction", "x": 1.0, "xanchor": "left", "xpad": 6,
                              "y": high_y - band / 2, "yanchor": "middle", "ypad": 0,
                              "title": {"text": _bar_title(group), "side": "right",
                                        "font": {"size": a.tick}}}  # fmt: skip
    return bars


def _axes(count: int, sides: Sides, a: Arrangement, values: tuple[list, list], xaxis: dict, yaxis: dict) -> dict:
    """The layout's axes: side by side, one x axis per panel and one shared y axis left of the first; stacked, one y
    axis per panel and one shared x axis under the last. Tick labels thinned as ``a`` says, and said so."""
    steps = {"x": 1 if sides.numeric else a.column_step, "y": a.row_step}
    titles = {"x": sides.x_title, "y": sides.y_title}
    for letter, step in steps.items():
        if step > 1:
            named = letter if titles[letter] else "x"  # a row axis without a title says it on the column axis
            rows = "" if named == letter else " (rows)"
            titles[named] += f"; 1 label in {step}{rows}"

    def axis(letter: str, labels: Sequence[str], ticks: list, domain: list[float], extra: dict) -> dict:
        anchor = axis_ref("y", count if a.stacked else 1) if letter == "x" else "x"
        title = {"text": titles[letter], "font": {"size": a.text}, "standoff": 6} if titles[letter] else None
        shown = ({"tickmode": "auto", "nticks": len(labels)} if sides.numeric and letter == "x" else
                 {"tickmode": "array", "tickvals": list(ticks)[:: steps[letter]],
                  "ticktext": list(labels)[:: steps[letter]]})  # fmt: skip
        return {**shown, "tickfont": {"size": a.tick}, "showgrid": False, "zeroline": False, "automargin": True,
                **extra, "domain": domain, "anchor": anchor, "title": title}  # fmt: skip

    axes = {}
    once = _width([titles["x"]], a.text) > a.panel_px  # too wide for a panel: said once, under the middle one
    for index in range(1, count + 1):
        if not a.stacked or index == count:
            axes[axis_key("x", 1 if a.stacked else index)] = axis(
                "x", sides.columns, values[0], a.x_domains[index - 1], {**xaxis, "tickangle": a.angle}
            )
            if once and not a.stacked and index != (count + 1) // 2:
                axes[axis_key("x", index)]["title"] = None
        if a.stacked or index == 1:
            axes[axis_key("y", index)] = axis("y", sides.rows, values[1], a.y_domains[index - 1], yaxis)
    return axes


def _panel_figure(
    panels: Sequence[str],
    traces: list[dict],
    *,
    scales: dict[str, Scale],
    sides: Sides,
    canvas: Canvas,
    title: str,
    values: tuple[list, list],
    notes: Sequence[str] = (),
    stacked: bool = False,
    row_px: float = 15.0,
    square: bool = False,
    xaxis: dict | None = None,
    yaxis: dict | None = None,
    shapes: Sequence[dict] = (),
    background: str = "white",
) -> Figure:
    """Heatmap panels (one trace dict with a ``[rows, columns]`` ``z`` per panel) laid out by :func:`_arrange`
    for ``canvas``, each on its colour scale (``scales[panel]``: the models share a range, each in its own colours;
    the difference has a diverging one). ``values`` are the x and y values of the columns and rows (labelled by
    ``sides``); ``notes`` are lines under the title; ``background`` shows through blank (NaN) cells. Exports keep
    this size (``meta.natural_size``): it was laid out for the export's canvas."""
    tick = text_sizes(canvas)[1]
    bars = {"bar_px": _bars_px(panels, scales, tick), "bars_tall": 0.0 if stacked else _bars_tall(panels, scales, tick)}
    a = _arrange(len(panels), sides, canvas, title=title, notes=notes, stacked=stacked, row_px=row_px,
                 square=square, **bars)  # fmt: skip
    if sides.compact and (a.column_step > 1 or a.angle):
        sides = replace(sides, columns=sides.compact[0], x_title=sides.compact[1], compact=None)
        a = _arrange(len(panels), sides, canvas, title=title, notes=notes, stacked=stacked, row_px=row_px,
                     square=square, **bars)  # fmt: skip
    bars = _colour_bars(panels, scales, a)
    data, annotations = [], []
    for index, (panel, trace) in enumerate(zip(panels, traces, strict=True), start=1):
        colourscale, low, high = scales[panel]
        data.append({"type": "heatmap", **trace, "xaxis": axis_ref("x", 1 if stacked else index),
                     "yaxis": axis_ref("y", index if stacked else 1), "colorscale": colourscale, "zmin": low,
                     "zmax": high, "showscale": bars[panel] is not None,
                     **({"colorbar": bars[panel]} if bars[panel] is not None else {})})  # fmt: skip
        # with room to spare: the page may draw a panel narrower than the canvas it was laid out for
        roomy = _width([MODEL_LABELS[panel]], a.text) * (1 if canvas.static else 1.5) <= a.panel_px
        label = MODEL_LABELS[panel] if roomy else "difference"
        where = {"x": 0.0, "xanchor": "left"} if stacked else {}
        annotations.append({**panel_title(label, a.x_domains[index - 1]), **where, "y": a.y_domains[index - 1][1],
                            "yshift": 2, "font": {"size": a.text}})  # fmt: skip
    if a.notes:
        annotations.append(
            {"text": a.notes, "x": 0, "xanchor": "left", "xshift": 8 - a.margin["l"], "y": 1, "yanchor": "bottom",
             "yshift": a.header, "xref": "paper", "yref": "paper", "showarrow": False, "align": "left",
             "font": {"size": a.text, "color": "#444"}}
        )  # fmt: skip
    axes = _axes(len(panels), sides, a, values, xaxis or {}, yaxis or {})
    fig = figure(
        data,
        layout(a.title_text, height=a.height, margin=a.margin, annotations=annotations, shapes=list(shapes),
               plot_bgcolor=background, meta={"natural_size": True}, **axes),
    )  # fmt: skip
    fig["layout"]["font"]["size"] = a.text
    fig["layout"]["title"] |= {"yref": "paper", "y": 1.0, "yanchor": "bottom", "font": {"size": a.title},
                               "pad": {"b": round(a.title_pad)}}  # fmt: skip
    return fig


def make_matrix(
    matrices: pd.DataFrame,
    *,
    tokens: Sequence[str],
    mode: str = "comparison",
    caption: str = "",
    what: str = "Attention",
    other: int | None = None,
    canvas: Canvas | None = None,
    segment_start: int | None = None,
) -> Figure:
    """Attention matrices (query rows, key columns) from :func:`attention.attention_matrices`: side by side, or
    stacked when the ``canvas`` is narrow (a single-column figure), on one shared key axis.

    Axes are categories ``"<token> (#<position>)"`` (unique even when a word repeats) shown as the bare token, so
    hovering names both tokens without an n x n array of strings. ``other`` is the position of a long input's
    folded tokens (:mod:`app.core.fold`): its row and column do not set the top of the colour scales (its column
    sums many tokens and may exceed it). Every label is shown when it fits (key labels turned vertical first), else
    every k-th with "1 label in k" on the axis. A dashed line marks ``segment_start``, the first token of a pair's
    second segment."""
    panels = shown_panels(mode)
    n = len(tokens)
    canvas = canvas or Canvas()
    stacked = len(panels) > 1 and canvas.width < NARROW
    scaled = matrices["model"] != DIFFERENCE
    unfolded = np.ones(len(matrices), dtype=bool)
    if other is not None:
        unfolded = ((matrices["query_idx"] != other) & (matrices["key_idx"] != other)).to_numpy()
    peak = float(matrices.loc[scaled & unfolded, "weight"].max()) if (scaled & unfolded).any() else 1.0
    changes = matrices.loc[~scaled & unfolded, "weight"].to_numpy()
    bound = symmetric_range(changes)
    names = [f"{token} (#{i})" for i, token in enumerate(tokens)]  # unique, as every token hover names a token
    share = "weight" if what == "Attention" else "share"
    traces = []
    for panel in panels:
        rows = matrices[matrices["model"] == panel]
        z = np.zeros((n, n))
        z[rows["query_idx"].to_numpy(), rows["key_idx"].to_numpy()] = rows["weight"].to_numpy()
        traces.append(
            {
                "z": z.round(4),  # hover shows 3 decimals; full float64 digits would double the payload
                "x": names,
                "y": names,
                "hovertemplate": f"%{{y}} → %{{x}}<br>{share} %{{z:.3f}}<extra>{MODEL_LABELS[panel]}</extra>",
            }
        )
    scales = {panel: (MODEL_SCALES[panel], 0.0, max(peak, 1e-9)) for panel in panels if panel != DIFFERENCE}
    scales[DIFFERENCE] = (DIVERGING, -bound, bound)
    tick = text_sizes(canvas)[1]
    return _panel_figure(
        panels,
        traces,
        scales=scales,
        sides=Sides(rows=tokens, columns=tokens, x_title="key (attended to)", y_title="query", turn=True),
        canvas=canvas,
        title=f"{what} matrix {caption}".strip(),
        values=(names, names),
        stacked=stacked,
        row_px=0.0 if stacked else 1.25 * tick,
        square=True,
        xaxis={"type": "category"},
        yaxis={"type": "category", "autorange": "reversed"},
        shapes=segment_lines(segment_start, len(panels), columns=True, stacked=stacked),
    )


def _layer_name(layer: int) -> str:
    return "embeddings" if layer == 0 else f"after {layer}"


def _layers_said(layers: Sequence[int]) -> str:
    """``[0, 1, 2]`` → "the embeddings and layers 1–2"; ``[1]`` → "layer 1"."""
    named = [layer for layer in layers if layer]
    span = "" if not named else f"layer {named[0]}" if len(named) == 1 else f"layers {named[0]}–{named[-1]}"
    return " and ".join(part for part in ("the embeddings" if 0 in layers else "", span) if part)


def _first_drawn(values: np.ndarray, peak: float) -> int:
    """The first column of ``values`` ``[row, column]`` (the scaled cells of every shown model) holding a colour
    told from white: at least :data:`EMPTY_SHARE` of ``peak``. Earlier columns are left out of the figure."""
    with np.errstate(invalid="ignore"):
        strongest = np.nanmax(np.where(np.isfinite(values), np.abs(values), -1.0), axis=0)
    drawn = np.flatnonzero(strongest >= EMPTY_SHARE * peak)
    return int(drawn[0]) if drawn.size else 0


def _score_grids(relevance: pd.DataFrame) -> tuple[list[int], list[int], dict[str, np.ndarray]]:
    """The frame's layers, token positions, and per model (and the difference) a ``[token, layer]`` grid of its
    scores (NaN where the frame has no row)."""
    layers = sorted(int(x) for x in relevance["layer"].unique())
    positions = sorted(int(t) for t in relevance["token_idx"].unique())
    row_of, column_of = {t: i for i, t in enumerate(positions)}, {layer: j for j, layer in enumerate(layers)}
    grids = {}
    for panel in (*MODELS, DIFFERENCE):
        grids[panel] = np.full((len(positions), len(layers)), np.nan)
        grids[panel][relevance["token_idx"].map(row_of), relevance["layer"].map(column_of)] = relevance[panel]
    return layers, positions, grids


def _hover_rows(labels: list[str], columns: int) -> list[list[str]]:
    """``[rows, columns]`` hover text: each row's label (a token and its position, which tells repeated words
    apart) in every column."""
    return np.asarray(labels, dtype=object)[:, None].repeat(columns, axis=1).tolist()


def make_influence(
    relevance: pd.DataFrame,
    *,
    tokens: Sequence[str],
    method: str = "class_relevance",
    mode: str = "comparison",
    scale_without: Sequence[int] = (),
    target: str | None = None,
    source: str = "[CLS]",
    missing: dict[str, str] | None = None,
    segment_start: int | None = None,
    measure: str | None = None,
    canvas: Canvas | None = None,
) -> Figure:
    """Tokens x layers: each token's score after every layer, for each model and the difference (a relevance
    frame: ``layer, token_idx, pretrained, finetuned, difference``; layer 0 = the embeddings, input × gradient).
    Only the shown tokens are rows. Tokens in ``scale_without`` (special and traced tokens) are off every colour
    scale, the difference's too: grey, their value in the hover. Leading layers whose every score is too small to
    be told from white (:data:`EMPTY_SHARE` of the largest) are left out, and the figure says so.
    ``missing[model]`` replaces that model's panel by a sentence; a dashed line marks ``segment_start`` (the row
    where a pair's second segment begins)."""
    missing = missing or {}
    panels = [p for p in shown_panels(mode) if p not in missing and not (p == DIFFERENCE and missing)]
    if not panels:
        return empty_figure(" ".join(missing.values()))
    canvas = canvas or Canvas()
    layers, positions, grids = _score_grids(relevance)
    off = np.isin(positions, list(scale_without))
    scaled = ~off if (~off).any() else np.ones_like(off)
    counted = np.concatenate([grids[m][scaled] for m in MODELS if m not in missing])
    finite = counted[np.isfinite(counted)]
    signed = bool(finite.size and finite.min() < 0)
    peak = max(float(np.abs(finite).max() if signed else finite.max()) if finite.size else 1.0, 1e-9)
    first = _first_drawn(counted, peak)
    notes = list(missing.values())
    if first:
        notes.append(f"{_layers_said(layers[:first]).capitalize()} not drawn: every score there is under "
                     f"{EMPTY_SHARE:.0%} of the largest.")  # fmt: skip
    layers = layers[first:]
    shown_tokens = [tokens[t] for t in positions]
    if off.any():
        grey = ", ".join(dict.fromkeys(np.asarray(shown_tokens, dtype=object)[off]))
        notes.append(f"Grey: {grey}, off the colour scale" + ("." if canvas.static else " (value in the hover)."))
    labels = _hover_rows([f"{token} (#{p})" for token, p in zip(shown_tokens, positions, strict=True)], len(layers))
    names, short = [_layer_name(layer) for layer in layers], ["emb." if x == 0 else str(x) for x in layers]
    traces, scales = [], {}
    for panel in panels:
        values = grids[panel][:, first:]
        z = np.where(off[:, None], np.nan, values)
        bound = symmetric_range(z)
        scales[panel] = ((DIVERGING, -bound, bound) if panel == DIFFERENCE
                         else (SIGNED_SCALE, -peak, peak) if signed else (MODEL_SCALES[panel], 0.0, peak))  # fmt: skip
        traces.append(
            {
                "z": z,
                "customdata": values,
                "hoverongaps": True,
                "x": names,
                "y": list(range(len(positions))),
                "text": labels,
                "hovertemplate": "<b>%{text}</b>, %{x}: %{customdata:.4f}<extra>" + MODEL_LABELS[panel] + "</extra>",
            }
        )
    title = "Token scores per layer: " + method_phrase(method, target=target, source=source, layer=0, measure=measure)
    tick = text_sizes(canvas)[1]
    return _panel_figure(
        panels,
        traces,
        scales=scales,
        sides=Sides(shown_tokens, names, "layer", "", compact=(short, "after layer")),
        canvas=canvas,
        title=title,
        values=(names, list(range(len(positions)))),
        notes=notes,
        row_px=max(15.0, 1.3 * tick),
        xaxis={"type": "category"},
        yaxis={"autorange": "reversed"},
        shapes=segment_lines(segment_start, len(panels), columns=False),
        background=OFF_SCALE,
    )
