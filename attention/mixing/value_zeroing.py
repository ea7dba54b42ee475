"""Value zeroing (Mohebbi, Zuidema, Chrupała & Alishahi, EACL 2023): how much token ``i``'s output of a layer
changes when token ``j``'s value vectors are zeroed in every head.

``C_ij = 1 − cos(ỹ_i^{¬j}, y_i)`` (their eq. 3), clipped at 0 against rounding, each row normalised to sum to 1.
Zeroing ``v_j`` removes exactly ``Σ_h α^h_ij f^h(x_j)`` from the attention block's output (attention weights and
the residual stay), so ``ỹ^{¬j}`` is the rest of the layer — LayerNorm, feed-forward, LayerNorm, with the model's
own weights and activation — run on ``r1 − [α f]_{·j}``, batched over ``j`` in blocks (one layer tail per token:
``n`` per layer in all). The tail runs in float64: ``1 − cos`` of two float32 vectors that differ little is
rounding noise (~1e-7), as large as a weak token's true effect.
"""

from __future__ import annotations

from attention.mixing.layers import LayerTensors
from attention.mixing.norms import normalise_rows

BATCH_VALUES = 8_000_000  # float64 feed-forward activations held at once (64 MB)


def value_zeroing(layer: LayerTensors):
    """``[n, n]`` row-normalised value-zeroing map of one layer (no per-head maps)."""
    import torch

    n = layer.x.shape[0]
    tail = _Tail(layer.block)
    step = max(1, BATCH_VALUES // max(1, n * tail.width))
    r1 = layer.r1.double()
    reference = tail(r1)
    alpha, f = layer.alpha.double(), layer.f.double()
    out = torch.empty((n, n), dtype=torch.float64)
    for start in range(0, n, step):
        tokens = slice(start, min(n, start + step))
        removed = torch.einsum("hij,hjd->jid", alpha[:, :, tokens], f[:, tokens])  # [j, i, d]
        similarity = torch.nn.functional.cosine_similarity(tail(r1[None] - removed), reference[None], dim=-1)
        out[:, tokens] = (1 - similarity).clamp_min(0).T
    return normalise_rows(out).to(layer.x.dtype)


class _Tail:
    """A layer after its attention block, in float64: ``LN2(z + W2 act(W1 z + b1) + b2)`` with ``z = LN1(r1)``."""

    def __init__(self, block) -> None:
        def weights(module):
            return module.weight.double(), module.bias.double()

        self.norm1, self.eps1 = weights(block.norm1), block.norm1.eps
        self.norm2, self.eps2 = weights(block.norm2), block.norm2.eps
        self.ffn_in, self.ffn_out = weights(block.ffn_in), weights(block.ffn_out)
        self.activation = block.activation
        self.width = self.ffn_in[0].shape[0]

    def __call__(self, r1):
        from torch.nn.functional import layer_norm, linear

        z = layer_norm(r1, r1.shape[-1:], *self.norm1, eps=self.eps1)
        r2 = z + linear(self.activation(linear(z, *self.ffn_in)), *self.ffn_out)
        return layer_norm(r2, r2.shape[-1:], *self.norm2, eps=self.eps2)
