"""One encoder pass, layer by layer, with the model's own modules, keeping every tensor the context-mixing measures
need (Kobayashi et al. 2020/2021, Modarressi et al. 2022/2023, Ferrando et al. 2022, Mohebbi et al. 2023).

Every supported encoder layer (BERT, RoBERTa, ELECTRA, ALBERT, DistilBERT) is post-LayerNorm:

    r1_i = x_i + Σ_h Σ_j α^h_ij f^h(x_j) + b_O          f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h
    z_i  = LN1(r1_i) = γ1 ⊙ (r1_i − mean r1_i) / σ1_i + β1
    r2_i = z_i + W_2 act(W_1 z_i + b_1) + b_2
    y_i  = LN2(r2_i) = γ2 ⊙ (r2_i − mean r2_i) / σ2_i + β2

with σ_i = sqrt(var(r_i) + ε) (biased variance, as ``torch.nn.LayerNorm``). :func:`trace_forward` runs the model's
own forward pass once and reads each layer's tensors from it with hooks on its ``nn.Linear`` and ``nn.LayerNorm``
modules (the attention is the one the model returns), so the same pass gives the run and every measure; ``y`` equals
the model's hidden states (a test). One input, no padding.
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


def trace_layers(model: LoadedModel, encoding) -> list[LayerTensors]:
    """Every layer's :class:`LayerTensors` for one encoded input (a batch of one, no padding), under
    ``torch.inference_mode``."""
    return trace_forward(model, encoding)[1]


def trace_forward(model: LoadedModel, encoding) -> tuple[object, list[LayerTensors]]:
    """The model's own forward pass on one encoded input (a batch of one, no padding; attentions out) and every
    layer's :class:`LayerTensors` read from it by hooks, under ``torch.inference_mode``: the layer's input (its query
    projection's input), the value vectors (its value projection's output), both LayerNorms' inputs and outputs,
    and the attention the model returns. One pass gives the run (attentions, logits) and every mixing measure."""
    import torch

    layers = blocks(model)
    seen: dict[str, list] = {"x": [], "value": [], "r1": [], "z": [], "r2": [], "y": []}
    handles = []
    taps = (("x", "query", True), ("value", "value", False), ("r1", "norm1", True), ("z", "norm1", False),
            ("r2", "norm2", True), ("y", "norm2", False))  # (role, module, its input or its output)  # fmt: skip
    for role, attribute, take_input in taps:
        # ALBERT's layers share their modules: one hook per module, its calls arrive in layer order
        for module in {id(getattr(b, attribute)): getattr(b, attribute) for b in layers}.values():
            if take_input:
                handles.append(module.register_forward_pre_hook(lambda _m, args, role=role: seen[role].append(args[0])))
            else:
                handles.append(module.register_forward_hook(lambda _m, _a, out, role=role: seen[role].append(out)))
    try:
        with torch.inference_mode():
            output = model.model(**encoding, output_attentions=True)
            traced = [_from_pass(block, layer, seen, output.attentions[layer][0]) for layer, block in enumerate(layers)]
    finally:
        for handle in handles:
            handle.remove()
    return output, traced


def _from_pass(block: Block, layer: int, seen: dict[str, list], alpha) -> LayerTensors:
    """Layer ``layer``'s :class:`LayerTensors` from the tensors the hooks saw (each ``[1, n, d]``) and its attention
    ``alpha`` ``[h, n, n]``."""
    import torch

    x, value, r1, z, r2, y = (seen[role][layer][0] for role in ("x", "value", "r1", "z", "r2", "y"))
    n, d = x.shape
    h = block.num_heads
    value = value.view(n, h, d // h).transpose(0, 1)  # [h, n, size], b_V included
    w_out = block.output.weight.view(d, h, d // h).permute(1, 2, 0).contiguous()  # W_O^h: [h, size, d]
    f = torch.bmm(value, w_out)  # f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h: [h, n, d]
    return LayerTensors(x=x, alpha=alpha, f=f, r1=r1, sigma1=_sigma(r1, block.norm1), z=z, r2=r2,
                        sigma2=_sigma(r2, block.norm2), y=y, block=block)  # fmt: skip


def _sigma(residual, norm):
    """``sqrt(var(r) + ε)`` per token ``[n]``, as ``torch.nn.LayerNorm`` computes it (biased variance)."""
    return (residual.var(dim=-1, unbiased=False) + norm.eps).sqrt()
