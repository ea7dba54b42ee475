"""Corpus runs and queries: resumable runs (Ctrl-C, kill -9, a corrupt chunk), rows equal to the single-example
engine, queries on a hand-made corpus, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attention.corpus import (
    CorpusError,
    corpus_source,
    find_examples,
    head_ranking,
    layer_change,
    read_manifest,
    read_table,
    run_corpus,
    sql,
    word_changes,
    word_query,
)
from attention.corpus.store import FORMAT, write_chunk, write_manifest
from attention.corpus.tables import TABLES, ChunkTables
from tests.servers import corpus_cli

WORDS = [
    "a",
    "fine",
    "moving",
    "film",
    "about",
    "nothing",
    "and",
    "everything",
    "with",
    "a",
    "plot",
    "that",
    "never",
    "quite",
    "lands",
]


@pytest.fixture(scope="module")
def tiny_pair(tiny_config):
    from attention import load_pair

    return load_pair(tiny_config)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    """600 short labelled rows, one empty and one far longer than any model accepts."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(600)]
    texts[3] = "   "
    texts[7] = " ".join(["film"] * 700)
    frame = pd.DataFrame({"review": texts, "stars": rng.integers(0, 2, size=600)})
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    frame.to_csv(path, index=False)
    return path


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: read_table(folder, name) for name in TABLES}


def _assert_same_corpus(a: Path, b: Path) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(read_table(a, name), read_table(b, name), check_exact=False, rtol=1e-5)


def _most_padded_batch(pair, data_file: Path) -> list:
    """The batch of the first 12 rows (batches of 8) with the most padding: its examples' lengths differ."""
    from attention.corpus.batch import batches, encode_rows

    source = corpus_source(data_file, config=pair.config, text_col="review", label_col="stars", limit=12)
    encoded, _ = encode_rows(pair, source.frame)
    batch = max(batches(encoded, 8), key=lambda b: b[-1].length - b[0].length)
    assert batch[-1].length > batch[0].length
    return batch


def _batch_passes(pair, batch: list) -> tuple[dict, dict]:
    """Both models' passes over ``batch`` as a run makes them, and each example's unpadded runs."""
    from attention.corpus.batch import run_model
    from attention.corpus.tables import batch_runs

    models = {"pretrained": pair.pretrained, "finetuned": pair.finetuned}
    passes = {name: run_model(model, batch, explain=model.is_classifier) for name, model in models.items()}
    return passes, batch_runs(pair, batch, passes)


def test_rows_equal_the_single_example_engine(tiny_pair, data_file, tmp_path):
    from attention.compare import compare_heads
    from attention.extraction import extract_pair
    from attention.gradients import class_relevance
    from attention.methods import relevance

    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", label_col="stars", limit=40)
    run_corpus(tiny_pair, source, tmp_path, chunk_size=16, batch_size=8, progress=False)
    examples, heads, tokens = (read_table(tmp_path, t) for t in ("examples", "heads", "tokens"))
    for example_id in (0, 9, 22, 39):  # in different batches of different padded lengths
        row = examples[examples["example_id"] == example_id].iloc[0]
        runs = extract_pair(tiny_pair, row.text)
        expected = compare_heads(runs.pretrained, runs.finetuned)
        got = heads[heads["example_id"] == example_id].reset_index(drop=True)
        columns = ("js_divergence", "cosine", "tv_distance", "entropy_pretrained", "to_cls_finetuned",
                   "to_sep_pretrained", "to_punct_pretrained", "to_self_finetuned")  # fmt: skip
        for column in columns:
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-4, atol=1e-6)
        assert row.predicted_finetuned == runs.finetuned.label
        np.testing.assert_allclose(row.probabilities_finetuned, runs.finetuned.probabilities, atol=1e-6)
        mine = tokens[tokens["example_id"] == example_id]
        assert tuple(mine["token"]) == runs.pretrained.tokens
        explained = class_relevance(tiny_pair.finetuned, row.text)
        np.testing.assert_allclose(mine["relevance_finetuned"], explained.scores[-1], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(mine["rollout_pretrained"], relevance(runs.pretrained, "rollout")[-1], atol=1e-6)
        assert mine["relevance_pretrained"].isna().all()  # no classification head: not defined


@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_class_relevance_equals_each_examples_own_pass(tiny_pair, data_file, side, monkeypatch):
    """The corpus works out class relevance (every layer) and input x gradient for a whole padded batch at once;
    each example's equal a single-example pass of the classifier on its own tokens — also when the tokenizer
    would pad on the left (BERT numbers positions from the first, so the batch is always padded on the right)."""
    from attention.corpus.batch import run_model
    from attention.gradients import class_relevance

    batch = _most_padded_batch(tiny_pair, data_file)
    monkeypatch.setattr(tiny_pair.finetuned.tokenizer, "padding_side", side)
    explained = run_model(tiny_pair.finetuned, batch, explain=True)
    assert explained.mask[0, 0] == 1 and explained.mask[0, -1] == 0  # the shortest example is padded on the right
    for i, item in enumerate(batch):
        single = class_relevance(tiny_pair.finetuned, item.text, item.text_pair)
        np.testing.assert_allclose(explained.relevance[i], single.scores, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(explained.input_x_gradient[i], single.input_x_gradient, rtol=1e-4, atol=1e-7)


def test_one_encoding_serves_both_models_only_when_their_tokenizers_match(tiny_pair):
    """Corpus runs tokenize once when both models use the same fast tokenizer; a different normalizer (casing) or
    ``split_special_tokens`` (a literal "[SEP]" in the text splits into pieces) means each model tokenizes for
    itself."""
    from transformers import AutoTokenizer

    from attention.models import same_tokenizer

    first = tiny_pair.pretrained.tokenizer
    assert tiny_pair.shared_tokenizer and same_tokenizer(first, tiny_pair.finetuned.tokenizer)
    assert same_tokenizer(first, AutoTokenizer.from_pretrained(tiny_pair.pretrained.path, padding_side="left"))
    cased = AutoTokenizer.from_pretrained(tiny_pair.pretrained.path, do_lower_case=False)
    assert cased("Film")["input_ids"] != first("Film")["input_ids"]
    assert not same_tokenizer(first, cased)
    split = AutoTokenizer.from_pretrained(tiny_pair.pretrained.path, split_special_tokens=True)
    assert split("a [SEP]")["input_ids"] != first("a [SEP]")["input_ids"]
    assert not same_tokenizer(first, split)


# float32 batch vs float64 single-example figures, from the largest differences measured here ×5: entropy in bits
# (a sum of a few bits), shares and cosine (sums near 1), JS divergence (small terms, near 0 for these models)
FLOAT32_ATOL = {"entropy": 2e-6, "js_divergence": 1e-7, "tv_distance": 1e-7}  # others (shares, cosine): 1e-6


def _float32_atol(name: str) -> float:
    return FLOAT32_ATOL.get(name, 1e-6)


@pytest.mark.parametrize("cells", [None, 1])
def test_batched_head_figures_equal_the_per_example_functions(tiny_pair, data_file, cells, monkeypatch):
    """The corpus computes head figures for a whole padded batch (or, for long inputs, a few examples at a time:
    ``cells=1``); each example's equal the single-example functions on its own tokens, to float32 rounding (the
    batch computes in float32; the tables store float32) — including a left-padded batch."""
    from attention.corpus import summaries

    if cells is not None:
        monkeypatch.setattr(summaries, "FIGURE_CELLS", cells)
    from attention.compare import head_change_arrays, head_stat_arrays
    from attention.corpus.summaries import batch_head_figures, head_figures

    batch = _most_padded_batch(tiny_pair, data_file)
    passes, runs = _batch_passes(tiny_pair, batch)
    for side in ("right", "left"):
        pre, ft, mask = passes["pretrained"].attentions, passes["finetuned"].attentions, passes["pretrained"].mask
        if side == "left":  # each example's block moved to the end of its padded row
            shifts = mask.shape[1] - mask.sum(axis=1)
            pre, ft = (np.stack([np.roll(a[:, i], s, axis=(-2, -1)) for i, s in enumerate(shifts)], axis=1)
                       for a in (pre, ft))  # fmt: skip
            mask = np.stack([np.roll(m, s) for m, s in zip(mask, shifts, strict=True)])
        change, stats = batch_head_figures(pre, ft, mask, runs)
        if side == "left":  # only one model left-padded: its positions do not line up with the other's
            mixed = head_figures(pre, passes["finetuned"].attentions, (mask, passes["finetuned"].mask), runs)
            for name in summaries.CHANGE:
                np.testing.assert_allclose(mixed[0][name], change[name], rtol=0, atol=_float32_atol(name))
        for i in range(len(batch)):
            expected = head_change_arrays(runs["pretrained"][i].weights, runs["finetuned"][i].weights)
            for name, values in expected.items():
                np.testing.assert_allclose(change[name][i], values, rtol=0, atol=_float32_atol(name))
            for model in ("pretrained", "finetuned"):
                expected = head_stat_arrays(runs[model][i])
                for name, values in stats[model].items():
                    np.testing.assert_allclose(values[i], expected[name], rtol=0, atol=_float32_atol(name))


def test_batched_change_figures_hold_where_the_two_models_differ_a_lot(tiny_pair, data_file):
    """The tiny models' maps are close (JS divergence ~1e-5 bits), so the batch is also checked against maps that
    differ a lot: random peaked rows over each example's own keys in place of the fine-tuned maps (JS divergence
    ~0.1–0.5 bits), held to 1e-5 relative."""
    from attention.compare import head_change_arrays
    from attention.corpus.summaries import batch_head_figures

    batch = _most_padded_batch(tiny_pair, data_file)
    passes, runs = _batch_passes(tiny_pair, batch)
    pre, mask = passes["pretrained"].attentions, passes["pretrained"].mask
    peaked = np.random.default_rng(0).random(pre.shape) ** 6 * mask[None, :, None, None, :]
    sharp = (peaked / peaked.sum(axis=-1, keepdims=True)).astype(np.float32)
    change, _ = batch_head_figures(pre, sharp, mask, runs)
    for i in range(len(batch)):
        own = np.flatnonzero(mask[i])
        expected = head_change_arrays(pre[:, i][:, :, own][:, :, :, own], sharp[:, i][:, :, own][:, :, :, own])
        assert expected["js_divergence"].max() > 0.05  # really different maps
        for name, values in expected.items():
            np.testing.assert_allclose(change[name][i], values, rtol=1e-5, atol=1e-8)


def test_batched_figures_stay_finite_where_attention_is_exactly_zero(tiny_pair, data_file):
    """A head that puts all its weight on one key (every other weight of its rows exactly 0, as a softmax that
    underflows gives): entropy and JS divergence keep 0 · log 0 = 0 — entropy 0 bits, the change figures equal the
    single-example functions."""
    from attention.compare import head_change_arrays
    from attention.corpus.summaries import batch_head_figures

    batch = _most_padded_batch(tiny_pair, data_file)
    passes, runs = _batch_passes(tiny_pair, batch)
    pre, mask = passes["pretrained"].attentions, passes["pretrained"].mask
    lengths = mask.sum(axis=1)
    onehot = np.zeros_like(pre)  # [layer, batch, head, query, key]: each row on key (query + 1) mod own length
    for i, n in enumerate(lengths):
        onehot[:, i, :, np.arange(n), (np.arange(n) + 1) % n] = 1.0
    for a, b in ((pre, onehot), (onehot, onehot)):
        change, stats = batch_head_figures(a, b, mask, runs)
        assert all(np.isfinite(values).all() for values in change.values())
        for i, n in enumerate(lengths):
            own_a, own_b = (x[:, i, :, :n, :n] for x in (a, b))
            for name, values in head_change_arrays(own_a, own_b).items():
                np.testing.assert_allclose(change[name][i], values, rtol=1e-5, atol=1e-6)
        assert all(np.isfinite(values).all() for named in stats.values() for values in named.values())
        np.testing.assert_allclose(stats["finetuned"]["entropy"], 0.0, atol=1e-6)  # one key per row: 0 bits


def test_the_old_figures_module_warns_and_reexports_the_summaries(monkeypatch):
    """``attention.corpus.figures`` was renamed ``attention.corpus.summaries``: the old name still imports, with a
    DeprecationWarning, and gives the same functions."""
    import importlib

    from attention.corpus import summaries

    monkeypatch.delitem(sys.modules, "attention.corpus.figures", raising=False)
    with pytest.warns(DeprecationWarning, match="attention.corpus.summaries"):
        old = importlib.import_module("attention.corpus.figures")
    assert old.batch_head_figures is summaries.batch_head_figures and old.CHANGE == summaries.CHANGE


def test_the_engines_corpus_runner_imports_no_server():
    """``attention/corpus`` imports neither the app nor Celery: the Celery executor is the server's
    (``app.team.corpus_tasks``), handed to ``run_corpus`` as any other executor."""
    import ast

    folder = Path(__file__).resolve().parents[2] / "attention" / "corpus"
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("app", "celery", "dash")], path


@pytest.mark.slow
def test_default_pair_rows_equal_the_single_example_engine(default_pair, tmp_path):
    from attention.compare import compare_heads
    from attention.extraction import extract_pair
    from attention.metrics import hellinger_distances

    source = corpus_source(None, config=default_pair.config, limit=24)
    run_corpus(default_pair, source, tmp_path, chunk_size=12, batch_size=8, progress=False)
    heads = read_table(tmp_path, "heads")
    examples = read_table(tmp_path, "examples")
    for example_id in (2, 17):
        text = examples.loc[examples["example_id"] == example_id, "text"].iloc[0]
        runs = extract_pair(default_pair, text)
        expected = compare_heads(runs.pretrained, runs.finetuned)["js_divergence"]
        got = heads.loc[heads["example_id"] == example_id, "js_divergence"]
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)
    assert examples["gold"].notna().all() and examples["correct_finetuned"].mean() > 0.6
    distances = read_table(tmp_path, "head_distances")
    assert distances.groupby(["head_a", "head_b"])["examples"].sum().eq(24).all()
    summed = distances.groupby(["head_a", "head_b"])["distance_sum"].sum().unstack().to_numpy()
    expected = 0.0
    for text in examples["text"]:
        runs = extract_pair(default_pair, text)
        maps = np.concatenate([runs.pretrained.weights, runs.finetuned.weights])
        expected = expected + hellinger_distances(maps.reshape(-1, *maps.shape[-2:]))
    # a head fine-tuning barely moved is ~0.003 from its pre-trained self (d = sqrt(1 - affinity)): there the
    # passes' float32 rounding (~1e-6 in a batch vs alone) moves d by ~2e-5 per example; other pairs are ~0.1–1
    np.testing.assert_allclose(summed, expected, rtol=1e-5, atol=24 * 5e-5)


def test_skipped_rows_are_counted_with_their_reason(tiny_pair, data_file, tmp_path):
    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=20)
    summary = run_corpus(tiny_pair, source, tmp_path, chunk_size=8, progress=False)
    skipped = read_table(tmp_path, "skipped").set_index("example_id")["reason"]
    assert set(skipped.index) == {3, 7}
    assert "empty" in skipped[3].lower()
    assert "tokens long" in skipped[7]
    assert summary.examples == 18 and summary.skipped == 2
    assert 7 not in set(read_table(tmp_path, "examples")["example_id"])  # never truncated


def test_a_missing_column_lists_the_columns(tiny_pair, data_file):
    with pytest.raises(CorpusError, match=r"no column 'text'.*Its columns are: review, stars"):
        corpus_source(data_file, config=tiny_pair.config)


def test_another_pair_in_the_same_folder_is_refused(tiny_pair, data_file, tmp_path):
    from dataclasses import replace

    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=4)
    run_corpus(tiny_pair, source, tmp_path, chunk_size=4, progress=False)
    other = replace(tiny_pair, config=tiny_pair.config.model_copy(update={"name": "another"}))
    with pytest.raises(CorpusError, match="another model pair"):
        run_corpus(other, source, tmp_path, chunk_size=4, progress=False)
    changed = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=5)
    with pytest.raises(CorpusError, match="another data"):
        run_corpus(tiny_pair, changed, tmp_path, chunk_size=4, progress=False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "thesis.tex").write_text("mine")
    with pytest.raises(CorpusError, match="is not empty and holds no corpus"):
        run_corpus(tiny_pair, source, tmp_path / "elsewhere", chunk_size=4, progress=False)
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["thesis.tex"]  # left as it was


def test_the_manifest_records_each_models_file_digest(tiny_pair, data_file, tmp_path):
    """The manifest's revision of each model is the sha256 of its folder's config, vocabulary and weights; a changed
    file changes it."""
    import shutil

    from attention.models import folder_sha256

    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=4)
    run_corpus(tiny_pair, source, tmp_path / "corpus", chunk_size=4, progress=False)
    recorded = read_manifest(tmp_path / "corpus")["pair"]
    for name in ("pretrained", "finetuned"):
        model = getattr(tiny_pair, name)
        assert recorded[name]["sha256"] == model.files_sha256 == folder_sha256(Path(model.path))
    copy = Path(shutil.copytree(tiny_pair.pretrained.path, tmp_path / "copy"))
    assert folder_sha256(copy) == recorded["pretrained"]["sha256"]
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("}", ' , "note": 1}', 1))
    assert folder_sha256(copy) != recorded["pretrained"]["sha256"]


def test_a_corrupt_chunk_is_computed_again(tiny_pair, data_file, tmp_path):
    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", label_col="stars", limit=30)
    reference, damaged = tmp_path / "reference", tmp_path / "damaged"
    run_corpus(tiny_pair, source, reference, chunk_size=10, progress=False)
    run_corpus(tiny_pair, source, damaged, chunk_size=10, progress=False)
    with (damaged / "heads" / "chunk-00001.parquet").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"garbage")
    (damaged / "tokens" / "chunk-00002.parquet").unlink()
    with pytest.raises(CorpusError, match=r"cannot be read.*Rerun the same corpus run command"):
        read_table(damaged, "tokens")  # a query says so in one line before the rerun mends it
    summary = run_corpus(tiny_pair, source, damaged, chunk_size=10, progress=False)
    assert sorted(summary.recomputed) == [1, 2] and summary.computed == 2 and summary.reused == 1
    _assert_same_corpus(reference, damaged)


def _wait_for_chunks(folder: Path, at_least: int, process: subprocess.Popen, timeout: float = 120) -> int:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        manifest = read_manifest(folder) if (folder / "manifest.json").is_file() else None
        if manifest and len(manifest["chunks"]) >= at_least:
            return len(manifest["chunks"])
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError("no chunk was written in time")


def test_interrupted_runs_resume_without_duplicates(tiny_pair, tiny_config, data_file, tmp_path):
    """Ctrl-C, then kill -9, then a rerun to the end: the same tables as one uninterrupted run, no row twice."""
    rows = 300
    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", label_col="stars", limit=rows)
    reference = tmp_path / "reference"
    run_corpus(tiny_pair, source, reference, chunk_size=5, progress=False)
    folder = tmp_path / "interrupted"
    command = ["run", "--config", str(tiny_config), "--data", str(data_file), "--text-col", "review", "--label-col",
               "stars", "--chunk-size", "5", "--workers", "0", "--limit", str(rows), "--out", str(folder)]  # fmt: skip

    first = corpus_cli(*command)
    done = _wait_for_chunks(folder, 3, first)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    # 130, or death by SIGINT: CPython marks a Ctrl-C "unhandled" when it lands inside code an extension runs through
    # PyRun_String (numba, torch), and then exits by SIGINT even though the CLI caught it; shells read both as Ctrl-C.
    assert first.returncode in (130, -signal.SIGINT), err
    assert "rerun the same command" in err
    second = corpus_cli(*command)
    _wait_for_chunks(folder, done + 5, second)
    second.kill()  # kill -9: the chunk in flight is lost, never half-recorded
    second.wait(timeout=30)
    assert len(read_manifest(folder)["chunks"]) < rows // 5, "the run finished before it could be killed"
    third = corpus_cli(*command)
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert "already done" in out
    tables = _tables(folder)
    assert not tables["examples"]["example_id"].duplicated().any()
    assert not tables["tokens"][["example_id", "position"]].duplicated().any()
    assert len(tables["examples"]) + len(tables["skipped"]) == rows
    _assert_same_corpus(reference, folder)


def test_process_pool_gives_the_same_corpus(tiny_pair, data_file, tmp_path):
    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=24)
    run_corpus(tiny_pair, source, tmp_path / "here", chunk_size=6, progress=False)
    run_corpus(tiny_pair, source, tmp_path / "pool", chunk_size=6, workers=2, progress=False)
    _assert_same_corpus(tmp_path / "here", tmp_path / "pool")


# --- queries on a hand-made corpus --------------------------------------------------------------------------------


def _cls_bytes(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=np.float16).tobytes()


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory) -> Path:
    """Two examples over a pair of 2 layers x 2 heads, every value chosen by hand.

    Example 0: [CLS] good movie [SEP] ("movie" in two pieces: "mo", "##vie"); example 1: [CLS] movie bad [SEP].
    """
    folder = tmp_path_factory.mktemp("hand-made")
    zeros = np.zeros((2, 2))
    tokens = pd.DataFrame(
        {
            "example_id": [0, 0, 0, 0, 0, 1, 1, 1, 1],
            "position": [0, 1, 2, 3, 4, 0, 1, 2, 3],
            "token": ["[CLS]", "good", "mo", "##vie", "[SEP]", "[CLS]", "movie", "bad", "[SEP]"],
            "word_idx": [0, 1, 2, 2, 3, 0, 1, 2, 3],
            "word": ["[CLS]", "good", "movie", "movie", "[SEP]", "[CLS]", "movie", "bad", "[SEP]"],
            "special": [True, False, False, False, True, True, False, False, True],
            "segment": [0] * 9,
            "relevance_pretrained": [np.nan] * 9,
            "input_x_gradient_pretrained": [np.nan] * 9,
            "rollout_pretrained": [0.5, 0.1, 0.1, 0.1, 0.2, 0.5, 0.2, 0.1, 0.2],
            "relevance_finetuned": [1.0, 0.3, 0.1, 0.1, 0.0, 1.0, 0.2, 0.6, 0.0],
            "input_x_gradient_finetuned": [0.0] * 9,
            "rollout_finetuned": [0.4, 0.3, 0.05, 0.05, 0.2, 0.4, 0.1, 0.3, 0.2],
            "mixing_rollout_pretrained": [0.4, 0.1, 0.1, 0.1, 0.3, 0.4, 0.2, 0.2, 0.2],
            "mixing_rollout_finetuned": [0.3, 0.4, 0.05, 0.05, 0.2, 0.3, 0.1, 0.45, 0.15],
            "cls_attention_pretrained": [_cls_bytes(zeros)] * 9,
            "cls_attention_finetuned": [
                _cls_bytes(zeros),
                _cls_bytes(zeros),
                _cls_bytes([[0.25, 0.0], [0.0, 0.5]]),  # "mo"
                _cls_bytes([[0.25, 0.0], [0.0, 0.25]]),  # "##vie": the word gets 0.5 and 0.75
                _cls_bytes(zeros),
                _cls_bytes(zeros),
                _cls_bytes([[0.0, 0.0], [0.0, 0.25]]),  # "movie" in example 1
                _cls_bytes(zeros),
                _cls_bytes(zeros),
            ],
        }
    )
    heads = pd.DataFrame(
        {
            "example_id": np.repeat([0, 1], 4),
            "layer": [1, 1, 2, 2] * 2,
            "head": [0, 1, 0, 1] * 2,
            "js_divergence": [0.0, 0.1, 0.2, 0.4, 0.0, 0.5, 0.2, 0.0],
            "cosine": [1.0] * 8,
            "tv_distance": [0.0] * 8,
            **{f"{s}_{m}": [0.0] * 8 for m in ("pretrained", "finetuned")
               for s in ("entropy", "to_cls", "to_sep", "to_punct", "to_self")},
            # each layer's shares sum to 1; fine-tuned − pre-trained: example 0 +0.2 −0.2 −0.1 +0.1,
            # example 1 +0.05 −0.05 −0.2 +0.2
            "contribution_share_pretrained": [0.5, 0.5, 0.6, 0.4, 0.4, 0.6, 0.5, 0.5],
            "contribution_share_finetuned": [0.7, 0.3, 0.5, 0.5, 0.45, 0.55, 0.3, 0.7],
        }
    )  # fmt: skip
    layers = heads.groupby(["example_id", "layer"], as_index=False)[["js_divergence", "cosine", "tv_distance"]].mean()
    examples = pd.DataFrame(
        {
            "example_id": [0, 1],
            "text": ["good movie", "movie bad"],
            "text_pair": [None, None],
            "label": ["1", "0"],
            "gold": ["good", "bad"],
            "n_tokens": [5, 4],
            "mean_change": [0.175, 0.175],
            "predicted_pretrained": [None, None],
            "predicted_finetuned": ["good", "good"],
            "probabilities_pretrained": [None, None],
            "probabilities_finetuned": [[0.2, 0.8], [0.4, 0.6]],
            "correct_finetuned": [True, False],
        }
    )
    distances = pd.DataFrame(columns=["head_a", "head_b", "distance_sum", "examples"])
    chunk = ChunkTables(examples, layers, heads, tokens, pd.DataFrame(columns=["example_id", "reason"]), distances)
    manifest = {"format": FORMAT, "mixing": {"contribution_share": "norm_residual", "mixing_rollout": "globenc"},
                "pair": {"num_layers": 2, "num_heads": 2}, "chunks": {"0": write_chunk(folder, 0, chunk)}}  # fmt: skip
    write_manifest(folder, manifest)
    return folder


def test_word_query_sums_pieces_and_averages_occurrences(hand_made):
    answer = word_query(hand_made, "Movie").set_index(["layer", "head"])
    # occurrence 1: pieces summed -> L1H0 0.5, L2H1 0.75; occurrence 2: L2H1 0.25 -> means 0.25 and 0.5
    assert answer.loc[(1, 0), "finetuned"] == pytest.approx(0.25)
    assert answer.loc[(2, 1), "finetuned"] == pytest.approx(0.5)
    assert answer.loc[(2, 1), "difference"] == pytest.approx(0.5)
    assert (answer["occurrences"] == 2).all()
    assert answer.index[0] == (2, 1)  # most attention first
    with pytest.raises(CorpusError, match="does not occur"):
        word_query(hand_made, "[CLS]")  # special tokens are not words of the text


def test_word_changes_and_relevance(hand_made):
    grown = word_changes(hand_made, "rollout", min_count=1).set_index("word")
    assert grown.loc["good", "change"] == pytest.approx(0.2)
    assert grown.loc["movie", "count"] == 2
    assert grown.loc["movie", "pretrained"] == pytest.approx((0.2 + 0.2) / 2)
    assert set(grown.index[:2]) == {"bad", "good"}  # both 0.1 -> 0.3; movie 0.2 -> 0.25
    assert list(word_changes(hand_made, "rollout", min_count=2)["word"]) == ["movie"]
    relevance = word_changes(hand_made, "relevance", min_count=1)
    assert relevance["pretrained"].isna().all()
    assert list(relevance["word"]) == ["bad", "good", "movie"]  # by the fine-tuned value: 0.6, 0.3, 0.2


def test_words_whose_contribution_rollout_grew_name_the_corpus_measure(hand_made):
    grown = word_changes(hand_made, "mixing_rollout", min_count=1)
    assert list(grown["word"]) == ["good", "bad", "movie"]  # +0.3, +0.25, −0.1
    assert grown.set_index("word").loc["movie", "finetuned"] == pytest.approx(0.1)  # pieces summed
    assert (grown["measure"] == "globenc").all()  # the manifest's, not this version's default


def test_ranking_by_contribution_change_orders_heads_by_the_mean_difference(hand_made):
    ranking = head_ranking(hand_made, "contribution_share")
    assert [tuple(r) for r in ranking[["layer", "head"]].to_numpy()] == [(2, 1), (1, 0), (1, 1), (2, 0)]
    top = ranking.set_index(["layer", "head"])
    assert top["mean"].to_numpy() == pytest.approx([0.15, 0.125, -0.125, -0.15])
    assert top.loc[(1, 0), "pretrained"] == pytest.approx(0.45) and top.loc[(1, 0), "finetuned"] == pytest.approx(0.575)
    assert top.loc[(2, 1), "p10"] == pytest.approx(0.11) and top.loc[(2, 1), "p90"] == pytest.approx(0.19)
    half = 1.959964 * np.std([0.1, 0.2], ddof=1) / np.sqrt(2)
    assert top.loc[(2, 1), "ci_high"] - top.loc[(2, 1), "mean"] == pytest.approx(half, rel=1e-5)
    assert (top["measure"] == "norm_residual").all() and (top["n"] == 2).all()
    moved = layer_change(hand_made, "contribution_share").set_index("layer")  # ½ Σ_h |Δ share| per example
    assert moved["mean"].to_numpy() == pytest.approx([(0.2 + 0.05) / 2, (0.1 + 0.2) / 2])


def test_head_ranking_layers_and_examples(hand_made):
    ranking = head_ranking(hand_made)
    assert [tuple(r) for r in ranking[["layer", "head"]].to_numpy()] == [(1, 1), (2, 0), (2, 1), (1, 0)]
    top = ranking.set_index(["layer", "head"])  # L1H1: 0.1 and 0.5; L2H1: 0.4 and 0.0
    assert top.loc[(1, 1), "mean"] == pytest.approx(0.3) and top.loc[(2, 1), "p90"] == pytest.approx(0.36)
    assert top.loc[(1, 1), "p10"] == pytest.approx(0.14) and (top["n"] == 2).all()
    layers = layer_change(hand_made).set_index("layer")
    assert layers.loc[1, "mean"] == pytest.approx(0.15)  # example means 0.05 and 0.25
    half = 1.959964 * np.std([0.05, 0.25], ddof=1) / np.sqrt(2)
    assert layers.loc[1, "ci_high"] - layers.loc[1, "mean"] == pytest.approx(half, rel=1e-5)
    wrong = find_examples(hand_made, "wrong")
    assert list(wrong["example_id"]) == [1]
    changed = find_examples(hand_made, "head", layer=2, head=1)
    assert list(changed["example_id"]) == [0, 1]
    with pytest.raises(CorpusError, match="no classification head"):
        find_examples(hand_made, "disagree")
    assert sql(hand_made, "select count(*) as n from tokens where not special")["n"].iloc[0] == 5
    with pytest.raises(CorpusError, match="The query failed"):
        sql(hand_made, "select nope from examples")


def test_cli_run_and_query(tiny_config, data_file, tmp_path):
    run = corpus_cli("run", "--config", str(tiny_config), "--data", str(data_file), "--text-col", "review", "--limit",
               "12", "--out", str(tmp_path), "--workers", "0")  # fmt: skip
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "done: 10 examples (2 skipped" in out
    query = corpus_cli("query", str(tmp_path), "heads", "--top", "3", "--csv", str(tmp_path / "heads.csv"))
    out, err = query.communicate(timeout=60)
    assert query.returncode == 0, err
    assert out.splitlines()[0].split() == ["layer", "head", "mean", "p10", "p50", "p90", "ci_low", "ci_high", "n"]
    assert len(pd.read_csv(tmp_path / "heads.csv")) == 4  # 2 layers x 2 heads
    missing = corpus_cli("run", "--config", str(tiny_config), "--data", str(data_file), "--out", str(tmp_path / "x"))
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 2
    assert err.strip().splitlines() == ["attention-flows: error: " + str(data_file) + " has no column 'text' "
                                        "(--text-col). Its columns are: review, stars."]  # fmt: skip
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["pair"]["name"] == "tiny" and manifest["code_version"]
    assert manifest["source"]["description"].endswith("(text: review, no labels)")  # never "label: None"


def test_long_inputs_are_batched_fewer_at_a_time():
    from attention.corpus.batch import ATTENTION_CELLS, Encoded, batches

    lengths = [12] * 40 + [300, 512, 200, 90]
    encoded = [Encoded(i, "", None, None, None, n, None) for i, n in enumerate(lengths)]
    grouped = batches(encoded, 16)
    assert sorted(e.example_id for b in grouped for e in b) == list(range(len(lengths)))  # each input once
    assert all((len(b) <= 16 and len(b) * max(e.length for e in b) ** 2 <= ATTENTION_CELLS) or len(b) == 1
               for b in grouped)  # fmt: skip
    # by length: 16 + 16 short ones, then 8 short ones with the 90 (9 · 90² fits), 200 and 300 together
    # (2 · 300² fits, 3 · 300² would not), 512 alone
    assert [[e.length for e in b][-2:] for b in grouped] == [[12, 12], [12, 12], [12, 90], [200, 300], [512]]
    assert [len(b) for b in grouped] == [16, 16, 9, 2, 1]


def test_two_runs_on_one_folder_at_once_are_refused(tiny_pair, data_file, tmp_path):
    from attention.corpus.run import exclusive

    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=4)
    with exclusive(tmp_path), pytest.raises(CorpusError, match="Another run is computing"):
        run_corpus(tiny_pair, source, tmp_path, progress=False)
    summary = run_corpus(tiny_pair, source, tmp_path, progress=False)  # free again afterwards
    assert (summary.examples, summary.skipped) == (3, 1)  # row 3 is blank


def test_chunks_run_on_celery_workers(tiny_pair, tiny_config, data_file, tmp_path):
    """`corpus run --broker`: two real Celery workers (redis-server as broker) compute the chunks; the corpus
    equals a local run's. With no worker left, the run stops with a message naming the command that starts one."""
    from app.service.jobbook import QUEUE
    from app.team.corpus_tasks import CeleryExecutor
    from tests.servers import redis_server

    source = corpus_source(data_file, config=tiny_pair.config, text_col="review", label_col="stars", limit=60)
    run_corpus(tiny_pair, source, tmp_path / "local", chunk_size=10, progress=False)
    with redis_server(tmp_path / "redis") as redis:
        broker = redis.url(1)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ATTENTION_FLOWS_TORCH_THREADS": "1"}
        workers = []
        for name in ("one", "two"):
            log = (tmp_path / f"worker-{name}.log").open("w")
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--config", str(tiny_config), "--broker", broker, "--name",
                 f"{name}@localhost"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            ))  # fmt: skip
        try:
            run = corpus_cli("run", "--config", str(tiny_config), "--data", str(data_file), "--text-col", "review",
                       "--label-col", "stars", "--limit", "60", "--chunk-size", "10", "--broker", broker,
                       "--out", str(tmp_path / "celery"))  # fmt: skip
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
            assert "6 chunks computed" in out
            assert all(os.getpriority(os.PRIO_PROCESS, w.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)
                       for w in workers)  # below the web workers: jobs never slow interactive requests  # fmt: skip
            logs = [(tmp_path / f"worker-{name}.log").read_text() for name in ("one", "two")]
            assert all("corpus_chunk" in log and "succeeded" in log for log in logs), logs  # both took chunks
            _assert_same_corpus(tmp_path / "local", tmp_path / "celery")

            for worker in workers:  # every worker gone: the run stops with a message, not forever
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
            more = corpus_source(data_file, config=tiny_pair.config, text_col="review", limit=100)
            with pytest.raises(CorpusError, match="No Celery worker took or finished a chunk for 3 s"):
                run_corpus(tiny_pair, more, tmp_path / "stalled", chunk_size=10, progress=False,
                           executor=CeleryExecutor(broker, QUEUE, chunk_timeout=60.0, idle_timeout=3.0))  # fmt: skip
        finally:
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)


def test_sentence_pair_corpus_from_the_cli_equals_the_single_example_engine(tiny_pair, tiny_config, tmp_path):
    """A .jsonl of sentence pairs run through the CLI: each example is encoded as a pair (``[CLS] a [SEP] b
    [SEP]``) and its rows equal the single-example engine on the same pair; the page links the pair."""
    from app.corpus.grid import example_rows
    from app.corpus.layout import examples_grid
    from attention.compare import compare_heads
    from attention.extraction import extract_pair
    from attention.gradients import class_relevance

    rng = np.random.default_rng(1)
    rows = [{"premise": " ".join(rng.choice(WORDS, size=rng.integers(2, 9))),
             "hypothesis": " ".join(rng.choice(WORDS, size=rng.integers(2, 6))),
             "gold": ["negative", "positive"][i % 2]} for i in range(20)]  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "corpus"
    run = corpus_cli("run", "--config", str(tiny_config), "--data", str(data), "--text-col", "premise", "--pair-col",
               "hypothesis", "--label-col", "gold", "--out", str(out), "--workers", "0",
               "--batch-size", "4")  # fmt: skip
    stdout, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "done: 20 examples (0 skipped" in stdout
    examples, heads, tokens = (read_table(out, t) for t in ("examples", "heads", "tokens"))
    assert examples["text_pair"].tolist() == [row["hypothesis"] for row in rows]
    for example_id in (0, 7, 19):
        premise, hypothesis = rows[example_id]["premise"], rows[example_id]["hypothesis"]
        runs = extract_pair(tiny_pair, premise, hypothesis)
        mine = tokens[tokens["example_id"] == example_id]
        assert tuple(mine["token"]) == runs.pretrained.tokens
        assert list(mine["token"]).count("[SEP]") == 2  # encoded as a pair, not as one sentence
        expected = compare_heads(runs.pretrained, runs.finetuned)
        got = heads[heads["example_id"] == example_id].reset_index(drop=True)
        np.testing.assert_allclose(got["js_divergence"], expected["js_divergence"], rtol=1e-4, atol=1e-6)
        explained = class_relevance(tiny_pair.finetuned, premise, hypothesis)
        np.testing.assert_allclose(mine["relevance_finetuned"], explained.scores[-1], rtol=1e-4, atol=1e-7)
    table = examples[["example_id", "text", "text_pair"]]
    block = example_rows(table, {"startRow": 0, "endRow": 2}, models="tiny", options="", default_models="tiny")
    assert block["rowData"][1]["text_pair"] == rows[1]["hypothesis"]
    assert "pair=" + rows[1]["hypothesis"].split()[0] in block["rowData"][1]["open"]
    headers = [c.get("headerName") for c in examples_grid("corpus", "all", pairs=True).columnDefs]
    assert "second sentence" in headers
    assert "second sentence" not in [c.get("headerName") for c in examples_grid("corpus", "all").columnDefs]
    fields = [c["field"] for c in examples_grid("corpus", "all", labelled=False).columnDefs]
    assert "gold" not in fields and "correct" not in fields and "predicted_finetuned" in fields  # no empty columns
    assert {"gold", "correct"} <= {c["field"] for c in examples_grid("corpus", "all").columnDefs}


def test_the_old_celery_keywords_name_their_replacement(tiny_pair, tmp_path):
    """The engine no longer builds a Celery app: the old keywords are refused with the executor to use instead."""
    from attention.corpus import run_corpus

    with pytest.raises(TypeError, match="CeleryExecutor"):
        run_corpus(tiny_pair, None, tmp_path / "corpus", celery="redis://localhost:6379/0")
    assert not (tmp_path / "corpus").exists()  # refused before anything is written
