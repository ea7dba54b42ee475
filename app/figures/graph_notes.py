"""Why a graph view (Sankey, network) looks empty or one-sided, and which option changes would fix it.

Pure functions of the frames the graph views already draw (``nodes`` of a
:class:`~attention.compare.GraphComparison`: ``depth, token_idx, sink`` and per model ``mass_*, absorbed_*``).
Where the traced mass ends up, per model, at the input end of the drawn layers (depth ``first - 1``): the shares of
:class:`Shares` add up to 1 (the graph conserves mass, docs/method.md §1).

:func:`diagnose` returns a :class:`GraphNote` — a short reason for the figure and the option changes that would
fix it, as dicts of :class:`~app.core.options.ViewOptions` fields (``{"tau": 0.01}``, ``{"sinks": False}``,
``{"trace_all": True}``, ``{"measure": "alti"}``) — or None when the words receive a fair share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from app.core.options import MEASURES
from app.figures.models import shown_models
from app.figures.theme import MODEL_LABELS

WORDS_MIN = 0.10  # below this share of the traced mass on the words, a model's view is one-sided
GAIN_MIN = 0.05  # a fix helps when it sends at least this much more of the traced mass to the words
CONTRIBUTION_FIX = "alti"  # the contribution measure suggested over raw attention (docs/faithfulness.md)


def is_raw_attention(measure: str) -> bool:
    """Whether the graph is drawn over raw attention (``measure`` its label), not a context-mixing measure."""
    return measure.startswith("raw attention")


@dataclass(frozen=True)
class Shares:
    """Where one model's traced mass is at the input end of the drawn layers (fractions that add up to 1):
    ``words`` on tokens that are not special, ``specials`` kept in or absorbed by [CLS] / [SEP] (special tokens),
    ``pruned`` lost below τ."""

    words: float
    specials: float
    pruned: float


@dataclass(frozen=True)
class GraphNote:
    """What a graph view says about itself.

    ``kind``: ``"sinks"`` (the traced mass stays in [CLS] / [SEP]), ``"pruned"`` (most of it falls below τ),
    ``"empty"`` (nothing passes τ) or ``"hidden"`` (hidden tokens hold part of it). ``reason``: one short sentence
    for the figure. ``fixes``: option changes that would each help, best first, every one a dict of
    :class:`~app.core.options.ViewOptions` fields to their new values (apply one with ``dataclasses.replace``);
    empty when the note only informs. ``models``: the shown models the note is about, ``words`` the least share of
    their traced mass on the words. Once :func:`weigh_fixes` has tried the fixes (``tried``), only those that help
    are left, best first, and ``gains`` holds the share of the words each gives.
    """

    kind: str
    reason: str
    fixes: tuple[dict, ...] = ()
    models: tuple[str, ...] = ()
    words: float = 0.0
    gains: tuple[float, ...] = ()
    tried: bool = False

    @property
    def text(self) -> str:
        """The reason, then the fixes as one instruction (with the words' share each gives, once tried): what the
        figure prints."""
        if not self.fixes:
            return self.reason + (" No single change of τ, sinks, tracing or measure helps." if self.tried else "")
        labels = [fix_label(f) for f in self.fixes]
        if self.gains:
            labels = [f"{label} ({_span([gain])} to the words)" for label, gain in zip(labels, self.gains, strict=True)]
        todo = _either(labels)
        return f"{self.reason} {todo[0].upper()}{todo[1:]}."


def fix_key(change: dict) -> tuple:
    """A hashable key of an option change (``{"tau": 0.01}`` → ``(("tau", 0.01),)``), for :func:`weigh_fixes`."""
    return tuple(sorted(change.items()))


def weigh_fixes(note: GraphNote, after: Mapping[tuple, Mapping[str, Shares]]) -> GraphNote:
    """``note`` with only the fixes that help, best first: ``after[fix_key(fix)]`` holds each shown model's
    :class:`Shares` once ``fix`` is applied; a fix helps when it raises the least words' share of the note's
    models by :data:`GAIN_MIN` at least. A fix missing from ``after`` is left out."""
    gained = []
    for fix in note.fixes:
        shares = after.get(fix_key(fix))
        if shares is None:
            continue
        words = min(shares[m].words for m in note.models)
        if words >= note.words + GAIN_MIN:
            gained.append((words, fix))
    gained.sort(key=lambda pair: -pair[0])
    return replace(note, fixes=tuple(f for _, f in gained), gains=tuple(w for w, _ in gained), tried=True)


def _either(labels) -> str:
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def fix_label(change: dict) -> str:
    """An option change as an instruction: ``{"tau": 0.01}`` → ``"lower τ to 0.01"``."""
    words = []
    for name, value in change.items():
        if name == "tau":
            words.append(f"lower τ to {value:g}")
        elif name == "sinks":
            words.append("turn sinks on" if value else "turn sinks off")
        elif name == "trace_all":
            words.append("trace from every token" if value else "trace from [CLS]")
        elif name == "measure":
            words.append(f"draw {MEASURES.get(value, value)} contributions")
        elif name == "hide" and not value:
            words.append("show the hidden tokens")
        else:
            words.append(f"set {name} to {value}")
    return " and ".join(words)


def mass_shares(
    nodes: pd.DataFrame, *, first_layer: int, special: Sequence[int], mode: str, sinks_special: bool = True
) -> dict[str, Shares]:
    """Per shown model (``mode``), the :class:`Shares` of its traced mass at depth ``first_layer - 1``;
    ``special``: the drawn positions of [CLS], [SEP] and the like (with ``sinks_special`` every sink is one)."""
    at_input = nodes["depth"].to_numpy() == first_layer - 1
    is_special = np.isin(nodes["token_idx"].to_numpy(), list(special))
    if sinks_special:
        is_special |= nodes["sink"].to_numpy(bool)
    shares = {}
    for model in shown_models(mode):
        mass = np.nan_to_num(nodes[f"mass_{model}"].to_numpy(float))
        absorbed = np.nan_to_num(nodes[f"absorbed_{model}"].to_numpy(float))
        words = float(mass[at_input & ~is_special].sum())
        specials = float(mass[at_input & is_special].sum() + absorbed.sum())  # mass is absorbed only by sinks
        shares[model] = Shares(words, specials, max(0.0, 1.0 - words - specials))
    return shares


def lower_tau(tau: float) -> float:
    """A τ that lets more edges through: a fifth of ``tau`` to one significant digit, 0 below 0.001."""
    lower = float(f"{tau / 5:.0e}")
    return lower if lower >= 0.001 else 0.0


def diagnose(
    nodes: pd.DataFrame,
    *,
    layers: tuple[int, int],
    special: Sequence[int],
    sources: Sequence[int],
    mode: str,
    tau: float,
    sinks: bool,
    measure: str,
    trace_all: bool = False,
    special_names: str = "[CLS] / [SEP]",
) -> GraphNote | None:
    """Why the graph shows (almost) none of the words for a shown model: its traced mass stays in the special
    tokens (``kind="sinks"``) or falls below τ (``kind="pruned"``); None when every shown model sends at least
    :data:`WORDS_MIN` of it to the words. ``measure`` is the label of what the graph is drawn over
    (:data:`~app.core.options.MEASURES`), ``special`` and ``sources`` drawn positions, ``sinks`` whether special
    tokens absorb attention. The fixes are the likely ones in a likely order; :func:`weigh_fixes` keeps those that
    help once they have been tried. ``special_names``: how the reason names the special tokens (a decoder's
    ``<bos>``).

    >>> import pandas as pd
    >>> nodes = pd.DataFrame({"depth": [0, 0], "token_idx": [0, 1], "sink": [True, False],
    ...                       "mass_finetuned": [0.1, 0.02], "absorbed_finetuned": [0.8, 0.0]})
    >>> note = diagnose(nodes, layers=(1, 1), special=[0], sources=[0], mode="finetuned", tau=0.05, sinks=True,
    ...                 measure="raw attention (the paper's)")
    >>> note.kind, note.fixes
    ('sinks', ({'measure': 'alti'}, {'trace_all': True}, {'tau': 0.01}, {'sinks': False}))
    """
    shares = mass_shares(nodes, first_layer=layers[0], special=special, mode=mode)
    poor = {m: s for m, s in shares.items() if s.words < WORDS_MIN}
    if not poor:
        return None
    subject = ""
    if mode == "comparison":
        subject = " and ".join(MODEL_LABELS[m] for m in poor).capitalize() + ": "
    words, specials, pruned = (_span([getattr(s, part) for s in poor.values()]) for part in Shares.__annotations__)
    reason = (f"{subject}{words} of the traced mass reaches the words (layers {layers[0]}–{layers[1]}); "
              f"{specials} stays in {special_names}, {pruned} falls below τ = {tau:g}.")  # fmt: skip
    in_sinks = max(s.specials for s in poor.values()) >= max(s.pruned for s in poor.values())
    contribution = [{"measure": CONTRIBUTION_FIX}] if is_raw_attention(measure) else []
    from_words = [{"trace_all": True}] if set(sources) <= set(special) and sources and not trace_all else []
    better_tau = [{"tau": lower_tau(tau)}] if tau > 0 else []
    least = (tuple(poor), min(s.words for s in poor.values()))
    if in_sinks:
        fixes = contribution + from_words + better_tau + ([{"sinks": False}] if sinks else [])
        return GraphNote("sinks", reason, tuple(fixes), *least)
    return GraphNote("pruned", reason, tuple(better_tau + contribution + from_words), *least)


def _span(values: list[float]) -> str:
    """``7 %``, or ``7–12 %`` for several models' shares (a no-break space before "%")."""
    low, high = (f"{100 * v:.0f}" for v in (min(values), max(values)))
    return f"{low}\u00a0%" if low == high else f"{low}–{high}\u00a0%"  # a no-break space: never "12" and "%" apart


def empty_note(
    name: str,
    *,
    tau: float,
    layers: tuple[int, int],
    measure: str,
    hidden_only: bool = False,
    traced_hidden: bool = False,
) -> GraphNote:
    """Nothing from ``name`` (the traced tokens) passes τ — or, ``hidden_only``, all that does runs through hidden
    tokens (``traced_hidden``: the traced token is one of them): the view has nothing to draw."""
    fixes = ([{"tau": lower_tau(tau)}] if tau > 0 else []) + (
        [{"measure": CONTRIBUTION_FIX}] if is_raw_attention(measure) else []
    )
    span = f"in layers {layers[0]}–{layers[1]}"
    if not hidden_only:
        return GraphNote("empty", f"Nothing from {name} passes τ = {tau:g} {span}.", tuple(fixes))
    lead = f"The traced token ({name}) is hidden, and e" if traced_hidden else "E"
    reason = f"{lead}very edge from {name} that passes τ = {tau:g} {span} runs through hidden tokens."
    return GraphNote("hidden", reason, ({"hide": ()}, *fixes))


def hidden_note(
    nodes: pd.DataFrame,
    *,
    first_layer: int,
    hidden: Sequence[int],
    sources: Sequence[int],
    tokens: Sequence[str],
    mode: str,
) -> GraphNote | None:
    """What hiding tokens leaves out: per shown model, the share of its traced mass that ends in hidden tokens
    (on them at depth ``first_layer - 1``, or absorbed by them); a hidden traced token is still drawn, as the
    source. None when nothing is hidden."""
    if not len(hidden):
        return None
    ends = mass_shares(nodes, first_layer=first_layer, special=hidden, mode=mode, sinks_special=False)
    parts = [(f"{MODEL_LABELS[m]} " if mode == "comparison" else "") + _span([s.specials]) for m, s in ends.items()]
    traced = [tokens[s] for s in sources if s in set(hidden)]
    lead = f"The traced token ({', '.join(traced[:3])}) is hidden: drawn as the source only. " if traced else ""
    return GraphNote(
        "hidden", f"{lead}Hidden tokens are left out with the traced mass ending in them ({', '.join(parts)})."
    )
