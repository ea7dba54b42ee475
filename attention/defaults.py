"""Defaults of the attention graph, in a module that imports nothing (the command line validates options before
numpy, pandas or torch load). Chosen on the default pair: docs/method.md, "Choosing τ and α"."""

DEFAULT_TAU = 0.05
DEFAULT_ALPHA = 0.5

# What the attention graph is drawn over: the paper's raw attention weights, or a context-mixing measure
# (attention.mixing). The default follows the faithfulness table on the default pair (docs/faithfulness.md).
MEASURE_LABELS: dict[str, str] = {
    "raw_attention": "raw attention (the paper's)",
    "attention_norm": "attention norm ‖αf(x)‖",
    "norm_residual": "norm + residual + LayerNorm",
    "globenc": "GlobEnc",
    "alti": "ALTI",
    "value_zeroing": "value zeroing",
}
DECODER_MEASURES: tuple[str, ...] = ("raw_attention", "attention_norm", "alti")
"""The measures defined for a decoder's pre-norm blocks (docs/method.md, "Decoders"); the others and DecompX
decompose post-LayerNorm encoder blocks only."""
SHARE_MEASURE = "norm_residual"
"""The measure whose per-head parts give each head's contribution share (its share of the layer's mixing):
``‖g1_i(α^h_ij f^h(x_j))‖``, the head's part after an encoder's first LayerNorm (Kobayashi et al. 2021)."""
DECODER_SHARE_MEASURE = "attention_norm"
"""A decoder's: ``‖α^h_ij f^h(x_j)‖ / ρ_i``, the head's part of what its layer adds to the residual stream (no
LayerNorm follows a pre-norm block's attention; Ferrando & Voita 2024)."""


def share_measure(causal: bool) -> str:
    """The measure of the contribution shares for an encoder (``causal`` False) or a decoder."""
    return DECODER_SHARE_MEASURE if causal else SHARE_MEASURE


RESIDUAL_MEASURES = frozenset({"norm_residual", "globenc", "alti", "value_zeroing"})  # hold the residual already
DEFAULT_MEASURE = "alti"
