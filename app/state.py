"""What the user chose: :class:`ViewOptions`, parsed from raw control values in one place.

The same object drives the dashboard callbacks, the command-line export and the JSON sidecar, so a figure made
in either place can be made again from its sidecar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU

Mode = Literal["comparison", "pretrained", "finetuned"]
MODES: tuple[str, ...] = ("comparison", "pretrained", "finetuned")
HIDE_KINDS: tuple[str, ...] = ("special", "punctuation")
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
}
PAIR_METRICS = ("js_divergence", "tv_distance", "cosine")
METHODS: dict[str, str] = {
    "class_relevance": "class relevance (gradient × attention)",
    "input_x_gradient": "input × gradient",
    "graph": "attention graph (mass reaching the inputs)",
    "rollout": "attention rollout",
    "flow": "attention flow (max-flow)",
    "raw_attention": "raw attention (head mean)",
}
CLASS_METHODS = ("class_relevance", "input_x_gradient")  # need a classification head and a target class
PREDICTED = "predicted"


@dataclass(frozen=True)
class ViewOptions:
    """Every choice that shapes a view. Hashable, so it can key caches.

    ``layers`` is a 1-based inclusive range (None = all), ``heads`` a head subset (None = all), ``sources`` token
    positions to trace from at the current ``level``, before hiding (empty = the classification token;
    ``trace_all`` = the mean of every token). Every number is computed on the model's token-level weights: ``level``
    and ``hide`` only change what is drawn (``renormalize`` re-scales the rows of hidden matrices, and says so).
    ``aggregation`` combines heads for the matrices and for the graph's threshold τ. ``target`` is the class the
    class methods explain (a label, or ``"predicted"``); ``sinks`` makes the graph absorb attention into special
    tokens.
    """

    mode: Mode = "comparison"
    layers: tuple[int, int] | None = None
    heads: tuple[int, ...] | None = None
    tau: float = DEFAULT_TAU
    alpha: float = DEFAULT_ALPHA
    aggregation: Literal["mean", "max"] = "mean"
    level: Literal["token", "word"] = "token"
    sources: tuple[int, ...] = ()
    hide: tuple[str, ...] = ()
    metric: str = "js_divergence"
    method: str = "class_relevance"
    target: str = PREDICTED
    sinks: bool = True
    trace_all: bool = False
    renormalize: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 <= self.tau <= 1.0:
            problems.append(f"tau must lie in [0, 1], got {self.tau}")
        if not 0.0 <= self.alpha <= 1.0:
            problems.append(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.aggregation not in ("mean", "max"):
            problems.append(f"aggregation must be mean or max, got {self.aggregation!r}")
        if self.level not in ("token", "word"):
            problems.append(f"level must be token or word, got {self.level!r}")
        if unknown := set(self.hide) - set(HIDE_KINDS):
            problems.append(f"hide accepts {', '.join(HIDE_KINDS)}, got {sorted(unknown)}")
        if self.metric not in HEAD_METRICS:
            problems.append(f"metric must be one of {', '.join(HEAD_METRICS)}, got {self.metric!r}")
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not isinstance(self.target, str) or not self.target:
            problems.append(f"target must be a class name or '{PREDICTED}', got {self.target!r}")
        if self.layers is not None and not 1 <= self.layers[0] <= self.layers[1]:
            problems.append(f"layers must be a range first:last with 1 <= first <= last, got {self.layers}")
        if self.heads is not None and (not self.heads or min(self.heads) < 0):
            problems.append(f"heads must be a non-empty set of head numbers >= 0, got {self.heads}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_controls(cls, **values) -> ViewOptions:
        """Build from raw Dash control values (lists, None for cleared controls, numbers as floats)."""
        layers = values.get("layers")
        heads = values.get("heads")
        sources = values.get("sources") or ()
        trace_all = bool(values.get("trace_all")) or "all" in sources
        return cls(
            mode=values.get("mode") or "comparison",
            layers=tuple(int(x) for x in layers) if layers else None,
            heads=tuple(sorted(int(h) for h in heads)) if heads else None,
            tau=float(values["tau"]) if values.get("tau") is not None else DEFAULT_TAU,
            alpha=float(values["alpha"]) if values.get("alpha") is not None else DEFAULT_ALPHA,
            aggregation=values.get("aggregation") or "mean",
            level=values.get("level") or "token",
            sources=() if trace_all else tuple(sorted(int(s) for s in sources)),
            hide=tuple(sorted(values.get("hide") or ())),
            metric=values.get("metric") or "js_divergence",
            method=values.get("method") or "class_relevance",
            target=str(values.get("target") or PREDICTED),
            sinks=_flag(values.get("sinks"), default=True),
            trace_all=trace_all,
            renormalize=_flag(values.get("renormalize"), default=False),
        )

    def clamp(self, num_layers: int, num_heads: int, num_tokens: int) -> ViewOptions:
        """Drop choices that do not exist for this model / input (e.g. a stale token index), and spell "all
        layers" and "all heads" as None, so equal choices key the same cache entries."""
        layers = self.layers if self.layers and self.layers[1] <= num_layers else None
        layers = None if layers == (1, num_layers) else layers
        heads = tuple(h for h in self.heads or () if h < num_heads) or None
        heads = None if heads == tuple(range(num_heads)) else heads
        sources = tuple(s for s in self.sources if s < num_tokens)
        return replace(self, layers=layers, heads=heads, sources=sources)

    def to_dict(self) -> dict:
        """JSON-ready form (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ViewOptions:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ValueError(f"unknown view option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls.from_controls(**data)


def _flag(value, *, default: bool) -> bool:
    """A boolean option from a checklist value (a list: ticked when non-empty), a bool, or None (the default)."""
    if value is None:
        return default
    return bool(value)
