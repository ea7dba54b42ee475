"""The attention graph: hand-computed cases, conservation of mass, and the limit that reproduces rollout."""

import numpy as np
import pytest

from attention.graph import MIN_EDGE_FLOW, attention_graph, graph_relevance
from attention.rollouts import rollout
from tests.conftest import random_attention


def _two_layer_example():
    """2 layers, 1 head, 3 tokens."""
    layer1 = np.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    layer2 = np.array([[0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]])
    return np.stack([layer1, layer2])[:, None]


def test_graph_hand_computed_two_layer_case():
    graph = attention_graph(_two_layer_example(), tau=0.3, alpha=0.5, sources=[0])
    # Depth 2: all mass on token 0. Layer 2 keeps 0 -> 1 (0.6): 0.5 stays as itself, 0.3 moves, 0.2 pruned.
    np.testing.assert_allclose(graph.mass[1], [0.5, 0.3, 0.0])
    # Layer 1: token 0 keeps 0 -> 2 (0.8), token 1 keeps 1 -> 0 (0.7).
    np.testing.assert_allclose(graph.mass[0], [0.25 + 0.5 * 0.3 * 0.7, 0.15, 0.5 * 0.5 * 0.8])
    np.testing.assert_allclose(graph.pruned, [0.5 * (0.5 * 0.2 + 0.3 * 0.3), 0.2])
    attention = graph.edges[graph.edges["kind"] == "attention"]
    assert set(attention[["layer", "query_idx", "key_idx"]].itertuples(index=False, name=None)) == {
        (2, 0, 1),
        (1, 0, 2),
        (1, 1, 0),
    }
    flows = {(r.layer, r.query_idx, r.key_idx, r.kind): r.flow for r in graph.edges.itertuples()}
    assert flows[(2, 0, 1, "attention")] == pytest.approx(0.3)
    assert flows[(2, 0, 0, "residual")] == pytest.approx(0.5)
    assert flows[(1, 1, 0, "attention")] == pytest.approx(0.105)
    assert graph.reached(1) == (0, 1) and graph.reached(0) == (0, 1, 2)


def test_sinks_absorb_attention_and_are_never_expanded():
    graph = attention_graph(_two_layer_example(), tau=0.3, alpha=0.5, sources=[0], sinks=[2])
    np.testing.assert_allclose(graph.absorbed[1], [0.0, 0.0, 0.1])  # layer 2: 0.5 * 0.2 into token 2
    np.testing.assert_allclose(graph.absorbed[0], [0.0, 0.0, 0.5 * (0.5 * 0.8 + 0.3 * 0.1)])
    np.testing.assert_allclose(graph.mass[0], [0.355, 0.15, 0.0])
    sink_edges = graph.edges[graph.edges["kind"] == "sink"]
    assert set(sink_edges["key_idx"]) == {2}
    assert not (graph.edges["query_idx"] == 2).any()  # nothing leaves the sink: it holds no live mass


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tau", [0.0, 0.05, 0.2])
def test_mass_is_conserved_at_every_depth(seed, tau):
    weights = random_attention(5, 4, 9, seed=seed, concentration=0.3)
    graph = attention_graph(weights, tau=tau, alpha=0.3 + 0.1 * seed, sources=[0, 3], sinks=[0, 8])
    shares = graph.layer_shares()
    np.testing.assert_allclose(shares[["live", "absorbed", "pruned"]].sum(axis=1), 1.0, atol=1e-12)


def test_tau_zero_without_sinks_reproduces_the_rollout_row():
    weights = random_attention(6, 12, 11, seed=7)
    expected = rollout(weights)  # rownorm(Ā + I) = 0.5 Ā + 0.5 I
    for source in (0, 5):
        graph = attention_graph(weights, tau=0.0, alpha=0.5, sources=[source])
        np.testing.assert_allclose(graph.mass[0], expected[-1, source], atol=1e-12)
        np.testing.assert_allclose(graph_relevance(weights, sources=[source], tau=0.0), expected[:, source], atol=1e-12)


def test_graph_relevance_row_is_the_input_mass_of_a_trace_from_that_layer():
    weights = random_attention(4, 3, 8, seed=8, concentration=0.2)
    rows = graph_relevance(weights, sources=[2], tau=0.15, alpha=0.4, sinks=[0])
    for layer in range(1, 5):
        graph = attention_graph(weights, tau=0.15, alpha=0.4, sources=[2], sinks=[0], layers=(1, layer))
        np.testing.assert_allclose(rows[layer - 1], graph.mass[0], atol=1e-12)


def test_alpha_one_keeps_all_mass_on_the_source():
    graph = attention_graph(random_attention(3, 2, 5, seed=1), tau=0.0, alpha=1.0, sources=[4])
    np.testing.assert_allclose(graph.mass[0], [0, 0, 0, 0, 1.0])


def test_flows_into_each_node_add_up_to_its_mass():
    weights = random_attention(4, 6, 10, seed=9, concentration=0.2)
    graph = attention_graph(weights, tau=0.1, alpha=0.5, sources=[0], sinks=[9])
    for layer in range(1, 5):
        into = graph.edges[graph.edges["layer"] == layer].groupby("key_idx")["flow"].sum()
        live = graph.mass[layer - 1] + graph.absorbed[layer - 1]
        for token, total in into.items():
            assert total == pytest.approx(live[token], abs=10 * MIN_EDGE_FLOW)


def test_raising_tau_never_adds_an_edge_or_live_mass():
    weights = random_attention(6, 12, 15, seed=4)
    previous_edges, previous_mass = None, None
    for tau in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        graph = attention_graph(weights, tau=tau, alpha=0.5)
        attention = graph.edges[graph.edges["kind"] == "attention"]
        edges = set(attention[["layer", "query_idx", "key_idx"]].itertuples(index=False, name=None))
        if previous_edges is not None:
            assert edges <= previous_edges
            assert np.all(graph.mass <= previous_mass + 1e-12)
        previous_edges, previous_mass = edges, graph.mass


def test_max_threshold_keeps_an_edge_when_one_head_passes():
    weights = np.zeros((1, 2, 2, 2))
    weights[0, 0] = [[0.5, 0.5], [0.5, 0.5]]
    weights[0, 1] = [[0.95, 0.05], [0.5, 0.5]]
    mean = attention_graph(weights, tau=0.4, sources=[0])
    strongest = attention_graph(weights, tau=0.4, sources=[0], aggregation="max")
    assert mean.mass[0][1] == pytest.approx(0.0)  # head mean 0.275 < 0.4
    assert strongest.mass[0][1] == pytest.approx(0.5 * 0.275)  # head 0 passes; the mean weight is carried


def test_graph_head_subset_and_layer_range():
    weights = random_attention(6, 12, 8, seed=5)
    graph = attention_graph(weights, tau=0.2, alpha=0.5, heads=[3, 7], layers=(2, 4))
    assert set(graph.edges["layer"]) <= {2, 3, 4}
    assert all(set(h) <= {3, 7} for h in graph.edges["heads"])
    assert graph.mass.shape == (4, 8)
    assert set(graph.nodes["depth"]) == {1, 2, 3, 4}


def test_graph_rejects_bad_arguments():
    weights = random_attention(2, 2, 3)
    with pytest.raises(ValueError, match="tau"):
        attention_graph(weights, tau=1.5)
    with pytest.raises(ValueError, match="heads"):
        attention_graph(weights, heads=[2])
    with pytest.raises(ValueError, match="sources"):
        attention_graph(weights, sources=[3])
    with pytest.raises(ValueError, match="aggregation"):
        attention_graph(weights, aggregation="median")


def test_the_old_keyword_threshold_still_works_and_warns():
    """``threshold`` was renamed ``aggregation`` (the page's name): old callers get the same graph and a warning."""
    weights = random_attention(2, 3, 5, seed=4)
    new = attention_graph(weights, tau=0.3, sources=[0], aggregation="max")
    with pytest.warns(DeprecationWarning, match="aggregation"):
        old = attention_graph(weights, tau=0.3, sources=[0], threshold="max")
    np.testing.assert_array_equal(old.mass, new.mass)
    assert old.aggregation == "max"
    with pytest.warns(DeprecationWarning, match="aggregation"):
        assert old.threshold == "max"


def test_word_graph_adds_masses_and_flows_of_pieces():
    from attention.graph import word_graph

    weights = random_attention(3, 2, 6, seed=11, concentration=0.3)
    groups = [0, 1, 1, 2, 3, 3]
    graph = attention_graph(weights, tau=0.1, sources=[1, 2], sinks=[0])
    words = word_graph(graph, groups, ["[CLS]", "ab", "c", "de"])
    np.testing.assert_allclose(words.mass[:, 1], graph.mass[:, 1] + graph.mass[:, 2])
    np.testing.assert_allclose(words.mass.sum(axis=1), graph.mass.sum(axis=1))
    assert words.edges["flow"].sum() == pytest.approx(graph.edges["flow"].sum())
    assert words.sources == (1,) and words.sinks == (0,)
    assert set(words.nodes["token"]) == {"[CLS]", "ab", "c", "de"}


def test_maps_that_hold_the_residual_keep_each_tokens_own_share_through_a_sink():
    """Contribution maps (ALTI…) hold the residual: a sink keeps its own diagonal share as its residual edge
    (never absorbed), only what a token takes from a sink is absorbed; mass is conserved and alpha is not used."""
    maps = random_attention(3, 1, 5, seed=4, concentration=0.7)
    graph = attention_graph(maps, tau=0.05, alpha=0.9, sources=[0], sinks=[0, 4], residual_in_weights=True)
    top = graph.edges[graph.edges["layer"] == 3]
    own = top[(top["kind"] == "residual") & (top["query_idx"] == 0)]
    assert own["flow"].item() == pytest.approx(float(maps[2, 0, 0, 0]))  # [CLS] keeps what the map says of itself
    assert not ((top["kind"] == "sink") & (top["key_idx"] == top["query_idx"])).any()
    assert graph.mass[0].sum() + graph.absorbed.sum() + graph.pruned.sum() == pytest.approx(1.0)  # conserved
    plain = attention_graph(maps, tau=0.0, alpha=0.0, sources=[0], residual_in_weights=True)
    np.testing.assert_allclose(plain.mass[0], (maps[0, 0].T @ maps[1, 0].T @ maps[2, 0].T)[:, 0], atol=1e-9)
