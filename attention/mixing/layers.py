"""One encoder pass, layer by layer, with the model's own modules, keeping every tensor the context-mixing measures
need (Kobayashi et al. 2020/2021, Modarressi et al. 2022/2023, Ferrando et al. 2022, Mohebbi et al. 2023).

Every supported encoder layer (BERT, RoBERTa, ELECTRA, ALBERT, DistilBERT) is post-LayerNorm:

    r1_i = x_i + Σ_h Σ_j α^h_ij f^h(x_j) + b_O          f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h
    z_i  = LN1(r1_i) = γ1 ⊙ (r1_i − mean r1_i) / σ1_i + β1
    r2_i = z_i + W_2 act(W_1 z_i + b_1) + b_2
    y_i  = LN2(r2_i) = γ2 ⊙ (r2_i − mean r2_i) / σ2_i + β2

with σ_i = sqrt(var(r_i) + ε) (biased variance, as ``torch.nn.LayerNorm``). :func:`trace_layers` runs the
embeddings (stopped at the first layer's input), then each layer from its input with its own ``nn.Linear`` and
``nn.LayerNorm`` modules, and returns :class:`LayerTensors` per layer; ``y`` equals the model's hidden states (a test).
One input, no padding.
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
from collections.abc import Callable
from dataclasses import dataclass

from attention.errors import AttentionFlowsError
from attention.models import LoadedModel

SUPPORTED = ("bert", "roberta", "electra", "albert", "distilbert")


class UnsupportedArchitectureError(AttentionFlowsError):
    """A model whose layers the context-mixing measures cannot decompose."""


@dataclass(frozen=True)
class Block:
    """The modules of one post-LayerNorm encoder layer."""

    query: object  # nn.Linear
    key: object
    value: object
    output: object  # W_O, b_O: the attention output projection
    norm1: object  # nn.LayerNorm after the attention residual
    ffn_in: object
    activation: Callable
    ffn_out: object
    norm2: object  # nn.LayerNorm after the feed-forward residual
    num_heads: int


@dataclass(frozen=True, eq=False)
class LayerTensors:
    """One layer on one input (torch tensors, the model's dtype; ``n`` tokens, ``d`` hidden size, ``h`` heads).

    ``x`` ``[n, d]`` the layer's input; ``alpha`` ``[h, n, n]`` attention ``[head, query, key]``; ``f`` ``[h, n, d]``
    each head's transformed value vectors ``f^h(x_j)``; ``r1``, ``z``, ``r2``, ``y`` ``[n, d]`` as in the module
    docstring, ``sigma1``, ``sigma2`` ``[n]``; ``block`` the layer's modules (γ, β, ε, the feed-forward block)."""

    x: object
    alpha: object
    f: object
    r1: object
    sigma1: object
    z: object
    r2: object
    sigma2: object
    y: object
    block: Block

    @property
    def out_bias(self):
        """``b_O`` ``[d]``."""
        return self.block.output.bias


def blocks(model: LoadedModel) -> list[Block]:
    """Every layer's :class:`Block`, in order; :class:`UnsupportedArchitectureError` for another architecture."""
    network = getattr(model.model, "base_model", model.model)
    kind = getattr(network.config, "model_type", type(network).__name__)
    heads = network.config.num_attention_heads if kind != "distilbert" else network.config.n_heads
    if kind in ("bert", "roberta", "electra"):
        return [
            Block(layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                  layer.attention.output.dense, layer.attention.output.LayerNorm, layer.intermediate.dense,
                  layer.intermediate.intermediate_act_fn, layer.output.dense, layer.output.LayerNorm, heads)
            for layer in network.encoder.layer
        ]  # fmt: skip
    if kind == "distilbert":
        return [
            Block(layer.attention.q_lin, layer.attention.k_lin, layer.attention.v_lin, layer.attention.out_lin,
                  layer.sa_layer_norm, layer.ffn.lin1, layer.ffn.activation, layer.ffn.lin2, layer.output_layer_norm,
                  heads)
            for layer in network.transformer.layer
        ]  # fmt: skip
    if kind == "albert":
        config = network.config
        per_group = config.num_hidden_layers / config.num_hidden_groups
        out = []
        for index in range(config.num_hidden_layers):  # layers share their group's weights
            for layer in network.encoder.albert_layer_groups[int(index / per_group)].albert_layers:
                attention = layer.attention
                out.append(
                    Block(
                        attention.query,
                        attention.key,
                        attention.value,
                        attention.dense,
                        attention.LayerNorm,
                        layer.ffn,
                        layer.activation,
                        layer.ffn_output,
                        layer.full_layer_layer_norm,
                        heads,
                    )
                )
        return out
    raise UnsupportedArchitectureError(
        f"Model '{model.name}' is a {kind} model; context-mixing measures decompose "
        f"{', '.join(SUPPORTED)} layers only.",
        "Use raw attention (the measure 'raw_attention') for this model.",
    )


class _Stop(Exception):
    """Raised by a hook to end a pass once the first layer's input is known."""


def first_layer_input(model: LoadedModel, encoding, first: Block):
    """The first layer's input ``[n, d]`` (embeddings, and ALBERT's projection to the hidden size): the model's
    own pass, stopped at the first layer's query projection."""
    captured = []

    def grab(_module, args):
        captured.append(args[0])
        raise _Stop

    handle = first.query.register_forward_pre_hook(grab)
    try:
        model.model(**encoding)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0][0]


def trace_layers(model: LoadedModel, encoding) -> list[LayerTensors]:
    """Every layer's :class:`LayerTensors` for one encoded input (a batch of one, no padding), under
    ``torch.inference_mode``."""
    import torch

    layers = blocks(model)
    out = []
    with torch.inference_mode():
        x = first_layer_input(model, encoding, layers[0])
        for block in layers:
            traced = layer_tensors(block, x)
            out.append(traced)
            x = traced.y
    return out


def layer_tensors(block: Block, x) -> LayerTensors:
    """One layer's tensors from its input ``x`` ``[n, d]`` (no mask: one unpadded input)."""
    import torch

    n, d = x.shape
    h = block.num_heads
    size = d // h
    query = block.query(x).view(n, h, size).transpose(0, 1)
    key = block.key(x).view(n, h, size).transpose(0, 1)
    value = block.value(x).view(n, h, size).transpose(0, 1)  # [h, n, size], b_V included
    alpha = torch.softmax(query @ key.transpose(1, 2) * size**-0.5, dim=-1)  # [h, query, key]
    w_out = block.output.weight.view(d, h, size)  # W_O^h: [d_out, h, size]
    f = torch.einsum("hns,dhs->hnd", value, w_out)  # f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h
    context = (alpha @ value).transpose(0, 1).reshape(n, d)  # as the model computes it: Σ_j α v, then W_O
    r1 = x + block.output(context)
    z = block.norm1(r1)
    r2 = z + block.ffn_out(block.activation(block.ffn_in(z)))
    y = block.norm2(r2)
    return LayerTensors(x=x, alpha=alpha, f=f, r1=r1, sigma1=_sigma(r1, block.norm1), z=z, r2=r2,
                        sigma2=_sigma(r2, block.norm2), y=y, block=block)  # fmt: skip


def _sigma(residual, norm):
    """``sqrt(var(r) + ε)`` per token ``[n]``, as ``torch.nn.LayerNorm`` computes it (biased variance)."""
    return (residual.var(dim=-1, unbiased=False) + norm.eps).sqrt()
