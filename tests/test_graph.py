"""The attention graph: hand-computed cases and invariants."""

import numpy as np
import pytest

from attention.graph import attention_graph
from tests.conftest import random_attention


def _two_layer_example():
    # 2 layers, 2 heads, 3 tokens. Layer 2 from token 0; layer 1 from whatever layer 2 reaches.
    layer1 = np.array(
        [
            [[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]],
            [[0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]],
        ]
    )
    layer2 = np.array(
        [
            [[0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]],
            [[0.1, 0.7, 0.2], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]],
        ]
    )
    return np.stack([layer1, layer2])


def test_graph_hand_computed_two_layer_case():
    graph = attention_graph(_two_layer_example(), tau=0.5, alpha=0.5, sources=[0])
    edges = {(r.layer, r.query_idx, r.key_idx): r for r in graph.edges.itertuples()}
    # Layer 2: token 0 -> token 1 by both heads (0.6, 0.7).
    assert set(edges) == {(2, 0, 1), (1, 1, 0), (1, 1, 2)}
    assert edges[(2, 0, 1)].multiplicity == 2 and edges[(2, 0, 1)].heads == (0, 1)
    assert edges[(2, 0, 1)].weight == pytest.approx(0.65)
    # Layer 1 from R_1 = {1}: head 0 -> 0 (0.7), head 1 -> 2 (0.8).
    assert edges[(1, 1, 0)].heads == (0,) and edges[(1, 1, 2)].heads == (1,)
    assert edges[(1, 1, 0)].weight == pytest.approx(0.4)
    counts = graph.counts
    np.testing.assert_array_equal(counts, [[1, 0, 1], [0, 2, 0]])
    # I_2 = c_2; I_1 = c_1 + 0.5 * I_2.
    np.testing.assert_allclose(graph.influence, [[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]])
    assert graph.reached(2) == (1,) and graph.reached(1) == (0, 2)


def test_graph_alpha_zero_gives_counts():
    weights = random_attention(4, 6, 10, seed=2)
    graph = attention_graph(weights, tau=0.2, alpha=0.0)
    np.testing.assert_allclose(graph.influence, graph.counts)


def test_graph_edges_start_only_from_reached_tokens():
    weights = random_attention(6, 12, 15, seed=3)
    graph = attention_graph(weights, tau=0.25, alpha=0.5, sources=[0, 4])
    for layer in range(1, 7):
        queries = set(graph.edges.loc[graph.edges["layer"] == layer, "query_idx"])
        allowed = {0, 4} if layer == 6 else set(graph.reached(layer + 1))
        assert queries <= allowed


def test_graph_raising_tau_never_adds_an_edge():
    weights = random_attention(6, 12, 15, seed=4)
    previous = None
    for tau in (0.05, 0.1, 0.2, 0.3, 0.5, 0.8):
        edges = set(
            attention_graph(weights, tau=tau, alpha=0.5)
            .edges[["layer", "query_idx", "key_idx"]]
            .itertuples(index=False, name=None)
        )
        if previous is not None:
            assert edges <= previous
        previous = edges


def test_graph_head_subset_and_layer_range():
    weights = random_attention(6, 12, 8, seed=5)
    graph = attention_graph(weights, tau=0.2, alpha=0.5, heads=[3, 7], layers=(2, 4))
    assert set(graph.edges["layer"]) <= {2, 3, 4}
    assert all(set(h) <= {3, 7} for h in graph.edges["heads"])
    assert graph.influence.shape == (3, 8)
    assert set(graph.nodes["layer"]) == {2, 3, 4}


def test_graph_normalize_makes_each_layer_sum_to_one():
    graph = attention_graph(random_attention(4, 4, 6, seed=6), tau=0.2, alpha=0.5, normalize=True)
    sums = graph.influence.sum(axis=1)
    np.testing.assert_allclose(sums[sums > 0], 1.0)


def test_graph_rejects_bad_arguments():
    weights = random_attention(2, 2, 3)
    with pytest.raises(ValueError, match="tau"):
        attention_graph(weights, tau=1.5)
    with pytest.raises(ValueError, match="heads"):
        attention_graph(weights, heads=[2])
    with pytest.raises(ValueError, match="sources"):
        attention_graph(weights, sources=[3])
