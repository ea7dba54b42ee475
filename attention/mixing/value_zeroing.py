"""Value zeroing (Mohebbi, Zuidema, Chrupała & Alishahi, EACL 2023): how much token ``i``'s output of a layer
changes when token ``j``'s value vectors are zeroed in every head.

``C_ij = 1 − cos(ỹ_i^{¬j}, y_i)`` (their eq. 3), each row normalised to sum to 1. Zeroing ``v_j`` removes exactly
``Σ_h α^h_ij f^h(x_j)`` from the attention block's output (attention weights and the residual stay), so
``ỹ^{¬j}`` is the rest of the layer — LayerNorm, feed-forward, LayerNorm, with the model's own modules — run on
``r1 − [α f]_{·j}``, batched over ``j`` in blocks (one layer tail per token: ``n`` per layer in all).
``1 − cos`` is computed as ``‖â − b̂‖² / 2`` of the unit vectors: the same number, but exact in float32 where
``1 − cos`` itself would cancel to rounding noise (~1e-7) for the small changes weak tokens make.
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
from attention.mixing.layers import LayerTensors
from attention.mixing.norms import normalise_rows

BATCH_VALUES = 16_000_000  # feed-forward activations held at once (64 MB)


def value_zeroing(layer: LayerTensors):
    """``[n, n]`` row-normalised value-zeroing map of one layer (no per-head maps)."""
    import torch

    block = layer.block
    n = layer.x.shape[0]
    step = max(1, BATCH_VALUES // max(1, n * block.ffn_in.out_features))
    reference = _unit(_tail(block, layer.r1))
    out = torch.empty((n, n), dtype=layer.x.dtype)
    for start in range(0, n, step):
        tokens = slice(start, min(n, start + step))
        removed = torch.einsum("hij,hjd->jid", layer.alpha[:, :, tokens], layer.f[:, tokens])  # [j, i, d]
        changed = _unit(_tail(block, layer.r1[None] - removed))
        out[:, tokens] = ((changed - reference[None]).square().sum(dim=-1) / 2).T  # 1 − cos
    return normalise_rows(out)


def _tail(block, r1):
    """The layer after its attention block: ``LN2(z + W2 act(W1 z + b1) + b2)`` with ``z = LN1(r1)``."""
    z = block.norm1(r1)
    return block.norm2(z + block.ffn_out(block.activation(block.ffn_in(z))))


def _unit(vectors):
    return vectors / vectors.norm(dim=-1, keepdim=True)
