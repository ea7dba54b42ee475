"""The attention graph: trace from the classification token down through the layers (our definition of the
Attention Flows view, see ``docs/method.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from attention.schema import GRAPH_EDGE_COLUMNS, GRAPH_NODE_COLUMNS, validate_frame

# Defaults chosen on the default pair (6 x 12, ~20-token sentences): see docs/method.md, "Choosing tau".
DEFAULT_TAU = 0.25
DEFAULT_ALPHA = 0.5


@dataclass(frozen=True, eq=False)
class AttentionGraph:
    """Result of :func:`attention_graph`.

    ``nodes``: one row per (layer, token) of the layer range; the token seen as a *key* of that layer:
    ``count`` = ``c_l(w)``, ``influence`` = ``I_l(w)``, ``reached`` = ``w ∈ R_{l-1}``.
    ``edges``: one row per edge ``(l, query -> key)``: ``weight`` / ``weight_max`` are the mean / max over the
    selected heads, ``heads`` the heads at or above τ, ``multiplicity`` their number ``m_l``.
    ``influence`` / ``counts`` are the same numbers as ``[layer_in_range, token]`` arrays (first layer first).
    """

    nodes: pd.DataFrame
    edges: pd.DataFrame
    sources: tuple[int, ...]
    layers: tuple[int, int]
    heads: tuple[int, ...]
    tau: float
    alpha: float
    influence: np.ndarray
    counts: np.ndarray

    def reached(self, layer: int) -> tuple[int, ...]:
        """Token indices reached *by* 1-based ``layer`` (the set ``R_{layer-1}``)."""
        rows = self.nodes[(self.nodes["layer"] == layer) & self.nodes["reached"]]
        return tuple(int(i) for i in rows["token_idx"])


def _layer_range(layers: tuple[int, int] | None, num_layers: int) -> tuple[int, int]:
    first, last = layers if layers is not None else (1, num_layers)
    if not 1 <= first <= last <= num_layers:
        raise ValueError(f"layers must satisfy 1 <= first <= last <= {num_layers}, got {(first, last)}")
    return int(first), int(last)


def _head_subset(heads: Sequence[int] | None, num_heads: int) -> tuple[int, ...]:
    chosen = tuple(range(num_heads)) if heads is None else tuple(sorted({int(h) for h in heads}))
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_heads:
        raise ValueError(f"heads must be a non-empty subset of 0..{num_heads - 1}, got {heads}")
    return chosen


def attention_graph(
    weights: np.ndarray,
    *,
    tau: float = DEFAULT_TAU,
    alpha: float = DEFAULT_ALPHA,
    heads: Sequence[int] | None = None,
    layers: tuple[int, int] | None = None,
    sources: Sequence[int] | None = None,
    tokens: Sequence[str] | None = None,
    normalize: bool = False,
) -> AttentionGraph:
    """Trace attention from ``sources`` at the deepest layer of ``layers`` down to the first.

    Edge ``(l, i -> k)`` exists when ``i ∈ R_l`` and some head ``j ∈ heads`` has ``A[l, j][i, k] >= tau``.
    ``R_{l-1}`` is the set of keys of layer-``l`` edges. Counts ``c_l(w) = Σ_{i ∈ R_l} m_l(i, w)``; influence
    ``I_l(w) = c_l(w) + alpha · I_{l+1}(w)`` with ``I_{last+1} = 0``; with ``normalize`` each layer's influence is
    divided by its sum.

    Args:
        weights: ``[layer, head, query, key]`` attention.
        tau: threshold in [0, 1].
        alpha: decay in [0, 1].
        heads: head subset ``S`` (0-based); None for all heads.
        layers: 1-based inclusive ``(first, last)``; None for all layers.
        sources: token indices ``R_last``; None for position 0 (the classification token of BERT-family models;
            pass ``run.cls_index`` for others).
        tokens: display strings for the frames; None for ``"#i"``.
        normalize: divide each layer's influence by its sum.
    """
    weights = np.asarray(weights)
    if weights.ndim != 4:
        raise ValueError(f"weights must be [layer, head, query, key], got shape {weights.shape}")
    if not 0.0 <= tau <= 1.0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"tau and alpha must lie in [0, 1], got tau={tau}, alpha={alpha}")
    num_layers, num_heads, n, _ = weights.shape
    first, last = _layer_range(layers, num_layers)
    head_subset = _head_subset(heads, num_heads)
    source_set = np.array(sorted({int(s) for s in (sources if sources is not None else (0,))}), dtype=np.int64)
    if source_set.size == 0 or source_set[0] < 0 or source_set[-1] >= n:
        raise ValueError(f"sources must be token indices in 0..{n - 1}, got {sources}")
    labels = np.asarray(list(tokens) if tokens is not None else [f"#{i}" for i in range(n)], dtype=object)

    span = last - first + 1
    counts = np.zeros((span, n), dtype=np.int64)
    reached = np.zeros((span, n), dtype=bool)
    edge_parts = []
    frontier = source_set
    for layer in range(last, first - 1, -1):
        row = layer - first
        if frontier.size == 0:
            continue
        selected = weights[layer - 1][list(head_subset)][:, frontier, :]  # [|S|, |R_l|, n]
        passing = selected >= tau
        multiplicity = passing.sum(axis=0)  # [|R_l|, n]
        counts[row] = multiplicity.sum(axis=0)
        query_pos, key_idx = np.nonzero(multiplicity)
        reached[row, np.unique(key_idx)] = True
        if query_pos.size:
            head_ids = np.asarray(head_subset)
            edge_parts.append(
                (
                    np.full(query_pos.size, layer),
                    frontier[query_pos],
                    key_idx,
                    selected.mean(axis=0, dtype=np.float64)[query_pos, key_idx],
                    selected.max(axis=0).astype(np.float64)[query_pos, key_idx],
                    [tuple(head_ids[mask].tolist()) for mask in passing[:, query_pos, key_idx].T],
                    multiplicity[query_pos, key_idx],
                )
            )
        frontier = np.flatnonzero(reached[row])

    influence = np.zeros((span, n), dtype=np.float64)
    deeper = np.zeros(n)
    for row in range(span - 1, -1, -1):
        influence[row] = counts[row] + alpha * deeper
        deeper = influence[row]
    if normalize:
        influence = normalize_per_layer(influence)

    layer_col, token_col = np.indices((span, n)).reshape(2, -1)
    nodes = pd.DataFrame(
        {
            "layer": layer_col + first,
            "token_idx": token_col,
            "token": labels[token_col],
            "count": counts.reshape(-1),
            "influence": influence.reshape(-1),
            "reached": reached.reshape(-1),
        }
    )
    edges = _edge_frame(edge_parts, labels)
    return AttentionGraph(
        nodes=validate_frame(nodes, GRAPH_NODE_COLUMNS),
        edges=validate_frame(edges, GRAPH_EDGE_COLUMNS),
        sources=tuple(int(s) for s in source_set),
        layers=(first, last),
        heads=head_subset,
        tau=float(tau),
        alpha=float(alpha),
        influence=influence,
        counts=counts,
    )


def normalize_per_layer(influence: np.ndarray) -> np.ndarray:
    """``[layer, token]`` influence divided by each layer's sum; layers that sum to zero stay zero."""
    totals = influence.sum(axis=1, keepdims=True)
    return np.divide(influence, totals, out=np.zeros_like(influence, dtype=np.float64), where=totals > 0)


def _edge_frame(parts: list[tuple], labels: np.ndarray) -> pd.DataFrame:
    """One frame from per-layer edge arrays ``(layer, query_idx, key_idx, weight, weight_max, heads,
    multiplicity)``, built once (a frame per layer and a concat cost more than the tracing)."""
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=object if c in ("heads", "query_token", "key_token") else "int64")
                for c in GRAPH_EDGE_COLUMNS
            }
        ).astype({"weight": "float64", "weight_max": "float64"})
    layer, query_idx, key_idx, weight, weight_max, heads, multiplicity = zip(*parts, strict=True)
    query_idx, key_idx = np.concatenate(query_idx), np.concatenate(key_idx)
    return pd.DataFrame(
        {
            "layer": np.concatenate(layer),
            "query_idx": query_idx,
            "key_idx": key_idx,
            "query_token": labels[query_idx],
            "key_token": labels[key_idx],
            "weight": np.concatenate(weight),
            "weight_max": np.concatenate(weight_max),
            "heads": [h for part in heads for h in part],
            "multiplicity": np.concatenate(multiplicity),
        }
    )
