"""DecompX (Modarressi et al., ACL 2023): each input token's signed part of a classifier's logits, carried through
every layer and the classification head (:func:`decompx`).

Every representation is written as a sum of ``n + 1`` parts: one per input position ``j`` (special tokens included)
and one *bias part*. They start at the first layer's input ``x0`` (as
:func:`~attention.mixing.layers.trace_forward` reads it): ``part_j(x0_i) = δ_ij x0_i``, bias part 0. ``x0`` is the sum
of word, position and segment embeddings after the embedding LayerNorm (and ALBERT's / ELECTRA's projection), so a
token's position and segment embeddings count as that token's. Each layer then maps parts to parts linearly, at the
attention ``α``, the LayerNorm ``σ`` and the activation slopes ``θ`` of the model's own pass (paper §3.1–3.3;
notation of :mod:`attention.mixing.layers`)::

    part(r1_i) = part(x_i) + Σ_h Σ_k α^h_ik part(x_k) W_V^h W_O^h        bias part + Σ_h b_V^h W_O^h + b_O
    part(z_i)  = γ1 ⊙ (part(r1_i) − mean part(r1_i)) / σ1_i                bias part + β1
    part(r2_i) = part(z_i) + (θ_i ⊙ part(z_i) W_1) W_2                     bias part: + b_1 before θ, + b_2 after
    part(y_i)  = γ2 ⊙ (part(r2_i) − mean part(r2_i)) / σ2_i                bias part + β2

with ``θ_i = act(u_i) / u_i`` per unit, ``u_i = z_i W_1 + b_1`` the real pre-activation (the paper's zero-origin
slope, its code's ``"GeLU_ZO"``). Where ``u`` is exactly 0 the slope is ``act'(0)`` and ``act(0)`` (0 for every
supported activation) goes to the bias part. ``α`` rows sum to 1, so ``b_V`` passes whole to the bias part. The
head on the first position (§3.4) is made linear the same way: BERT and ALBERT pooler (dense, tanh) + classifier;
RoBERTa and ELECTRA dense, tanh / GELU, out_proj; DistilBERT pre_classifier, ReLU, classifier. Every step is linear
in the parts and adds each bias once, to the bias part, so the parts sum to the real tensor at every step and
``logit_parts.sum(-1) + bias`` equals the model's logits to float rounding (tests).

Row ``l`` of :attr:`DecompX.scores` passes the parts of layer ``l + 1``'s first-position output through the head
made linear at *that* representation (a logit lens: ``scores[l].sum() + layer_bias[l]`` is the head's logit on
that layer's output); the last row is the final decomposition.

Two exact algorithms give the same numbers to float rounding:

- ``"backward"`` (default): the decomposition is linear in the input parts, so token ``j``'s part of a readout is
  ``g_j · x0_j``, with ``g`` the gradient of the readout of the linear network (its transpose, by hand), from one
  backward sweep per readout (each class at the last layer, the target at every earlier one) plus one forward sweep
  of the bias part alone: with the traced pass, about 7 forward passes of the default 6-layer model.
- ``"forward"``: the paper's form. It carries the ``[n + 1, n, d]`` parts through the layers in chunks of parts
  (independent once ``α``, ``σ``, ``θ`` are fixed), a chunk's largest tensor at most :data:`CHUNK_VALUES` floats:
  about ``n + 1`` forward passes' work. :func:`forward_parts` gives each token's part of every tensor this way.

Deviations from the paper and its reference code (``mohsenfayyaz/DecompX``): biases stay in their own part, never
spread over tokens (the paper's default, §3.1 "AbsDot", code ``bias_decomp_type="absdot"``, spreads each bias over
the tokens in proportion to ``|part · bias|``; the code's ``"biastoken"`` option keeps a bias part as here); ``b_V``
is bias in every layer (it counts the first layer's ``b_V`` in the value vectors, so it reaches tokens through
``α``); the exact slope at a zero pre-activation where it divides by ``u + 1e-12``; rows before the last layer as
above (it reads the head after the last layer only).
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from attention.extraction import TokenFacts, clean_texts, encode, token_facts
from attention.gradients import require_classifier, target_index
from attention.methods import merge_scores
from attention.mixing.layers import LayerTensors, UnsupportedArchitectureError, trace_layers
from attention.models import LoadedModel
from attention.shortcut import first_position_only

Method = Literal["backward", "forward"]
METHODS: tuple[str, ...] = ("backward", "forward")
CHUNK_VALUES = 4_000_000  # floats in the "forward" method's largest tensor per chunk of parts (16 MB in float32)


@dataclass(frozen=True, eq=False)
class DecompX:
    """One classifier's DecompX decomposition of one input, read-only float32 arrays.

    ``scores`` ``[layer, token]``: each token's part of the target class's logit read after each layer (the last row
    is the final one); ``layer_bias`` ``[layer]`` the bias part of those readings (a row plus its bias is the head's
    logit on that layer's output). ``logit_parts`` ``[class, token]``: each token's part of every class logit;
    ``bias`` ``[class]`` the part no token owns; ``logits`` ``[class]`` the model's own, equal to
    ``logit_parts.sum(-1) + bias``."""

    model_name: str
    text: str
    text_pair: str | None
    facts: TokenFacts
    labels: tuple[str, ...]
    target: str
    target_index: int
    scores: np.ndarray
    layer_bias: np.ndarray
    logit_parts: np.ndarray
    bias: np.ndarray
    logits: np.ndarray

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.facts.tokens

    @property
    def num_layers(self) -> int:
        return self.scores.shape[0]

    @property
    def probabilities(self) -> tuple[float, ...]:
        shifted = np.exp(self.logits.astype(np.float64) - self.logits.max())
        return tuple(float(p) for p in shifted / shifted.sum())

    def at_word_level(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [layer, word], logit_parts [class, word])``: each word's pieces summed (parts add up)."""
        return merge_scores(self.scores, self.facts.groups), merge_scores(self.logit_parts, self.facts.groups)


@dataclass(frozen=True)
class Head:
    """A classifier's head on the first position: ``logits = out(activation(dense(y_0)))``."""

    dense: object  # nn.Linear
    activation: Callable
    out: object  # nn.Linear


@dataclass(frozen=True, eq=False)
class Linearised:
    """One input's network made linear at its own pass (torch tensors; ``n`` tokens, ``d`` hidden size, ``m``
    feed-forward units, ``k`` head units, ``L`` layers).

    ``x0`` ``[n, d]`` the first layer's input; ``layers`` each layer's traced tensors; ``ffn_slopes`` /
    ``ffn_offsets`` ``L × [n, m]`` each unit's ``θ`` and the constant for the bias part; ``head_slopes`` /
    ``head_offsets`` ``[L, k]`` the same for the head read at each layer's first-position output."""

    x0: object
    layers: tuple[LayerTensors, ...]
    ffn_slopes: tuple[object, ...]
    ffn_offsets: tuple[object, ...]
    head: Head
    head_slopes: object
    head_offsets: object

    @property
    def num_classes(self) -> int:
        return int(self.head.out.out_features)


class LayerParts(NamedTuple):
    """Parts ``[parts, n, d]`` of one layer's ``r1``, ``z``, ``r2`` and output ``y``."""

    r1: object
    z: object
    r2: object
    y: object


def decompx(
    model: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    target: str | int | None = None,
    method: Method = "backward",
) -> DecompX:
    """``model``'s :class:`DecompX` for one input and ``target`` (a class name, an index, or None / "predicted").

    :class:`~attention.errors.NotAClassifierError` for a bare encoder, :class:`~attention.errors.TargetClassError`
    for an unknown class (as :func:`~attention.gradients.class_relevance`), :class:`UnsupportedArchitectureError`
    for layers or a head it cannot decompose. ``method`` picks one of two exact algorithms (module docstring)."""
    import torch

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    require_classifier(model)
    text, text_pair = clean_texts(text, text_pair)
    encoding = encode(model, text, text_pair)
    facts = token_facts(model, encoding)
    with torch.inference_mode(), first_position_only():
        logits = model.model(**encoding).logits[0]
    index = target_index(model, target, torch.softmax(logits.float(), dim=-1).numpy())
    linear = linearise(model, encoding)
    with torch.inference_mode():
        if method == "forward":
            parts, biases = forward_readouts(linear)  # [L, C, n], [L, C]
            scores, final = parts[:, index], parts[-1]
        else:
            readouts = backward_readouts(linear, index)  # [C + L - 1, n]
            classes = linear.num_classes
            final = readouts[:classes]
            scores = torch.cat([readouts[classes:].flip(0), final[index : index + 1]])
            biases = torch.stack([_head_forward(parts.y[:, 0], linear, layer, bias=0)[0]
                                  for layer, parts in enumerate(forward_parts(linear, len(facts.tokens)))])  # fmt: skip
    return DecompX(
        model_name=model.name, text=text, text_pair=text_pair, facts=facts, labels=model.labels,
        target=model.labels[index], target_index=index, scores=_frozen(scores), layer_bias=_frozen(biases[:, index]),
        logit_parts=_frozen(final), bias=_frozen(biases[-1]), logits=_frozen(logits),
    )  # fmt: skip


def classifier_head(model: LoadedModel) -> Head:
    """The :class:`Head` of a ``*ForSequenceClassification`` model of a supported architecture."""
    import torch

    require_classifier(model)
    network = model.model
    kind = getattr(network.config, "model_type", "")
    base = getattr(network, "base_model", None)
    if kind == "bert" and getattr(base, "pooler", None) is not None:
        return Head(base.pooler.dense, base.pooler.activation, network.classifier)
    if kind == "albert" and getattr(base, "pooler", None) is not None:
        return Head(base.pooler, base.pooler_activation, network.classifier)
    if kind in ("roberta", "electra") and hasattr(network.classifier, "out_proj"):
        return Head(network.classifier.dense, getattr(network.classifier, "activation", torch.tanh),
                    network.classifier.out_proj)  # fmt: skip
    if kind == "distilbert" and hasattr(network, "pre_classifier"):
        return Head(network.pre_classifier, torch.relu, network.classifier)
    raise UnsupportedArchitectureError(
        f"Model '{model.name}' is a {type(network).__name__}; DecompX decomposes the sequence-classification heads "
        "of BERT, RoBERTa, ELECTRA, ALBERT and DistilBERT only.",
        "Use class relevance (class_relevance) for this model.",
    )


def linearise(model: LoadedModel, encoding) -> Linearised:
    """Trace one encoded input (a batch of one) and fix every slope the decomposition needs."""
    import torch

    head = classifier_head(model)
    layers = tuple(trace_layers(model, encoding))
    with torch.inference_mode():
        ffn = [slopes(layer.block.activation, layer.block.ffn_in(layer.z)) for layer in layers]
        first = torch.stack([layer.y[0] for layer in layers])  # [L, d]
        head_slopes, head_offsets = slopes(head.activation, head.dense(first))
        x0 = layers[0].x
    return Linearised(x0=x0, layers=layers, ffn_slopes=tuple(s for s, _ in ffn), ffn_offsets=tuple(o for _, o in ffn),
                      head=head, head_slopes=head_slopes, head_offsets=head_offsets)  # fmt: skip


def slopes(activation: Callable, pre) -> tuple[object, object]:
    """``(θ, offset)`` of ``activation`` at the pre-activations ``pre`` (any shape): ``act(u) = θ u + offset`` with
    ``θ = act(u) / u``; where ``u == 0``, ``θ = act'(0)`` and ``offset = act(0)``, else ``offset = 0``."""
    import torch

    post = activation(pre)
    zero = pre == 0
    theta = post / torch.where(zero, torch.ones_like(pre), pre)
    offset = torch.zeros_like(post)
    if bool(zero.any()):
        theta = torch.where(zero, _slope_at_zero(activation, pre.dtype), theta)
        offset = torch.where(zero, post, offset)
    return theta, offset


def _slope_at_zero(activation: Callable, dtype) -> float:
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        zero = torch.zeros(1, dtype=dtype, requires_grad=True)
        (slope,) = torch.autograd.grad(activation(zero).sum(), zero)
    return float(slope[0])


def forward_parts(linear: Linearised, start: int, stop: int | None = None) -> Iterator[LayerParts]:
    """Parts ``start .. stop - 1`` (token ``j < n``; part ``n`` is the bias part; default: to the bias part, included)
    of every layer's tensors, layer by layer: :class:`LayerParts` of ``[stop - start, n, d]`` tensors."""
    import torch

    n, d = linear.x0.shape
    stop = n + 1 if stop is None else stop
    parts = linear.x0.new_zeros((stop - start, n, d))
    tokens = torch.arange(start, min(stop, n))
    parts[tokens - start, tokens] = linear.x0[tokens]
    bias = n - start if stop > n else None
    for layer, theta, offset in zip(linear.layers, linear.ffn_slopes, linear.ffn_offsets, strict=True):
        out = layer_forward(parts, layer, theta, offset, bias)
        yield out
        parts = out.y
        del out


def layer_forward(parts, layer: LayerTensors, theta, offset, bias: int | None) -> LayerParts:
    """One layer on ``parts`` ``[c, n, d]`` of its input; ``bias`` is the bias part's row (None: no bias part)."""
    import torch

    block = layer.block
    c, n, _ = parts.shape
    heads = block.num_heads
    value = (parts @ block.value.weight.T).view(c, n, heads, -1)
    r1 = parts + torch.einsum("hik,ckhs->cihs", layer.alpha, value).reshape(c, n, -1) @ block.output.weight.T
    del value  # every temporary is dropped as soon as it is used: a chunk's peak is a few [c, n, m] tensors
    if bias is not None:
        value_bias = block.value.bias if block.value.bias is not None else r1.new_zeros(block.value.out_features)
        r1[bias] += block.output(value_bias)  # Σ_h b_V^h W_O^h + b_O
    z = _norm_forward(r1, block.norm1, layer.sigma1, bias)
    pre = z @ block.ffn_in.weight.T
    if bias is not None and block.ffn_in.bias is not None:
        pre[bias] += block.ffn_in.bias
    pre *= theta
    if bias is not None:
        pre[bias] += offset
    r2 = pre @ block.ffn_out.weight.T
    del pre
    r2 += z
    if bias is not None and block.ffn_out.bias is not None:
        r2[bias] += block.ffn_out.bias
    return LayerParts(r1, z, r2, _norm_forward(r2, block.norm2, layer.sigma2, bias))


def _norm_forward(parts, norm, sigma, bias: int | None):
    """LayerNorm made linear at the real ``σ`` ``[n]``: ``γ ⊙ (part − mean part) / σ_i``, ``β`` to the bias part."""
    out = (parts - parts.mean(dim=-1, keepdim=True)) * (norm.weight / sigma[:, None])
    if bias is not None and norm.bias is not None:
        out[bias] += norm.bias
    return out


def _head_forward(first, linear: Linearised, layer: int, bias: int | None):
    """``[c, class]``: the head made linear at layer ``layer``'s (0-based) first-position output, on ``first``
    ``[c, d]`` (parts of that output)."""
    head = linear.head
    pre = first @ head.dense.weight.T
    if bias is not None and head.dense.bias is not None:
        pre[bias] += head.dense.bias
    pre = pre * linear.head_slopes[layer]
    if bias is not None:
        pre[bias] += linear.head_offsets[layer]
    out = pre @ head.out.weight.T
    if bias is not None and head.out.bias is not None:
        out[bias] += head.out.bias
    return out


def forward_readouts(linear: Linearised) -> tuple[object, object]:
    """``(parts [layer, class, token], bias [layer, class])``: every token's part of every class's logit read after
    each layer, carried forward in chunks of parts (largest tensor ≤ :data:`CHUNK_VALUES` floats)."""
    n, d = linear.x0.shape
    widest = max(d, *(int(layer.block.ffn_in.out_features) for layer in linear.layers))
    chunk = max(1, CHUNK_VALUES // (n * widest))
    out = linear.x0.new_empty((len(linear.layers), linear.num_classes, n + 1))
    for start in range(0, n + 1, chunk):
        stop = min(n + 1, start + chunk)
        bias = n - start if stop > n else None
        for layer, parts in enumerate(forward_parts(linear, start, stop)):
            out[layer, :, start:stop] = _head_forward(parts.y[:, 0], linear, layer, bias).T
            del parts  # before the next layer is computed
    return out[..., :n], out[..., n]


def backward_readouts(linear: Linearised, target: int):
    """``[readout, token]``: each token's part of every class's logit after the last layer, then of class ``target``
    read after layers ``L - 1, ..., 1`` (deepest first): ``g_j · x0_j`` with ``g`` the gradient of the readout of
    the linear network (no bias part), by one backward sweep per readout."""
    head, layers = linear.head, linear.layers
    classes, depth = linear.num_classes, len(layers)
    n, d = linear.x0.shape
    grad = linear.x0.new_zeros((classes + depth - 1, n, d))
    for layer in reversed(range(depth)):
        weights = head.out.weight * linear.head_slopes[layer]  # [class, k]: ∂logits/∂pre-activation
        if layer == depth - 1:
            grad[:classes, 0] = weights @ head.dense.weight
        else:
            grad[classes + depth - 2 - layer, 0] = weights[target] @ head.dense.weight
        active = classes + depth - 1 - layer  # readouts at this layer or deeper
        grad[:active] = layer_backward(grad[:active], layers[layer], linear.ffn_slopes[layer])
    return (grad * linear.x0).sum(dim=-1)


def layer_backward(grad, layer: LayerTensors, theta):
    """The transpose of :func:`layer_forward` without biases: the gradient ``[c, n, d]`` of readouts w.r.t. the
    layer's output, brought back to its input."""
    import torch

    block = layer.block
    c, n, _ = grad.shape
    grad = _norm_backward(grad, block.norm2, layer.sigma2)  # w.r.t. r2
    grad = grad + ((grad @ block.ffn_out.weight) * theta) @ block.ffn_in.weight  # w.r.t. z
    grad = _norm_backward(grad, block.norm1, layer.sigma1)  # w.r.t. r1
    mixed = (grad @ block.output.weight).view(c, n, block.num_heads, -1)
    value = torch.einsum("hik,cihs->ckhs", layer.alpha, mixed).reshape(c, n, -1)
    return grad + value @ block.value.weight


def _norm_backward(grad, norm, sigma):
    """Transpose of :func:`_norm_forward`'s linear part: ``w − mean w`` with ``w = grad ⊙ γ / σ_i``."""
    scaled = grad * (norm.weight / sigma[:, None])
    return scaled - scaled.mean(dim=-1, keepdim=True)


def _frozen(tensor) -> np.ndarray:
    array = np.ascontiguousarray(tensor.detach().float().numpy(), dtype=np.float32)
    array.flags.writeable = False
    return array
