"""The page's state in its URL: the text, every option, the selected head and the word query.

A link reproduces the view for a teammate, reload keeps it, and back / forward step through it. The query string
spells values as the command line does (``layers=2:6``, ``heads=0,3``, ``head=6:3``; ``models=NAME`` is the model
pair, ``pair`` a second text) and leaves out defaults, so a link stays short. Everything read from a URL is
validated by :class:`app.core.options.ViewOptions`; a hand-edited bad value is refused with the option's own message.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import parse_qsl, urlencode

from app.core.analysis import Analysis
from app.core.options import (
    TRACE_ALL,
    OptionError,
    ViewOptions,
    check_selected_head,
    parse_head,
    parse_numbers,
    parse_range,
)

DEFAULTS = ViewOptions()
FLAGS = ("sinks", "renormalize")
NUMBERS = {"tau": float, "alpha": float, "top_k": int, "word": int}
KNOWN = {f.name for f in fields(ViewOptions)} - {"trace_all"} | {"text", "pair", "head", "models"}


@dataclass(frozen=True)
class PageState:
    """What the URL holds: the analysed input (None: the page's default), options, and the selected head."""

    analysis: Analysis | None
    options: ViewOptions
    selected: tuple[int, int | None] | None = None


def to_query(state: PageState, *, default_models: str | None = None) -> str:
    """The URL query (without ``?``) for ``state``; values equal to the defaults are left out (the model pair
    too, when it is ``default_models``)."""
    pairs: list[tuple[str, str]] = []
    if state.analysis is not None and state.analysis.models and state.analysis.models != default_models:
        pairs.append(("models", state.analysis.models))
    if state.analysis is not None:
        pairs.append(("text", state.analysis.text))
        if state.analysis.text_pair:
            pairs.append(("pair", state.analysis.text_pair))
    options = state.options
    for field in fields(ViewOptions):
        name, value = field.name, getattr(options, field.name)
        if name == "trace_all" or value == getattr(DEFAULTS, name):
            continue
        if name == "sources" and options.trace_all:
            continue
        pairs.append((name, _spell(name, value)))
    if options.trace_all:
        pairs.append(("sources", TRACE_ALL))
    if state.selected is not None and state.selected[1] is not None:
        pairs.append(("head", f"{state.selected[0]}:{state.selected[1]}"))
    return urlencode(pairs)


def _spell(name: str, value: object) -> str:
    if name == "layers":
        return f"{value[0]}:{value[1]}"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def from_query(search: str | None, *, num_layers: int, num_heads: int) -> PageState:
    """The state a URL query (``?text=…&tau=0.1``) describes; an :class:`OptionError` naming the bad part."""
    raw = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
    if unknown := set(raw) - KNOWN:
        raise OptionError(
            f"The link has unknown part(s): {', '.join(sorted(unknown))}.", "Remove them, or open the page afresh."
        )
    text = raw.pop("text", "").strip()
    pair = raw.pop("pair", "").strip() or None
    models = raw.pop("models", "").strip() or None  # checked against the server's pairs by the caller
    head = raw.pop("head", None)
    controls: dict[str, object] = {}
    for name, value in raw.items():
        if name == "layers":
            controls[name] = list(parse_range(name, value))
        elif name in ("heads",):
            controls[name] = parse_numbers(name, value)
        elif name == "sources":
            controls[name] = [TRACE_ALL] if value == TRACE_ALL else parse_numbers(name, value)
        elif name == "hide":
            controls[name] = [kind for kind in value.split(",") if kind]
        elif name in FLAGS:
            if value not in ("0", "1"):
                raise OptionError(f"Option '{name}' is {value!r} in the link.", "Write 1 or 0.")
            controls[name] = value == "1"
        elif name in NUMBERS:
            try:
                controls[name] = NUMBERS[name](value)
            except ValueError:
                raise OptionError(f"Option '{name}' is {value!r} in the link, not a number.", "Fix the link.") from None
        else:
            controls[name] = value
    options = ViewOptions.from_controls(**controls)
    selected = None
    if head is not None:
        layer, number = parse_head(head)
        selected = check_selected_head({"layer": layer, "head": number}, num_layers, num_heads)
    return PageState(Analysis(text, pair, models) if text else None, options, selected)


def control_values(options: ViewOptions, *, num_layers: int, num_heads: int) -> dict[str, object]:
    """``options`` as the page's controls hold them (the inverse of :meth:`ViewOptions.from_controls`)."""
    return {
        "mode": options.mode,
        "layers": list(options.layers or (1, num_layers)),
        "heads": list(options.heads if options.heads is not None else range(num_heads)),
        "tau": options.tau,
        "alpha": options.alpha,
        "aggregation": options.aggregation,
        "level": options.level,
        "sources": [TRACE_ALL] if options.trace_all else list(options.sources),
        "hide": list(options.hide),
        "sinks": ["sinks"] if options.sinks else [],
        "metric": options.metric,
        "method": options.method,
        "target": options.target,
        "top_k": options.top_k,
        "word": options.word,
        "arrangement": options.arrangement,
        "renormalize": ["renormalize"] if options.renormalize else [],
        "measure": options.measure,
    }


def changed_controls(change: dict) -> dict[str, object]:
    """An option change (:class:`ViewOptions` fields → new values, as a graph view's note suggests it:
    ``{"trace_all": True}``) as the values of the controls that hold those fields (``{"sources": ["all"]}``)."""
    values: dict[str, object] = {}
    for field, value in change.items():
        if field == "trace_all":
            values["sources"] = [TRACE_ALL] if value else []
        elif field == "sinks":
            values["sinks"] = ["sinks"] if value else []
        elif field == "hide":
            values["hide"] = list(value) if value else []
        elif field in ("tau", "measure"):
            values[field] = value
        else:
            raise ValueError(f"No control holds the option {field!r}.")
    return values
