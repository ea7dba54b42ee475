"""Context mixing for a whole batch of a corpus run, from the run's own padded passes (no extra forward pass).

Per example and model, a run stores (docs/corpus.md):

- each head's **contribution share** ``[layer, head]``: the share of its layer's mixing the head carries,
  ``Σ_ij ‖g1_i(α^h_ij f^h(x_j))‖ / Σ_h' Σ_ij ‖g1_i(α^h'_ij f^h'(x_j))‖`` (:data:`SHARE_MEASURE`'s per-head
  parts, Kobayashi et al. 2021; :meth:`attention.mixing.Contributions.head_shares`, the number the dashboard's
  head grid shows);
- the **[CLS] contribution row** ``[token]``: row [CLS] of the top layer's rollout of :data:`ROLLOUT_MEASURE`'s
  maps (``attention.relevance(contributions, "rollout")[-1]``: without an added identity for a measure that holds
  the residual, ``R_1 = C_1``, ``R_l = C_l R_{l−1}``).

How, without another forward pass: :func:`kept_tensors` keeps, during the run's own padded pass, each layer's
input ``x``, its value projection and the first LayerNorm's input ``r1`` and output ``z`` (hooks on the layer's
modules, :func:`attention.mixing.layers.blocks`); the pass's attention gives ``α``. Each head's value vectors
``f^h(x_j) = (x_j W_V^h + b_V^h) W_O^h`` are then one product per layer for the whole batch. The run cuts the last
layer's attention-output block to position 0 (:mod:`attention.shortcut`), so that layer's ``r1`` and ``z`` are
recomputed with its own modules. Padded keys carry exactly zero attention and padded query rows are never read: the
shares are summed over each example's own queries, and ALTI (:func:`alti_maps`) is computed for the batch and cut
to each example's own block. Any other measure comes from :func:`attention.mixing.contributions.measure_layer` (the
single-example engine's own function) on each example's own block of those tensors. Either way a stored figure
equals ``contributions_for`` on that input alone (tests/corpus/test_corpus_mixing.py, rtol 1e-4).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from attention.corpus.positions import own_positions
from attention.defaults import DEFAULT_MEASURE, SHARE_MEASURE, share_measure
from attention.methods import relevance
from attention.mixing.contributions import Contributions, contributions_for, measure_layer
from attention.mixing.layers import LayerTensors, UnsupportedArchitectureError, blocks
from attention.mixing.norms import normalise_rows
from attention.models import LoadedModel

ROLLOUT_MEASURE = DEFAULT_MEASURE  # the measure of the stored [CLS] contribution rows
MIXING = {"contribution_share": SHARE_MEASURE, "mixing_rollout": ROLLOUT_MEASURE}  # as an encoder's manifest records it
_READS_SECOND_HALF = frozenset({"globenc"})  # measures that read r2, σ2 (the feed-forward half of a layer)


def mixing_record(causal: bool) -> dict[str, str]:
    """The measures of the mixing columns as the manifest records them: :data:`MIXING` for an encoder pair; for a
    decoder pair the shares are of :data:`attention.defaults.DECODER_SHARE_MEASURE`."""
    return {"contribution_share": share_measure(causal), "mixing_rollout": ROLLOUT_MEASURE}


def traced_token_name(causal: bool) -> str:
    """How the corpus names the token its rows are traced from: an encoder's "[CLS]", a decoder's "the last token"
    (recorded as the manifest's ``traced_token``; a manifest without it is an encoder's)."""
    return "the last token" if causal else "[CLS]"


def traced_token(manifest: dict) -> str:
    """The token a corpus's rows are traced from, as its manifest records it (:func:`traced_token_name`)."""
    return str(manifest.get("traced_token", traced_token_name(False)))


@dataclass(frozen=True)
class BatchMixing:
    """One model's mixing figures for a batch: ``shares`` ``[batch, layer, head]`` float64 (each layer's heads sum
    to 1) and ``rows`` per example ``[token]`` float64 (its own tokens; sums to 1). NaN for a model whose layers
    the measures cannot decompose."""

    shares: np.ndarray
    rows: list[np.ndarray]


@dataclass
class Kept:
    """What :func:`kept_tensors` keeps of a pass, per layer in order (detached torch tensors, padded): ``x`` the
    layer's input ``[batch, position, hidden]``, ``value`` its value projection (same shape, ``b_V`` included),
    ``r1`` and ``z`` the first LayerNorm's input and output (``[batch, 1, hidden]`` for a layer cut to position
    0). ``blocks``: the layers' modules, or None for an architecture the measures do not support."""

    blocks: list | None
    x: list = field(default_factory=list)
    value: list = field(default_factory=list)
    r1: list = field(default_factory=list)
    z: list = field(default_factory=list)


def mixing_blocks(model: LoadedModel) -> list | None:
    """``model``'s :class:`~attention.mixing.layers.Block` per layer, or None for an architecture the measures do
    not support (its figures are then NaN, never a failed run)."""
    try:
        return blocks(model)
    except UnsupportedArchitectureError:
        return None


@contextmanager
def kept_tensors(model: LoadedModel) -> Iterator[Kept]:
    """:class:`Kept`, filled during passes of ``model`` inside (hooks on each layer's query projection, value
    projection and first LayerNorm). ALBERT's layers share their modules: one hook each, called once per layer,
    so the lists are still in layer order."""
    kept = Kept(mixing_blocks(model))
    handles, seen = [], set()
    for block in kept.blocks or ():
        for module, before, into in (
            (block.query, True, kept.x), (block.value, False, kept.value), (block.norm1, True, kept.r1),
            (block.norm1, False, kept.z),
        ):  # fmt: skip
            if (id(module), before) in seen:
                continue
            seen.add((id(module), before))
            if before:
                handles.append(
                    module.register_forward_pre_hook(lambda _m, args, into=into: into.append(args[0].detach()))
                )
            else:
                handles.append(module.register_forward_hook(lambda _m, _a, out, into=into: into.append(out.detach())))
    try:
        yield kept
    finally:
        for handle in handles:
            handle.remove()


def batch_mixing(
    model: LoadedModel,
    batch: list,
    kept: Kept,
    attentions: np.ndarray,
    mask: np.ndarray,
    measure: str = ROLLOUT_MEASURE,
) -> BatchMixing:
    """Contribution shares and [CLS] contribution rows of every example of a padded batch.

    Args:
        model: the model of the pass.
        batch: the batch's :class:`~attention.corpus.batch.Encoded` inputs (their token facts and texts).
        kept: what :func:`kept_tensors` kept of the pass.
        attentions: the pass's attention ``[layer, batch, head, query, key]`` (float32, padded).
        mask: ``[batch, position]``, 1 on an example's own tokens.
        measure: the measure of the rows (:data:`ROLLOUT_MEASURE`).
    """
    import torch  # heavy: loaded on first use

    if model.causal:
        return decoder_mixing(model, batch, measure)
    count = attentions.shape[0]
    if kept.blocks is None or not len(kept.x) == len(kept.value) == len(kept.r1) == len(kept.z) == count:
        blank = np.full((len(batch), count, attentions.shape[2]), np.nan)
        return BatchMixing(blank, [np.full(item.length, np.nan) for item in batch])
    owns = [own_positions(row) for row in mask]
    real = torch.as_tensor(np.asarray(mask), dtype=torch.float32)  # [batch, position]
    positions = np.arange(mask.shape[1])
    cls = torch.as_tensor([[positions[own][item.facts.cls_index or 0]] for item, own in zip(batch, owns, strict=True)])
    right = all(isinstance(own, slice) and own.start == 0 for own in owns)  # right-padded: the first are real
    lengths = [own.stop for own in owns] if right else None
    shares, maps = [], []
    with torch.inference_mode():
        for index, block in enumerate(kept.blocks):
            alpha = torch.from_numpy(np.ascontiguousarray(attentions[index], dtype=np.float32))
            layer = _layer(block, kept, index, alpha)
            shares.append(_head_shares(layer, real))
            if measure != "alti":
                maps.append([measure_on_own_block(measure, layer, e, own) for e, own in enumerate(owns)])
            else:  # the top layer's [CLS] row is all the rollout row reads of it
                maps.append(alti_maps(layer, cls if index == count - 1 else None, lengths))
        if measure == "alti":
            row = maps[-1][:, 0]  # [b, key]: C_L's [CLS] row; 0 on padded keys, so padded rows are never read
            for below in reversed(maps[:-1]):
                row = torch.einsum("bq,bqk->bk", row.double(), below.double())
            rows = [row[e, own].numpy() for e, own in enumerate(owns)]
        else:
            rows = [
                _cls_row(model, item, measure, torch.stack([m[e] for m in maps]).numpy())
                for e, item in enumerate(batch)
            ]
    return BatchMixing(np.stack(shares, axis=1), rows)


def decoder_mixing(model: LoadedModel, batch: list, measure: str = ROLLOUT_MEASURE) -> BatchMixing:
    """A decoder's contribution shares (:data:`~attention.defaults.DECODER_SHARE_MEASURE`) and last-token rows of
    ``measure``: one traced pass per example with the single-example engine (:func:`contributions_for`), since the
    batched tensors above decompose post-LayerNorm encoder blocks only. NaN for an example whose tokens differ."""
    share = share_measure(True)
    shares, rows = [], []
    for item in batch:
        found = contributions_for(model, item.text, item.text_pair, measures=tuple(dict.fromkeys((share, measure))))
        if found[share].facts.tokens != item.facts.tokens:  # never expected: the same tokenizer and text
            shares.append(np.full((model.num_layers, model.num_heads), np.nan))
            rows.append(np.full(item.length, np.nan))
            continue
        shares.append(found[share].head_shares())
        rows.append(relevance(found[measure], "rollout")[-1])
    return BatchMixing(np.stack(shares), rows)


@dataclass(frozen=True)
class _Layer:
    """One layer of a padded batch: ``x``, ``r1``, ``z`` ``[b, n, d]``, ``alpha`` ``[b, h, n, n]``, ``value``
    ``[b, h, n, size]`` (each head's ``x W_V^h + b_V^h``), ``parts`` ``[b, n, h, d]`` (token ``j``'s
    ``γ1 ⊙ (f^h(x_j) − mean)`` per head: the first LayerNorm's linear part before dividing by σ) and their norms
    ``part_norms`` ``[b, h, n]``, ``sigma1`` ``[b, n]`` and the layer's modules."""

    block: object
    x: object
    alpha: object
    value: object
    parts: object
    part_norms: object
    r1: object
    sigma1: object
    z: object


def _layer(block, kept: Kept, index: int, alpha) -> _Layer:
    """Layer ``index`` of the batch from what the pass kept. ``γ1 ⊙ c(f^h(x_j)) = v^h_j M^h`` with ``M^h`` the
    layer's ``W_O^h`` centred over the hidden axis and scaled by ``γ1`` (linear, so one product per head);
    ``r1`` and ``z`` recomputed with the layer's modules where the pass cut them to position 0."""
    import torch  # heavy: loaded on first use

    x = kept.x[index]
    b, n, d = x.shape
    h = block.num_heads
    value = kept.value[index].view(b, n, h, d // h)
    mixed = _centred(block.output.weight.view(d, h, d // h).permute(1, 2, 0), block.norm1.weight)  # [h, size, d]
    parts = torch.einsum("bnhs,hsd->bnhd", value, mixed)  # [b, key, h, d] (a view of [h, b, key, d])
    norms = parts.norm(dim=-1).transpose(1, 2)  # [b, h, key]
    value = value.transpose(1, 2)  # [b, h, n, size]
    r1, z = kept.r1[index], kept.z[index]
    if r1.shape != x.shape:  # the last layer, cut to position 0 by the pass
        r1 = x + block.output((alpha @ value).transpose(1, 2).reshape(b, n, d))
        z = block.norm1(r1)
    return _Layer(block, x, alpha, value, parts, norms, r1, _sigma(r1, block.norm1), z)


def _sigma(residual, norm):
    """``sqrt(var(r) + ε)`` per position, as ``torch.nn.LayerNorm`` computes it (biased variance; two passes,
    centred first, ~10 times faster than ``Tensor.var`` on these shapes)."""
    centred = residual - residual.mean(dim=-1, keepdim=True)
    return (centred.square_().mean(dim=-1) + norm.eps).sqrt()


def _centred(vectors, gamma):
    """``γ ⊙ (v − mean v)`` over the last axis: a LayerNorm's linear part before dividing by σ."""
    return gamma * (vectors - vectors.mean(dim=-1, keepdim=True))


def _head_shares(layer: _Layer, real) -> np.ndarray:
    """``[b, h]`` float64: each head's ``Σ_ij ‖g1_i(α^h_ij f^h(x_j))‖`` over an example's own queries ``i`` (its
    padded keys have α = 0), over the sum for all heads (:meth:`Contributions.head_shares` of ``norm_residual``)."""
    per_query = (layer.alpha @ layer.part_norms.unsqueeze(-1)).squeeze(-1)  # [b, h, query]: Σ_j α^h_ij ‖γ1 ⊙ c(f^h_j)‖
    totals = (per_query.double() * (real / layer.sigma1).double()[:, None, :]).sum(dim=-1)
    return (totals / totals.sum(dim=1, keepdim=True)).numpy()


def alti_maps(layer: _Layer, queries=None, lengths=None):
    """ALTI (Ferrando et al. 2022, eq. 8–9) for a padded batch: ``[b, query, key]`` float32, rows normalised, as
    :func:`attention.mixing.norms.alti` on each example's own block (a padded key gets 0: its α is 0 and it is no
    real query's own position). ``queries`` ``[b, r]`` (padded positions): only those rows, ``[b, r, key]``.
    ``lengths`` ``[b]``: each example's real positions, the first ones (right padding); the padded keys and query
    rows after them are not computed (0 and unread); None: every position is computed.

    ``c_ij = max(0, ‖z_i‖₁ − ‖z_i − T_i(x_j)‖₁)``, ``T_i(x_j) = (Σ_h α^h_ij γ1 ⊙ c(f^h_j) + δ_ij γ1 ⊙ c(x_j)) / σ1_i``,
    the L1 distances by :func:`_l1_distances` (compiled) and both norms in float64: ``c_ij`` is a small difference
    of two large ones for weak tokens."""
    import torch  # heavy: loaded on first use

    b, n = layer.x.shape[:2]
    pick = torch.arange(b)[:, None]
    if queries is None:
        queries = torch.arange(n).expand(b, n)
        alpha, z, sigma = layer.alpha, layer.z, layer.sigma1
    else:
        alpha = layer.alpha.transpose(1, 2)[pick, queries].transpose(1, 2)  # [b, h, r, key]
        z, sigma = layer.z[pick, queries], layer.sigma1[pick, queries]  # [b, r, d], [b, r]
    weights = (alpha / sigma[:, None, :, None]).permute(0, 3, 2, 1).contiguous()  # [b, key, r, h]: α^h_ij / σ1_i
    residual = _centred(layer.x[pick, queries], layer.block.norm1.weight) / sigma[..., None]  # [b, r, d]: δ_ij part
    size = z.abs().sum(dim=-1, dtype=torch.float64)  # [b, r]: ‖z_i‖₁
    distance = size.numpy()[:, None, :].repeat(n, axis=1)  # [b, key, r]; a padded key's distance is ‖z_i‖₁
    lengths = np.full(b, n) if lengths is None else np.asarray(lengths, dtype=np.int64)
    _compiled_l1_distances()(weights.numpy(), layer.parts.permute(2, 0, 1, 3).contiguous().numpy(),
                             z.contiguous().numpy(), queries.contiguous().numpy(), residual.contiguous().numpy(),
                             lengths, distance)  # fmt: skip
    contributions = size[:, :, None] - torch.from_numpy(distance).transpose(1, 2)
    return normalise_rows(contributions.clamp_min_(0).float())


@functools.cache
def _compiled_l1_distances():
    """:func:`_l1_distances` compiled by numba (imported on first use: the corpus queries and the page import this
    module without needing it), cached on disk as the max-flow kernels are."""
    import numba  # heavy: compiled on first use

    return numba.njit(cache=True, fastmath={"reassoc", "contract"})(_l1_distances)


def _l1_distances(weights, parts, z, own, residual, lengths, out):  # pragma: no cover (compiled)
    """``out[b, j, i] = Σ_d |z[b, i, d] − Σ_h weights[b, j, i, h] · parts[h, b, j, d] − δ(j = own[b, i]) ·
    residual[b, i, d]|``: ALTI's L1 distances ``‖z_i − T_i(x_j)‖₁`` without building ``T_i(x_j)`` (``[b, key,
    query, d]``: memory-bound when torch builds it, twice the time). Float32 inputs; ``out`` and the sums float64.
    Only keys and query rows (``own``) before ``lengths[b]``: the others keep what ``out`` holds."""
    batch, keys, rows, heads = weights.shape
    size = z.shape[-1]
    left = np.empty(size, dtype=np.float32)
    for b in range(batch):
        for j in range(min(keys, lengths[b])):
            for i in range(rows):
                if own[b, i] >= lengths[b]:
                    continue
                for d in range(size):
                    left[d] = z[b, i, d]
                for h in range(heads):
                    w = weights[b, j, i, h]
                    if w != 0.0:
                        for d in range(size):
                            left[d] -= w * parts[h, b, j, d]
                if own[b, i] == j:
                    for d in range(size):
                        left[d] -= residual[b, i, d]
                total = 0.0
                for d in range(size):
                    total += abs(left[d])
                out[b, j, i] = total


def measure_on_own_block(measure: str, layer: _Layer, example: int, own):
    """``measure``'s ``[n, n]`` map of one example from its own (unpadded) block of a batch's layer, with the
    single-example engine's :func:`~attention.mixing.contributions.measure_layer`."""
    import torch  # heavy: loaded on first use

    block, z = layer.block, layer.z[example, own]
    value = layer.value[example][:, own]  # [h, n, size]
    h, d = value.shape[0], z.shape[-1]
    f = torch.einsum("hns,dhs->hnd", value, block.output.weight.view(d, h, d // h))  # f^h(x_j) = v^h_j W_O^h
    r2 = sigma2 = y = None
    if measure in _READS_SECOND_HALF:
        r2 = z + block.ffn_out(block.activation(block.ffn_in(z)))
        sigma2, y = _sigma(r2, block.norm2), block.norm2(r2)
    traced = LayerTensors(
        x=layer.x[example, own], alpha=layer.alpha[example][:, own][:, :, own], f=f,
        r1=layer.r1[example, own], sigma1=layer.sigma1[example, own], z=z, r2=r2, sigma2=sigma2, y=y, block=block,
    )  # fmt: skip
    return measure_layer(measure, traced)[0]


def _cls_row(model: LoadedModel, item, measure: str, maps: np.ndarray) -> np.ndarray:
    """Row [CLS] of the top layer's rollout of ``maps`` ``[layer, query, key]`` (one example's own tokens), as the
    single-example engine computes it (:func:`attention.methods.relevance`)."""
    contributions = Contributions(
        model_name=model.name, text=item.text, text_pair=item.text_pair, measure=measure,
        maps=np.ascontiguousarray(maps, dtype=np.float32), head_maps=None, facts=item.facts, labels=model.labels,
    )  # fmt: skip
    return relevance(contributions, "rollout")[-1]
