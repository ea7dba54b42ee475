"""Attention rollout against hand-computed cases and the reference formula."""

import numpy as np

from attention.reference import joint_attention
from attention.rollouts import head_average, residual_maps, rollout
from tests.conftest import random_attention


def test_rollout_matches_hand_computed_two_layer_case():
    a1 = np.array([[0.5, 0.5], [0.0, 1.0]])
    a2 = np.array([[1.0, 0.0], [0.5, 0.5]])
    weights = np.stack([a1, a2])[:, None]  # [layer=2, head=1, 2, 2]
    r1 = (a1 + np.eye(2)) / 2
    r2 = ((a2 + np.eye(2)) / 2) @ r1
    result = rollout(weights)
    np.testing.assert_allclose(result[0], r1)
    np.testing.assert_allclose(result[1], r2)
    np.testing.assert_allclose(result[1], [[0.75, 0.25], [0.1875, 0.8125]])


def test_rollout_equals_reference_joint_attention_to_float_precision():
    for seed, shape in enumerate([(3, 2, 5), (6, 12, 20), (12, 4, 33)]):
        weights = random_attention(*shape, seed=seed)
        for residual in (True, False):
            expected = joint_attention(residual_maps(weights, residual=residual))
            np.testing.assert_allclose(rollout(weights, residual=residual), expected, rtol=0, atol=1e-12)


def test_rollout_reference_on_head_mean_is_independent_of_our_head_average():
    weights = random_attention(4, 3, 6, seed=9)
    mean = weights.astype(np.float64).mean(axis=1)
    augmented = mean + np.eye(6)
    augmented /= augmented.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(rollout(weights), joint_attention(augmented), atol=1e-12)


def test_rollout_rows_sum_to_one_and_head_subset_is_used():
    weights = random_attention(4, 6, 7, seed=3)
    subset = rollout(weights, heads=[1, 4])
    np.testing.assert_allclose(subset.sum(axis=-1), 1.0, atol=1e-12)
    only = rollout(weights[:, [1, 4]])
    np.testing.assert_allclose(subset, only, atol=1e-12)
    assert not np.allclose(subset, rollout(weights))


def test_residual_maps_add_identity_then_renormalize():
    weights = random_attention(2, 2, 3, seed=4)
    maps = residual_maps(weights)
    expected = (head_average(weights) + np.eye(3)) / 2
    np.testing.assert_allclose(maps, expected, atol=1e-7)


def test_top_rollout_rows_of_a_padded_batch_equal_each_inputs_own_rollout():
    """The corpus's batched [CLS] rows (one vector-matrix product per layer) equal the full rollout's row of each
    input's own maps; padded query rows, which are not zero (as a model's are), change nothing, and weight on padded
    keys (none in a model's masked attention) is dropped: rollout of the own block renormalises the same way."""
    from attention.rollouts import top_rollout_rows

    rng = np.random.default_rng(3)
    lengths, positions = [5, 9, 7], 9
    mask = (np.arange(positions)[None] < np.array(lengths)[:, None]).astype(np.int64)
    raw = rng.random((4, len(lengths), 3, positions, positions)) ** 4  # [layer, batch, head, query, key]
    weights = raw * (mask[None, :, None, None, :] + 0.2)  # some weight on padded keys: the function drops it
    weights /= weights.sum(axis=-1, keepdims=True)
    assert weights[:, 0, :, 6:, :5].min() > 0 and weights[:, 0, :, :5, 6:].min() > 0
    sources = [0, 3, 6]
    rows = top_rollout_rows(weights, sources, mask)
    for i, (n, source) in enumerate(zip(lengths, sources, strict=True)):
        own = weights[:, i, :, :n, :n]  # [layer, head, query, key] of the input's own tokens
        np.testing.assert_allclose(rows[i, :n], rollout(own)[-1, source], rtol=1e-12, atol=1e-15)
        assert np.all(rows[i, n:] == 0.0)
