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
RESIDUAL_MEASURES = frozenset({"norm_residual", "globenc", "alti", "value_zeroing"})  # hold the residual already
DEFAULT_MEASURE = "alti"
