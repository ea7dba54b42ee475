"""Attention rollout (Abnar & Zuidema, 2020) and the residual-augmented, head-averaged maps it uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def head_average(weights: np.ndarray, heads: Sequence[int] | None = None) -> np.ndarray:
    """Mean over heads (all, or the subset ``heads``).

    Args:
        weights: ``[layer, head, query, key]`` attention.
        heads: head indices to average; None for all.

    Returns:
        ``[layer, query, key]`` float64.
    """
    weights = np.asarray(weights)
    if weights.ndim != 4:
        raise ValueError(f"weights must be [layer, head, query, key], got shape {weights.shape}")
    selected = weights if heads is None else weights[:, list(heads)]
    if selected.shape[1] == 0:
        raise ValueError("select at least one head")
    averaged = np.add.reduce(selected, axis=1, dtype=np.float64)
    averaged /= selected.shape[1]
    return averaged


def residual_maps(weights: np.ndarray, *, residual: bool = True, heads: Sequence[int] | None = None) -> np.ndarray:
    """Head-averaged attention with the residual connection: ``Â_l = rownorm(Ā_l + I)``.

    Args:
        weights: ``[layer, head, query, key]`` attention.

    Returns:
        ``[layer, query, key]`` float64, rows sum to 1 (``Ā_l`` itself when ``residual`` is False).
    """
    averaged = head_average(weights, heads)
    if not residual:
        return averaged
    diagonal = np.arange(averaged.shape[-1])
    averaged[:, diagonal, diagonal] += 1.0  # in place: averaged is our own float64 copy
    averaged /= averaged.sum(axis=-1, keepdims=True)
    return averaged


def rollout(weights: np.ndarray, *, residual: bool = True, heads: Sequence[int] | None = None) -> np.ndarray:
    """Attention rollout: ``R_1 = Â_1``, ``R_l = Â_l · R_{l-1}``.

    ``R_l[q, k]`` is how much input token ``k`` contributes to token ``q`` after layer ``l``.

    Args:
        weights: ``[layer, head, query, key]`` attention.
        residual: add the identity for the residual connection before renormalising (as the paper does).
        heads: heads to average over; None for all.

    Returns:
        ``[layer, query, key]`` float64; every row sums to 1.

    >>> a = np.array([[[[0.5, 0.5], [0.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]]])  # 2 layers, 1 head, 2 tokens
    >>> rollout(a, residual=False)[-1].tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    maps = residual_maps(weights, residual=residual, heads=heads)
    joint = np.empty_like(maps)
    joint[0] = maps[0]
    for layer in range(1, maps.shape[0]):
        np.matmul(maps[layer], joint[layer - 1], out=joint[layer])
    return joint


def top_rollout_rows(weights: np.ndarray, sources: Sequence[int], mask: np.ndarray) -> np.ndarray:
    """Row ``sources[b]`` of the top layer's :func:`rollout` ``R_L`` for every input of a padded batch, without
    the full matrix products: ``e_s · Â_L ⋯ Â_1``, one vector-matrix product per layer.

    Args:
        weights: padded attention ``[layer, batch, head, position, position]``.
        sources: each input's source position (its [CLS]), in padded positions ``[batch]``.
        mask: ``[batch, position]``, 1 on an input's own tokens.

    Returns:
        ``[batch, position]`` float64: each input's row over its own tokens (equal to its unpadded rollout's), 0 on
        padding. Keys off an input's own tokens are zeroed, so its row never leaves them; padded query rows are
        never read, but must be finite (a masked encoder's are: it attends from them to real keys).
    """
    keys = np.asarray(mask, dtype=np.float64)[None, :, None, :]  # [1, batch, 1, key]
    averaged = np.add.reduce(weights, axis=2, dtype=np.float64)  # [layer, batch, query, key]
    averaged /= weights.shape[2]
    averaged *= keys
    diagonal = np.arange(averaged.shape[-1])
    averaged[:, :, diagonal, diagonal] += 1.0
    averaged /= averaged.sum(axis=-1, keepdims=True)
    row = np.zeros(averaged.shape[1:3])
    row[np.arange(row.shape[0]), np.asarray(sources)] = 1.0
    for layer in reversed(range(averaged.shape[0])):
        row = np.einsum("bq,bqk->bk", row, averaged[layer])
    return row
