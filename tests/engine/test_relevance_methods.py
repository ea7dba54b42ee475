"""The relevance-method registry: one signature for every method, the one list the app and the study read."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.options import CLASS_METHODS, GRADIENT_METHODS, GRAPH_METHODS, METHODS
from attention.evaluation import FAITHFULNESS_METHODS
from attention.gradients import ClassRelevance
from attention.methods import ATTENTION_METHODS
from attention.relevance_methods import RELEVANCE_METHODS, Evidence, method_names, relevance_method


def _explained(tokens: int = 4, layers: int = 3) -> ClassRelevance:
    rng = np.random.default_rng(0)
    fields = {name: None for name in ClassRelevance.__dataclass_fields__}
    fields |= {"scores": rng.random((layers, tokens)), "input_x_gradient": rng.random(tokens)}
    return ClassRelevance(**fields)


def test_every_list_of_methods_is_read_from_the_registry():
    assert set(METHODS) == set(RELEVANCE_METHODS) == set(FAITHFULNESS_METHODS)
    assert set(GRAPH_METHODS) == set(ATTENTION_METHODS) == set(method_names("graph"))
    assert CLASS_METHODS == method_names("class") == ("class_relevance", "decompx", "input_x_gradient")
    assert GRADIENT_METHODS == ("class_relevance", "input_x_gradient")
    assert all(METHODS[name] == RELEVANCE_METHODS[name].label for name in METHODS)


def test_class_methods_read_their_evidence_through_one_signature():
    explained, calls = _explained(), []

    def decomposed():
        calls.append("decompx")
        return type("Parts", (), {"scores": np.ones((3, 4))})()

    evidence = Evidence(explained=lambda: explained, decomposed=decomposed)
    np.testing.assert_array_equal(relevance_method("class_relevance").token_scores(evidence), explained.scores)
    assert calls == []  # a method never pays for another's evidence
    saliency = relevance_method("input_x_gradient").token_scores(evidence)
    assert saliency.shape == (1, 4) and not relevance_method("input_x_gradient").layered
    assert relevance_method("decompx").token_scores(evidence).sum() == 12 and calls == ["decompx"]


def test_a_model_without_a_head_has_no_class_scores_and_graph_methods_need_maps():
    nothing = Evidence()
    assert all(relevance_method(name).token_scores(nothing) is None for name in method_names("class"))
    with pytest.raises(ValueError, match="traced"):
        relevance_method("rollout").token_scores(nothing)
    traced = Evidence(traced=lambda name: np.full((2, 3), len(name)))
    assert relevance_method("flow").token_scores(traced)[0, 0] == 4
    with pytest.raises(ValueError, match="expected one of"):
        relevance_method("saliency")


def test_every_method_and_measure_has_its_colour_in_the_faithfulness_figure():
    """A method added to the registry (or a measure to attention.defaults) cannot silently vanish from the plot."""
    from app.core.options import MEASURES
    from app.figures.faithfulness import MEASURE_COLOURS, METHOD_COLOURS

    assert set(METHOD_COLOURS) == set(RELEVANCE_METHODS)
    assert set(MEASURE_COLOURS) == set(MEASURES)
    assert [n for n, m in RELEVANCE_METHODS.items() if m.graph_settings] == ["graph"]
    assert [n for n, m in RELEVANCE_METHODS.items() if m.costly] == ["decompx"]
