"""Context-mixing contribution maps: the traced layers rebuild the model's own hidden states, and every measure
equals a plain per-token reference written from the papers' equations (loops over query and key, weights read
straight from the Hugging Face modules), on tiny random encoders of every supported architecture and on the real
default pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attention.extraction import encode
from attention.mixing import MIXING_MEASURES, UnsupportedArchitectureError, contributions, contributions_for
from attention.mixing.layers import blocks, trace_layers
from attention.models import load_model

TEXT = "a fine , moving film about a dull plot"
ARCHITECTURES = ["bert", "roberta", "distilbert", "albert", "electra", "bert-classifier"]


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return {name: load_model(tiny_models[name]) for name in ARCHITECTURES}


def _hidden_states(model, encoding):
    with torch.inference_mode():
        output = model.model(**encoding, output_hidden_states=True, output_attentions=True)
    return output.hidden_states, output.attentions


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_traced_layers_rebuild_the_models_hidden_states(tiny, name):
    model = tiny[name]
    encoding = encode(model, TEXT, "a second segment")
    hidden, attentions = _hidden_states(model, encoding)
    layers = trace_layers(model, encoding)
    assert len(layers) == len(attentions) == model.num_layers
    for index, layer in enumerate(layers):
        assert torch.allclose(layer.y, hidden[index + 1][0], atol=1e-5, rtol=0), index
        assert torch.allclose(layer.alpha, attentions[index][0], atol=1e-6, rtol=0), index
        assert torch.allclose(layer.x, hidden[index][0], atol=1e-5, rtol=0), index


@pytest.mark.slow
def test_traced_layers_rebuild_both_real_models(default_pair):
    for model in (default_pair.pretrained, default_pair.finetuned):
        encoding = encode(model, "the plot is thin , but the acting is superb .", None)
        hidden, _ = _hidden_states(model, encoding)
        for index, layer in enumerate(trace_layers(model, encoding)):
            assert float((layer.y - hidden[index + 1][0]).abs().max()) <= 1e-5, (model.name, index)


# --- a plain reference, one query and key at a time ------------------------------------------------------------


def _layer_norm_linear(vector, gamma, sigma):
    return gamma * (vector - vector.mean()) / sigma


def reference_maps(model, text: str, measure: str) -> np.ndarray:
    """``[layer, query, key]`` from the papers' equations, looping over query and key (float64)."""
    encoding = encode(model, text, None)
    hidden, attentions = _hidden_states(model, encoding)
    maps = []
    for index, block in enumerate(blocks(model)):
        x = hidden[index][0].double()
        alpha = attentions[index][0].double()
        h, n, _ = alpha.shape
        d = x.shape[1]
        size = d // h
        w_v, b_v = block.value.weight.double(), block.value.bias.double()
        w_o, b_o = block.output.weight.double(), block.output.bias.double()
        gamma1, gamma2 = block.norm1.weight.double(), block.norm2.weight.double()

        def f(head: int, j: int, x=x, w_v=w_v, b_v=b_v, w_o=w_o, size=size):  # (x_j W_V^h + b_V^h) W_O^h
            part = slice(head * size, (head + 1) * size)
            value = x[j] @ w_v[part].T + b_v[part]
            return value @ w_o[:, part].T

        vectors = [[f(head, j) for j in range(n)] for head in range(h)]
        r1 = torch.stack([x[i] + sum(alpha[hh, i, j] * vectors[hh][j] for hh in range(h) for j in range(n)) + b_o
                          for i in range(n)])  # fmt: skip
        sigma1 = (r1.var(dim=-1, unbiased=False) + block.norm1.eps).sqrt()
        z = block.norm1(r1.float()).double()
        r2 = z + block.ffn_out(block.activation(block.ffn_in(z.float()))).double()
        sigma2 = (r2.var(dim=-1, unbiased=False) + block.norm2.eps).sqrt()
        out = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                mixed = sum(alpha[hh, i, j] * vectors[hh][j] for hh in range(h))
                with_residual = mixed + (x[j] if i == j else 0)
                if measure == "attention_norm":
                    out[i, j] = mixed.norm()
                elif measure == "norm_residual":
                    out[i, j] = _layer_norm_linear(with_residual, gamma1, sigma1[i]).norm()
                elif measure == "globenc":
                    first = _layer_norm_linear(with_residual, gamma1, sigma1[i])
                    out[i, j] = _layer_norm_linear(first, gamma2, sigma2[i]).norm()
                elif measure == "alti":
                    transformed = _layer_norm_linear(with_residual, gamma1, sigma1[i])
                    out[i, j] = max(0.0, float(z[i].abs().sum() - (z[i] - transformed).abs().sum()))
        if measure == "value_zeroing":
            out = _value_zeroing_by_hooks(model, encoding, index)
        maps.append(out / out.sum(axis=1, keepdims=True))
    return np.stack(maps)


def _value_zeroing_by_hooks(model, encoding, layer: int) -> np.ndarray:
    """Mohebbi et al.'s definition run literally, in float64: the whole model again with token j's value vector
    zeroed in every head of ``layer`` (a forward hook on the value projection), ``1 − cos`` of that layer's
    outputs."""
    import copy
    from dataclasses import replace

    model = replace(model, model=copy.deepcopy(model.model).double())
    block = blocks(model)[layer]
    first_call = next(i for i, other in enumerate(blocks(model)) if other.value is block.value)
    output = _hidden_states(model, encoding)[0][layer + 1][0]
    n = output.shape[0]
    out = np.zeros((n, n))
    for j in range(n):
        calls = []

        def zero(_module, _args, value, j=j, calls=calls):
            calls.append(1)  # ALBERT's layers share one module: zero only on this layer's call
            if len(calls) != layer + 1 - first_call:
                return None
            value = value.clone()
            value[:, j] = 0
            return value

        handle = block.value.register_forward_hook(zero)
        try:
            hidden, _ = _hidden_states(model, encoding)
        finally:
            handle.remove()
        changed = hidden[layer + 1][0]
        out[:, j] = (1 - torch.nn.functional.cosine_similarity(changed, output, dim=-1)).clamp_min(0).numpy()
    return out


@pytest.mark.parametrize("measure", MIXING_MEASURES)
@pytest.mark.parametrize("name", ["bert", "roberta", "distilbert", "albert", "electra"])
def test_each_measure_equals_the_per_token_reference(tiny, name, measure):
    model = tiny[name]
    got = contributions(model, TEXT, measure=measure).maps
    want = reference_maps(model, TEXT, measure)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("measure", ["alti", "globenc", "value_zeroing"])
def test_real_models_follow_the_papers_conventions(default_pair, measure):
    """ALTI with the reference code's resultant (the LayerNorm's output, biases included) and clipped L1 gain;
    GlobEnc through both LayerNorms; value zeroing by hooks on the model itself."""
    text = "a gorgeous , witty film ."
    for model in (default_pair.pretrained, default_pair.finetuned):
        got = contributions(model, text, measure=measure).maps
        np.testing.assert_allclose(got, reference_maps(model, text, measure), atol=5e-5, rtol=1e-3)


def test_maps_are_distributions_and_head_shares_add_up(tiny):
    measured = contributions_for(tiny["bert-classifier"], TEXT, "a second segment")
    for measure, result in measured.items():
        assert result.maps.dtype == np.float32 and not result.maps.flags.writeable
        assert (result.maps >= 0).all(), measure
        np.testing.assert_allclose(result.maps.sum(-1), 1.0, atol=1e-5)
        assert result.maps.shape == (2, len(result.tokens), len(result.tokens))
        shares = result.head_shares()
        if measure == "value_zeroing":
            assert result.head_maps is None and shares is None
        else:
            assert result.head_maps.shape == (2, 2, len(result.tokens), len(result.tokens))
            np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert measured["alti"].includes_residual and not measured["attention_norm"].includes_residual


def test_attention_norm_heads_sum_to_at_least_the_norm_of_their_sum(tiny):
    """The triangle inequality ties the per-head parts to the map they make: Σ_h ‖α^h f^h‖ ≥ ‖Σ_h α^h f^h‖."""
    result = contributions(tiny["bert"], TEXT, measure="attention_norm")
    model = tiny["bert"]
    layers = trace_layers(model, encode(model, TEXT, None))
    for index, layer in enumerate(layers):
        unnormalised = torch.einsum("hij,hjd->ijd", layer.alpha, layer.f).norm(dim=-1).numpy()
        assert (result.head_maps[index].sum(axis=0) >= unnormalised - 1e-5).all()


def test_an_architecture_the_measures_cannot_decompose_is_named(tiny_models, tmp_path):
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

    DebertaV2Model(DebertaV2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, vocab_size=30522)).save_pretrained(tmp_path)  # fmt: skip
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(tmp_path)
    model = load_model(tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match=r"is a deberta-v2 model.*bert, roberta.*raw attention"):
        contributions(model, TEXT)


def test_an_unknown_measure_is_refused(tiny):
    with pytest.raises(ValueError, match="measure must be one of raw_attention"):
        contributions(tiny["bert"], TEXT, measure="saliency")


# --- every graph method over a measure --------------------------------------------------------------------------


def test_graph_methods_over_raw_attention_maps_equal_those_over_the_run(tiny):
    from attention.extraction import extract
    from attention.methods import relevance

    model = tiny["bert-classifier"]
    run, maps = extract(model, TEXT), contributions(model, TEXT, measure="raw_attention")
    for method in ("raw_attention", "rollout", "flow", "graph"):
        np.testing.assert_allclose(relevance(maps, method), relevance(run, method), atol=1e-6, err_msg=method)


def test_a_measure_with_the_residual_is_rolled_out_without_an_added_identity(tiny):
    from attention.methods import relevance

    result = contributions(tiny["bert-classifier"], TEXT, measure="alti")
    maps = result.maps.astype(np.float64)
    expected = [maps[0]]
    for layer in maps[1:]:
        expected.append(layer @ expected[-1])
    cls = result.facts.cls_index
    rolled = relevance(result, "rollout")
    np.testing.assert_allclose(rolled, np.stack(expected)[:, cls], atol=1e-6)
    # the attention graph at tau = 0 without sinks is exactly that rollout, whatever alpha is passed
    for alpha in (0.0, 0.5, 0.9):
        np.testing.assert_allclose(relevance(result, "graph", tau=0.0, sinks=False, alpha=alpha), rolled, atol=1e-6)
    flow = relevance(result, "flow")
    assert np.isfinite(flow).all() and (flow >= -1e-9).all()
    with pytest.raises(ValueError, match="alti maps are one per layer"):
        relevance(result, "rollout", heads=[0])
