"""Context mixing in corpus runs: each head's contribution share and each example's [CLS] contribution row, worked out
for a padded batch from the run's own passes, equal the single-example engine (``contributions_for``) on each input
alone; stored shares sum to 1 per layer; the manifest names the measures; corpora of the older format are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attention.corpus import CorpusError, corpus_source, head_ranking, read_manifest, read_table, run_corpus
from attention.corpus.mixing import MIXING, ROLLOUT_MEASURE, SHARE_MEASURE
from attention.methods import relevance
from attention.mixing import MEASURES, contributions_for

TEXTS = [
    ("a fine , moving film", None),
    ("a dull film without a plot that never quite lands , and nothing about it works", None),
    ("plot", None),
    ("a fine film", "about nothing and everything"),
]
ARCHITECTURES = ["bert-classifier", "bert", "roberta", "distilbert", "albert", "electra"]
RTOL = 1e-4
# a row's entries sum to 1; ALTI's c_ij = ‖z_i‖₁ − ‖z_i − T_i(x_j)‖₁ nearly cancels for weak tokens, where the
# engine's float32 sums are ~1e-7 off (the batch computes the two norms in float64)
ROW_ATOL = 1e-6


@pytest.fixture(scope="module")
def tiny_pair(tiny_config):
    from attention import load_pair

    return load_pair(tiny_config)


@pytest.fixture(scope="module")
def tiny(tiny_models):
    from attention.models import load_model

    return {name: load_model(tiny_models[name]) for name in ARCHITECTURES}


def _encoded(model, texts) -> list:
    from attention.corpus.batch import Encoded
    from attention.extraction import encode, token_facts

    out = []
    for index, (text, pair) in enumerate(texts):
        encoding = encode(model, text, pair)
        out.append(Encoded(index, text, pair, None, encoding, encoding["input_ids"].shape[1],
                           token_facts(model, encoding)))  # fmt: skip
    return out


def _padded_pass(model, batch):
    """A run's pass over ``batch`` (padded on the right, last layer cut to position 0 where the model allows it),
    with the tensors :func:`kept_tensors` keeps."""
    from attention.corpus.batch import padded
    from attention.corpus.mixing import kept_tensors
    from attention.shortcut import first_position_only

    inputs = padded(model, batch)
    with torch.inference_mode(), first_position_only(), kept_tensors(model) as kept:
        output = model.model(**inputs, output_attentions=True)
    return kept, torch.stack(output.attentions).float().numpy(), inputs["attention_mask"].numpy()


def _engine(model, item, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """The single-example engine on one input: ``(shares [layer, head], [CLS] rollout row of measure [token])``."""
    found = contributions_for(model, item.text, item.text_pair, measures=(SHARE_MEASURE, measure))
    return found[SHARE_MEASURE].head_shares(), relevance(found[measure], "rollout")[-1]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_batched_mixing_equals_the_single_example_engine(tiny, name, measure):
    """Every measure on every supported architecture: the padded batch's figures equal each input's own run."""
    from attention.corpus.mixing import batch_mixing

    model = tiny[name]
    batch = _encoded(model, TEXTS)
    kept, attentions, mask = _padded_pass(model, batch)
    assert mask.min() == 0, "the batch must hold padding"
    mixed = batch_mixing(model, batch, kept, attentions, mask, measure)
    assert mixed.shares.shape == (len(batch), model.num_layers, model.num_heads)
    for index, item in enumerate(batch):
        shares, row = _engine(model, item, measure)
        np.testing.assert_allclose(mixed.shares[index], shares, rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(mixed.rows[index], row, rtol=RTOL, atol=ROW_ATOL)
        np.testing.assert_allclose(mixed.shares[index].sum(axis=-1), 1.0, atol=1e-12)
        assert row.shape == (item.length,) and row.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_layers_batched_tensors_equal_the_traced_layers(tiny, name):
    """Every layer's tensors rebuilt for the padded batch from what the pass kept (``x``, the value projection,
    ``r1``, ``z``; the last layer's ``r1`` and ``z`` recomputed where the pass cut them to position 0) equal the
    engine's :func:`trace_layers` of each input alone. (The tiny models' σ1 is ~1 at every token, so the figures
    alone would hardly notice a wrong σ1; this compares it directly.)"""
    from attention.corpus.mixing import _centred, _layer
    from attention.mixing.layers import trace_layers

    model = tiny[name]
    batch = _encoded(model, TEXTS)
    kept, attentions, mask = _padded_pass(model, batch)
    if name.startswith("bert"):
        assert kept.r1[-1].shape[1] == 1 and kept.r1[0].shape[1] == mask.shape[1]  # the shortcut is on
    with torch.inference_mode():
        layers = [_layer(b, kept, i, torch.from_numpy(attentions[i])) for i, b in enumerate(kept.blocks)]
        for example, item in enumerate(batch):
            own = slice(0, item.length)
            for layer, traced in zip(layers, trace_layers(model, item.encoding), strict=True):
                for field in ("x", "r1", "z", "sigma1"):
                    torch.testing.assert_close(getattr(layer, field)[example, own], getattr(traced, field),
                                               rtol=1e-5, atol=1e-5, msg=field)  # fmt: skip
                parts = _centred(traced.f, traced.block.norm1.weight)  # [h, n, d]
                torch.testing.assert_close(layer.parts[example, own].transpose(0, 1), parts, rtol=1e-5, atol=1e-5)


def _check_corpus(pair, folder: Path, texts: dict[int, tuple[str, str | None]]) -> None:
    heads, tokens = read_table(folder, "heads"), read_table(folder, "tokens")
    for model_name in ("pretrained", "finetuned"):
        sums = heads.groupby(["example_id", "layer"])[f"contribution_share_{model_name}"].sum()
        np.testing.assert_allclose(sums, 1.0, atol=1e-6)  # float32 shares
    for example_id, (text, text_pair) in texts.items():
        for model_name in ("pretrained", "finetuned"):
            model = getattr(pair, model_name)
            found = contributions_for(model, text, text_pair, measures=(SHARE_MEASURE, ROLLOUT_MEASURE))
            shares = found[SHARE_MEASURE].head_shares()
            mine = heads[heads["example_id"] == example_id].sort_values(["layer", "head"])
            stored = mine[f"contribution_share_{model_name}"].to_numpy().reshape(shares.shape)
            np.testing.assert_allclose(stored, shares, rtol=RTOL, atol=1e-7)
            row = relevance(found[ROLLOUT_MEASURE], "rollout")[-1]
            stored = tokens.loc[tokens["example_id"] == example_id, f"mixing_rollout_{model_name}"]
            np.testing.assert_allclose(stored, row, rtol=RTOL, atol=ROW_ATOL)
            assert not np.allclose(stored, tokens.loc[tokens["example_id"] == example_id, f"rollout_{model_name}"])


def test_stored_shares_and_rows_equal_the_single_example_engine(tiny_pair, tmp_path):
    rng = np.random.default_rng(3)
    words = ["a", "fine", "moving", "film", "about", "nothing", "and", "everything", "with", "plot", "never"]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 14))) for _ in range(30)]
    data = tmp_path / "reviews.csv"
    data.write_text("text\n" + "\n".join(texts) + "\n")
    source = corpus_source(data, config=tiny_pair.config)
    run_corpus(tiny_pair, source, tmp_path / "corpus", chunk_size=16, batch_size=8, progress=False)
    _check_corpus(tiny_pair, tmp_path / "corpus", {i: (texts[i], None) for i in (0, 5, 17, 29)})
    assert read_manifest(tmp_path / "corpus")["mixing"] == MIXING == {
        "contribution_share": "norm_residual", "mixing_rollout": ROLLOUT_MEASURE}  # fmt: skip


def test_a_sentence_pair_corpus_stores_the_pairs_own_figures(tiny_pair, tmp_path):
    rng = np.random.default_rng(4)
    words = ["a", "fine", "moving", "film", "about", "nothing", "dull", "plot"]
    rows = [{"premise": " ".join(rng.choice(words, size=rng.integers(2, 9))),
             "hypothesis": " ".join(rng.choice(words, size=rng.integers(1, 6)))} for _ in range(12)]  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = corpus_source(data, config=tiny_pair.config, text_col="premise", pair_col="hypothesis")
    run_corpus(tiny_pair, source, tmp_path / "corpus", chunk_size=12, batch_size=4, progress=False)
    tokens = read_table(tmp_path / "corpus", "tokens")
    assert list(tokens.loc[tokens["example_id"] == 0, "token"]).count("[SEP]") == 2
    _check_corpus(tiny_pair, tmp_path / "corpus", {i: (rows[i]["premise"], rows[i]["hypothesis"]) for i in (0, 6, 11)})


def test_ranking_by_contribution_change_is_the_mean_of_each_examples_difference(tiny_pair, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text\n" + "\n".join(["a fine film", "a dull plot about nothing", "moving", "film film"]) + "\n")
    run_corpus(tiny_pair, corpus_source(data, config=tiny_pair.config), tmp_path / "c", chunk_size=4, progress=False)
    heads = read_table(tmp_path / "c", "heads")
    heads["change"] = heads["contribution_share_finetuned"].astype(float) - heads["contribution_share_pretrained"]
    expected = heads.groupby(["layer", "head"])["change"].mean().sort_values(ascending=False)
    ranking = head_ranking(tmp_path / "c", "contribution_share")
    assert [tuple(key) for key in ranking[["layer", "head"]].to_numpy()] == list(expected.index)
    np.testing.assert_allclose(ranking["mean"], expected.to_numpy(), rtol=1e-12)
    assert (ranking["ci_low"] <= ranking["mean"]).all() and (ranking["mean"] <= ranking["ci_high"]).all()
    with pytest.raises(CorpusError, match="Unknown metric 'share'"):
        head_ranking(tmp_path / "c", "share")


def test_a_corpus_of_the_older_format_is_refused_not_misread(tiny_pair, tmp_path):
    from attention.corpus.query import word_changes

    data = tmp_path / "reviews.csv"
    data.write_text("text\na fine film\na dull plot\n")
    source = corpus_source(data, config=tiny_pair.config)
    folder = tmp_path / "corpus"
    run_corpus(tiny_pair, source, folder, chunk_size=4, progress=False)
    manifest = read_manifest(folder)
    old = {key: value for key, value in manifest.items() if key != "mixing"} | {"format": 1}
    (folder / "manifest.json").write_text(json.dumps(old))  # as a format-1 run wrote it
    for ask in (lambda: head_ranking(folder), lambda: word_changes(folder), lambda: read_table(folder, "heads")):
        with pytest.raises(CorpusError, match=r"another format \(1 there; this version reads format 2\).*Compute it"):
            ask()
    with pytest.raises(CorpusError, match=r"holds a corpus of another format \(1 there, 2 now\).*another --out"):
        run_corpus(tiny_pair, source, folder, chunk_size=4, progress=False)
    manifest["mixing"] = {**MIXING, "mixing_rollout": "value_zeroing" if ROLLOUT_MEASURE != "value_zeroing" else "alti"}
    (folder / "manifest.json").write_text(json.dumps(manifest))  # a default measure that has changed since
    with pytest.raises(CorpusError, match="another context-mixing measure"):
        run_corpus(tiny_pair, source, folder, chunk_size=4, progress=False)


@pytest.mark.slow
def test_default_pair_corpus_stores_the_engines_shares_and_rows(default_pair, tmp_path):
    source = corpus_source(None, config=default_pair.config, limit=24)
    run_corpus(default_pair, source, tmp_path, chunk_size=12, batch_size=8, progress=False)
    examples = read_table(tmp_path, "examples")
    texts = {int(i): (t, None) for i, t in zip(examples["example_id"], examples["text"], strict=True) if i in (2, 17)}
    _check_corpus(default_pair, tmp_path, texts)


def test_a_model_the_measures_cannot_decompose_gets_nan_not_a_failed_run(tiny_pair, tmp_path, monkeypatch):
    import attention.corpus.mixing as mixing

    monkeypatch.setattr(mixing, "mixing_blocks", lambda model: None)  # as for an architecture they do not support
    data = tmp_path / "reviews.csv"
    data.write_text("text\na fine film\na dull plot\n")
    run_corpus(tiny_pair, corpus_source(data, config=tiny_pair.config), tmp_path / "c", chunk_size=4, progress=False)
    heads, tokens = read_table(tmp_path / "c", "heads"), read_table(tmp_path / "c", "tokens")
    assert heads["contribution_share_finetuned"].isna().all() and tokens["mixing_rollout_pretrained"].isna().all()
    assert tokens["rollout_pretrained"].notna().all()  # everything else as before


def test_the_cli_ranks_heads_by_contribution_change(tiny_config, tmp_path):
    from tests.servers import corpus_cli

    data = tmp_path / "reviews.csv"
    data.write_text("text\na fine film\na dull plot about nothing\nmoving\n")
    run = corpus_cli("run", "--config", str(tiny_config), "--data", str(data), "--out", str(tmp_path / "c"))
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    query = corpus_cli("query", str(tmp_path / "c"), "heads", "--metric", "contribution_share")
    out, err = query.communicate(timeout=60)
    assert query.returncode == 0, err
    assert out.splitlines()[0].split()[-3:] == ["pretrained", "finetuned", "measure"]
    assert out.splitlines()[1].split()[-1] == "norm_residual"
