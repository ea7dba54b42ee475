"""The page's controls by name: one table (control name → component id) and the ``Input``/``State``/``Output``
dicts a callback reads or writes them with.

The names are :meth:`app.core.options.ViewOptions.from_controls`' keyword arguments and the URL's
(:mod:`app.core.urlstate`); every control holds its value in the ``value`` property.
"""

from __future__ import annotations

from dash import Input, Output, State

from app.dashboard import ids

# In the order the URL callback lists them (its outputs and inputs follow this order).
CONTROLS: dict[str, str] = {
    "mode": ids.MODE,
    "layers": ids.LAYERS,
    "heads": ids.HEADS,
    "tau": ids.TAU,
    "alpha": ids.ALPHA,
    "aggregation": ids.AGGREGATION,
    "level": ids.LEVEL,
    "sources": ids.SOURCES,
    "hide": ids.HIDE,
    "sinks": ids.SINKS,
    "metric": ids.METRIC,
    "method": ids.METHOD,
    "measure": ids.MEASURE,
    "target": ids.TARGET,
    "top_k": ids.TOP_K,
    "word": ids.WORD,
    "arrangement": ids.ARRANGEMENT,
    "renormalize": ids.RENORMALIZE,
}
NAMES: dict[str, str] = {component: name for name, component in CONTROLS.items()}  # component id → control name

# What the graph views read (every view but the similarity map and the head grid's metric and word).
VIEW_CONTROLS = ("mode", "layers", "heads", "tau", "alpha", "aggregation", "level", "sources", "hide", "sinks",
                 "top_k", "measure")  # fmt: skip
RELEVANCE_CONTROLS = ("method", "target")  # what the token scores are (a long input keeps its most relevant tokens)


def input_of(name: str) -> Input:
    """``Input(the control's component, "value")``, for a callback that takes its arguments in order."""
    return Input(CONTROLS[name], "value")


def state_of(name: str) -> State:
    """``State(the control's component, "value")``, for a callback that takes its arguments in order."""
    return State(CONTROLS[name], "value")


def inputs(*names: str) -> dict[str, Input]:
    """``{name: Input(its component, "value")}`` for the controls ``names``, in that order."""
    return {name: Input(CONTROLS[name], "value") for name in names}


def states(*names: str) -> dict[str, State]:
    """``{name: State(its component, "value")}`` for the controls ``names``, in that order."""
    return {name: State(CONTROLS[name], "value") for name in names}


def outputs(*names: str) -> dict[str, Output]:
    """``{name: Output(its component, "value")}`` for the controls ``names``, in that order."""
    return {name: Output(CONTROLS[name], "value") for name in names}
