"""Exact attention flow against a networkx implementation of the definition."""

import numpy as np
import pytest

from attention.flow import _deep_rows, attention_flow, max_flow_values
from attention.reference import networkx_attention_flow, networkx_flow_graph, networkx_flow_value
from attention.rollouts import residual_maps
from tests.conftest import random_attention


def test_flow_one_layer_is_the_single_edge():
    weights = random_attention(1, 2, 4, seed=1)
    maps = residual_maps(weights)
    np.testing.assert_allclose(attention_flow(weights, normalize=False)[0], maps[0], atol=1e-15)


def test_flow_two_layers_matches_hand_computed_disjoint_paths():
    a1 = np.array([[0.6, 0.4], [0.3, 0.7]])
    a2 = np.array([[0.9, 0.1], [0.2, 0.8]])
    weights = np.stack([a1, a2])[:, None]
    raw = attention_flow(weights, residual=False, normalize=False)
    # From token 0 at depth 2 to input 0: paths 0->0->0 (min(.9,.6)=.6) and 0->1->0 (min(.1,.3)=.1).
    assert raw[1, 0, 0] == pytest.approx(0.7)
    assert raw[1, 0, 1] == pytest.approx(min(0.9, 0.4) + min(0.1, 0.7))
    normalized = attention_flow(weights, residual=False)
    assert normalized[1, 0].sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("layers", "tokens", "heads", "seed"), [(3, 4, 1, 0), (4, 6, 2, 1), (6, 5, 3, 2), (5, 8, 1, 3)]
)
@pytest.mark.parametrize("concentration", [0.1, 1.0])
def test_flow_equals_networkx_on_every_pair(layers, tokens, heads, seed, concentration):
    weights = random_attention(layers, heads, tokens, seed=seed, concentration=concentration)
    ours = attention_flow(weights, normalize=False)
    reference = networkx_attention_flow(residual_maps(weights))
    worst = max(abs(ours[d - 1, u, v] - value) for (d, u, v), value in reference.items())
    assert worst <= 1e-9


def test_flow_equals_networkx_on_sparse_maps_without_residual():
    """Zeros and no residual make the first blocking flow non-optimal, so later phases run too."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        weights = rng.dirichlet(np.full(6, 0.15), size=(5, 1, 6))
        weights[weights < 0.05] = 0.0
        weights /= weights.sum(axis=-1, keepdims=True)
        maps = residual_maps(weights, residual=False)
        graph = networkx_flow_graph(maps)
        values = max_flow_values(maps, 5, [trial % 6])[0]
        for v in range(6):
            assert values[v] == pytest.approx(networkx_flow_value(graph, 5, trial % 6, v), abs=1e-9)


@pytest.mark.parametrize("touched_size", [0, 3, 10_000])
@pytest.mark.parametrize("residual", [True, False])
def test_the_kernel_s_reused_flow_buffer_is_clean_for_every_pair(touched_size, residual):
    """One flow buffer serves every (source, sink) pair; the entries a pair wrote are zeroed from a list, or the whole
    buffer when the list overflows (size 0 or 3) or later phases ran (sparse maps without residual): every pair of
    every source must still equal networkx."""
    rng = np.random.default_rng(12)
    weights = rng.dirichlet(np.full(7, 0.2), size=(5, 1, 7))
    weights[weights < 0.04] = 0.0
    weights /= weights.sum(axis=-1, keepdims=True)
    maps = np.ascontiguousarray(residual_maps(weights, residual=residual), dtype=np.float64)
    graph = networkx_flow_graph(maps)
    out = np.empty((7, 7))
    _deep_rows(maps, 5, np.arange(7, dtype=np.int64), out, touched_size)  # private: the buffer size is the test
    reference = np.array([[networkx_flow_value(graph, 5, u, v) for v in range(7)] for u in range(7)])
    np.testing.assert_allclose(out, reference, atol=1e-9)


def test_flow_rows_not_requested_are_nan_and_requested_rows_sum_to_one():
    weights = random_attention(4, 2, 5, seed=5)
    flow = attention_flow(weights, sources=[0, 3], layers=(2, 3))
    assert np.isnan(flow[0]).all() and np.isnan(flow[3]).all()
    assert np.isnan(flow[1, 1]).all()
    np.testing.assert_allclose(flow[1:3, [0, 3]].sum(axis=-1), 1.0, atol=1e-12)


def test_flow_is_bounded_by_source_capacity_and_sink_capacity():
    weights = random_attention(5, 3, 7, seed=6)
    maps = residual_maps(weights)
    raw = attention_flow(weights, normalize=False)
    assert (raw <= 1.0 + 1e-12).all()
    assert (raw[4] <= maps[0].sum(axis=0)[None, :] + 1e-12).all()


def test_flow_rejects_bad_layer_range_and_sources():
    weights = random_attention(3, 1, 4)
    with pytest.raises(ValueError, match="layers"):
        attention_flow(weights, layers=(0, 2))
    with pytest.raises(ValueError, match="sources"):
        attention_flow(weights, sources=[4])
