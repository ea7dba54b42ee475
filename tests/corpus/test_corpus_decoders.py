"""A corpus of a decoder pair: padded batches give what the single-example engine gives, traced from each text's
last token."""

from __future__ import annotations

import numpy as np
import pandas as pd

from attention import extract, load_config, load_pair
from attention.corpus import corpus_source, read_table, run_corpus
from attention.corpus.tables import decode_cls_attention

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
    assert len(examples) == len(TEXTS)
    for example_id, text in enumerate(TEXTS):
        run = extract(pair.finetuned, text)
        rows = tokens[tokens["example_id"] == example_id].sort_values("position")
        stored = decode_cls_attention(rows["cls_attention_finetuned"], run.num_layers, run.num_heads)
        expected = run.weights[:, :, run.num_tokens - 1, :].transpose(2, 0, 1)  # [token, layer, head]
        np.testing.assert_allclose(stored, expected, atol=2e-3)
        label = examples.loc[examples["example_id"] == example_id, "predicted_finetuned"].iloc[0]
        assert label == run.label
