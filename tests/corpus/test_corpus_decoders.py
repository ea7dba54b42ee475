"""A corpus of a decoder pair: padded batches give what the single-example engine gives, traced from each text's
last token, context-mixing columns included."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from attention import extract, load_config, load_pair, relevance
from attention.corpus import corpus_source, read_manifest, read_table, run_corpus
from attention.corpus.mixing import ROLLOUT_MEASURE
from attention.corpus.tables import decode_cls_attention
from attention.mixing import contributions_for

TEXTS = [
    "a gorgeous, witty movie.",
    "dull.",
    "the plot is thin and the acting is wooden; a dull, tedious film that never ends.",
    "an utterly charming ride!",
]


def test_a_decoder_corpus_equals_the_single_example_engine(tiny_decoders, tmp_path):
    config = tmp_path / "tiny-decoders.toml"
    config.write_text(
        f'name = "tiny-decoders"\n[pretrained]\npath = "{tiny_decoders["llama"]}"\n'
        f'[finetuned]\npath = "{tiny_decoders["llama-classifier"]}"\n'
        '[task]\nname = "tiny task"\nlabels = ["bad", "good"]\n',
        encoding="utf-8",
    )
    data = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    pair = load_pair(config)
    run_corpus(pair, corpus_source(data, config=load_config(config)), tmp_path / "out", chunk_size=4, progress=False)
    tokens = read_table(tmp_path / "out", "tokens")
    examples = read_table(tmp_path / "out", "examples")
    heads = read_table(tmp_path / "out", "heads")
    assert len(examples) == len(TEXTS)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["mixing"] == {"contribution_share": "attention_norm", "mixing_rollout": ROLLOUT_MEASURE}
    _the_page_names_the_last_token(tmp_path / "out", manifest)
    for example_id, text in enumerate(TEXTS):
        found = contributions_for(pair.finetuned, text, measures=("attention_norm", ROLLOUT_MEASURE))
        rows = tokens[tokens["example_id"] == example_id].sort_values("position")
        own = heads[heads["example_id"] == example_id].sort_values(["layer", "head"])
        shares = own["contribution_share_finetuned"].to_numpy().reshape(found[ROLLOUT_MEASURE].num_layers, -1)
        np.testing.assert_allclose(shares, found["attention_norm"].head_shares(), rtol=1e-4)
        np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
        expected_row = relevance(found[ROLLOUT_MEASURE], "rollout")[-1]
        np.testing.assert_allclose(rows["mixing_rollout_finetuned"].to_numpy(), expected_row, rtol=1e-4, atol=1e-7)
        run = extract(pair.finetuned, text)
        rows = tokens[tokens["example_id"] == example_id].sort_values("position")
        stored = decode_cls_attention(rows["cls_attention_finetuned"], run.num_layers, run.num_heads)
        expected = run.weights[:, :, run.num_tokens - 1, :].transpose(2, 0, 1)  # [token, layer, head]
        np.testing.assert_allclose(stored, expected, atol=2e-3)
        label = examples.loc[examples["example_id"] == example_id, "predicted_finetuned"].iloc[0]
        assert label == run.label


def _the_page_names_the_last_token(folder, manifest) -> None:
    """The corpus page and its exports say what a decoder's rows are traced from (an encoder's say [CLS])."""
    from app.corpus.layout import traced_phrase, words_grid
    from app.figures.corpus import make_word_difference
    from attention.corpus.mixing import traced_token
    from attention.corpus.query import word_changes, word_query

    traced = traced_token(manifest)
    assert traced == "the last token" and traced_token({}) == "[CLS]"
    assert traced_phrase(traced, "rollout") == "rollout from the last token"
    grid = words_grid(word_changes(folder, "rollout", min_count=1), "rollout", traced)
    assert "pre-trained rollout from the last token" in [c.get("headerName") for c in grid.columnDefs]
    figure = make_word_difference(word_query(folder, "dull"), "dull", traced)
    assert "the last token → 'dull'" in json.dumps(figure["layout"], ensure_ascii=False)
