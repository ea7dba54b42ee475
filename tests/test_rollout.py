"""Attention rollout against hand-computed cases and the reference formula."""

import numpy as np

from attention.reference import joint_attention
from attention.rollout import head_average, residual_maps, rollout
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
