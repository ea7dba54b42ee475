"""How much each token's representation is made of every other token's, layer by layer: context-mixing
contribution maps (:func:`contributions`), the measure-agnostic input of every graph method.

A :class:`Contributions` holds ``maps`` ``[layer, query, key]`` (float32, rows non-negative and summing to 1) and,
where a measure is defined per head, ``head_maps`` ``[layer, head, query, key]`` (each head's vector norms,
unnormalised). :meth:`Contributions.as_run` presents the maps as an :class:`~attention.extraction.AttentionRun` with
one "head" per layer, so rollout, flow, the attention graph and every view take them as they take attention; the
measures that already contain the residual connection (:data:`attention.defaults.RESIDUAL_MEASURES`) are rolled
out without an added identity.
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
from dataclasses import dataclass
from typing import Literal

import numpy as np

from attention.defaults import DECODER_MEASURES, MEASURE_LABELS, RESIDUAL_MEASURES
from attention.extraction import AttentionRun, TokenFacts, check_attentions, clean_texts, encode, run_of, token_facts
from attention.mixing import norms
from attention.mixing.decoder import DecoderLayerTensors, UnsupportedDecoderError, trace_decoder
from attention.mixing.layers import trace_forward
from attention.mixing.value_zeroing import value_zeroing
from attention.models import LoadedModel

Measure = Literal["raw_attention", "attention_norm", "norm_residual", "globenc", "alti", "value_zeroing"]
MEASURES: tuple[str, ...] = tuple(MEASURE_LABELS)
MIXING_MEASURES: tuple[str, ...] = MEASURES[1:]


@dataclass(frozen=True, eq=False)
class Contributions:
    """One model's context-mixing maps for one input under one ``measure``.

    ``maps``: read-only float32 ``[layer, query, key]``, every row non-negative and summing to 1: the share of
    token ``query``'s output of the layer that comes from token ``key``'s input to it. ``head_maps``: float32
    ``[layer, head, query, key]`` each head's part (vector norms, not normalised), or None."""

    model_name: str
    text: str
    text_pair: str | None
    measure: str
    maps: np.ndarray
    head_maps: np.ndarray | None
    facts: TokenFacts
    labels: tuple[str, ...] = ()
    probabilities: tuple[float, ...] | None = None

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.facts.tokens

    @property
    def includes_residual(self) -> bool:
        """Whether the maps already hold the residual connection (then rolled out without an added identity)."""
        return self.measure in RESIDUAL_MEASURES

    @property
    def num_layers(self) -> int:
        return self.maps.shape[0]

    def head_shares(self) -> np.ndarray | None:
        """``[layer, head]``: each head's share of its layer's mixing (its part's norms summed over every query and
        key, over the sum for all heads), or None for a measure without per-head parts."""
        if self.head_maps is None:
            return None
        totals = self.head_maps.sum(axis=(-2, -1), dtype=np.float64)
        return totals / totals.sum(axis=1, keepdims=True)

    def as_run(self) -> AttentionRun:
        """The maps as an :class:`AttentionRun` (``weights`` ``[layer, 1, query, key]``: one "head", the layer's
        mixing) with this input's tokens, so every graph method and view takes them as it takes attention."""
        weights = self.maps[:, None]
        label = None if self.probabilities is None else self.labels[int(np.argmax(self.probabilities))]
        return AttentionRun(
            model_name=self.model_name, text=self.text, text_pair=self.text_pair, weights=weights, facts=self.facts,
            labels=self.labels, label=label, probabilities=self.probabilities,
        )  # fmt: skip


def contributions(
    model: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    measure: Measure = "alti",
    probabilities: tuple[float, ...] | None = None,
) -> Contributions:
    """``model``'s :class:`Contributions` under ``measure`` for one input (one pass, layer by layer).
    ``probabilities``: the classifier's, when the caller has them (kept for :meth:`Contributions.as_run`)."""
    return contributions_for(model, text, text_pair, measures=(measure,), probabilities=probabilities)[measure]


def contributions_for(
    model: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    measures: tuple[str, ...] = MIXING_MEASURES,
    probabilities: tuple[float, ...] | None = None,
) -> dict[str, Contributions]:
    """:class:`Contributions` for each of ``measures``, from one traced pass of ``model`` (cheaper than one call per
    measure)."""
    return _measured(model, *clean_texts(text, text_pair), measures, probabilities, with_run=False)[1]


def run_and_contributions(
    model: LoadedModel, text: str, text_pair: str | None = None, *, measures: tuple[str, ...] = ("alti",)
) -> tuple[AttentionRun, dict[str, Contributions]]:
    """``model``'s run on one input (as :func:`~attention.extraction.extract` returns it: the same attention, the
    classifier's probabilities) and its :class:`Contributions` under each of ``measures``, from one forward pass:
    a new input's run and the graph's default measure cost one pass, not two."""
    return _measured(model, *clean_texts(text, text_pair), measures, None, with_run=True)


def _measured(
    model: LoadedModel, text: str, text_pair: str | None, measures: tuple[str, ...], probabilities, *, with_run: bool
) -> tuple[AttentionRun | None, dict[str, Contributions]]:
    """The run (``with_run``, else None) and each measure's :class:`Contributions` from one traced pass
    (``probabilities``: the caller's, else the pass's own)."""
    import torch

    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}; got {unknown[0]!r}")
    if model.causal:
        check_decoder_measures(model, measures)
    encoding = encode(model, text, text_pair)
    facts = token_facts(model, encoding)
    output, layers = (trace_decoder if model.causal else trace_forward)(model, encoding)
    check_attentions(model, output)
    if probabilities is None and model.is_classifier:
        probabilities = tuple(torch.softmax(output.logits[0].float(), dim=-1).tolist())
    run = None
    if with_run:
        weights = torch.stack(output.attentions)[:, 0].float().numpy()  # [layer, head, query, key]
        run = run_of(model, text, text_pair, weights, facts, probabilities)
    out = {}
    with torch.inference_mode():
        for measure in measures:
            maps, heads = zip(*(measure_layer(measure, layer) for layer in layers), strict=True)
            out[measure] = Contributions(
                model_name=model.name, text=text, text_pair=text_pair, measure=measure,
                maps=_frozen(torch.stack(maps)), head_maps=None if heads[0] is None else _frozen(torch.stack(heads)),
                facts=facts, labels=model.labels, probabilities=probabilities,
            )  # fmt: skip
    return run, out


def check_decoder_measures(model: LoadedModel, measures: tuple[str, ...]) -> None:
    """:class:`UnsupportedDecoderError` naming a measure that a decoder's blocks do not define."""
    other = [m for m in measures if m not in DECODER_MEASURES]
    if other:
        raise UnsupportedDecoderError(
            f"Model '{model.name}' is a decoder; the measure {MEASURE_LABELS[other[0]]!r} is defined for "
            "post-LayerNorm encoder blocks only.",
            "For a decoder use " + ", ".join(MEASURE_LABELS[m] for m in DECODER_MEASURES) + ".",
        )


def measure_layer(measure: str, layer):
    """``(map [n, n], head_maps [h, n, n] or None)`` of one :class:`~attention.mixing.layers.LayerTensors` (or a
    decoder's :class:`~attention.mixing.decoder.DecoderLayerTensors`)."""
    if measure == "raw_attention":
        return layer.alpha.mean(dim=0), layer.alpha
    if isinstance(layer, DecoderLayerTensors):
        return {"attention_norm": norms.decoder_attention_norm, "alti": norms.decoder_alti}[measure](layer)
    if measure == "value_zeroing":
        return value_zeroing(layer), None
    return {"attention_norm": norms.attention_norm, "norm_residual": norms.norm_residual, "globenc": norms.globenc,
            "alti": norms.alti}[measure](layer)  # fmt: skip


def _frozen(tensor) -> np.ndarray:
    array = np.ascontiguousarray(tensor.float().numpy(), dtype=np.float32)
    array.flags.writeable = False
    return array
