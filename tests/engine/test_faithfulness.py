"""The faithfulness table: Spearman correlations per method, layer and reference, mean ± std over sentences."""

import numpy as np
import pytest

from attention import faithfulness, load_model
from attention.errors import NotAClassifierError
from attention.evaluation import (
    FAITHFULNESS_COLUMNS,
    FAITHFULNESS_METHODS,
    REFERENCES,
    sentence_scores,
    spearman,
    top_layer,
)

TEXTS = ["a gorgeous , unbelievably witty film", "a dull film without a plot or a point", ("a film", "it was fine")]


@pytest.fixture(scope="module")
def classifier(tiny_models):
    return load_model(tiny_models["bert-classifier"], name="tiny classifier", labels=("bad", "good"))


def test_spearman_handles_ties_and_constants():
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0])) == pytest.approx(1.0)
    assert spearman(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))
    assert np.isnan(spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))


def test_faithfulness_table_has_every_method_layer_and_reference(classifier):
    ticks = []
    table = faithfulness(classifier, TEXTS, progress=ticks.append)
    assert tuple(table.columns) == FAITHFULNESS_COLUMNS
    assert len(ticks) == len(TEXTS)
    assert set(table["method"]) == set(FAITHFULNESS_METHODS) - {"decompx"}
    assert set(table["measure"]) == {"raw_attention", "none"}
    assert set(table["reference"]) == set(REFERENCES) == {"blank_out", "blank_out_magnitude", "input_x_gradient"}
    layered = table[table["method"] != "input_x_gradient"]
    assert set(layered["layer"]) == {1, 2}
    assert set(table.loc[table["method"] == "input_x_gradient", "layer"]) == {0}
    assert table["n"].max() == len(TEXTS)
    same = table[(table["method"] == "input_x_gradient") & (table["reference"] == "input_x_gradient")]
    assert same["spearman_mean"].item() == pytest.approx(1.0)  # a method against itself
    assert len(top_layer(table)) == 3 * (len(FAITHFULNESS_METHODS) - 1)
    signed, magnitude = (table[(table["reference"] == r) & (table["method"] == "rollout")] for r in REFERENCES[:2])
    assert not np.allclose(signed["spearman_mean"], magnitude["spearman_mean"])  # |blank-out| ranks differently


def test_faithfulness_covers_every_measure_and_method(classifier):
    from attention.mixing import MEASURES

    table = faithfulness(classifier, TEXTS[:2], measures=MEASURES)
    graph = table[table["measure"] != "none"]
    assert set(graph["measure"]) == set(MEASURES)
    for measure in MEASURES:
        assert set(graph.loc[graph["measure"] == measure, "method"]) == {"raw_attention", "rollout", "flow", "graph"}
    assert set(table.loc[table["measure"] == "none", "method"]) == {"class_relevance", "input_x_gradient"}
    raw = table[(table["measure"] == "raw_attention") & (table["method"] == "rollout")]["spearman_mean"].to_numpy()
    alti = table[(table["measure"] == "alti") & (table["method"] == "rollout")]["spearman_mean"].to_numpy()
    assert raw.shape == alti.shape and not np.allclose(raw, alti)


def test_sentence_scores_are_per_word_without_special_tokens(classifier):
    methods, references, words = sentence_scores(classifier, TEXTS[0])
    assert words.tolist() == [False, True, True, True, True, True, True, False]
    for scores in methods.values():
        assert scores.shape[-1] == words.size
    assert np.isnan(references["blank_out"][~words]).all()
    assert np.isfinite(references["blank_out"][words]).all()


def test_faithfulness_needs_a_classifier(tiny_models):
    bare = load_model(tiny_models["bert"], name="tiny bert")
    with pytest.raises(NotAClassifierError):
        faithfulness(bare, TEXTS)
