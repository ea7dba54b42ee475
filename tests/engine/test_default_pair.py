"""Integration tests on the real default pair (all-MiniLM-L6-v2 and its fine-tuned twin)."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from attention import compare_layers, extract, extract_pair, load_config, prepare_finetuned
from attention.data import example_sentences
from attention.prepare import read_card

pytestmark = pytest.mark.slow


def test_default_pair_shapes_and_prediction(default_pair, default_runs):
    assert default_pair.pretrained.num_layers == 6 and default_pair.pretrained.num_heads == 12
    assert not default_pair.pretrained.is_classifier and default_pair.finetuned.is_classifier
    assert default_runs.finetuned.label == "positive"
    assert default_runs.finetuned.probabilities[1] > 0.5
    assert default_runs.pretrained.weights.shape == default_runs.finetuned.weights.shape


@pytest.mark.parametrize("role", ["pretrained", "finetuned"])
def test_extract_equals_transformers_directly(default_pair, role):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    loaded = getattr(default_pair, role)
    auto_class = AutoModelForSequenceClassification if loaded.is_classifier else AutoModel
    model = auto_class.from_pretrained(loaded.path, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(loaded.path)
    text, pair_text = "the plot is thin , but the acting is superb .", "a second sentence ."
    with torch.inference_mode():
        output = model(**tokenizer(text, pair_text, return_tensors="pt"), output_attentions=True)
    expected = torch.stack(output.attentions)[:, 0].numpy()
    run = extract(loaded, text, pair_text)
    np.testing.assert_array_equal(run.weights, expected)
    assert run.tokens[1:4] == ("the", "plot", "is")
    if loaded.is_classifier:
        np.testing.assert_allclose(run.probabilities, torch.softmax(output.logits[0], -1).numpy(), rtol=1e-6)


def test_full_prepare_met_its_targets(default_pair):
    card = read_card(default_pair.finetuned.path)
    recipe = load_config("default").prepare
    assert card["held_out_rows"] == recipe.held_out_size == 1000
    assert card["train_rows"] == recipe.train_size and card["recipe"]["seed"] == recipe.seed
    assert card["held_out_accuracy"] >= 0.78
    assert (default_pair.finetuned.path / "model.safetensors").is_file()
    assert "Held-out accuracy" in (default_pair.finetuned.path / "README.md").read_text()


def test_two_prepares_at_once_train_once_write_a_card_and_are_idempotent(tmp_path):
    """Two prepares of one folder at once (two shells, two test workers): one trains, the other waits for its lock and
    finds the model. (That the full recipe beats its accuracy target is checked on the real twin above.)"""
    overrides = {"train_size": 64, "held_out_size": 64, "learning_rate": 2e-4}
    target = tmp_path / "twin"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: prepare_finetuned("default", target=target, recipe_overrides=overrides,
                                                            progress=False), range(2)))  # fmt: skip
    trained = [r for r in results if not r.skipped]
    assert len(trained) == 1 and trained[0].steps == 4, results
    assert all(r.held_out_accuracy == trained[0].held_out_accuracy for r in results)
    card = json.loads((target / "training.json").read_text())
    assert card["held_out_accuracy"] == trained[0].held_out_accuracy and card["recipe"]["seed"] == 13
    assert card["train_rows"] == 64 and card["held_out_rows"] == 64
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= {p.name for p in target.iterdir()}
    again = prepare_finetuned("default", target=target, recipe_overrides=overrides, progress=False)
    assert again.skipped and again.held_out_accuracy == trained[0].held_out_accuracy


def test_fine_tuning_changes_the_last_layers_most(default_pair):
    """Keeps the comparison honest: if it stops showing what fine-tuning changed, this fails."""
    sentences = example_sentences(load_config("default").prepare, count=10)
    per_layer = []
    for sentence in sentences:
        runs = extract_pair(default_pair, sentence)
        per_layer.append(compare_layers(runs.pretrained, runs.finetuned)["js_divergence"].to_numpy())
    mean = np.mean(per_layer, axis=0)
    assert mean[-1] > 0.05  # the models really differ at the top
    assert mean[-1] > 10 * mean[0]  # and far more than at the bottom
    assert mean[-2:].mean() > mean[:2].mean()


def test_default_views_show_decisive_words_not_special_tokens(default_pair):
    """The first page must show the words that drive the decision: the class relevance of the predicted class
    (the sentence view's default) ranks real words first, and the default attention graph reaches words."""
    from attention import class_relevance, graph_for

    sentences = example_sentences(load_config("default").prepare, count=10)
    top_is_a_word, reached = 0, 0
    for sentence in sentences:
        explained = class_relevance(default_pair.finetuned, sentence)
        scores, _ = explained.at_word_level()
        run = extract(default_pair.finetuned, sentence)
        words = run.words()
        real = np.array([w not in ("[CLS]", "[SEP]") for w in words])
        best = words[int(np.argmax(np.where(real, scores[-1], -np.inf)))]  # the view scales over real words
        top_is_a_word += any(ch.isalpha() for ch in best)  # not punctuation
        graph = graph_for(run)
        special = np.asarray(run.special)
        reached += graph.mass[0][~special].sum() > 0
    assert top_is_a_word >= 8
    assert reached == len(sentences)
