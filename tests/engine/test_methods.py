"""Relevance by attention (raw, rollout, flow, graph): always on token-level weights, words as a view."""

from dataclasses import replace

import numpy as np
import pytest

from attention.extraction import AttentionRun, TokenFacts
from attention.methods import ATTENTION_METHODS, merge_scores, relevance
from attention.rollouts import rollout
from tests.conftest import random_attention


def make_run(weights, tokens, groups, special) -> AttentionRun:
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    n = weights.shape[-1]
    facts = TokenFacts(tuple(tokens), tuple(special), (0,) * n, tuple(groups), 0, ())
    return AttentionRun("m", "text", None, weights, facts)


def _three_tokens() -> AttentionRun:
    """Tokens a, b1, b2 (b1 b2 one word B): layer 1 b1 -> a, b2 -> b2, a -> a; layer 2 a -> b1."""
    layer1 = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    layer2 = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return make_run(np.stack([layer1, layer2])[:, None], ["a", "b", "c"], [0, 1, 1], [False] * 3)


def test_merging_the_result_differs_from_merging_each_layer_first():
    run = _three_tokens()
    token_level = rollout(run.weights, residual=False)[-1, 0]  # a at the top draws everything from a
    np.testing.assert_allclose(merge_scores(token_level, run.groups), [1.0, 0.0])
    per_layer = rollout(run.at_word_level().weights, residual=False)[-1, 0]
    np.testing.assert_allclose(per_layer, [0.5, 0.5])  # the quantity the word level must not compute


@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_word_level_equals_the_token_level_result_merged(method):
    run = _three_tokens()
    words = relevance(run, method, sources=0, level="word", tau=0.0, sinks=False)
    tokens = relevance(run, method, sources=[0], tau=0.0, sinks=False)
    np.testing.assert_allclose(words, merge_scores(tokens, run.groups), atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_word_level_on_random_runs(seed, method):
    groups = [0, 1, 1, 2, 3, 3, 3, 4]
    special = [True, False, False, False, False, False, False, True]
    run = make_run(
        random_attention(4, 3, 8, seed=seed, concentration=0.3), [f"t{i}" for i in range(8)], groups, special
    )
    # A word source stands for all its pieces (their rows averaged); keys are summed per word.
    words = relevance(run, method, sources=[3], level="word", tau=0.1)
    tokens = relevance(run, method, sources=[4, 5, 6], tau=0.1)
    np.testing.assert_allclose(words, merge_scores(tokens, groups), atol=1e-12)
    assert words.shape == (4, 5)


def test_rollout_relevance_is_the_rollout_row_and_layers_only_select_rows():
    run = make_run(random_attention(4, 2, 5, seed=3), [f"t{i}" for i in range(5)], range(5), [False] * 5)
    rows = relevance(run, "rollout", sources=2, layers=(2, 3))
    expected = rollout(run.weights)[:, 2]
    assert np.isnan(rows[0]).all() and np.isnan(rows[3]).all()
    np.testing.assert_allclose(rows[1:3], expected[1:3])


def test_raw_attention_is_the_head_mean_row():
    weights = random_attention(2, 3, 4, seed=4)
    run = make_run(weights, list("abcd"), range(4), [False] * 4)
    np.testing.assert_allclose(relevance(run, "raw_attention", sources=1), weights[:, :, 1].mean(axis=1), rtol=1e-6)


def test_graph_sinks_follow_the_runs_special_tokens():
    weights = random_attention(3, 2, 5, seed=5)
    run = make_run(weights, list("abcde"), range(5), [True, False, False, False, True])
    with_sinks = relevance(run, "graph", tau=0.0)
    without = relevance(run, "graph", tau=0.0, sinks=False)
    np.testing.assert_allclose(without, rollout(weights)[:, 0], atol=1e-12)
    assert with_sinks[-1, 4] == 0.0 and without[-1, 4] > 0  # attention into [SEP] is absorbed, not passed on
    assert with_sinks[-1, 0] > 0  # the traced [CLS] keeps its residual share


def test_bad_positions_and_methods_are_refused():
    run = _three_tokens()
    with pytest.raises(ValueError, match="word positions"):
        relevance(run, "rollout", sources=[2], level="word")
    with pytest.raises(ValueError, match="token positions"):
        relevance(run, "rollout", sources=[7])
    with pytest.raises(ValueError, match="method"):
        relevance(run, "attention", sources=[0])
    with pytest.raises(ValueError, match="level"):
        relevance(replace(run), "rollout", level="words")


def test_the_old_keywords_source_and_threshold_still_work_and_warn():
    run = make_run(random_attention(3, 2, 5, seed=6), [f"t{i}" for i in range(5)], range(5), [False] * 5)
    new = relevance(run, "graph", sources=[1], aggregation="max", tau=0.2)
    with pytest.warns(DeprecationWarning, match="sources"):
        old = relevance(run, "graph", source=[1], aggregation="max", tau=0.2)
    np.testing.assert_array_equal(old, new)
    with pytest.warns(DeprecationWarning, match="aggregation"):
        np.testing.assert_array_equal(relevance(run, "graph", sources=[1], threshold="max", tau=0.2), new)
