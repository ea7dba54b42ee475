"""One chunk of a corpus → its tidy tables (schema and units: docs/corpus.md, :data:`TABLES`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from attention.corpus.batch import (
    HEAD_STATS,
    MODELS,
    Encoded,
    ModelPass,
    batches,
    encode_rows,
    example_run,
    gold_label,
    run_model,
)
from attention.corpus.positions import own_positions
from attention.corpus.source import refused_rows
from attention.corpus.summaries import head_figures
from attention.extraction import AttentionRun
from attention.metrics import hellinger_distances
from attention.models import ModelPair

TABLES = ("examples", "layers", "heads", "tokens", "skipped", "head_distances")
HEAD_MAP_EXAMPLES = 1000  # the head similarity map averages the first examples' distances (Clark et al.: ~1,000)
CLS_ATTENTION_DTYPE = np.float16  # [layer, head] per token and model, as bytes: 2 × 72 × 2 B per token for MiniLM


@dataclass
class ChunkTables:
    """The tables of one chunk (each a DataFrame, possibly empty)."""

    examples: pd.DataFrame
    layers: pd.DataFrame
    heads: pd.DataFrame
    tokens: pd.DataFrame
    skipped: pd.DataFrame
    head_distances: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [(name, getattr(self, name)) for name in TABLES]


def decode_cls_attention(blobs, num_layers: int, num_heads: int) -> np.ndarray:
    """``[token, layer, head]`` float32 from tokens' ``cls_attention_*`` bytes (a sequence of them)."""
    joined = b"".join(blobs)
    return np.frombuffer(joined, dtype=CLS_ATTENTION_DTYPE).astype(np.float32).reshape(-1, num_layers, num_heads)


def unknown_labels(rows: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    """``example_id, label`` of the rows of ``rows`` (``example_id, text, text_pair, label``) whose label is a string
    that names none of the fine-tuned model's ``labels`` (a class name or an index, :func:`gold_label`): they run
    with no gold label, and a run lists them. Empty for a model without classes (its labels name nothing)."""
    found = [
        {"example_id": int(row.example_id), "label": row.label}
        for row in rows.itertuples(index=False)
        if labels and isinstance(row.label, str) and gold_label(row.label, labels) is None
    ]
    return pd.DataFrame(found, columns=["example_id", "label"])


def batch_runs(pair: ModelPair, batch: list[Encoded], passes: dict[str, ModelPass]) -> dict[str, list[AttentionRun]]:
    """Each model's :class:`AttentionRun` of every example of a batch, on its own (unpadded) tokens."""
    runs: dict[str, list[AttentionRun]] = {}
    for model_name, model in zip(MODELS, (pair.pretrained, pair.finetuned), strict=True):
        done = passes[model_name]
        runs[model_name] = []
        for index, item in enumerate(batch):
            block = own_positions(done.mask[index])
            weights = done.attentions[:, index][:, :, block][:, :, :, block]
            probabilities = None if done.probabilities is None else done.probabilities[index]
            runs[model_name].append(example_run(model, item, np.ascontiguousarray(weights), probabilities))
    return runs


def _example_rows(
    pair: ModelPair,
    item: Encoded,
    passes: dict[str, ModelPass],
    index: int,
    runs: dict[str, AttentionRun],
    change: dict[str, np.ndarray],
    stats: dict[str, dict[str, np.ndarray]],
):
    """The rows of one example in each table (dicts of columns), from its runs and its head figures (``change``
    and each model's ``stats``, ``[layer, head]`` each, :func:`attention.corpus.summaries.batch_head_figures`)."""
    pre, ft = runs["pretrained"], runs["finetuned"]
    num_layers, num_heads, n = pre.weights.shape[0], pre.weights.shape[1], pre.num_tokens
    layer, head = np.indices((num_layers, num_heads)).reshape(2, -1)
    heads = {"example_id": np.full(layer.size, item.example_id), "layer": layer + 1, "head": head}
    heads |= {name: values.reshape(-1).astype(np.float32) for name, values in change.items()}
    for model_name in MODELS:
        heads |= {f"{s}_{model_name}": stats[model_name][s].reshape(-1).astype(np.float32) for s in HEAD_STATS}
    for model_name in MODELS:  # [layer, head]: each layer's heads sum to 1
        shares = passes[model_name].mixing.shares[index]
        heads[f"contribution_share_{model_name}"] = shares.reshape(-1).astype(np.float32)
    layers = {
        "example_id": np.full(num_layers, item.example_id),
        "layer": np.arange(1, num_layers + 1),
        **{name: values.mean(axis=1) for name, values in change.items()},
    }
    cls = pre.cls_index if pre.cls_index is not None else 0
    words = pre.words()
    tokens = {
        "example_id": np.full(n, item.example_id),
        "position": np.arange(n),
        "token": list(pre.tokens),
        "word_idx": np.asarray(pre.groups),
        "word": [words[g] for g in pre.groups],
        "special": np.asarray(pre.special),
        "segment": np.asarray(pre.segments),
    }
    for model_name in MODELS:
        done, run = passes[model_name], runs[model_name]
        tokens[f"relevance_{model_name}"] = (
            done.relevance[index][-1] if done.relevance is not None else np.full(n, np.nan)
        )
        tokens[f"input_x_gradient_{model_name}"] = (
            done.input_x_gradient[index] if done.input_x_gradient is not None else np.full(n, np.nan)
        )
        tokens[f"rollout_{model_name}"] = done.rollout[index]
        tokens[f"mixing_rollout_{model_name}"] = done.mixing.rows[index]
        from_cls = run.weights[:, :, cls, :].astype(CLS_ATTENTION_DTYPE)  # [layer, head, token]
        tokens[f"cls_attention_{model_name}"] = [np.ascontiguousarray(from_cls[:, :, t]).tobytes() for t in range(n)]
    gold = gold_label(item.label, pair.finetuned.labels)
    example = {
        "example_id": item.example_id,
        "text": item.text,
        "text_pair": item.text_pair,
        "label": item.label,
        "gold": gold,
        "n_tokens": n,
        "mean_change": float(change["js_divergence"].mean()),
    }
    for model_name in MODELS:
        run = runs[model_name]
        example[f"predicted_{model_name}"] = run.label
        example[f"probabilities_{model_name}"] = list(run.probabilities) if run.probabilities else None
    example["correct_finetuned"] = None if gold is None or ft.label is None else ft.label == gold
    distances = None
    if item.example_id < HEAD_MAP_EXAMPLES:  # [2 · layer · head] squared: pre-trained heads first
        maps = np.concatenate([pre.weights, ft.weights]).reshape(-1, n, n)
        distances = hellinger_distances(maps)
    return example, layers, heads, tokens, distances


def _distance_frame(total: np.ndarray | None, count: int) -> pd.DataFrame:
    """The chunk's summed pairwise head distances as ``head_a, head_b, distance_sum, examples`` (head index
    ``model · layers · heads + (layer − 1) · heads + head``, pre-trained = model 0)."""
    if total is None:
        return pd.DataFrame(columns=["head_a", "head_b", "distance_sum", "examples"])
    a, b = np.indices(total.shape).reshape(2, -1)
    return pd.DataFrame({"head_a": a, "head_b": b, "distance_sum": total.reshape(-1), "examples": count})


def _frame(parts: list[dict]) -> pd.DataFrame:
    """One frame from per-example dicts of equal-length columns (arrays or lists), built once."""
    if not parts:
        return pd.DataFrame()
    columns = {}
    for name in parts[0]:
        values = [part[name] for part in parts]
        columns[name] = (
            np.concatenate(values) if isinstance(values[0], np.ndarray) else [v for value in values for v in value]
        )
    return pd.DataFrame(columns)


def chunk_tables(
    pair: ModelPair, rows: pd.DataFrame, *, batch_size: int, progress: Callable[[int], None] | None = None
) -> ChunkTables:
    """Every table of ``rows`` (``example_id, text, text_pair, label``), sorted by ``example_id``; rows not run as
    given (:func:`refused_rows`) and rows the tokenizers refuse are in ``skipped`` with the reason."""
    refused = refused_rows(rows)
    encoded, skipped = encode_rows(pair, rows[~rows["example_id"].isin(refused["example_id"])])
    skipped = [*refused.to_dict("records"), *skipped]
    examples, layers, heads, tokens = [], [], [], []
    distance_total, distance_count = None, 0
    for batch in batches(encoded, batch_size):
        passes = {
            name: run_model(model, batch, explain=model.is_classifier)
            for name, model in zip(MODELS, (pair.pretrained, pair.finetuned), strict=True)
        }
        runs = batch_runs(pair, batch, passes)
        pre, ft = passes["pretrained"], passes["finetuned"]
        change, stats = head_figures(pre.attentions, ft.attentions, (pre.mask, ft.mask), runs)
        for index, item in enumerate(batch):
            example, layer_rows, head_rows, token_rows, distances = _example_rows(
                pair,
                item,
                passes,
                index,
                {name: model_runs[index] for name, model_runs in runs.items()},
                {name: values[index] for name, values in change.items()},
                {model: {name: values[index] for name, values in named.items()} for model, named in stats.items()},
            )
            if distances is not None:
                distance_total = distances if distance_total is None else distance_total + distances
                distance_count += 1
            examples.append(example)
            layers.append(layer_rows)
            heads.append(head_rows)
            tokens.append(token_rows)
        if progress is not None:
            progress(len(batch))
    tables = ChunkTables(
        examples=pd.DataFrame(examples),
        layers=_frame(layers),
        heads=_frame(heads),
        tokens=_frame(tokens),
        skipped=pd.DataFrame(skipped, columns=["example_id", "reason"]),
        head_distances=_distance_frame(distance_total, distance_count),
    )
    for name, frame in tables.items():
        if "example_id" in frame.columns and not frame.empty:
            sort = ["example_id", *[c for c in ("layer", "head", "position") if c in frame.columns]]
            setattr(tables, name, frame.sort_values(sort, ignore_index=True))
    return tables
