"""Long inputs: the top-k tokens kept, the rest folded into "other", every number keeping its meaning."""

import numpy as np
import pandas as pd
import pytest

from app.core.analysis import Analysis
from app.core.fold import choose_fold, fold_scores
from app.core.options import FOLD_ABOVE, ViewOptions
from app.views.render import render
from tests.conftest import plotly_figure

LONG = Analysis(" ".join(["a fine , moving film"] * 12))  # 60 words, 62 tokens with [CLS] / [SEP]


@pytest.fixture
def service(tiny_app):
    from app.service.registry import pair_service

    return pair_service(server=tiny_app.server)


def test_choose_fold_keeps_the_top_k_and_the_protected_positions_in_order():
    n = FOLD_ABOVE + 10
    labels = [f"w{i}" for i in range(n)]
    scores = np.arange(n, dtype=float)
    scores[5] = -1000.0  # magnitude counts: a strongly negative score is kept
    scores[7] = np.nan  # unknown: ranked last
    always, hidden = np.zeros(n, bool), np.zeros(n, bool)
    always[0] = hidden[1] = True
    fold = choose_fold(labels, scores, always=always, hidden=hidden, top_k=4)
    kept = [labels[i] for i in np.flatnonzero(fold.groups != fold.other)]
    assert kept == ["w0", "w1", "w5", "w47", "w48", "w49"]  # in sentence order
    assert fold.labels == (*kept, f"other ({n - 6})") and fold.other == 6
    assert fold.groups[7] == fold.other
    # short inputs, top_k = 0, or nothing to fold: drawn whole
    assert (
        choose_fold(
            labels[:FOLD_ABOVE], scores[:FOLD_ABOVE], always=always[:FOLD_ABOVE], hidden=hidden[:FOLD_ABOVE], top_k=4
        )
        is None
    )
    assert choose_fold(labels, scores, always=always, hidden=hidden, top_k=0) is None
    assert choose_fold(labels, scores, always=always, hidden=hidden, top_k=n) is None


def test_fold_scores_sums_the_folded_tokens_and_keeps_missing_models_missing():
    n = FOLD_ABOVE + 2
    fold = choose_fold(
        [str(i) for i in range(n)],
        np.arange(n, dtype=float),
        always=np.zeros(n, bool),
        hidden=np.zeros(n, bool),
        top_k=2,
    )
    frame = pd.DataFrame(
        {"layer": 1, "token_idx": range(n), "pretrained": np.nan, "finetuned": np.ones(n), "difference": np.nan}
    )
    folded = fold_scores(frame, fold)
    assert list(folded["token"]) == [str(n - 2), str(n - 1), f"other ({n - 2})"]
    assert list(folded["finetuned"]) == [1.0, 1.0, n - 2.0]
    assert folded["pretrained"].isna().all()


def test_a_long_input_is_folded_in_the_sankey_matrix_and_token_scores(service):
    options = ViewOptions(method="rollout", top_k=10)
    fold = service.fold(LONG, options)
    assert fold is not None and fold.labels[-1].startswith("other (")
    assert {"[CLS]", "[SEP]"} <= set(fold.labels)  # special tokens are never folded
    # the matrices: one row and column per kept token plus "other"; rows still sum to 1
    matrices = service.matrices(LONG, options, 2, None)
    fine = matrices[matrices["model"] == "finetuned"]
    assert fine["query_idx"].max() + 1 == len(fold.labels) == 10 + 2 + 1
    np.testing.assert_allclose(fine.groupby("query_idx")["weight"].sum(), 1.0, atol=1e-5)
    # the graph: mass is conserved by the fold (masses add up), "other" is a node
    whole = service.graphs(LONG, ViewOptions(method="rollout", top_k=0)).nodes
    folded = service.graphs(LONG, options).nodes
    for model in ("pretrained", "finetuned"):
        a = whole.groupby("depth")[f"mass_{model}"].sum()
        b = folded.groupby("depth")[f"mass_{model}"].sum()
        np.testing.assert_allclose(a, b, atol=1e-6)
    everything = ViewOptions(method="rollout", top_k=10, tau=0.0, measure="raw_attention")  # flat attention: τ = 0
    sankey = plotly_figure(render("sankey", service, LONG, everything))
    assert any(label.startswith("other (") for label in sankey.data[0].node.label)
    influence = plotly_figure(render("influence", service, LONG, options))
    assert influence.data[0].text[-1][0].startswith("other (")
    assert np.isnan(np.asarray(influence.data[0].z, dtype=float)[-1]).all()  # uncoloured, value in the hover
    # the sentence view never folds
    sentence = plotly_figure(render("sentence", service, LONG, options))
    assert len(sentence.data[0].text) == 62
    # a short input is drawn whole
    assert service.fold(Analysis("a fine , moving film"), options) is None


def test_first_of_groups_gives_each_group_its_first_positions_value():
    """How a word, or a folded run of tokens, gets a segment: the value at its first position."""
    from app.core.fold import first_of_groups

    segments = np.array([0, 0, 0, 1, 1, 1])
    assert first_of_groups(segments, [0, 1, 1, 2, 3, 3], 4).tolist() == [0, 0, 1, 1]
    assert first_of_groups(segments, [0, 0, 1, 1, 2, 2], 3).tolist() == [0, 0, 1]  # group 1 starts at position 2
    assert first_of_groups(segments, [0, 1, 1, 2, 9, 9], 3).tolist() == [0, 0, 1]  # groups past count ignored


def test_the_fold_a_service_keeps_is_the_one_its_options_make(service):
    """The fold is kept for what it reads (the token scores' key, level, hiding, top-k, tracing), not every option:
    after each change, in any order, the kept fold equals one computed afresh (another service, empty memo)."""
    import itertools
    from dataclasses import replace

    from app.service.analysis import AnalysisService

    changes = [{"tau": 0.2}, {"method": "graph"}, {"method": "graph", "tau": 0.01}, {"sinks": False},
               {"method": "graph", "sinks": False}, {"top_k": 5}, {"level": "word"}, {"hide": ("punctuation",)},
               {"sources": (3,)}, {"measure": "raw_attention", "heads": (0,)}, {"method": "class_relevance"},
               {"method": "class_relevance", "target": "bad"}, {"method": "rollout", "target": "bad"}]  # fmt: skip
    base = ViewOptions(method="rollout", top_k=10)
    compared = 0
    for first, second in itertools.permutations(changes, 2):
        for options in (replace(base, **first), replace(base, **first | second)):
            kept = service.fold(LONG, options)
            fresh = AnalysisService(service.pair).fold(LONG, options)
            assert (kept is None) == (fresh is None)
            assert kept.labels == fresh.labels and np.array_equal(kept.groups, fresh.groups), options
            compared += 1
    assert compared == 2 * len(changes) * (len(changes) - 1)
