"""Deprecated: renamed :mod:`attention.corpus.summaries` (it holds numbers, not figures). Re-exports its names and
warns on import; import :mod:`attention.corpus.summaries` instead."""

from __future__ import annotations

import warnings

from attention.corpus.summaries import (
    CHANGE,
    FIGURE_CELLS,
    STATS,
    batch_head_figures,
    head_figures,
    per_example_figures,
)

warnings.warn(
    "attention.corpus.figures is deprecated: import attention.corpus.summaries (the same names)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["CHANGE", "FIGURE_CELLS", "STATS", "batch_head_figures", "head_figures", "per_example_figures"]
