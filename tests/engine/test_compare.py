"""Comparison metrics against direct formulas on small hand-made runs."""

from dataclasses import replace

import numpy as np
import pytest

from attention.compare import (
    compare_graphs,
    compare_heads,
    compare_layers,
    compare_relevance,
    graph_for,
    head_embedding,
    head_stats,
)
from attention.metrics import classical_mds, hellinger_distances, js_distances, js_divergence
from tests.conftest import make_run, random_attention


@pytest.fixture
def runs():
    return make_run(random_attention(3, 4, 6, seed=1)), make_run(random_attention(3, 4, 6, seed=2))


def test_js_divergence_matches_direct_formula():
    p, q = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
    eps = 1e-3
    ps, qs = (1 - eps) * p + eps / 3, (1 - eps) * q + eps / 3
    m = (ps + qs) / 2
    kl = lambda a, b: float(np.sum(a * np.log2(a / b)))  # noqa: E731
    assert js_divergence(p, q) == pytest.approx(0.5 * kl(ps, m) + 0.5 * kl(qs, m))


def test_compare_heads_against_direct_formulas(runs):
    pre, ft = runs
    frame = compare_heads(pre, ft)
    assert len(frame) == 12 and set(frame["change_rank"]) == set(range(1, 13))
    row = frame[(frame.layer == 2) & (frame["head"] == 3)].iloc[0]
    p, q = pre.weights[1, 3].astype(float), ft.weights[1, 3].astype(float)
    assert row.js_divergence == pytest.approx(np.mean([js_divergence(p[i], q[i]) for i in range(6)]))
    assert row.cosine == pytest.approx(np.dot(p.ravel(), q.ravel()) / np.linalg.norm(p) / np.linalg.norm(q))
    assert row.tv_distance == pytest.approx(np.mean(0.5 * np.abs(p - q).sum(axis=1)))
    assert row.to_cls_pretrained == pytest.approx(p[:, 0].mean())
    assert row.to_sep_finetuned == pytest.approx(q[:, 5].mean())
    assert row.to_punct_pretrained == pytest.approx(p[:, 3].mean())
    assert row.to_self_pretrained == pytest.approx(np.trace(p) / 6)
    assert row.to_prev_finetuned == pytest.approx(sum(q[i, i - 1] for i in range(1, 6)) / 6)
    assert row.to_next_finetuned == pytest.approx(sum(q[i, i + 1] for i in range(5)) / 6)
    entropy = -np.sum(p * np.log2(p), axis=1).mean()
    assert row.entropy_pretrained == pytest.approx(entropy)
    top = frame.sort_values("js_divergence", ascending=False).iloc[0]
    assert top.change_rank == 1


def test_identical_runs_give_zero_change_everywhere(runs):
    pre, _ = runs
    heads = compare_heads(pre, pre)
    assert np.allclose(heads["js_divergence"], 0, atol=1e-12) and np.allclose(heads["tv_distance"], 0)
    assert np.allclose(heads["cosine"], 1.0)
    layers = compare_layers(pre, pre, tau=0.2)
    assert (layers["edge_jaccard"] == 1.0).all()
    graphs = compare_graphs(graph_for(pre, tau=0.2), graph_for(pre, tau=0.2))
    assert set(graphs.edges["status"]) <= {"shared"}
    assert np.allclose(graphs.nodes["mass_change"], 0)
    for method in ("raw_attention", "graph", "rollout", "flow"):
        assert np.allclose(compare_relevance(pre, pre, method)["difference"], 0)


def test_graph_relevance_is_the_input_mass_of_the_graph_traced_from_each_layer(runs):
    pre, ft = runs
    settings = {"tau": 0.2, "alpha": 0.7, "layers": (2, 3), "heads": (0, 2)}
    traced = compare_relevance(pre, ft, "graph", **settings)
    assert sorted(traced["layer"].unique()) == [2, 3]
    for layer in (2, 3):
        graph = graph_for(pre, tau=0.2, alpha=0.7, heads=(0, 2), layers=(1, layer))
        rows = traced[traced["layer"] == layer]
        np.testing.assert_allclose(rows["pretrained"].to_numpy(), graph.mass[0], atol=1e-12)


def test_word_level_relevance_frame_names_words(runs):
    pre, ft = runs
    frame = compare_relevance(pre, ft, "rollout", level="word")
    assert list(frame.loc[frame["layer"] == 1, "token"]) == list(pre.words())


def test_symmetric_metrics_are_symmetric(runs):
    pre, ft = runs
    forward, backward = compare_heads(pre, ft), compare_heads(ft, pre)
    for column in ("js_divergence", "cosine", "tv_distance"):
        np.testing.assert_allclose(forward[column], backward[column], atol=1e-12)
    np.testing.assert_allclose(forward["entropy_pretrained"], backward["entropy_finetuned"])


def test_compare_graphs_marks_shared_and_exclusive_edges():
    base = np.full((1, 1, 3, 3), 0.1, dtype=np.float32)
    pre_w, ft_w = base.copy(), base.copy()
    pre_w[0, 0, 0] = [0.1, 0.5, 0.4]  # CLS -> 1, 2
    ft_w[0, 0, 0] = [0.4, 0.5, 0.1]  # CLS -> 0, 1
    pre, ft = make_run(pre_w), make_run(ft_w)
    result = compare_graphs(graph_for(pre, tau=0.3, sinks=False), graph_for(ft, tau=0.3, sinks=False))
    attention = result.edges[result.edges["kind"] == "attention"]
    status = {(r.query_idx, r.key_idx): r.status for r in attention.itertuples()}
    assert status == {(0, 0): "finetuned_only", (0, 1): "shared", (0, 2): "pretrained_only"}
    shared = attention[attention.status == "shared"].iloc[0]
    assert shared.weight_pretrained == pytest.approx(0.5) and shared.weight_finetuned == pytest.approx(0.5)
    assert result.layers["edge_jaccard"].item() == pytest.approx(1 / 3)
    inputs = result.nodes[result.nodes["depth"] == 0].set_index("token_idx")["mass_change"]
    # residual 0.5 on [CLS] in both; 0.5 x 0.4 moves to 0 (fine-tuned) or to 2 (pre-trained); 0.5 x 0.5 to 1 in both
    np.testing.assert_allclose(inputs.to_numpy(), [0.2, 0.0, -0.2], atol=1e-7)


def test_head_stats_columns(runs):
    stats = head_stats(runs[0])
    assert list(stats.columns) == [
        "layer",
        "head",
        "entropy",
        "to_cls",
        "to_sep",
        "to_punct",
        "to_self",
        "to_prev",
        "to_next",
    ]
    assert len(stats) == 12


def test_head_embedding_is_deterministic_and_separates_changed_heads():
    pre_w = random_attention(2, 3, 5, seed=3)
    ft_w = pre_w.copy()
    ft_w[1, 2] = random_attention(1, 1, 5, seed=4, concentration=0.05)[0, 0]  # only head (2, 2) changes
    pre, ft = make_run(pre_w), make_run(ft_w)
    first, second = head_embedding(pre, ft), head_embedding(pre, ft)
    assert first.equals(second)
    assert list(first.columns) == ["model", "layer", "head", "x", "y", "js_divergence"]
    xy = first.set_index(["model", "layer", "head"])[["x", "y"]]
    moved = np.linalg.norm(xy.loc[("pretrained", 2, 2)] - xy.loc[("finetuned", 2, 2)])
    unmoved = np.linalg.norm(xy.loc[("pretrained", 1, 0)] - xy.loc[("finetuned", 1, 0)])
    assert unmoved < 1e-6 < moved


def test_classical_mds_recovers_planar_distances():
    points = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    coords = classical_mds(distances)
    np.testing.assert_allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), distances, atol=1e-9)


def test_head_distances_are_metrics_with_zero_diagonal():
    maps = random_attention(1, 6, 5, seed=5)[0]
    for distances in (hellinger_distances(maps), js_distances(maps)):
        np.testing.assert_allclose(np.diag(distances), 0, atol=1e-6)
        np.testing.assert_allclose(distances, distances.T, atol=1e-12)
        i, j, k = 0, 1, 2
        assert distances[i, k] <= distances[i, j] + distances[j, k] + 1e-12


def test_runs_over_different_tokens_are_refused(runs):
    from attention.errors import IncompatibleModelsError

    other = replace(runs[1], facts=replace(runs[1].facts, tokens=("x",) * 6))
    with pytest.raises(IncompatibleModelsError, match="same tokens"):
        compare_heads(runs[0], other)
