"""Long inputs: keep the tokens that matter, fold the rest into one "other" position.

Above :data:`app.core.options.FOLD_ABOVE` shown positions (tokens or words), the attention matrices, the token scores
and the Sankey keep the ``top_k`` positions with the largest current relevance (its magnitude, fine-tuned model,
deepest layer), plus every special, hidden and traced position, in sentence order, and merge the rest into one
position labelled "other (n)". Merging is the word merge (:meth:`attention.AttentionRun.merged`,
:func:`attention.graph.word_graph`): attention *to* "other" and scores of "other" are sums over its tokens,
attention *from* it the mean, so every row still sums to 1 and every number keeps its meaning. The sentence view
never folds (it wraps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.core.options import FOLD_ABOVE


@dataclass(frozen=True, eq=False)
class Fold:
    """``groups[position]`` is the drawn position of each position at the level (folded ones share ``other``);
    ``labels`` the drawn labels, ``other`` the index of "other (n)"."""

    groups: np.ndarray
    labels: tuple[str, ...]
    other: int

    @property
    def key(self) -> tuple[int, ...]:
        """Hashable identity, for cache keys."""
        return tuple(self.groups.tolist())

    def without(self, hidden: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        """The groups and labels once the ``hidden`` positions are removed (the matrices drop them first)."""
        kept = self.groups[~hidden]
        used, dense = np.unique(kept, return_inverse=True)  # order kept: groups increase along the sentence
        return dense, tuple(self.labels[g] for g in used)


def first_of_groups(values: np.ndarray | tuple, groups: np.ndarray | tuple, count: int) -> np.ndarray:
    """``[group]`` for groups ``0..count-1``: the value at each group's first position (``values`` and ``groups``
    are ``[position]``; groups increase along the sentence). How a word, or a folded run of tokens, gets a segment."""
    values, groups = np.asarray(values), np.asarray(groups)
    firsts = np.full(count, -1)
    for position in range(groups.size - 1, -1, -1):
        if groups[position] < count:
            firsts[groups[position]] = position
    return values[firsts]


def choose_fold(
    labels: tuple[str, ...] | list[str],
    scores: np.ndarray,
    *,
    always: np.ndarray,
    hidden: np.ndarray,
    top_k: int,
) -> Fold | None:
    """The fold of one input, or None when it is short enough to draw whole.

    Args:
        labels: ``[position]`` token (or word) strings.
        scores: ``[position]`` current relevance (NaN: unknown, ranked last).
        always: ``[position]`` bool, positions never folded (special and traced tokens).
        hidden: ``[position]`` bool, positions the views leave out (never folded, never counted).
        top_k: positions to keep besides ``always``; 0 never folds.
    """
    shown = ~hidden
    candidates = np.flatnonzero(shown & ~always)
    if top_k == 0 or shown.sum() <= FOLD_ABOVE or candidates.size <= top_k:
        return None
    magnitude = np.nan_to_num(np.abs(scores[candidates]), nan=-1.0)
    ranked = candidates[np.argsort(-magnitude, kind="stable")]
    keep = always | hidden
    keep[ranked[:top_k]] = True
    kept = np.flatnonzero(keep)
    groups = np.full(len(labels), kept.size, dtype=int)
    groups[kept] = np.arange(kept.size)
    folded = len(labels) - kept.size
    return Fold(groups=groups, labels=(*(labels[i] for i in kept), f"other ({folded})"), other=int(kept.size))


def fold_scores(frame: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    """A relevance frame (``layer, token_idx, pretrained, finetuned, difference``) with folded positions summed
    into "other" (NaN stays NaN: a model without scores has none for "other" either)."""
    folded = frame.assign(token_idx=fold.groups[frame["token_idx"].to_numpy()])
    columns = [c for c in ("pretrained", "finetuned", "difference") if c in frame]
    summed = folded.groupby(["layer", "token_idx"], sort=True)[columns].sum(min_count=1).reset_index()
    summed["token"] = np.asarray(fold.labels, dtype=object)[summed["token_idx"].to_numpy()]
    return summed
