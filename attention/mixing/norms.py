"""Norm-based contributions (Kobayashi et al. 2020, 2021; Modarressi et al. 2022) and ALTI (Ferrando et al. 2022)
from one layer's :class:`~attention.mixing.layers.LayerTensors`.

Each measure looks at the vector token ``j`` adds to token ``i``'s representation:

- ``attention_norm``: ``‖Σ_h α^h_ij f^h(x_j)‖`` (Kobayashi et al. 2020, eq. 6); per head ``‖α^h_ij f^h(x_j)‖``.
- ``norm_residual``: ``‖g1_i(Σ_h α^h_ij f^h(x_j) + δ_ij x_j)‖`` with ``g1_i(v) = γ1 ⊙ (v − mean v) / σ1_i``, the
  first LayerNorm made linear at the σ the model computed (Kobayashi et al. 2021, "ATB + RES + LN").
- ``globenc``: the same vector through the second LayerNorm too, ``g2_i(g1_i(…))``, the feed-forward block left out
  (Modarressi et al. 2022, eq. 7).
- ``alti``: ``T_i(x_j) = g1_i(Σ_h α^h_ij f^h(x_j) + δ_ij x_j)``, ``z_i`` the LayerNorm's output;
  ``c_ij = max(0, ‖z_i‖₁ − ‖z_i − T_i(x_j)‖₁)`` (Ferrando et al. 2022, eq. 8–9; the clipping and the resultant's
  L1 norm as in their reference code's ``min_sum`` normalisation).

Every map is row-normalised to sum to 1 (a row with no positive value keeps its mass on itself). The three norm
measures never build the ``[n, n, d]`` tensor: ``‖Σ_a c_a u_a‖² = cᵀ G c`` with ``G`` the Gram matrix of token
``j``'s vectors (its heads' and, with the residual, its own), after the LayerNorms' linear parts. ALTI needs L1
distances, so it builds ``T_i(x_j)`` a block of query rows at a time (bounded memory at 512 tokens).
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
from attention.mixing.layers import LayerTensors

ROW_BLOCK_VALUES = 8_000_000  # floats of T_i(x_j) built at once by ALTI (32 MB)


def _centred(vectors, gamma):
    """``γ ⊙ (v − mean v)`` over the last axis: a LayerNorm's linear part before dividing by σ."""
    return gamma * (vectors - vectors.mean(dim=-1, keepdim=True))


def _with_residual(layer: LayerTensors):
    """Token ``j``'s vectors ``[h + 1, n, d]``: each head's ``f^h(x_j)``, then the residual ``x_j``."""
    import torch

    return torch.cat([layer.f, layer.x[None]], dim=0)


def _norms(alpha, gram, residual: bool):
    """``‖Σ_a c_aij u_aj‖`` ``[n, n]`` from the Gram matrices ``gram`` ``[n, a, a]`` (last vector the residual when
    ``residual``) and the coefficients ``α^h_ij`` (and ``δ_ij``)."""
    import torch

    h = alpha.shape[0]
    squared = torch.einsum("hij,jhg,gij->ij", alpha, gram[:, :h, :h], alpha)
    if residual:
        diagonal = torch.arange(alpha.shape[-1])
        cross = torch.einsum("hi,ih->i", alpha[:, diagonal, diagonal], gram[:, :h, h])
        squared[diagonal, diagonal] += 2 * cross + gram[:, h, h]
    return squared.clamp_min(0).sqrt()


def normalise_rows(maps):
    """Rows scaled to sum to 1; a row without positive mass becomes its own token (mass on the diagonal)."""
    import torch

    totals = maps.sum(dim=-1, keepdim=True)
    empty = totals[..., 0] <= 0
    out = maps / torch.where(totals > 0, totals, torch.ones_like(totals))
    if bool(empty.any()):
        rows = torch.nonzero(empty, as_tuple=True)
        out[rows] = 0
        out[(*rows, rows[-1])] = 1
    return out


def attention_norm(layer: LayerTensors):
    """``(map [n, n], head_maps [h, n, n])``: ``‖Σ_h α f‖`` row-normalised, and each head's ``‖α^h f^h‖``."""
    import torch

    gram = torch.einsum("hjd,gjd->jhg", layer.f, layer.f)
    per_head = layer.alpha * layer.f.norm(dim=-1)[:, None, :]
    return normalise_rows(_norms(layer.alpha, gram, residual=False)), per_head


def norm_residual(layer: LayerTensors):
    """``(map, head_maps)``: ``‖g1_i(Σ_h α f + δ x)‖`` row-normalised, and each head's ``‖g1_i(α^h f^h)‖``."""
    import torch

    vectors = _centred(_with_residual(layer), layer.block.norm1.weight)
    gram = torch.einsum("ajd,bjd->jab", vectors, vectors)
    norms = _norms(layer.alpha, gram, residual=True) / layer.sigma1[:, None]
    per_head = layer.alpha * vectors[:-1].norm(dim=-1)[:, None, :] / layer.sigma1[None, :, None]
    return normalise_rows(norms), per_head


def globenc(layer: LayerTensors):
    """``(map, head_maps)``: ``‖g2_i(g1_i(Σ_h α f + δ x))‖`` row-normalised, and each head's part likewise."""
    import torch

    first = _centred(_with_residual(layer), layer.block.norm1.weight)
    vectors = _centred(first, layer.block.norm2.weight)
    gram = torch.einsum("ajd,bjd->jab", vectors, vectors)
    scale = (layer.sigma1 * layer.sigma2)[:, None]
    norms = _norms(layer.alpha, gram, residual=True) / scale
    per_head = layer.alpha * vectors[:-1].norm(dim=-1)[:, None, :] / scale[None]
    return normalise_rows(norms), per_head


def alti(layer: LayerTensors):
    """``(map, head_maps)``: ALTI's ``c_ij`` row-normalised, and each head's ``‖g1_i(α^h f^h)‖`` (as
    :func:`norm_residual`'s: ALTI's parts before the L1 comparison)."""
    vectors = _centred(_with_residual(layer), layer.block.norm1.weight)  # [h + 1, n, d], before dividing by σ
    heads = vectors[:-1]
    residual = vectors[-1] / layer.sigma1[:, None]
    # the resultant: the LayerNorm's output, Σ_j T_i(x_j) + g1_i(b_O) + β1
    out = _alti_map(layer.alpha, layer.sigma1, heads, residual, layer.z)
    per_head = layer.alpha * heads.norm(dim=-1)[:, None, :] / layer.sigma1[None, :, None]
    return normalise_rows(out), per_head


def decoder_alti(layer):
    """``(map, head_maps)`` of a :class:`~attention.mixing.decoder.DecoderLayerTensors`: ALTI's proximity over the
    residual stream after the attention block (Ferrando & Voita 2024), ``T_i(x_j) = Σ_h α^h_ij f^h(x_j) / ρ_i +
    δ_ij x_i`` against ``h_i``, row-normalised; each head's ``‖α^h_ij f^h(x_j)‖ / ρ_i``."""
    out = _alti_map(layer.alpha, layer.scale, layer.f, layer.x, layer.h)
    per_head = layer.alpha * layer.f.norm(dim=-1)[:, None, :] / layer.scale[None, :, None]
    return normalise_rows(out), per_head


def decoder_attention_norm(layer):
    """``(map, head_maps)`` of a decoder layer: ``‖Σ_h α f‖`` row-normalised (``ρ_i`` is one number per row, so the
    post-norm changes no row's proportions), and each head's ``‖α^h f^h‖ / ρ_i``."""
    import torch

    gram = torch.einsum("hjd,gjd->jhg", layer.f, layer.f)
    per_head = layer.alpha * layer.f.norm(dim=-1)[:, None, :] / layer.scale[None, :, None]
    return normalise_rows(_norms(layer.alpha, gram, residual=False)), per_head


def _alti_map(alpha, row_scale, heads, residual, resultant):
    """``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`` ``[n, n]`` with ``T_i(x_j) = Σ_h α^h_ij u^h_j / s_i + δ_ij r_i``:
    ``alpha`` ``[h, n, n]``, ``row_scale`` ``s`` ``[n]``, ``heads`` ``u`` ``[h, n, d]``, ``residual`` ``r`` ``[n, d]``,
    ``resultant`` ``y`` ``[n, d]``; built a block of query rows at a time (bounded memory at 512 tokens)."""
    import torch

    n, d = residual.shape
    rows = max(1, ROW_BLOCK_VALUES // max(1, n * d))
    out = torch.empty((n, n), dtype=residual.dtype)
    for start in range(0, n, rows):
        block = slice(start, min(n, start + rows))
        scaled = alpha[:, block] / row_scale[None, block, None]  # α^h_ij / s_i: [h, rows, n]
        parts = torch.einsum("hij,hjd->ijd", scaled, heads)  # T_i(x_j) without the residual: [rows, n, d]
        index = torch.arange(block.start, block.stop)
        parts[index - start, index] += residual[index]
        target = resultant[block]
        distance = parts.sub_(target[:, None, :]).abs_().sum(dim=-1)  # in place: one [rows, n, d] tensor
        out[block] = (target.abs().sum(dim=-1, keepdim=True) - distance).clamp_min(0)
    return out
