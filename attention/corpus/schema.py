"""The corpus tables' Parquet schemas (one per table, the same in every chunk). Units and meaning: docs/corpus.md."""

from __future__ import annotations

import pyarrow as pa

_MODELS = ("pretrained", "finetuned")
_HEAD_STATS = ("entropy", "to_cls", "to_sep", "to_punct", "to_self")

SCHEMAS: dict[str, pa.Schema] = {
    "examples": pa.schema(
        [
            ("example_id", pa.int64()),
            ("text", pa.string()),
            ("text_pair", pa.string()),
            ("label", pa.string()),
            ("gold", pa.string()),
            ("n_tokens", pa.int64()),
            ("mean_change", pa.float64()),
            *[(f"predicted_{m}", pa.string()) for m in _MODELS],
            *[(f"probabilities_{m}", pa.list_(pa.float64())) for m in _MODELS],
            ("correct_finetuned", pa.bool_()),
        ]
    ),
    "layers": pa.schema(
        [
            ("example_id", pa.int64()),
            ("layer", pa.int64()),
            ("js_divergence", pa.float64()),
            ("cosine", pa.float64()),
            ("tv_distance", pa.float64()),
        ]
    ),
    "heads": pa.schema(
        [
            ("example_id", pa.int64()),
            ("layer", pa.int64()),
            ("head", pa.int64()),
            ("js_divergence", pa.float32()),
            ("cosine", pa.float32()),
            ("tv_distance", pa.float32()),
            *[(f"{s}_{m}", pa.float32()) for m in _MODELS for s in _HEAD_STATS],
            *[(f"contribution_share_{m}", pa.float32()) for m in _MODELS],
        ]
    ),
    "tokens": pa.schema(
        [
            ("example_id", pa.int64()),
            ("position", pa.int64()),
            ("token", pa.string()),
            ("word_idx", pa.int64()),
            ("word", pa.string()),
            ("special", pa.bool_()),
            ("segment", pa.int64()),
            *[(f"{what}_{m}", pa.float64()) for m in _MODELS for what in ("relevance", "input_x_gradient", "rollout")],
            *[(f"mixing_rollout_{m}", pa.float64()) for m in _MODELS],
            *[(f"cls_attention_{m}", pa.binary()) for m in _MODELS],
        ]
    ),
    "skipped": pa.schema([("example_id", pa.int64()), ("reason", pa.string())]),
    "head_distances": pa.schema(
        [("head_a", pa.int64()), ("head_b", pa.int64()), ("distance_sum", pa.float64()), ("examples", pa.int64())]
    ),
}
