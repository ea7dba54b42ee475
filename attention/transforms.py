"""Pure functions that re-shape attention arrays: word-level merging and dropping tokens.

All take and return ``[..., query, key]`` arrays (usually ``[layer, head, query, key]``) whose rows sum to 1,
and keep that property.
"""

from __future__ import annotations

import numpy as np


def merge_groups(weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Merge tokens into groups (e.g. sub-word pieces into words).

    Attention *to* a group is the sum over its tokens (columns add up); attention *from* a group is the mean over
    its tokens (rows are averaged), so rows still sum to 1.

    Args:
        weights: ``[..., n, n]`` attention, rows sum to 1.
        groups: ``[n]`` group index per token, values ``0..g-1``, every group non-empty.

    Returns:
        ``[..., g, g]`` float32 attention between groups.

    >>> w = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> merge_groups(w, np.array([0, 1, 1])).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    groups = np.asarray(groups)
    n = weights.shape[-1]
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
    count = int(groups.max()) + 1 if n else 0
    membership = np.zeros((n, count), dtype=np.float64)
    membership[np.arange(n), groups] = 1.0
    sizes = membership.sum(axis=0)
    if np.any(sizes == 0):
        raise ValueError("every group index 0..g-1 must be used by at least one token")
    mean_rows = membership / sizes  # [n, g]: averages rows of a group
    merged = mean_rows.T @ weights.astype(np.float64) @ membership  # [g, n] @ [..., n, n] @ [n, g]
    return merged.astype(np.float32)


def drop_tokens(weights: np.ndarray, keep: np.ndarray, *, renormalize: bool = True) -> np.ndarray:
    """Remove tokens (rows and columns) where ``keep`` is False, e.g. special tokens.

    With ``renormalize`` each remaining row is divided by its remaining mass so it sums to 1 again; a row whose
    whole mass went to dropped tokens becomes uniform over the kept tokens.

    Args:
        weights: ``[..., n, n]`` attention.
        keep: ``[n]`` bool mask of tokens to keep.

    Returns:
        ``[..., m, m]`` float32 attention, ``m = keep.sum()``.

    >>> w = np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.0, 0.0, 1.0]])
    >>> drop_tokens(w, np.array([False, True, True])).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (weights.shape[-1],):
        raise ValueError(f"keep must have shape ({weights.shape[-1]},), got {keep.shape}")
    kept = weights[..., keep, :][..., keep].astype(np.float64)
    if renormalize and kept.shape[-1]:
        mass = kept.sum(axis=-1, keepdims=True)
        uniform = np.full_like(kept, 1.0 / kept.shape[-1])
        kept = np.where(mass > 0, kept / np.where(mass > 0, mass, 1.0), uniform)
    return kept.astype(np.float32)
