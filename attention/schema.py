"""Column names of every tidy frame the engine returns, validated in one place.

Conventions: ``layer`` is 1-based (layer ``l`` maps tokens at depth ``l-1`` to depth ``l``; depth 0 is the input
embeddings), ``head`` is 0-based, token positions (``*_idx``) are 0-based. ``query`` attends to ``key``.
"""

from __future__ import annotations

import pandas as pd

ATTENTION_COLUMNS = ("model", "layer", "head", "query_idx", "query_token", "key_idx", "key_token", "weight")
GRAPH_NODE_COLUMNS = ("layer", "token_idx", "token", "count", "influence", "reached")
GRAPH_EDGE_COLUMNS = (
    "layer",
    "query_idx",
    "key_idx",
    "query_token",
    "key_token",
    "weight",
    "weight_max",
    "heads",
    "multiplicity",
)
MATRIX_COLUMNS = ("model", "query_idx", "query_token", "key_idx", "key_token", "weight")


def validate_frame(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Return ``frame`` if it has every column in ``columns`` (extra columns allowed); raise otherwise."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame.columns)}")
    return frame
