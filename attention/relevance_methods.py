"""The relevance methods, one registry: what each reads and how it scores one model's input.

Every method answers one question with one signature (as captum's attribution classes share ``attribute``):
``method.token_scores(evidence) -> [row, token]`` float64, how much each input token matters. What differs is the
*evidence* it reads, which the caller supplies lazily (computed on first use, so a method never pays for another's):

- the **graph** family (``raw_attention``, ``rollout``, ``flow``, ``graph``) traces chosen tokens through a
  measure's token-to-token maps (:func:`attention.methods.relevance`); one row per layer;
- the **class** family explains one class of a classifier: ``class_relevance`` (gradient × attention, Chefer et al.
  2021) and ``input_x_gradient`` read the one backward pass of :func:`attention.gradients.class_relevance`;
  ``decompx`` reads :func:`attention.mixing.decompx.decompx`. ``input_x_gradient`` has a single row (the
  embeddings, layer 0); the others one per layer.

The word level is always the token-level result summed over each word's pieces (:func:`attention.methods
.merge_scores`), whatever the method. Names, labels and families here are the only copy (in the order of refinement:
attention alone, then class-specific): the dashboard's options, the faithfulness study and the views read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

    from attention.gradients import ClassRelevance

Family = Literal["graph", "class"]


@dataclass(frozen=True)
class Evidence:
    """What the methods read, each computed on first call (the caller caches).

    ``traced(method)``: a graph method's ``[layer, token]`` over the chosen measure's maps, from the chosen tokens.
    ``explained()``: the model's :class:`~attention.gradients.ClassRelevance` for the target (None: no head).
    ``decomposed()``: the model's :class:`~attention.mixing.decompx.DecompX` for the target (None: no head)."""

    traced: Callable[[str], np.ndarray] | None = None
    explained: Callable[[], ClassRelevance | None] = field(default=lambda: None)
    decomposed: Callable[[], object | None] = field(default=lambda: None)


@dataclass(frozen=True)
class RelevanceMethod:
    """One relevance method: its name, its label in figures, its family, whether it has a row per layer, what one
    of its numbers is (``unit``), whether it reads the attention graph's settings, and whether it is costly."""

    name: str
    label: str
    family: Family
    layered: bool = True
    from_gradients: bool = False  # from the one backward pass of attention.gradients (cached with the forward pass)
    unit: str = "score"  # what one number is, as a colour bar says it
    graph_settings: bool = False  # reads the attention graph's τ, α, sinks and head aggregation
    costly: bool = False  # about one forward pass per token: a study includes it only when asked
    read: Callable[[RelevanceMethod, Evidence], np.ndarray | None] = field(default=None, repr=False, compare=False)

    @property
    def needs_classifier(self) -> bool:
        """A class method explains a class: it needs a classification head and a target class."""
        return self.family == "class"

    def token_scores(self, evidence: Evidence) -> np.ndarray | None:
        """``[row, token]`` float64 (one row per layer, or a single row when not :attr:`layered`); None when the
        model cannot be explained this way (a class method on a model without a classification head)."""
        import numpy as np  # loaded on first use: the command line reads this table before numpy loads

        scores = self.read(self, evidence)
        return None if scores is None else np.asarray(scores, dtype=np.float64)


def _traced(method: RelevanceMethod, evidence: Evidence) -> np.ndarray:
    if evidence.traced is None:
        raise ValueError(f"{method.name} traces a measure's maps: pass Evidence(traced=...)")
    return evidence.traced(method.name)


def _class_relevance(_method: RelevanceMethod, evidence: Evidence) -> np.ndarray | None:
    explained = evidence.explained()
    return None if explained is None else explained.scores


def _input_x_gradient(_method: RelevanceMethod, evidence: Evidence) -> np.ndarray | None:
    explained = evidence.explained()
    return None if explained is None else explained.input_x_gradient[None, :]


def _decompx(_method: RelevanceMethod, evidence: Evidence) -> np.ndarray | None:
    decomposed = evidence.decomposed()
    return None if decomposed is None else decomposed.scores


RELEVANCE_METHODS: dict[str, RelevanceMethod] = {
    method.name: method
    for method in (
        RelevanceMethod("raw_attention", "raw attention (head mean)", "graph", read=_traced),
        RelevanceMethod("rollout", "attention rollout", "graph", read=_traced),
        RelevanceMethod("flow", "attention flow (max-flow)", "graph", read=_traced),
        RelevanceMethod("graph", "attention graph (mass reaching the inputs)", "graph", read=_traced,
                        graph_settings=True),
        RelevanceMethod("class_relevance", "class relevance (gradient × attention)", "class", from_gradients=True,
                        read=_class_relevance),
        RelevanceMethod("decompx", "DecompX (signed part of the class logit)", "class", read=_decompx,
                        unit="part of the class logit (< 0: pushes it down)", costly=True),
        RelevanceMethod("input_x_gradient", "input × gradient", "class", layered=False, from_gradients=True,
                        read=_input_x_gradient),
    )
}  # fmt: skip


def method_names(family: Family | None = None, *, from_gradients: bool | None = None) -> tuple[str, ...]:
    """Registered method names, in the registry's order, optionally of one family or (not) from gradients."""
    return tuple(
        name
        for name, method in RELEVANCE_METHODS.items()
        if (family is None or method.family == family)
        and (from_gradients is None or method.from_gradients == from_gradients)
    )


def relevance_method(name: str) -> RelevanceMethod:
    """The method called ``name``; a ValueError listing the known ones otherwise."""
    try:
        return RELEVANCE_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown relevance method {name!r}; expected one of {', '.join(RELEVANCE_METHODS)}") from None
