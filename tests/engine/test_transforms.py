"""Word-level merging and token dropping on hand-made tensors with known answers."""

import numpy as np
import pytest

from attention.tokens import display_token, is_punctuation, word_groups
from attention.transforms import drop_tokens, merge_groups
from tests.conftest import random_attention


def test_merge_groups_sums_columns_and_averages_rows_hand_computed():
    weights = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],
            [0.4, 0.3, 0.2, 0.1],
            [0.0, 0.5, 0.5, 0.0],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
    merged = merge_groups(weights, np.array([0, 1, 1, 2]))
    expected = np.array(
        [
            [0.1, 0.5, 0.4],
            [(0.4 + 0.0) / 2, (0.5 + 1.0) / 2, (0.1 + 0.0) / 2],
            [0.25, 0.5, 0.25],
        ]
    )
    np.testing.assert_allclose(merged, expected, atol=1e-7)


def test_merge_groups_keeps_rows_stochastic_and_shape():
    weights = random_attention(3, 4, 9, seed=1)
    groups = np.array([0, 1, 1, 1, 2, 3, 3, 4, 5])
    merged = merge_groups(weights, groups)
    assert merged.shape == (3, 4, 6, 6)
    assert merged.dtype == np.float32
    np.testing.assert_allclose(merged.sum(axis=-1), 1.0, atol=1e-6)


def test_merge_groups_identity_when_every_token_is_its_own_group():
    weights = random_attention(2, 2, 5, seed=2)
    np.testing.assert_allclose(merge_groups(weights, np.arange(5)), weights, atol=1e-7)


def test_merge_groups_rejects_unused_group_ids():
    with pytest.raises(ValueError, match="every group"):
        merge_groups(np.eye(3), np.array([0, 2, 2]))


def test_drop_tokens_renormalizes_rows_hand_computed():
    weights = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.5, 0.25, 0.25]])
    dropped = drop_tokens(weights, np.array([False, True, True]))
    np.testing.assert_allclose(dropped, [[0.5, 0.5], [0.5, 0.5]], atol=1e-7)


def test_drop_tokens_without_renormalization_keeps_raw_weights():
    weights = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.5, 0.25, 0.25]])
    dropped = drop_tokens(weights, np.array([True, False, True]), renormalize=False)
    np.testing.assert_allclose(dropped, [[0.2, 0.5], [0.5, 0.25]], atol=1e-7)


def test_drop_tokens_row_with_all_mass_on_dropped_tokens_becomes_uniform():
    weights = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    dropped = drop_tokens(weights[None, None], np.array([True, True, False]))[0, 0]
    np.testing.assert_allclose(dropped[0], [1.0, 0.0])
    np.testing.assert_allclose(dropped[1], [0.0, 1.0])


def test_word_groups_keep_special_tokens_separate_and_segments_apart():
    # [CLS] un ##believ ##able [SEP] un [SEP]: word 0 appears in both segments.
    groups = word_groups([None, 0, 0, 0, None, 0, None], [0, 0, 0, 0, 0, 1, 1])
    assert groups.tolist() == [0, 1, 1, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("##ing", "ing"),
        ("\u0120the", "the"),
        ("\u2581the", "the"),
        ("[CLS]", "[CLS]"),
        ("##", "##"),
        ("\u0120", "\u0120"),
    ],
)
def test_display_token_strips_tokenizer_markers(raw, shown):
    assert display_token(raw) == shown


def test_is_punctuation_only_for_symbol_tokens():
    assert [is_punctuation(t) for t in [".", "!?", "'", "it", "n't", "[SEP]"]] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
