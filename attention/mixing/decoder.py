"""A decoder's layers read for context mixing: pre-norm blocks, RMSNorm or LayerNorm, grouped-query attention.

A decoder layer (Llama, Mistral, Qwen2, SmolLM2, Gemma 3, GPT-2) adds its attention block's output to the residual
stream before any norm sees it::

    a_i = Σ_h Σ_j α^h_ij f^h(x_j) + b_O          f^h(x_j) = (N1(x)_j W_V^h + b_V^h) W_O^h
    h_i = x_i + P(a_i)                           P: identity, or Gemma's post-attention RMSNorm

``x`` the layer's input (the residual stream), ``N1`` the input norm (its output is what the value projection
reads, so the hooks never need to make it linear), ``h`` the residual stream after the attention block; the
feed-forward block that follows is token-local and mixes nothing. With ``P`` an RMSNorm (Gemma 3),
``P(a_i) = m ⊙ a_i / ρ_i`` with ``ρ_i = sqrt(mean(a_i²) + ε)`` the root mean square the model computed and ``m`` its
per-dimension multiplier, so token ``j``'s part of ``h_i`` is ``T_i(x_j) = Σ_h α^h_ij m ⊙ f^h(x_j) / ρ_i + δ_ij x_i``
exactly as Ferrando & Voita (2024) decompose the residual stream; the bias part (``b_O``) belongs to no token.

Grouped-query attention: the value projection gives one vector per key/value head; query head ``h`` reads key/value
head ``h // (H / H_kv)`` (transformers' ``repeat_kv``), and the attention the model returns is per query head.
"""

from __future__ import annotations

# Lazy imports (torch): loaded with a model, so `import attention` stays light.
from dataclasses import dataclass

from attention.errors import AttentionFlowsError
from attention.models import LoadedModel

DECODER_FAMILIES = "Llama-style (Llama, Mistral, Qwen2, SmolLM2), Gemma 3 and GPT-2"


class UnsupportedDecoderError(AttentionFlowsError):
    """A decoder whose layers the context-mixing measures cannot read."""


@dataclass(frozen=True)
class DecoderBlock:
    """The modules of one decoder layer that the hooks read. ``value`` gives the value vectors (``value_part``:
    which third of a fused query/key/value output, GPT-2's, else None); ``out_weight`` is ``W_O`` as
    ``[d, heads · head_dim]``; ``input_norm``'s input is the layer's input ``x``; ``post_norm`` (Gemma) normalises
    the attention output before the residual adds it, or None; ``after``'s input is ``h``."""

    input_norm: object
    value: object
    value_part: int | None
    out_weight: object
    post_norm: object | None
    after: object
    num_heads: int
    kv_heads: int


@dataclass(frozen=True, eq=False)
class DecoderLayerTensors:
    """One decoder layer on one input (``n`` tokens, ``d`` hidden size, ``h`` query heads): ``x`` ``[n, d]`` the
    layer's input, ``alpha`` ``[h, n, n]``, ``f`` ``[h, n, d]`` each head's ``f^h(x_j)`` with the post-norm's
    multiplier folded in (``m ⊙ f``), ``scale`` ``[n]`` the post-norm's ``ρ_i`` (ones without one), ``h`` ``[n, d]``
    the residual stream after the attention block."""

    x: object
    alpha: object
    f: object
    scale: object
    h: object


def decoder_blocks(model: LoadedModel) -> list[DecoderBlock]:
    """Every layer's :class:`DecoderBlock`; :class:`UnsupportedDecoderError` for another layout."""
    network = getattr(model.model, "base_model", model.model)
    config = network.config
    heads = int(config.num_attention_heads) if hasattr(config, "num_attention_heads") else int(config.n_head)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    gpt2 = hasattr(network, "h") and all(
        hasattr(layer, "ln_1") and hasattr(layer, "ln_2") and hasattr(getattr(layer, "attn", None), "c_attn")
        for layer in network.h
    )
    if gpt2:  # fused query/key/value (Conv1D weights are [in, out])
        return [
            DecoderBlock(layer.ln_1, layer.attn.c_attn, 2, layer.attn.c_proj.weight.T, None, layer.ln_2, heads, heads)
            for layer in network.h
        ]
    layers = getattr(network, "layers", None)
    if not layers or not all(_llama_style(layer) for layer in layers):
        raise UnsupportedDecoderError(
            f"Model '{model.name}' is a decoder whose layers the context-mixing measures cannot read "
            f"({type(network).__name__}); they read {DECODER_FAMILIES} layers.",
            "Use raw attention (the measure 'raw_attention') for this model.",
        )
    out = []
    for layer in layers:
        sandwich = hasattr(layer, "pre_feedforward_layernorm")  # Gemma: a norm after attention, one before the MLP
        out.append(
            DecoderBlock(
                input_norm=layer.input_layernorm,
                value=layer.self_attn.v_proj,
                value_part=None,
                out_weight=layer.self_attn.o_proj.weight,
                post_norm=layer.post_attention_layernorm if sandwich else None,
                after=layer.pre_feedforward_layernorm if sandwich else layer.post_attention_layernorm,
                num_heads=heads,
                kv_heads=kv_heads,
            )
        )
    return out


def _llama_style(layer) -> bool:
    """A pre-norm layer with separate value and output projections and a norm between attention and MLP (Llama,
    Mistral, Qwen2, Gemma): not a parallel-residual one (Phi, Cohere, GPT-J) whose MLP reads the same norm."""
    attention = getattr(layer, "self_attn", None)
    return (
        all(hasattr(attention, name) for name in ("v_proj", "o_proj"))
        and getattr(layer, "input_layernorm", None) is not None
        and getattr(layer, "post_attention_layernorm", None) is not None
    )


def trace_decoder(model: LoadedModel, encoding) -> tuple[object, list[DecoderLayerTensors]]:
    """The model's own forward pass on one encoded input (attentions out) and every layer's
    :class:`DecoderLayerTensors` read from it by hooks, under ``torch.inference_mode``."""
    import torch

    layers = decoder_blocks(model)
    seen: dict[str, list] = {"x": [], "value": [], "a": [], "h": []}
    handles = []

    def keep_input(role):
        return lambda _m, args: seen[role].append(args[0])

    for block in layers:
        handles.append(block.input_norm.register_forward_pre_hook(keep_input("x")))
        handles.append(block.value.register_forward_hook(lambda _m, _a, out: seen["value"].append(out)))
        handles.append(block.after.register_forward_pre_hook(keep_input("h")))
        if block.post_norm is not None:
            handles.append(block.post_norm.register_forward_pre_hook(keep_input("a")))
    try:
        with torch.inference_mode():
            output = model.model(**encoding, output_attentions=True)
            traced = [_layer(block, index, seen, output.attentions[index][0]) for index, block in enumerate(layers)]
    finally:
        for handle in handles:
            handle.remove()
    return output, traced


def _layer(block: DecoderBlock, index: int, seen: dict[str, list], alpha) -> DecoderLayerTensors:
    import torch

    x, h = seen["x"][index][0], seen["h"][index][0]
    value = seen["value"][index][0]
    n, d = x.shape
    heads, groups = block.num_heads, block.num_heads // block.kv_heads
    head_dim = block.out_weight.shape[1] // heads
    if block.value_part is not None:  # the value third of a fused projection
        value = value[:, block.value_part * d : (block.value_part + 1) * d]
    value = value.reshape(n, block.kv_heads, head_dim).transpose(0, 1).repeat_interleave(groups, dim=0)
    w_out = block.out_weight.reshape(d, heads, head_dim).permute(1, 2, 0)  # W_O^h: [h, head_dim, d]
    f = torch.bmm(value, w_out)  # [h, n, d]
    scale = torch.ones(n, dtype=x.dtype)
    if block.post_norm is not None:
        a = seen["a"][index][0]
        eps = getattr(block.post_norm, "eps", getattr(block.post_norm, "variance_epsilon", 1e-6))
        scale = (a.pow(2).mean(dim=-1) + eps).sqrt()
        ones = torch.ones(1, d, dtype=x.dtype)
        multiplier = block.post_norm(ones)[0] * (1 + eps) ** 0.5  # m: the norm of a vector whose ρ is sqrt(1 + ε)
        f = f * multiplier
    return DecoderLayerTensors(x=x, alpha=alpha, f=f, scale=scale, h=h)
