"""Extraction on tiny random models of several architectures, and every bad-input error."""

import numpy as np
import pytest
import torch

from attention import (
    IncompatibleModelsError,
    InputTextError,
    ModelLoadError,
    NoAttentionsError,
    NotAClassifierError,
    check_comparable,
    extract,
    load_model,
    predict,
)
from attention.models import LoadedModel

ARCHITECTURES = ["bert", "roberta", "distilbert", "albert", "electra"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_extract_returns_row_stochastic_layer_head_query_key_array(tiny_models, architecture):
    model = load_model(tiny_models[architecture])
    run = extract(model, "The film was unbelievably good!")
    assert run.weights.dtype == np.float32
    assert run.weights.shape == (2, 2, run.num_tokens, run.num_tokens)
    np.testing.assert_allclose(run.weights.sum(axis=-1), 1.0, atol=1e-5)
    assert not run.weights.flags.writeable
    assert run.tokens[0] == "[CLS]" and run.cls_index == 0 and run.sep_indices == (run.num_tokens - 1,)
    assert run.label is None and run.probabilities is None


def test_extract_handles_sentence_pairs_and_word_groups(tiny_models):
    run = extract(load_model(tiny_models["bert"]), "unbelievably good", "bad")
    assert run.tokens == ("[CLS]", "un", "bel", "ie", "va", "bly", "good", "[SEP]", "bad", "[SEP]")
    assert run.segments == (0, 0, 0, 0, 0, 0, 0, 0, 1, 1)
    assert run.sep_indices == (7, 9)
    words = run.at_word_level()
    assert words.tokens == ("[CLS]", "unbelievably", "good", "[SEP]", "bad", "[SEP]")
    assert words.weights.shape[-1] == 6 and words.sep_indices == (3, 5) and words.level == "word"
    np.testing.assert_allclose(words.weights.sum(axis=-1), 1.0, atol=1e-5)


def test_without_special_tokens_renormalizes_and_forgets_positions(tiny_models):
    run = extract(load_model(tiny_models["bert"]), "a fine film")
    plain = run.without_special_tokens()
    assert plain.tokens == ("a", "fine", "film") and plain.cls_index is None and plain.sep_indices == ()
    np.testing.assert_allclose(plain.weights.sum(axis=-1), 1.0, atol=1e-5)


def test_to_frame_is_tidy_with_one_based_layers(tiny_models):
    run = extract(load_model(tiny_models["bert"]), "a fine film")
    frame = run.to_frame()
    n = run.num_tokens
    assert len(frame) == 2 * 2 * n * n
    assert list(frame.columns[:8]) == [
        "model",
        "layer",
        "head",
        "query_idx",
        "query_token",
        "key_idx",
        "key_token",
        "weight",
    ]
    row = frame[(frame.layer == 2) & (frame["head"] == 1) & (frame.query_idx == 0) & (frame.key_idx == 2)]
    assert row["weight"].item() == pytest.approx(float(run.weights[1, 1, 0, 2]))
    assert row["key_token"].item() == run.tokens[2]


def test_classifier_reports_label_and_probabilities(tiny_models):
    model = load_model(tiny_models["bert-classifier"], labels=("bad", "good"))
    run = extract(model, "a fine film")
    assert run.label in ("bad", "good") and len(run.probabilities) == 2
    assert sum(run.probabilities) == pytest.approx(1.0)
    assert predict(model, "a fine film").label == run.label


def test_classifier_label_count_mismatch_is_reported(tiny_models):
    with pytest.raises(ModelLoadError, match=r"lists 3 labels but model .* has 2 classes"):
        load_model(tiny_models["bert-classifier"], labels=("a", "b", "c"))


def test_prediction_from_bare_encoder_is_refused(tiny_models):
    with pytest.raises(NotAClassifierError, match="has no classification head"):
        predict(load_model(tiny_models["bert"]), "a fine film")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(tiny_models, text):
    with pytest.raises(InputTextError, match="The text is empty"):
        extract(load_model(tiny_models["bert"]), text)


def test_text_longer_than_the_model_accepts_is_refused_not_truncated(tiny_models):
    model = load_model(tiny_models["bert"])  # 64 positions
    with pytest.raises(InputTextError, match=r"is 102 tokens long; model .* accepts at most 64\. Shorten"):
        extract(model, " ".join(["film"] * 100))


def test_model_without_attentions_is_reported(tiny_models):
    from transformers import AutoModel

    loaded = load_model(tiny_models["bert"])
    sdpa = AutoModel.from_pretrained(tiny_models["bert"], attn_implementation="sdpa").eval()
    broken = LoadedModel(**{**loaded.__dict__, "model": sdpa})
    with torch.inference_mode():
        if sdpa(**loaded.tokenizer("a", return_tensors="pt"), output_attentions=True).attentions:
            pytest.skip("this transformers version returns attentions with sdpa")  # pragma: no cover
    with pytest.raises(NoAttentionsError, match="returned no attention weights"):
        extract(broken, "a fine film")


def test_missing_model_path_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "absent")


def test_folder_without_model_files_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="Could not load model"):
        load_model(tmp_path)


def test_pair_with_different_depth_is_refused_with_the_difference(tiny_models):
    with pytest.raises(IncompatibleModelsError, match="layers: 2 vs 3"):
        check_comparable(load_model(tiny_models["bert"]), load_model(tiny_models["bert-3-layers"]))


def test_pair_with_different_vocabulary_is_refused(tiny_models, tmp_path):
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film", "good"]), encoding="utf-8")
    other = load_model(tiny_models["bert"])
    other = LoadedModel(**{**other.__dict__, "tokenizer": BertTokenizerFast(vocab_file=str(vocab))})
    with pytest.raises(IncompatibleModelsError, match=r"tokenizer vocabulary: 30522 vs \d+ entries"):
        check_comparable(load_model(tiny_models["bert"]), other)


@pytest.mark.parametrize("name", ["bert", "roberta", "distilbert", "albert", "electra", "bert-3-layers"])
def test_shape_from_config_json_matches_the_loaded_model(tiny_models, name):
    from attention.models import read_shape

    loaded = load_model(tiny_models[name])
    assert read_shape(tiny_models[name]) == loaded.shape
    assert not any(weight.requires_grad for weight in loaded.model.parameters())  # loaded frozen (README)


def test_unreadable_config_json_is_reported(tmp_path):
    from attention.models import read_shape

    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="Could not read the model config"):
        read_shape(tmp_path)


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_found_it(tiny_models, enabled):
    import gc

    (gc.enable if enabled else gc.disable)()
    try:
        load_model(tiny_models["bert"])
        assert gc.isenabled() is enabled
        with pytest.raises(ModelLoadError):
            load_model(tiny_models["bert"].parent / "absent")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_a_run_holds_its_token_facts_once_and_the_old_forms_still_work():
    """``AttentionRun`` keeps the six token facts in one :class:`TokenFacts` (``run.tokens`` reads through it); the
    old ways of passing them one by one still build the same run, with a DeprecationWarning."""
    from dataclasses import replace

    from attention.extraction import AttentionRun, TokenFacts

    weights = np.full((1, 1, 2, 2), 0.5, dtype=np.float32)
    facts = TokenFacts(("[CLS]", "film"), (True, False), (0, 0), (0, 1), 0, ())
    run = AttentionRun("m", "a film", None, weights, facts, labels=("neg", "pos"))
    assert run.tokens == ("[CLS]", "film") and run.cls_index == 0 and run.labels == ("neg", "pos")
    with pytest.warns(DeprecationWarning, match="facts"):
        positional = AttentionRun(
            "m", "a film", None, weights, *list(facts.__dict__.values())[:6], "token", ("neg", "pos")
        )
    with pytest.warns(DeprecationWarning, match="facts"):
        named = AttentionRun("m", "a film", None, weights, labels=("neg", "pos"), **facts.__dict__)
    assert positional.facts == named.facts == facts and positional.labels == named.labels == run.labels
    with pytest.warns(DeprecationWarning, match="facts"):
        renamed = replace(run, tokens=("[CLS]", "movie"))
    assert renamed.tokens == ("[CLS]", "movie") and renamed.special == run.special and run.tokens[1] == "film"
    with pytest.raises(TypeError, match="token facts"):
        AttentionRun("m", "a film", None, weights)


def test_public_functions_are_not_hidden_by_their_modules():
    """``attention.extract`` and ``attention.rollout`` are functions, also after their modules are imported (the
    modules are ``attention.extraction`` and ``attention.rollouts``, so no name is both)."""
    import importlib
    import inspect

    import attention

    importlib.import_module("attention.extraction")
    importlib.import_module("attention.rollouts")
    assert inspect.isfunction(attention.extract) and inspect.isfunction(attention.rollout)
    assert attention.__version__ == importlib.import_module("attention.version").__version__
