"""DecompX (Modarressi et al. 2023): logit parts + bias = the logits for every architecture and the real fine-tuned
model, parts summing to every traced tensor, both algorithms against a per-token float64 reference, chunking,
target resolution and refusals."""

import importlib
import math

import numpy as np
import pytest
import torch

from attention import class_relevance, load_model
from attention.errors import NotAClassifierError, TargetClassError
from attention.extraction import encode
from attention.mixing.decompx import DecompX, classifier_head, decompx, forward_parts, linearise, slopes
from attention.mixing.layers import UnsupportedArchitectureError

# the module itself, even once attention.mixing re-exports the function under the same name
module = importlib.import_module("attention.mixing.decompx")

TEXT = "a gorgeous , unbelievably witty film"
PAIR = "but the plot is thin"
ARCHITECTURES = ("bert", "roberta", "distilbert", "albert", "electra")


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory, minilm_dir) -> dict:
    """Tiny random ``*ForSequenceClassification`` models of every supported architecture (2 layers x 2 heads,
    weights drawn wider than the default so the activations are far from linear, and random biases and LayerNorm
    scales: a fresh model's are 0 and 1, which would leave the bias part untested)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.tiny import _configs

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    root = tmp_path_factory.mktemp("decompx")
    torch.manual_seed(0)
    models = {}
    for name, config in _configs().items():
        config.num_labels = 2
        config.initializer_range = 0.2
        network = AutoModelForSequenceClassification.from_config(config)
        with torch.no_grad():
            for parameter_name, parameter in network.named_parameters():
                if parameter_name.endswith("bias"):
                    parameter.normal_(0.0, 0.2)
                elif "layernorm" in parameter_name.lower() or "layer_norm" in parameter_name.lower():
                    parameter.normal_(1.0, 0.2)
        network.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        models[name] = load_model(root / name, name=f"tiny {name}", labels=("bad", "good"))
    return models


def _assert_sums_to_logits(result: DecompX) -> None:
    scale = float(np.abs(result.logits).max())
    np.testing.assert_allclose(result.logit_parts.sum(-1) + result.bias, result.logits, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("method", ["backward", "forward"])
def test_logit_parts_and_bias_sum_to_the_logits_for_every_architecture(classifiers, name, method):
    for pair in (None, PAIR):
        _assert_sums_to_logits(decompx(classifiers[name], TEXT, pair, method=method))


def test_logit_parts_sum_to_the_logits_of_the_shared_tiny_classifier(tiny_models):
    model = load_model(tiny_models["bert-classifier"], name="tiny classifier", labels=("bad", "good"))
    _assert_sums_to_logits(decompx(model, TEXT, PAIR))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parts_sum_to_every_traced_tensor_of_every_layer(classifiers, name):
    model = classifiers[name]
    linear = linearise(model, encode(model, TEXT, PAIR))
    with torch.inference_mode():
        for layer, parts in zip(linear.layers, forward_parts(linear, 0), strict=True):
            for traced, decomposed in zip((layer.r1, layer.z, layer.r2, layer.y), parts, strict=True):
                np.testing.assert_allclose(decomposed.sum(0).numpy(), traced.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_row_is_the_head_read_at_that_layer(classifiers, name):
    """Row ``l`` plus its bias part is the head's logit on layer ``l + 1``'s first-position output (the model's own
    hidden states and head modules); the last row is the model's logit."""
    model = classifiers[name]
    result = decompx(model, TEXT, target="good")
    head = classifier_head(model)
    with torch.inference_mode():
        hidden = model.model(**encode(model, TEXT, None), output_hidden_states=True).hidden_states
        read = [float(head.out(head.activation(head.dense(h[0, 0])))[1]) for h in hidden[1:]]
    np.testing.assert_allclose(result.scores.sum(-1) + result.layer_bias, read, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.scores[-1], result.logit_parts[1])
    assert result.layer_bias[-1] == result.bias[1]


def _reference(model, text: str) -> np.ndarray:
    """``[layer, class, part]`` (last part the bias part): DecompX of a BERT classifier in float64 numpy, one part
    at a time, with loops over positions, heads and keys, from the model's weights and embedding output alone."""
    network = model.model
    encoding = model.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        hidden = [h[0].double().numpy() for h in network(**encoding, output_hidden_states=True).hidden_states]
    heads = network.config.num_attention_heads
    size = network.config.hidden_size // heads
    cuts = [slice(h * size, (h + 1) * size) for h in range(heads)]

    def w(linear):
        return linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()

    def gelu(u):
        return 0.5 * u * (1 + np.vectorize(math.erf)(u / math.sqrt(2)))

    def norm(v, gamma, beta, sigma, bias):
        return gamma * (v - v.mean()) / sigma + (beta if bias else 0)

    x = hidden[0]  # BERT's embedding output is the first layer's input
    n = x.shape[0]
    layers = []
    for index, block in enumerate(network.bert.encoder.layer):  # the real pass, from the weights
        attention = block.attention
        (wq, bq), (wk, bk), (wv, bv) = w(attention.self.query), w(attention.self.key), w(attention.self.value)
        t = {"wv": wv, "bv": bv}
        (t["wo"], t["bo"]), (t["g1"], t["be1"]) = w(attention.output.dense), w(attention.output.LayerNorm)
        (t["w1"], t["b1"]), (t["w2"], t["b2"]) = w(block.intermediate.dense), w(block.output.dense)
        t["g2"], t["be2"] = w(block.output.LayerNorm)
        t["alpha"] = np.zeros((heads, n, n))
        for h, cut in enumerate(cuts):
            scores = (x @ wq[cut].T + bq[cut]) @ (x @ wk[cut].T + bk[cut]).T / math.sqrt(size)
            t["alpha"][h] = np.exp(scores - scores.max(-1, keepdims=True))
            t["alpha"][h] /= t["alpha"][h].sum(-1, keepdims=True)
        mixed = np.concatenate([t["alpha"][h] @ (x @ wv[cut].T + bv[cut]) for h, cut in enumerate(cuts)], axis=1)
        r1 = x + mixed @ t["wo"].T + t["bo"]
        t["sigma1"] = np.sqrt(r1.var(-1) + attention.output.LayerNorm.eps)
        z = np.stack([norm(r1[i], t["g1"], t["be1"], t["sigma1"][i], True) for i in range(n)])
        u = z @ t["w1"].T + t["b1"]
        t["theta"] = gelu(u) / u
        r2 = z + gelu(u) @ t["w2"].T + t["b2"]
        t["sigma2"] = np.sqrt(r2.var(-1) + block.output.LayerNorm.eps)
        x = np.stack([norm(r2[i], t["g2"], t["be2"], t["sigma2"][i], True) for i in range(n)])
        np.testing.assert_allclose(x, hidden[index + 1], atol=1e-5)
        t["first"] = x[0]
        layers.append(t)
    (wp, bp), (wc, bc) = w(network.bert.pooler.dense), w(network.classifier)

    out = np.zeros((len(layers), wc.shape[0], n + 1))
    for part in range(n + 1):  # one token's part (or the bias part) at a time
        bias = part == n
        vectors = [hidden[0][i] if i == part else np.zeros_like(hidden[0][i]) for i in range(n)]
        for index, t in enumerate(layers):
            mixed = []
            for i in range(n):
                total = vectors[i] + (t["bo"] if bias else 0)
                for h, cut in enumerate(cuts):
                    for k in range(n):
                        total = total + t["alpha"][h, i, k] * (vectors[k] @ t["wv"][cut].T) @ t["wo"][:, cut].T
                    if bias:
                        total = total + t["bv"][cut] @ t["wo"][:, cut].T
                mixed.append(total)
            vectors = []
            for i in range(n):
                z = norm(mixed[i], t["g1"], t["be1"], t["sigma1"][i], bias)
                inner = t["theta"][i] * (z @ t["w1"].T + (t["b1"] if bias else 0))
                r2 = z + inner @ t["w2"].T + (t["b2"] if bias else 0)
                vectors.append(norm(r2, t["g2"], t["be2"], t["sigma2"][i], bias))
            pre = t["first"] @ wp.T + bp
            pooled = (np.tanh(pre) / pre) * (vectors[0] @ wp.T + (bp if bias else 0))
            out[index, :, part] = pooled @ wc.T + (bc if bias else 0)
    return out


@pytest.mark.parametrize("method", ["backward", "forward"])
@pytest.mark.parametrize("target", [0, 1])
def test_decompx_matches_a_per_token_float64_reference(classifiers, monkeypatch, method, target):
    monkeypatch.setattr(module, "CHUNK_VALUES", 1)  # the forward method one part at a time
    model = classifiers["bert"]
    reference = _reference(model, TEXT)
    result = decompx(model, TEXT, target=target, method=method)
    tolerance = {"rtol": 1e-5, "atol": 1e-5 * float(np.abs(reference).max())}
    np.testing.assert_allclose(result.scores, reference[:, target, :-1], **tolerance)
    np.testing.assert_allclose(result.layer_bias, reference[:, target, -1], **tolerance)
    np.testing.assert_allclose(result.logit_parts, reference[-1, :, :-1], **tolerance)
    np.testing.assert_allclose(result.bias, reference[-1, :, -1], **tolerance)


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_chunks_of_parts_give_the_same_answer_as_one_chunk_and_as_the_backward_method(classifiers, monkeypatch, name):
    model = classifiers[name]
    backward = decompx(model, TEXT, PAIR, target="bad")
    results = []
    n = len(backward.tokens)
    for values in (10**9, 1, 3 * n * 32):  # all parts at once, one part, 3 parts per chunk (32 FFN units)
        monkeypatch.setattr(module, "CHUNK_VALUES", values)
        results.append(decompx(model, TEXT, PAIR, target="bad", method="forward"))
    for result in results:
        for field in ("scores", "layer_bias", "logit_parts", "bias", "logits"):
            np.testing.assert_allclose(getattr(result, field), getattr(results[0], field), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(getattr(result, field), getattr(backward, field), rtol=1e-5, atol=1e-6)


def test_targets_resolve_as_class_relevance_does(classifiers):
    model = classifiers["bert"]
    predicted = class_relevance(model, TEXT).target_index
    assert decompx(model, TEXT).target_index == predicted
    assert decompx(model, TEXT, target="predicted").target_index == predicted
    assert (decompx(model, TEXT, target="good").target, decompx(model, TEXT, target="good").target_index) == ("good", 1)
    assert decompx(model, TEXT, target=0).target == "bad"
    assert decompx(model, TEXT, target="1").target == "good"
    messages = []
    for bad in ("neutral", 2, -1):
        with pytest.raises(TargetClassError) as ours:
            decompx(model, TEXT, target=bad)
        with pytest.raises(TargetClassError) as theirs:
            class_relevance(model, TEXT, target=bad)
        assert str(ours.value) == str(theirs.value)
        messages.append(str(ours.value))
    assert "has no class 'neutral'" in messages[0] and "out of range" in messages[1]
    assert "0 = bad, 1 = good" in messages[0]


def test_a_bare_encoder_is_refused_as_class_relevance_refuses_it(tiny_models):
    bare = load_model(tiny_models["bert"], name="tiny bert")
    with pytest.raises(NotAClassifierError) as ours:
        decompx(bare, TEXT)
    with pytest.raises(NotAClassifierError) as theirs:
        class_relevance(bare, TEXT)
    assert str(ours.value) == str(theirs.value)
    assert "has no classification head" in str(ours.value)


def test_an_unsupported_architecture_is_refused_naming_it(tmp_path, minilm_dir):
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    config = XLMRobertaConfig(vocab_size=30522, max_position_embeddings=64, pad_token_id=0, num_labels=2, **sizes)
    XLMRobertaForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match="XLMRobertaForSequenceClassification") as refused:
        decompx(load_model(tmp_path, name="tiny xlm-r"), TEXT)
    assert "class_relevance" in str(refused.value)


def test_an_unknown_method_is_refused(classifiers):
    with pytest.raises(ValueError, match="method must be one of backward, forward"):
        decompx(classifiers["bert"], TEXT, method="sideways")


def test_result_is_read_only_float32_with_documented_shapes(classifiers):
    model = classifiers["electra"]
    result = decompx(model, TEXT, PAIR)
    n = len(result.tokens)
    shapes = {"scores": (2, n), "layer_bias": (2,), "logit_parts": (2, n), "bias": (2,), "logits": (2,)}
    for field, shape in shapes.items():
        array = getattr(result, field)
        assert array.dtype == np.float32 and array.shape == shape and not array.flags.writeable
    assert result.tokens == result.facts.tokens and result.labels == ("bad", "good")
    assert result.target_index == int(np.argmax(result.logits))
    assert sum(result.probabilities) == pytest.approx(1.0)
    scores, parts = result.at_word_level()
    assert scores.shape[1] == parts.shape[1] == max(result.facts.groups) + 1
    np.testing.assert_allclose(parts.sum(-1), result.logit_parts.sum(-1), rtol=1e-5)


def test_slopes_make_each_activation_linear_through_the_origin_and_keep_zero_exact():
    pre = torch.tensor([-1.0, 0.0, 2.0])
    gelu = torch.nn.GELU()
    theta, offset = slopes(gelu, pre)
    np.testing.assert_allclose(theta.numpy(), [gelu(pre[0]) / -1, 0.5, gelu(pre[2]) / 2], rtol=1e-6)
    assert offset.abs().max() == 0
    assert slopes(torch.tanh, pre)[0][1] == 1 and slopes(torch.relu, pre)[0][1] == 0
    theta, offset = slopes(lambda u: u + 1, pre)  # act(0) ≠ 0: the constant goes to the bias part
    np.testing.assert_allclose((theta * pre + offset).numpy(), (pre + 1).numpy(), rtol=1e-6)
    assert offset.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.slow
def test_real_finetuned_model_logit_parts_sum_to_its_logits_by_both_methods(default_pair):
    model = default_pair.finetuned
    text = "a gorgeous , witty , seductive movie that never lets up ."
    backward = decompx(model, text)
    forward = decompx(model, text, method="forward")
    for result in (backward, forward, decompx(model, "the plot is thin", "yet the cast is wonderful", target=0)):
        _assert_sums_to_logits(result)
    np.testing.assert_allclose(backward.logit_parts, forward.logit_parts, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(backward.scores, forward.scores, rtol=1e-4, atol=1e-5)
    word = dict(zip(backward.tokens, backward.logit_parts[backward.target_index], strict=False))
    assert backward.target == "positive" and word["gorgeous"] > 0


@pytest.mark.slow
def test_real_finetuned_model_parts_sum_to_every_traced_tensor(default_pair):
    model = default_pair.finetuned
    linear = linearise(model, encode(model, "a gorgeous , witty , seductive movie that never lets up .", None))
    with torch.inference_mode():
        for layer, parts in zip(linear.layers, forward_parts(linear, 0), strict=True):
            for traced, decomposed in zip((layer.r1, layer.z, layer.r2, layer.y), parts, strict=True):
                scale = float(traced.abs().max())
                np.testing.assert_allclose(decomposed.sum(0).numpy(), traced.numpy(), atol=1e-4 * max(1.0, scale))
