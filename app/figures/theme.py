"""Colours and shared layout. One colour per model everywhere (Okabe-Ito, colour-blind safe)."""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Figure = dict[str, Any]
"""A Plotly figure as a plain dict, ``{"data": [trace, ...], "layout": {...}}``. Dash sends it and kaleido renders
it as it is. Building ``go.Figure`` objects instead runs plotly's per-property validation, 15-30 ms per figure on
the dashboard's hot path (plain dicts are what plotly's maintainers advise for fast Dash apps); the tests
validate every figure with ``go.Figure(fig)``."""

PRETRAINED = "#0072B2"  # blue
FINETUNED = "#D55E00"  # vermillion
SHARED = "#7F7F7F"  # grey
MODEL_COLOURS = {"pretrained": PRETRAINED, "finetuned": FINETUNED}
STATUS_COLOURS = {"shared": SHARED, "pretrained_only": PRETRAINED, "finetuned_only": FINETUNED}
# What a comparison link's colour says: where the attention on that edge is at or above τ (docs/method.md §1).
STATUS_LABELS = {
    "shared": "attention ≥ τ in both models",
    "pretrained_only": "≥ τ only in the pre-trained model",
    "finetuned_only": "≥ τ only in the fine-tuned model",
}
# What a comparison node's colour says: which models' traces reach that token.
REACH_LABELS = {
    "shared": "token reached by both traces",
    "pretrained_only": "reached only by the pre-trained trace",
    "finetuned_only": "reached only by the fine-tuned trace",
}
MODEL_LABELS = {"pretrained": "pre-trained", "finetuned": "fine-tuned", "difference": "fine-tuned − pre-trained"}
# Sequential scales per model (white -> model colour) and a diverging scale (pre-trained <- white -> fine-tuned).
MODEL_SCALES = {
    "pretrained": [[0.0, "#FFFFFF"], [1.0, PRETRAINED]],
    "finetuned": [[0.0, "#FFFFFF"], [1.0, FINETUNED]],
}
DIVERGING = [[0.0, PRETRAINED], [0.5, "#FFFFFF"], [1.0, FINETUNED]]
NEUTRAL_SCALE = "Viridis"
FONT = "Inter, Helvetica, Arial, sans-serif"


@functools.lru_cache(maxsize=256)
def rgba(hex_colour: str, alpha: float) -> str:
    """``#RRGGBB`` -> ``rgba(r, g, b, alpha)`` (a few colours, drawn thousands of times: remembered)."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha:.2f})"


def figure(data: list[dict], layout: dict) -> Figure:
    """A :data:`Figure` from traces (dicts with a ``type``) and a layout; ``None`` layout values mean unset."""
    return {"data": data, "layout": _without_none(layout)}


_NESTED = (dict, list)


def _without_none(value: Any) -> Any:
    """``value`` with every dict's None entries dropped, at any depth (a list's scalars are kept as they are).
    Exact types are checked (a figure's parts are plain dicts and lists): ``isinstance`` with a union costs ~3×."""
    if type(value) is dict:
        return {key: _without_none(item) if type(item) in _NESTED else item
                for key, item in value.items() if item is not None}  # fmt: skip
    if type(value) is list:
        return [_without_none(item) if type(item) in _NESTED else item for item in value]
    return value


def layout(title: str, *, height: int | None = None, **extra) -> dict:
    """The shared look as a layout dict."""
    base = {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        "font": {"family": FONT, "size": 12},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "height": height,
    }
    return base | extra


def panel_domains(count: int, gap: float = 0.09) -> list[list[float]]:
    """Horizontal domains of ``count`` side-by-side panels."""
    width = (1.0 - gap * (count - 1)) / count
    return [[round(i * (width + gap), 6), min(round(i * (width + gap) + width, 6), 1.0)] for i in range(count)]


def axis_key(axis: str, index: int) -> str:
    """Layout key of the ``index``-th (1-based) x or y axis: ``xaxis``, ``xaxis2``, ..."""
    return axis + "axis" + ("" if index == 1 else str(index))


def axis_ref(axis: str, index: int) -> str:
    """Trace reference of the ``index``-th axis: ``x``, ``x2``, ..."""
    return axis + ("" if index == 1 else str(index))


def panel_title(text: str, domain: list[float]) -> dict:
    """An annotation titling one panel."""
    return {
        "text": text,
        "x": sum(domain) / 2,
        "y": 1.0,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 13},
    }


def empty_figure(message: str) -> Figure:
    """A blank figure that says why it is blank."""
    note = {
        "text": message,
        "showarrow": False,
        "font": {"size": 14, "color": "#555"},
        "x": 0.5,
        "y": 0.5,
        "xref": "paper",
        "yref": "paper",
    }
    return figure([], layout("", annotations=[note], xaxis={"visible": False}, yaxis={"visible": False}))


def symmetric_range(values) -> float:
    """Largest magnitude of ``values`` (at least a tiny positive number), for diverging colour scales."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-9)


CHAR_EM = 0.56  # average advance of a digit, letter or sign of FONT, in em (Arial / Helvetica digits: 0.556)


def tick_step(bound: float, *, signed: bool = False) -> float:
    """A round step (1, 2 or 5 × 10^k) for a colour bar from 0 (``signed``: from −bound) to ``bound``: 2 to 5
    steps up to ``bound`` (1 to 2.5 on each side when signed), with as few decimals as that allows.

    >>> tick_step(0.0035), tick_step(0.84), tick_step(0.3), tick_step(0.81, signed=True)
    (0.001, 0.2, 0.1, 0.5)
    """
    bound = max(abs(float(bound)), 1e-12)
    low, high = (1.0, 2.5) if signed else (2.0, 5.0)
    power = 10.0 ** math.floor(math.log10(bound))
    steps = [round(m * power * 10.0**k, 15) for k in (-2, -1, 0) for m in (1, 2, 5)]
    fitting = [step for step in steps if low <= bound / step * (1 + 1e-9) and bound / step <= high * (1 + 1e-9)]
    return min(fitting, key=lambda step: (_decimals(step), step))


def colorbar_ticks(bound: float, *, signed: bool = False) -> dict:
    """Colour-bar tick settings for a scale from 0 (``signed``: from −bound) to ``bound``: round steps
    (:func:`tick_step`), one number format for every tick, never an SI suffix ("200μ" for 0.0002). Merge into a
    trace's ``colorbar``."""
    step = tick_step(bound, signed=signed)
    return {"tickmode": "linear", "tick0": 0.0, "dtick": step, "tickformat": f".{_decimals(step)}f"}


def tick_labels(bound: float, *, signed: bool = False) -> list[tuple[float, str]]:
    """(value, label) of each tick :func:`colorbar_ticks` draws, minus signs as plotly draws them: for colour bars
    labelled by hand and for measuring a colour bar's width."""
    step = tick_step(bound, signed=signed)
    top = math.floor(abs(float(bound)) / step + 1e-9)
    decimals = _decimals(step)
    values = [round(i * step, 12) for i in range(-top if signed else 0, top + 1)]
    return [(v, f"{v:.{decimals}f}".replace("-", "−") if round(v, decimals) else f"{0:.{decimals}f}") for v in values]


def colorbar_width(bound: float, *, signed: bool = False, font_px: float = 12.0, thickness: float = 10.0) -> float:
    """Px a vertical colour bar of :func:`colorbar_ticks` takes: its bar, tick marks and longest label."""
    longest = max(len(label) for _, label in tick_labels(bound, signed=signed))
    return thickness + 8 + longest * CHAR_EM * font_px


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9))


MONO_FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
MONO_EM = 0.61  # advance of one character of MONO_FONT, in em (DejaVu Sans Mono: 0.602; Menlo: 0.602)


@dataclass(frozen=True)
class Canvas:
    """The pixel width a view is laid out for and its text size: the card in the page, or the export's size.

    Views that place text themselves (the sentence view, the network view) need it; the others are autosized.
    ``static``: the figure goes to a file (no hovering or clicking), so its text never asks the reader to interact.
    """

    width: int = 1150
    font_px: float = 13.0
    static: bool = False


def colours_at(scale: list | str, fractions) -> list[str]:
    """``rgb(r, g, b)`` colours at ``fractions`` (clipped to [0, 1]) of a Plotly colour scale: what plotly's
    ``sample_colorscale`` gives, with the scale parsed once instead of every colour's ends parsed again per sample
    (``tests/dashboard/test_figures.py::test_colours_at_are_plotly_s_own_sampled_colours`` checks both agree).

    >>> colours_at([[0, "rgb(0, 0, 0)"], [1, "rgb(255, 255, 255)"]], [0.0, 0.5, 2.0])
    ['rgb(0, 0, 0)', 'rgb(128, 128, 128)', 'rgb(255, 255, 255)']
    """
    if not len(fractions):
        return []
    key = scale if isinstance(scale, str) else tuple(tuple(s) if isinstance(s, list | tuple) else s for s in scale)
    stops, colours = _parsed_scale(key)
    out = []
    for fraction in fractions:
        point = min(max(float(fraction), 0.0), 1.0)
        high = bisect.bisect_left(stops, point)  # plotly's arithmetic, step for step (its colours, to the unit)
        low = high - 1
        between = (point - stops[low]) / (stops[high] - stops[low])
        mixed = (a + between * float(b - a) for a, b in zip(colours[low], colours[high], strict=True))
        red, green, blue = (round(channel * 255.0) for channel in mixed)  # half to even, as plotly rounds
        out.append(f"rgb({red}, {green}, {blue})")
    return out


@functools.lru_cache(maxsize=64)
def _parsed_scale(scale: tuple | str) -> tuple[list[float], list[tuple[float, float, float]]]:
    """A colour scale's stops and colours (channels in [0, 1]), as plotly's ``sample_colorscale`` reads them."""
    from plotly import colors as plotly_colours  # lazy: figures are plain dicts; only colours need plotly

    colorscale = [list(s) if isinstance(s, tuple) else s for s in scale] if isinstance(scale, tuple) else scale
    try:
        plotly_colours.validate_colorscale(colorscale)
    except Exception:  # plotly's PlotlyError: a named scale or bare colours
        colorscale = (plotly_colours.get_colorscale(colorscale) if isinstance(colorscale, str)
                      else plotly_colours.make_colorscale(colorscale))  # fmt: skip
    stops = list(plotly_colours.colorscale_to_scale(colorscale))
    plotly_colours.validate_scale_values(stops)
    return stops, plotly_colours.validate_colors(plotly_colours.colorscale_to_colors(colorscale), colortype="tuple")


def readable_text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``rgb(r, g, b)``, what :func:`colours_at` gives),
    by relative luminance.

    >>> readable_text_colour("rgb(250, 250, 200)"), readable_text_colour("rgb(20.5, 30, 90)")
    ('#000000', '#FFFFFF')
    """
    r, g, b = (float(channel) / 255 for channel in background[background.index("(") + 1 : -1].split(",")[:3])
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "#FFFFFF"
