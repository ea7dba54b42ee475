"""What the graph views (Sankey, network) print beside the drawing — the legend, the caption under it, the notes
over it — laid out for a :class:`~app.figures.theme.Canvas` so that none of it overlaps or is cut, and text widths
measured the way the browser will draw them (Helvetica / Arial advances).

Every colour the views draw has a legend entry; what an entry cannot say in two words the caption says (what a
colour means for links and for nodes, what a link's width is)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.figures.theme import MODEL_COLOURS, MODEL_LABELS, STATUS_COLOURS

SINK_COLOUR = "#C9B26B"  # khaki: a sink node ([CLS] / [SEP] absorb what they receive), unlike any model colour
SOURCE_COLOUR = "#333333"  # the traced token(s)
RESIDUAL_COLOUR = "#BBBBBB"  # the legend's swatch for residual links, drawn as pale tints of the link's colour
NEUTRAL = "#BBBBBB"  # a network token no trace reaches
LINE = 1.3  # line height, in font sizes

# Helvetica / Arial advance widths (Liberation Sans, which Chromium draws for both here, has the same metrics), in
# thousandths of an em; anything else counts as a wide letter.
_ADVANCES = {
    191: "'",
    222: "ijl",
    260: "|",
    278: " !,./:;I[\\]ft",
    333: "()-`r",
    355: '"',
    389: "*",
    469: "^",
    500: "Jckvsxyz‖",
    556: "0123456789#$_?Labdeghnopqué–",
    584: "+<=>~−",
    611: "FTZ",
    667: "&ABEKPSVXY",
    722: "CDHNRUw",
    778: "GOQ",
    833: "Mm",
    889: "%",
    944: "W",
    1000: "…",
    1015: "@",
}


class _Advances(dict):
    """Character → advance in em; a character not listed is 1 em if CJK-wide, else 0.6 em (never stored)."""

    def __missing__(self, char: str) -> float:
        return 1.0 if ord(char) >= 0x2E80 else 0.6


_WIDTH = _Advances({char: width / 1000 for width, chars in _ADVANCES.items() for char in chars})
ELLIPSIS = "…"


def text_px(text: str, font_px: float) -> float:
    """The width in px of ``text`` drawn at ``font_px``."""
    return font_px * sum(map(_WIDTH.__getitem__, text))  # map over a dict: ~4x a generator (every label, every view)


def shorten(text: str, room_px: float, font_px: float) -> str:
    """``text`` if it fits ``room_px``; else its longest beginning that fits with "…" (at least one letter)."""
    if text_px(text, font_px) <= room_px:
        return text
    for end in range(len(text) - 1, 0, -1):
        short = text[:end].rstrip() + ELLIPSIS
        if text_px(short, font_px) <= room_px:
            return short
    return text[:1] + ELLIPSIS


def wrap(text: str, width_px: float, font_px: float) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width_px`` (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split(" "):  # not at a no-break space ("12\u00a0%")
        if not word:
            continue
        if lines and text_px(f"{lines[-1]} {word}", font_px) <= width_px:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


@dataclass(frozen=True)
class Entry:
    """One legend entry: a swatch of ``colour`` (``symbol`` square for links, circle for nodes) and its label."""

    label: str
    colour: str
    symbol: str = "square"


def legend_entries(mode: str, *, view: str) -> list[Entry]:
    """The entries of the ``view``'s (``sankey`` or ``network``) legend in ``mode``: one per colour drawn, labels
    of two or three words (the caption says the rest)."""
    if mode == "comparison":
        entries = [
            Entry("both models", STATUS_COLOURS["shared"]),
            Entry("only pre-trained", STATUS_COLOURS["pretrained_only"]),
            Entry("only fine-tuned", STATUS_COLOURS["finetuned_only"]),
        ]
    else:
        entries = [Entry(f"{MODEL_LABELS[mode]} ≥ τ", MODEL_COLOURS[mode])]
    entries += [Entry("residual (pale)", RESIDUAL_COLOUR), Entry("sink", SINK_COLOUR, "circle")]
    if view == "sankey":
        entries.append(Entry("traced token", SOURCE_COLOUR, "circle"))
    else:
        entries.append(Entry("not reached", NEUTRAL, "circle"))
    return entries


def sankey_caption(mode: str, quantity: str) -> str:
    """What the Sankey's colours and widths mean (``quantity``: what a link carries, e.g. "attention")."""
    sinks = "Sinks ([CLS], [SEP]; a decoder's first token) absorb what they receive; black: the traced token."
    if mode != "comparison":
        return (f"Links: {quantity} ≥ τ; residual (pale): a token keeps its own share. {sinks} "
                f"Link width = the {MODEL_LABELS[mode]} model's share of the traced mass.")  # fmt: skip
    return (
        f"Colour says which models: a link's {quantity} is ≥ τ in both or only one; a node is reached by both "
        "traces or one; residual (pale) and sink links split into the share both models send (grey) and the extra "
        f"one model sends (its colour). {sinks} Link width = mean of both models' shares."
    )


def network_caption(mode: str, quantity: str, steps: str) -> str:
    """What the network's colours and sizes mean; ``steps`` names the line widths' steps (e.g. "< 2 %, …")."""
    sizes = f"Dot size = share of the traced mass; line width: {steps} of it"
    if mode != "comparison":
        return f"Lines: {quantity} ≥ τ; residual (pale): a token keeps its own share; sinks absorb. {sizes}."
    return (
        f"Colour says which models: a line's {quantity} is ≥ τ in both or only one (residual and sink lines: carried "
        f"by both traces or one); a dot is reached by both traces or one. {sizes} (mean of both models)."
    )


def legend_traces(entries: Iterable[Entry], font_px: float) -> list[dict]:
    """One empty marker trace per entry: plotly's legend shows them, the plot stays untouched."""
    return [
        {
            "type": "scatter",
            "x": [None],
            "y": [None],
            "mode": "markers",
            "name": entry.label,
            "marker": {"size": round(font_px * 0.9), "symbol": entry.symbol, "color": entry.colour},
            "hoverinfo": "skip",
        }
        for entry in entries
    ]


SWATCH_PX = 40  # plotly's room for a legend entry's symbol before its text (item width 30 + two gaps of 5)
ITEM_GAP_PX = 5  # plotly's gap between two legend entries


def legend_rows(entries: Sequence[Entry], width: float, font_px: float) -> int:
    """How many rows plotly's horizontal legend takes for ``entries`` in a plot ``width`` px wide: one if they all
    fit side by side, else a grid of columns as wide as the widest entry (plotly's own rule)."""
    items = [SWATCH_PX + text_px(entry.label, font_px) for entry in entries]
    if sum(items) + ITEM_GAP_PX * (len(items) - 1) < width:
        return 1
    column = max(items) + ITEM_GAP_PX
    per_row = 1
    while (per_row + 1) * column - ITEM_GAP_PX < width:  # plotly starts a row when the next entry would reach it
        per_row += 1
    return math.ceil(len(items) / per_row)


def legend_px(entries: Sequence[Entry], width: float, font_px: float) -> float:
    """The height in px of plotly's horizontal legend of ``entries`` (rows of ``max(1.3 em, 16) + 3`` px and
    its padding)."""
    return legend_rows(entries, width, font_px) * (max(font_px * LINE, 16) + 3) + 2 * ITEM_GAP_PX


@dataclass(frozen=True)
class Block:
    """Text laid out for a canvas: its annotations (or legend settings) and the height in px it takes."""

    annotations: list[dict]
    height: float
    legend: dict | None = None


def bottom_block(entries: Sequence[Entry], caption: str, *, width: float, plot_px: float, font_px: float) -> Block:
    """The legend (one horizontal legend under the plot) and the caption under it, wrapped to ``width`` px: their
    settings, positioned in paper units of a plot ``plot_px`` tall, and the height they take below the plot."""
    gap = font_px * 0.8
    legend_height = legend_px(entries, width, font_px)
    lines = wrap(caption, width - 4, font_px)
    legend = {
        "orientation": "h",
        "x": 0.0,
        "xanchor": "left",
        "y": -gap / plot_px,
        "yanchor": "top",
        "font": {"size": font_px},
        "itemclick": False,
        "itemdoubleclick": False,
        "tracegroupgap": 0,
    }
    note = {
        "text": "<br>".join(lines),
        "x": 0.0,
        "xanchor": "left",
        "align": "left",
        "y": -(gap + legend_height + gap / 2) / plot_px,
        "yanchor": "top",
        "xref": "paper",
        "yref": "paper",
        "showarrow": False,
        "font": {"size": font_px, "color": "#444444"},
    }
    return Block([note], gap + legend_height + gap / 2 + len(lines) * font_px * LINE + gap, legend)


def top_notes(notes: Sequence[str], *, width: float, font_px: float, above_px: float) -> Block:
    """Notes (why the view is one-sided, what is hidden or left out) over the plot, wrapped to ``width`` px,
    their last line ``above_px`` px above the plot's top, and the height they take."""
    lines = [line for note in notes for line in wrap(note, width - 4, font_px)]
    if not lines:
        return Block([], 0.0)
    annotation = {
        "text": "<br>".join(lines),
        "x": 0.0,
        "xanchor": "left",
        "align": "left",
        "y": 1.0,
        "yanchor": "bottom",
        "yshift": above_px,
        "xref": "paper",
        "yref": "paper",
        "showarrow": False,
        "font": {"size": font_px, "color": "#8A3B00"},
    }
    return Block([annotation], len(lines) * font_px * LINE + font_px * 0.5)
