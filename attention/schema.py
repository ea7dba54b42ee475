"""Column names of every tidy frame the engine returns, validated in one place.

Conventions: ``layer`` is 1-based (layer ``l`` maps tokens at depth ``l-1`` to depth ``l``; depth 0 is the input
embeddings), ``head`` is 0-based, token positions (``*_idx``) are 0-based. ``query`` attends to ``key``.
"""

from __future__ import annotations

import pandas as pd

ATTENTION_COLUMNS = ("model", "layer", "head", "query_idx", "query_token", "key_idx", "key_token", "weight")
# One row per (depth, token): live ``mass`` of the traced sources there, ``absorbed`` mass (sinks only).
GRAPH_NODE_COLUMNS = ("depth", "token_idx", "token", "mass", "absorbed", "reached", "sink")
# One row per drawn edge of layer ``layer`` (query at depth ``layer``, key at depth ``layer-1``); ``kind`` is
# attention / residual / sink; ``flow`` the share of the sources' mass it carries; ``weight`` / ``weight_max`` the
# head mean / max of the attention (NaN for residual edges); ``heads`` the selected heads at or above τ.
GRAPH_EDGE_COLUMNS = (
    "layer",
    "query_idx",
    "key_idx",
    "query_token",
    "key_token",
    "kind",
    "weight",
    "weight_max",
    "heads",
    "multiplicity",
    "flow",
)
MATRIX_COLUMNS = ("model", "query_idx", "query_token", "key_idx", "key_token", "weight")


def validate_frame(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Return ``frame`` if it has every column in ``columns`` (extra columns allowed); raise otherwise."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame.columns)}")
    return frame
