"""Defaults of the attention graph, in a module that imports nothing (the command line validates options before
numpy, pandas or torch load). Chosen on the default pair: docs/method.md, "Choosing τ and α"."""

DEFAULT_TAU = 0.05
DEFAULT_ALPHA = 0.5
