"""Every option a user can set, defined once: vocabularies, ranges, defaults and their validation.

The command line's choices, the page's controls, the export presets, the sidecar and the callbacks all derive
from this module; nothing else lists them. Validation refuses a bad value with an :class:`OptionError` that names
the option, the value and what is allowed; nothing is clamped or wrapped silently. Imports only the standard
library, :mod:`attention.defaults` and :mod:`attention.relevance_methods`, so the command line can check its flags
before numpy, pandas or torch load.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from attention.defaults import DEFAULT_ALPHA, DEFAULT_MEASURE, DEFAULT_TAU, MEASURE_LABELS, RESIDUAL_MEASURES
from attention.errors import AttentionFlowsError
from attention.relevance_methods import RELEVANCE_METHODS, method_names

VIEWS: dict[str, str] = {
    "sankey": "Attention graph (Sankey)",
    "network": "Attention network",
    "sentence": "Which words matter",
    "heads": "Head grid",
    "similarity": "Head similarity",
    "matrix": "Attention matrix",
    "thumbnails": "Every head",
    "influence": "Token scores per layer",
    "headview": "Head view (bertviz)",
}
MODES: dict[str, str] = {"comparison": "Comparison", "pretrained": "Pre-trained", "finetuned": "Fine-tuned"}
HIDE_KINDS: dict[str, str] = {"special": "special tokens", "punctuation": "punctuation"}
AGGREGATIONS: dict[str, str] = {"mean": "mean", "max": "max"}
LEVELS: dict[str, str] = {"token": "sub-words", "word": "words"}
ARRANGEMENTS: dict[str, str] = {"rings": "token rings", "columns": "columns"}  # the network view
HEAD_METRICS: dict[str, str] = {
    "js_divergence": "JS divergence between models (bits)",
    "tv_distance": "total variation between models",
    "cosine": "cosine similarity between models",
    "entropy": "entropy (bits)",
    "to_cls": "attention to [CLS]",
    "to_sep": "attention to [SEP]",
    "to_punct": "attention to punctuation",
    "to_self": "attention to the token itself",
    "to_prev": "attention to the previous token",
    "to_next": "attention to the next token",
    "contribution_share": "contribution share of the layer's mixing",
}
PAIR_METRICS = ("js_divergence", "tv_distance", "cosine")
CLASS_METHODS = method_names("class")  # need a classification head and a target class
GRADIENT_METHODS = method_names(from_gradients=True)  # from one backward pass (attention.gradients)
# over the chosen measure (MEASURES), in the page's order: the product's own method first
GRAPH_METHODS = ("graph", "rollout", "flow", "raw_attention")
if set(GRAPH_METHODS) != set(method_names("graph")):
    raise AssertionError("GRAPH_METHODS must list attention.relevance_methods' graph family")
# The relevance menu: the class-specific methods first (they answer "why this class"), then the graph methods.
METHODS: dict[str, str] = {name: RELEVANCE_METHODS[name].label for name in (*CLASS_METHODS, *GRAPH_METHODS)}
# The token views' default: a method both models have, so the first page compares them (a class method explains only
# the fine-tuned classifier); rollout over the default measure (ALTI) is the most faithful of those per layer
# (docs/faithfulness.md). DecompX, the most faithful class-specific method, is one click away.
DEFAULT_METHOD = "rollout"
MEASURES: dict[str, str] = MEASURE_LABELS  # what the graph methods and views are drawn over (attention.defaults)
PREDICTED = "predicted"
TRACE_ALL = "all"  # "trace from every token (mean)" in the page and on the command line

# Long inputs: above FOLD_ABOVE shown tokens (or words), the matrices, the token scores and the Sankey keep the
# top_k by the current relevance (plus special, hidden and traced tokens) and fold the rest into one "other".
FOLD_ABOVE = 40
TOP_K_CHOICES: dict[int, str] = {20: "top 20", 30: "top 30", 50: "top 50", 0: "all tokens"}
TOP_K_RANGE = (0, 2048)  # 0 = never fold
TAU_RANGE = (0.0, 1.0)
ALPHA_RANGE = (0.0, 1.0)

# Export: formats, size presets, and the limits the server enforces (the page's own inputs stay inside them).
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
DPI = 96  # plotly sizes are CSS pixels
WIDTH_RANGE = (100, 4000)  # px, before the PNG scale
CANVAS_WIDTH_RANGE = (320, 4000)  # px a laid-out view (sentence, network) is drawn for in the page
SCALE_RANGE = (0.5, 8.0)  # PNG resolution multiplier
MAX_RENDER_SIDE = 10_000  # px after scaling: Chromium draws nothing beyond ~16k, so refuse well before
MAX_RENDER_PIXELS = 40_000_000  # width × height × scale² (a 40-megapixel PNG is ~10-40 MB)
DEFAULT_PNG_SCALE = 300 / 96  # 300 dpi


@dataclass(frozen=True)
class SizePreset:
    """Target size in inches and the base font size in points."""

    label: str
    width_in: float
    height_in: float
    font_pt: float
    short: str = ""  # the page's compact label


PRESETS: dict[str, SizePreset] = {
    "single": SizePreset("single column (3.5 in)", 3.5, 2.8, 7.0, "1 column"),
    "double": SizePreset("double column (7.2 in)", 7.16, 4.5, 8.0, "2 columns"),
    "slide": SizePreset("slide (16:9)", 13.33, 7.5, 14.0, "slide"),
}


class OptionError(AttentionFlowsError):
    """An option has a value of the wrong type or outside its range."""


def _allowed(choices) -> str:
    return ", ".join(str(c) for c in choices)


def check_choice(name: str, value: object, choices) -> str:
    """``value`` if it is one of ``choices`` (a dict's keys or a sequence)."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"Option '{name}' is {value!r}.", f"Use one of: {_allowed(choices)}.")
    return value


def check_number(name: str, value: object, low: float, high: float) -> float:
    """A finite real number in ``[low, high]`` (booleans, strings, NaN and infinities refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OptionError(f"Option '{name}' is {value!r}, not a number.", f"Give a number from {low:g} to {high:g}.")
    if not low <= value <= high:
        raise OptionError(
            f"Option '{name}' is {value:g}; it must lie in [{low:g}, {high:g}].", "Choose a value in range."
        )
    return float(value)


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """A whole number in ``[low, high]`` (``high`` None: no upper bound); floats like ``3.0`` accepted."""
    whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise OptionError(f"Option '{name}' is {value!r}, not a whole number.", "Give a whole number.")
    value = int(value)
    top = "" if high is None else f" to {high}"
    if value < low or (high is not None and value > high):
        raise OptionError(f"Option '{name}' is {value}; it must be from {low}{top}.", "Choose a value in range.")
    return value


def check_list(name: str, value: object) -> list:
    """A list (or tuple) value; None is the empty list."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise OptionError(f"Option '{name}' is {value!r}, not a list.", "Give a list of values.")
    return list(value)


def check_flag(name: str, value: object, *, default: bool) -> bool:
    """A boolean option from a checklist value (a list: ticked when non-empty), a bool, or None (the default)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        return bool(value)
    raise OptionError(f"Option '{name}' is {value!r}.", "Give true / false (or a checklist value).")


def parse_range(name: str, text: str) -> tuple[int, int]:
    """``"FIRST:LAST"`` (or one number) as two whole numbers, e.g. layers ``2:6``."""
    first, sep, last = text.strip().partition(":")
    try:
        return int(first), int(last if sep else first)
    except ValueError:
        raise OptionError(f"Option '{name}' is {text!r}.", "Write FIRST:LAST, e.g. 2:6.") from None


def parse_head(text: str) -> tuple[int, int]:
    """``"LAYER:HEAD"`` (both required), e.g. ``6:3``."""
    layer, sep, head = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError
        return int(layer), int(head)
    except ValueError:
        raise OptionError(
            f"Option 'head' is {text!r}.", "Write LAYER:HEAD, e.g. 6:3 (layers from 1, heads from 0)."
        ) from None


def parse_numbers(name: str, text: str) -> list[int]:
    """Comma-separated whole numbers, e.g. ``0,3,7``."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise OptionError(f"Option '{name}' is {text!r}.", "Write comma-separated numbers, e.g. 0,3,7.") from None


@dataclass(frozen=True)
class ViewOptions:
    """Every choice that shapes a view. Hashable, so it can key caches.

    ``layers`` is a 1-based inclusive range (None = all), ``heads`` a head subset (None = all), ``sources`` token
    positions to trace from at the current ``level``, before hiding (empty = the classification token;
    ``trace_all`` = the mean of every token). Every number is computed on the model's token-level weights: ``level``
    and ``hide`` only change what is drawn (``renormalize`` re-scales the rows of hidden matrices, and says so).
    ``aggregation`` combines heads for the matrices and for the graph's threshold τ. ``target`` is the class the
    class methods explain (a label, or ``"predicted"``); ``sinks`` makes the graph absorb attention into special
    tokens. ``top_k`` folds long inputs (:data:`FOLD_ABOVE`; 0 = never). ``word`` is the word query's
    position at ``level`` (the head grid then shows the attention it receives); ``arrangement`` lays out the network
    view. ``measure`` is what the graph methods and views are drawn over (:data:`MEASURES`: raw attention, or a
    context-mixing measure). Ranges that depend on the model
    and the input are checked by :meth:`checked`.
    """

    mode: str = "comparison"
    layers: tuple[int, int] | None = None
    heads: tuple[int, ...] | None = None
    tau: float = DEFAULT_TAU
    alpha: float = DEFAULT_ALPHA
    aggregation: str = "mean"
    level: str = "token"
    sources: tuple[int, ...] = ()
    hide: tuple[str, ...] = ()
    metric: str = "js_divergence"
    method: str = DEFAULT_METHOD
    target: str = PREDICTED
    sinks: bool = True
    trace_all: bool = False
    renormalize: bool = False
    top_k: int = 30
    word: int | None = None
    arrangement: str = "rings"
    measure: str = DEFAULT_MEASURE

    @property
    def graph_alpha(self) -> float:
        """The residual share the graph uses: ``alpha``, or 0 for a measure that already holds the residual."""
        return 0.0 if self.measure in RESIDUAL_MEASURES else self.alpha

    @property
    def graph_heads(self) -> tuple[int, ...] | None:
        """The heads the graph averages: ``heads`` over raw attention; None over a measure (one map per layer)."""
        return self.heads if self.measure == "raw_attention" else None

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_number("tau", self.tau, *TAU_RANGE)
        check_number("alpha", self.alpha, *ALPHA_RANGE)
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        check_choice("level", self.level, LEVELS)
        for kind in self.hide:
            check_choice("hide", kind, HIDE_KINDS)
        check_choice("metric", self.metric, HEAD_METRICS)
        check_choice("method", self.method, METHODS)
        if not isinstance(self.target, str) or not self.target.strip() or len(self.target) > 200:
            raise OptionError(f"Option 'target' is {self.target!r}.", f"Give a class name or '{PREDICTED}'.")
        if self.layers is not None:
            first, last = (check_int("layers", v, 1) for v in self.layers)
            if first > last:
                raise OptionError(
                    f"Option 'layers' is {first}:{last}; the first layer is after the last.",
                    "Write FIRST:LAST with FIRST <= LAST.",
                )
        if self.heads is not None:
            if not self.heads:
                raise OptionError("Option 'heads' is empty.", "Give at least one head, or none for all heads.")
            for head in self.heads:
                check_int("heads", head, 0)
        for source in self.sources:
            check_int("sources", source, 0)
        check_int("top_k", self.top_k, *TOP_K_RANGE)
        check_choice("arrangement", self.arrangement, ARRANGEMENTS)
        check_choice("measure", self.measure, MEASURES)
        if self.word is not None:
            check_int("word", self.word, 0)

    @classmethod
    def from_controls(cls, **values) -> ViewOptions:
        """Build from raw control values (the page's, the command line's, a sidecar's): lists, None for cleared
        controls. Every value's type is checked; the message names the option."""
        known = {f.name for f in fields(cls)}
        if unknown := set(values) - known:
            raise OptionError(
                f"Unknown option(s): {', '.join(sorted(unknown))}.", f"Known options: {', '.join(sorted(known))}."
            )
        layers = check_list("layers", values.get("layers"))
        if layers and len(layers) != 2:
            raise OptionError(f"Option 'layers' is {layers!r}.", "Give two layers, FIRST and LAST.")
        heads = check_list("heads", values.get("heads"))
        sources = check_list("sources", values.get("sources"))
        trace_all = check_flag("trace_all", values.get("trace_all"), default=False) or TRACE_ALL in sources
        hide = check_list("hide", values.get("hide"))
        tau, alpha = values.get("tau"), values.get("alpha")
        return cls(
            mode=_text(values, "mode", "comparison"),
            layers=tuple(check_int("layers", x, 1) for x in layers) if layers else None,
            heads=tuple(sorted({check_int("heads", h, 0) for h in heads})) if heads else None,
            tau=DEFAULT_TAU if tau is None else check_number("tau", tau, *TAU_RANGE),
            alpha=DEFAULT_ALPHA if alpha is None else check_number("alpha", alpha, *ALPHA_RANGE),
            aggregation=_text(values, "aggregation", "mean"),
            level=_text(values, "level", "token"),
            sources=() if trace_all else tuple(sorted({check_int("sources", s, 0) for s in sources})),
            hide=tuple(sorted({check_choice("hide", h, HIDE_KINDS) for h in hide})),
            metric=_text(values, "metric", "js_divergence"),
            method=_text(values, "method", DEFAULT_METHOD),
            target=_text(values, "target", PREDICTED),
            sinks=check_flag("sinks", values.get("sinks"), default=True),
            trace_all=trace_all,
            renormalize=check_flag("renormalize", values.get("renormalize"), default=False),
            top_k=30 if values.get("top_k") is None else check_int("top_k", values["top_k"], *TOP_K_RANGE),
            word=None if values.get("word") is None else check_int("word", values["word"], 0),
            arrangement=_text(values, "arrangement", "rings"),
            measure=_text(values, "measure", DEFAULT_MEASURE),
        )

    def checked(self, num_layers: int, num_heads: int, num_positions: int) -> ViewOptions:
        """The options if every layer, head and source exists for this model and input (``num_positions`` at
        ``level``); "all layers" and "all heads" are spelled None, so equal choices key the same cache entries."""
        layers = self.layers
        if layers is not None:
            for layer in layers:
                check_int("layers", layer, 1, num_layers)
            layers = None if layers == (1, num_layers) else layers
        heads = self.heads
        if heads is not None:
            for head in heads:
                check_int("heads", head, 0, num_heads - 1)
            heads = None if heads == tuple(range(num_heads)) else heads
        for source in self.sources:
            check_int("sources", source, 0, num_positions - 1)
        if self.word is not None:
            check_int("word", self.word, 0, num_positions - 1)
        return replace(self, layers=layers, heads=heads)

    def to_dict(self) -> dict:
        """JSON-ready form (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ViewOptions:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        if not isinstance(data, dict):
            raise OptionError(f"The options are {type(data).__name__}, not a mapping.", "Give option: value pairs.")
        return cls.from_controls(**data)


def _text(values: dict, name: str, default: str) -> str:
    value = values.get(name)
    return default if value is None else value


def check_selected_head(data: object, num_layers: int, num_heads: int) -> tuple[int, int | None]:
    """(layer, head) from the selection store ``{"layer": L, "head": H or None}``; None: the top layer's mean."""
    if data is None:
        return num_layers, None
    if not isinstance(data, dict):
        raise OptionError(f"The selected head is {data!r}.", "Click a cell of the head grid to select a head.")
    layer = check_int("selected layer", data.get("layer", num_layers), 1, num_layers)
    head = data.get("head")
    return layer, None if head is None else check_int("selected head", head, 0, num_heads - 1)


@dataclass(frozen=True)
class ExportOptions:
    """Format and size of an exported figure. Pixel sizes are CSS pixels before the PNG ``scale``."""

    fmt: str
    preset: str = "double"
    width: int | None = None
    height: int | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_choice("format", self.fmt, FORMATS)
        check_choice("preset", self.preset, PRESETS)
        for name in ("width", "height"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), *WIDTH_RANGE)
        check_number("scale", self.scale, *SCALE_RANGE)
        width, height, _ = self.pixels()
        scale = self.scale if self.fmt == "png" else 1.0
        if max(width, height) * scale > MAX_RENDER_SIDE or width * height * scale**2 > MAX_RENDER_PIXELS:
            raise OptionError(
                f"A {width} × {height} px figure at scale {scale:g} is {width * scale:.0f} × {height * scale:.0f} "
                "pixels, more than the exporter can draw.",
                f"Keep each side × scale at most {MAX_RENDER_SIDE:,} px and the area at most "
                f"{MAX_RENDER_PIXELS / 1e6:.0f} megapixels (lower the scale, or use SVG / PDF).",
            )

    def pixels(self) -> tuple[int, int, float]:
        """(width px, height px, font px) from the preset and any explicit size."""
        preset = PRESETS[self.preset]
        font = preset.font_pt * DPI / 72
        return int(self.width or round(preset.width_in * DPI)), int(self.height or round(preset.height_in * DPI)), font

    @classmethod
    def create(cls, fmt: object, *, preset=None, width=None, height=None, scale=None) -> ExportOptions:
        """From raw values (the page, the command line): lower-cased format, the default preset and PNG scale."""
        fmt = fmt.lower().lstrip(".") if isinstance(fmt, str) else fmt
        if scale is None:
            scale = DEFAULT_PNG_SCALE if fmt == "png" else 1.0
        return cls(fmt=fmt, preset=preset or "double", width=width, height=height, scale=scale)
