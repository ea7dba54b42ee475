"""What the views draw of a run: the positions they hide, the labels they show, the run the matrices draw."""

from __future__ import annotations

import numpy as np

from attention import AttentionRun
from attention.tokens import word_all


def hidden_mask(run: AttentionRun, hide: tuple[str, ...], level: str = "token") -> np.ndarray:
    """``[position]`` bool at ``level``: the tokens (or words) of the kinds in ``hide`` ("special",
    "punctuation")."""
    special, punctuation = np.asarray(run.special), np.asarray(run.punctuation)
    if level == "word":
        special, punctuation = word_all(special, run.groups), word_all(punctuation, run.groups)
    drop = np.zeros(special.size, dtype=bool)
    if "special" in hide:
        drop |= special
    if "punctuation" in hide:
        drop |= punctuation
    return drop


CONTINUATION_MARK = "##"  # before a piece that continues the previous token's word ("sub ##pl ##ot"), any tokenizer


def shown_labels(run: AttentionRun, level: str) -> tuple[str, ...]:
    """Token (or word) display strings at ``level``; at token level a piece that continues a word carries
    :data:`CONTINUATION_MARK`, so sub-words never read as words of their own."""
    if level != "token":
        return run.words()
    groups = np.asarray(run.groups)
    continues = np.concatenate([[False], groups[1:] == groups[:-1]])
    return tuple(
        CONTINUATION_MARK + token if more else token for token, more in zip(run.tokens, continues, strict=True)
    )


def matrix_run(run: AttentionRun, level: str, hide: tuple[str, ...], renormalize: bool) -> AttentionRun:
    """The run as the attention matrices draw it: merged per layer into words (exact for one map), hidden tokens
    removed (rows renormalised only when asked; the caption says so)."""
    if level == "word":
        run = run.at_word_level()
    drop = hidden_mask(run, hide)
    return run.without_tokens(drop, renormalize=renormalize) if drop.any() else run
