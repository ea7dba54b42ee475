"""Questions about a whole corpus, each answered as a DataFrame (the CLI prints them, the page draws them).

Every figure is a mean over the corpus's examples (or a word's occurrences) of a per-example figure defined in
docs/corpus.md; ``n`` says over how many.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attention.corpus.schema import SCHEMAS
from attention.corpus.source import CorpusError
from attention.corpus.store import chunk_files, read_manifest, read_table
from attention.corpus.tables import TABLES, decode_cls_attention
from attention.metrics import classical_mds

CHANGE_METRICS = ("js_divergence", "cosine", "tv_distance")  # between the two models' attention maps of an input
SHARE = "contribution_share"  # fine-tuned − pre-trained contribution share of a head (attention.corpus.mixing)
HEAD_METRICS = (*CHANGE_METRICS, SHARE)
WORD_MEASURES = ("rollout", "mixing_rollout", "cls_attention", "relevance")
EXAMPLE_KINDS = ("most_changed", "wrong", "disagree", "head")
Z95 = 1.959963984540054  # normal quantile of a two-sided 95 % interval


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise CorpusError(f"Unknown {what} '{value}'.", f"Use one of: {', '.join(allowed)}.")


def corpus_manifest(folder: Path) -> dict:
    """The manifest of the corpus in ``folder``, which must hold at least one example: a folder that is no corpus, or
    a corpus whose every row was skipped (or is not computed yet), is a :class:`CorpusError` saying what to do."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise CorpusError(f"{folder} is not a corpus.", "Run: attention-flows corpus run --out DIR")
    if not any(chunk["rows"]["examples"] for chunk in manifest["chunks"].values()):
        skipped = sum(chunk["rows"]["skipped"] for chunk in manifest["chunks"].values())
        if skipped:
            why, fix = f"all {skipped:,} of its rows were skipped", f"See why: corpus query {folder} skipped"
        elif not manifest.get("source", {}).get("rows"):
            why, fix = "its data has no rows", "Run corpus run on a data file with rows, into a new --out folder."
        else:
            why, fix = "no chunk of it is computed yet", "Rerun the corpus run that made it: it resumes."
        raise CorpusError(f"The corpus in {folder} has no examples to ask about ({why}).", fix)
    return manifest


def skipped_rows(folder: Path) -> pd.DataFrame:
    """The rows a run did not compute, with why: ``example_id, reason`` (empty when none was skipped)."""
    if read_manifest(folder) is None:
        raise CorpusError(f"{folder} is not a corpus.", "Run: attention-flows corpus run --out DIR")
    return read_table(folder, "skipped").sort_values("example_id", ignore_index=True)


def label_counts(folder: Path) -> pd.DataFrame:
    """The gold labels as given and the class each names: ``label, gold, examples`` (most examples first). A label
    whose ``gold`` is null names no class of the fine-tuned model (the run warned of it); examples without a label
    are left out."""
    corpus_manifest(folder)
    examples = read_table(folder, "examples", ["label", "gold"]).dropna(subset=["label"])
    counts = examples.groupby(["label", "gold"], dropna=False).size().rename("examples").reset_index()
    counts = counts.astype(object).where(counts.notna(), None)
    return counts.sort_values(["examples", "label"], ascending=[False, True], ignore_index=True)


def mixing_measures(folder: Path) -> dict[str, str]:
    """The measures of the corpus's context-mixing columns, as its manifest records them: ``contribution_share``
    (the per-head shares' measure, ``norm_residual``) and ``mixing_rollout`` (the [CLS] contribution rows')."""
    return dict(corpus_manifest(folder)["mixing"])


def _with_interval(out: pd.DataFrame) -> pd.DataFrame:
    """``ci_low``, ``ci_high``: the 95 % interval of each row's ``mean`` from its ``sd`` and ``n`` (normal
    approximation, ``mean ± 1.96 · sd / √n``)."""
    half = Z95 * out["sd"].fillna(0.0) / np.sqrt(out["n"])
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out


def head_ranking(folder: Path, metric: str = "js_divergence") -> pd.DataFrame:
    """Heads by their mean change over the corpus: ``layer, head, mean, p10, p50, p90, ci_low, ci_high, n``
    (``metric`` per example and head; p10–p90 its spread over the examples, ci the 95 % interval of the mean).
    Largest mean first — for ``cosine``, which falls as a head changes, the smallest first.

    ``contribution_share``: each example's fine-tuned − pre-trained contribution share of the head (its share of
    its layer's mixing; docs/corpus.md), the heads fine-tuning gave most of their layer's mixing first and those it
    took most from last; with each model's mean share (``pretrained``, ``finetuned``) and the share's
    ``measure``."""
    _check(metric, HEAD_METRICS, "metric")
    manifest = corpus_manifest(folder)
    if metric == SHARE:
        models = [f"{SHARE}_pretrained", f"{SHARE}_finetuned"]
        heads = read_table(folder, "heads", ["layer", "head", *models])
        heads[metric] = heads[models[1]].astype(np.float64) - heads[models[0]].astype(np.float64)
    else:
        heads = read_table(folder, "heads", ["layer", "head", metric])
    grouped = heads.groupby(["layer", "head"])[metric]
    out = grouped.agg(mean="mean", sd="std", n="size").reset_index()
    quantiles = grouped.quantile([0.1, 0.5, 0.9]).unstack()
    out[["p10", "p50", "p90"]] = quantiles.to_numpy()
    out = _with_interval(out)[["layer", "head", "mean", "p10", "p50", "p90", "ci_low", "ci_high", "n"]]
    if metric == SHARE:
        means = heads.groupby(["layer", "head"])[models].mean().to_numpy()
        out["pretrained"], out["finetuned"], out["measure"] = means[:, 0], means[:, 1], manifest["mixing"][SHARE]
    return out.sort_values("mean", ascending=metric == "cosine", ignore_index=True)


def layer_change(folder: Path, metric: str = "js_divergence") -> pd.DataFrame:
    """Per layer, the mean over examples of the layer's head-mean ``metric`` with a 95 % interval of that mean
    (normal approximation, ``mean ± 1.96 · sd / √n``): ``layer, mean, ci_low, ci_high, sd, n``.

    ``contribution_share``: a layer's heads' shares sum to 1 in each model, so their mean change is 0; the layer's
    figure is instead the share of its mixing that moved between heads, ``½ Σ_h |Δ share_h|`` (0: the same
    split, 1: none in common)."""
    _check(metric, HEAD_METRICS, "metric")
    corpus_manifest(folder)
    if metric == SHARE:
        models = [f"{SHARE}_pretrained", f"{SHARE}_finetuned"]
        heads = read_table(folder, "heads", ["example_id", "layer", *models])
        heads[metric] = 0.5 * (heads[models[1]].astype(np.float64) - heads[models[0]].astype(np.float64)).abs()
        layers = heads.groupby(["example_id", "layer"], as_index=False)[metric].sum()
    else:
        layers = read_table(folder, "layers", ["layer", metric])
    out = layers.groupby("layer")[metric].agg(mean="mean", sd="std", n="size").reset_index()
    return _with_interval(out)[["layer", "mean", "ci_low", "ci_high", "sd", "n"]]


def _word_rows(folder: Path, columns: list[str], word: str | None = None) -> pd.DataFrame:
    """Tokens of non-special words (all, or those spelled ``word``, any case), with ``columns`` (filtered while
    reading: a word's rows are a small part of a large corpus)."""
    import pyarrow.compute as pc  # heavy: pyarrow's compute library loads on first use
    import pyarrow.dataset as ds  # heavy: and its dataset library

    where = ~ds.field("special")
    if word is not None:
        where = where & (pc.utf8_lower(ds.field("word")) == word.strip().lower())
    return read_table(folder, "tokens", ["example_id", "word_idx", "word", "special", *columns], where=where)


def word_query(folder: Path, word: str) -> pd.DataFrame:
    """Which layers and heads attend most to ``word`` (DeRose et al.'s word query) from the classification token:
    per (layer, head), the mean over the word's occurrences of the attention [CLS] pays to it (a word's pieces
    summed) in each model, and the difference: ``layer, head, pretrained, finetuned, difference, occurrences``,
    largest fine-tuned attention first."""
    manifest = corpus_manifest(folder)
    shape = manifest["pair"]["num_layers"], manifest["pair"]["num_heads"]
    rows = _word_rows(folder, ["cls_attention_pretrained", "cls_attention_finetuned"], word)
    if rows.empty:
        raise CorpusError(f"'{word}' does not occur in this corpus (special tokens aside).", "Try another word.")
    means, occurrences = {}, 0
    for model in ("pretrained", "finetuned"):
        per_token = decode_cls_attention(rows[f"cls_attention_{model}"], *shape)
        keys = rows[["example_id", "word_idx"]].to_numpy()
        _, occurrence = np.unique(keys, axis=0, return_inverse=True)
        per_word = np.zeros((occurrence.max() + 1, *shape))
        np.add.at(per_word, occurrence.reshape(-1), per_token)  # a word's pieces summed
        means[model], occurrences = per_word.mean(axis=0), per_word.shape[0]
    layer, head = np.indices(shape).reshape(2, -1)
    out = pd.DataFrame(
        {
            "layer": layer + 1,
            "head": head,
            "pretrained": means["pretrained"].reshape(-1),
            "finetuned": means["finetuned"].reshape(-1),
        }
    )
    out["difference"] = out["finetuned"] - out["pretrained"]
    out["occurrences"] = occurrences
    return out.sort_values("finetuned", ascending=False, ignore_index=True)


def word_changes(folder: Path, measure: str = "rollout", *, min_count: int = 5) -> pd.DataFrame:
    """Words whose ``measure`` grew most after fine-tuning: per word (any case; pieces summed per occurrence) the
    mean over its occurrences in each model and the change, ``word, count, pretrained, finetuned, change``, words
    seen fewer than ``min_count`` times left out. ``rollout``: [CLS] rollout after the last layer;
    ``mixing_rollout``: the [CLS] contribution row, the same rollout over a context-mixing measure's maps (the
    frame's ``measure`` column names it, :func:`mixing_measures`); ``cls_attention``: attention from [CLS], mean
    over layers and heads; ``relevance``: class relevance, defined for a model with a classification head only
    (NaN otherwise; then sorted by the fine-tuned value)."""
    _check(measure, WORD_MEASURES, "measure")
    manifest = corpus_manifest(folder)
    if measure == "cls_attention":
        shape = manifest["pair"]["num_layers"], manifest["pair"]["num_heads"]
        rows = _word_rows(folder, ["cls_attention_pretrained", "cls_attention_finetuned"])
        for model in ("pretrained", "finetuned"):
            rows[model] = decode_cls_attention(rows.pop(f"cls_attention_{model}"), *shape).mean(axis=(1, 2))
    else:
        rows = _word_rows(folder, [f"{measure}_pretrained", f"{measure}_finetuned"])
        rows = rows.rename(columns={f"{measure}_pretrained": "pretrained", f"{measure}_finetuned": "finetuned"})
    occurrence = rows.groupby(["example_id", "word_idx"], sort=False)
    per_occurrence = occurrence[["pretrained", "finetuned"]].sum(min_count=1)  # NaN stays NaN (no head)
    per_occurrence["word"] = occurrence["word"].first().str.lower()
    out = per_occurrence.groupby("word").agg(
        count=("word", "size"), pretrained=("pretrained", "mean"), finetuned=("finetuned", "mean")
    )
    out = out[out["count"] >= min_count].reset_index()
    out["change"] = out["finetuned"] - out["pretrained"]
    if measure == "mixing_rollout":
        out["measure"] = manifest["mixing"][measure]
    by = "finetuned" if out["change"].isna().all() else "change"
    return out.sort_values(by, ascending=False, ignore_index=True)


def head_map(folder: Path) -> tuple[pd.DataFrame, float, int]:
    """Every head of both models in 2-D (classical MDS, as the single-example map) of its mean Hellinger distance to
    every other head over the corpus's first examples (:data:`attention.corpus.tables.HEAD_MAP_EXAMPLES`): the
    frame ``model, layer, head, x, y, mean_change``, Kruskal's stress-1 of the embedding (0 = distances kept
    exactly; above ~0.2 the picture distorts them), and the number of examples averaged."""
    manifest = corpus_manifest(folder)
    layers, heads = manifest["pair"]["num_layers"], manifest["pair"]["num_heads"]
    parts = read_table(folder, "head_distances")
    if parts.empty:
        raise CorpusError("This corpus has no head distances yet.", "Run corpus run on it to the end.")
    size = 2 * layers * heads
    total = np.zeros((size, size))
    np.add.at(total, (parts["head_a"].to_numpy(), parts["head_b"].to_numpy()), parts["distance_sum"].to_numpy())
    count = _distance_examples(parts, size)
    distances = total / max(count, 1)
    coords = classical_mds(distances)
    embedded = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(axis=-1))
    stress = float(np.sqrt(((distances - embedded) ** 2).sum() / max((distances**2).sum(), 1e-12)))
    layer, head = np.indices((layers, heads)).reshape(2, -1)
    change = head_ranking(folder).set_index(["layer", "head"])["mean"]
    mean_change = change.reindex(list(zip(layer + 1, head, strict=True))).to_numpy()
    frame = pd.DataFrame(
        {
            "model": np.repeat(["pretrained", "finetuned"], layers * heads),
            "layer": np.tile(layer + 1, 2),
            "head": np.tile(head, 2),
            "x": coords[:, 0],
            "y": coords[:, 1],
            "mean_change": np.tile(mean_change, 2),
        }
    )
    return frame, stress, count


def _distance_examples(parts: pd.DataFrame, size: int) -> int:
    """Examples summed over all chunks: each chunk writes ``size²`` rows with its own count."""
    return int(parts["examples"].to_numpy()[:: size * size].sum())


def find_examples(
    folder: Path, kind: str = "most_changed", *, layer: int | None = None, head: int | None = None, top: int = 20
) -> pd.DataFrame:
    """Examples to look at: ``most_changed`` (largest mean JS divergence over heads), ``wrong`` (the fine-tuned
    model's class is not the gold label), ``disagree`` (the two models' classes differ: both need a head), ``head``
    (where head ``layer``/``head`` changed most). ``top`` rows; ``score`` is what they are sorted by."""
    _check(kind, EXAMPLE_KINDS, "kind of examples")
    corpus_manifest(folder)
    examples = read_table(folder, "examples")
    if kind == "head":
        if layer is None or head is None:
            raise CorpusError("Finding where a head changed most needs its layer and head.", "Give --layer and --head.")
        heads = read_table(folder, "heads", ["example_id", "layer", "head", "js_divergence"])
        chosen = heads[(heads["layer"] == layer) & (heads["head"] == head)]
        if chosen.empty:
            raise CorpusError(f"This corpus has no head L{layer} H{head}.", "Layers are 1-based, heads 0-based.")
        examples = examples.merge(chosen[["example_id", "js_divergence"]], on="example_id")
        examples["score"] = examples.pop("js_divergence")
    elif kind == "wrong":
        if examples["correct_finetuned"].isna().all():
            raise CorpusError("This corpus has no gold labels.", "Run it with --label-col.")
        examples = examples[examples["correct_finetuned"] == False]  # noqa: E712 (nullable column)
        examples["score"] = [max(p) for p in examples["probabilities_finetuned"]]  # confidently wrong first
    elif kind == "disagree":
        if examples["predicted_pretrained"].isna().all():
            raise CorpusError(
                "The pre-trained model has no classification head, so the two models' classes cannot disagree.",
                "Ask for 'wrong' (the fine-tuned model against the gold labels) instead.",
            )
        examples = examples[examples["predicted_pretrained"] != examples["predicted_finetuned"]].copy()
        examples["score"] = examples["mean_change"]
    else:
        examples["score"] = examples["mean_change"]
    return examples.sort_values("score", ascending=False, ignore_index=True).head(top)


def sql(folder: Path, query: str) -> pd.DataFrame:
    """Run DuckDB SQL over the corpus: its tables are views named as :data:`attention.corpus.tables.TABLES` (a table
    with no rows, such as ``skipped`` when nothing was skipped, is an empty view of its schema)."""
    import duckdb  # heavy: loaded on first use

    manifest = read_manifest(folder)
    if manifest is None:
        raise CorpusError(f"{folder} is not a corpus.", "Run: attention-flows corpus run --out DIR")
    connection = duckdb.connect()
    try:
        for name in TABLES:
            files = [str(f) for f in chunk_files(Path(folder), name, manifest)]
            if files:
                listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}])")
            else:
                connection.register(name, SCHEMAS[name].empty_table())
        try:
            return connection.execute(query).df()
        except duckdb.Error as error:
            raise CorpusError(f"The query failed: {str(error).splitlines()[0]}", "Check the SQL.") from error
    finally:
        connection.close()
