"""Every example's per-head numbers of one batch at once (how each head changed between the models, each
model's head statistics), from the padded attention of both models. (Formerly ``attention.corpus.figures``: it holds
numbers, not figures.)

The single-example engine computes them per input (:func:`attention.compare.head_change_arrays`,
:func:`attention.compare.head_stat_arrays`); a corpus run computed them the same way per example, which cost a fifth
of a run in small numpy calls. Here the same formulas run on a whole batch: padded query rows and keys are zeroed, so
each sum covers exactly an example's own tokens and each mean divides by its own length ``n``.

Arithmetic is float32, as the attention weights themselves and the ``heads`` table that stores these figures:
float64 cost a third more time. Logarithms are ``torch.log`` (vectorised; ``xlogy`` and ``special.entr`` took three
times as long), with zeros kept out of them. JS divergence is summed as ``½ KL(p‖m) + ½ KL(q‖m)`` (small terms
when p ≈ q) rather than ``H(m) − ½(H(p) + H(q))`` (a difference of two entropies of a few bits, which float32
would round to ~1e-6). On the default pair's 400 first held-out sentences the largest difference from the
single-example functions (float64) was 1.1e-6 bits for entropy, 7e-7 for cosine, 1.2e-6 for total variation and
7e-8 bits for JS divergence (``attention-flows bench corpus`` prints them); tests/corpus/test_corpus.py holds each
figure to the single-example one on mixed-length batches.
"""

from __future__ import annotations

import numpy as np

from attention.compare import head_change_arrays, head_stat_arrays
from attention.extraction import AttentionRun
from attention.metrics import SMOOTHING, entropy_bits_of

CHANGE = ("js_divergence", "cosine", "tv_distance")
STATS = ("entropy", "to_cls", "to_sep", "to_punct", "to_self")
FIGURE_CELLS = 2**20  # attention weights per float32 temporary of one layer (4 MB; ~10 of them live at once)
_LN2 = float(np.log(2.0))


def _key_masks(runs: list[AttentionRun], masks: np.ndarray) -> dict[str, np.ndarray]:
    """``[batch, position]`` float32 0/1 masks of each example's [CLS], [SEP] and punctuation keys, in padded
    positions."""
    out = {name: np.zeros(masks.shape, dtype=np.float32) for name in ("to_cls", "to_sep", "to_punct")}
    for i, run in enumerate(runs):
        real = np.flatnonzero(masks[i])
        if run.cls_index is not None:
            out["to_cls"][i, real[run.cls_index]] = 1.0
        out["to_sep"][i, real[list(run.sep_indices)]] = 1.0
        out["to_punct"][i, real[np.asarray(run.punctuation, dtype=bool)]] = 1.0
    return out


def head_figures(
    pretrained: np.ndarray,
    finetuned: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray],
    runs: dict[str, list[AttentionRun]],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """:func:`batch_head_figures` when both models' padded positions line up (``masks``, one ``[batch,
    position]`` per model, equal: always for a run's right-padded batches of equal token ids); otherwise (masks
    from elsewhere, e.g. left padding) each example's own unpadded runs with the single-example functions. Same
    results either way."""
    if np.array_equal(masks[0], masks[1]):
        return batch_head_figures(pretrained, finetuned, masks[0], runs)
    return per_example_figures(runs)


def per_example_figures(
    runs: dict[str, list[AttentionRun]],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """The figures of :func:`batch_head_figures` from each example's unpadded runs, one example at a time."""
    pairs = list(zip(runs["pretrained"], runs["finetuned"], strict=True))
    changes = [head_change_arrays(pre.weights, ft.weights) for pre, ft in pairs]
    stats = {model: [head_stat_arrays(run) for run in model_runs] for model, model_runs in runs.items()}
    return (
        {name: np.stack([c[name] for c in changes]) for name in CHANGE},
        {model: {name: np.stack([s[name] for s in named]) for name in STATS} for model, named in stats.items()},
    )


def batch_head_figures(
    pretrained: np.ndarray, finetuned: np.ndarray, masks: np.ndarray, runs: dict[str, list[AttentionRun]]
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """How each head changed and each model's head statistics, for every example of a batch (float32 arithmetic).

    Args:
        pretrained, finetuned: padded attention ``[layer, batch, head, position, position]`` (float32).
        masks: ``[batch, position]``, 1 on an example's own tokens.
        runs: each model's :class:`AttentionRun` per example (its [CLS], [SEP] and punctuation positions).

    Returns:
        ``(change, stats)``: ``change[name]`` ``[batch, layer, head]`` for :data:`CHANGE`, as
        :func:`~attention.compare.head_change_arrays`; ``stats[model][name]`` ``[batch, layer, head]`` for
        :data:`STATS`, as :func:`~attention.compare.head_stat_arrays`.
    """
    heads, positions = pretrained.shape[2], pretrained.shape[-1]
    step = max(1, FIGURE_CELLS // (heads * positions * positions))
    if step < pretrained.shape[1]:  # long inputs: a few examples at a time (bounded temporaries)
        parts = [
            batch_head_figures(
                pretrained[:, i : i + step],
                finetuned[:, i : i + step],
                masks[i : i + step],
                {model: model_runs[i : i + step] for model, model_runs in runs.items()},
            )
            for i in range(0, pretrained.shape[1], step)
        ]
        join = lambda values: np.concatenate(values)  # noqa: E731
        return (
            {name: join([c[name] for c, _ in parts]) for name in CHANGE},
            {m: {name: join([s[m][name] for _, s in parts]) for name in STATS} for m in runs},
        )
    return _figures(pretrained, finetuned, masks, runs)


def _figures(pretrained, finetuned, masks, runs):
    """:func:`batch_head_figures` of examples whose maps fit :data:`FIGURE_CELLS`, in float32 (see the module)."""
    import torch  # heavy: loaded on first use

    real = torch.as_tensor(np.asarray(masks), dtype=torch.float32)  # [batch, position]
    n = real.sum(dim=1)[:, None]  # [batch, 1]: divides sums over rows → means over own rows
    block = real[:, None, :, None] * real[:, None, None, :]  # [batch, 1, query, key]
    outside = 1.0 - block
    keys = {  # [batch, 1, key] each
        model: {name: torch.from_numpy(mask)[:, None] for name, mask in _key_masks(model_runs, masks).items()}
        for model, model_runs in runs.items()
    }
    change = {name: [] for name in CHANGE}
    stats = {model: {name: [] for name in STATS} for model in runs}
    for layer in range(pretrained.shape[0]):
        maps = {
            model: torch.from_numpy(np.ascontiguousarray(weights[layer], dtype=np.float32)).mul(block)
            for model, weights in (("pretrained", pretrained), ("finetuned", finetuned))
        }
        p, q = maps["pretrained"], maps["finetuned"]  # [batch, head, query, key], zero off the own block
        change["tv_distance"].append(0.5 * torch.linalg.vector_norm(p - q, ord=1, dim=(-2, -1)) / n)
        flat_p, flat_q = p.flatten(-2), q.flatten(-2)  # [batch, head, query · key]
        norms = torch.linalg.vector_norm(flat_p, dim=-1) * torch.linalg.vector_norm(flat_q, dim=-1)
        dots = torch.linalg.vecdot(flat_p, flat_q)
        change["cosine"].append(torch.where(norms > 0, dots / norms.where(norms > 0, torch.ones_like(norms)), 0.0))
        # smoothing as metrics.smooth, own tokens only. It also keeps every weight of the block above 0, so the
        # logarithms below never see log 0 (this needs SMOOTHING > 0)
        uniform = (SMOOTHING / n)[:, :, None, None] * block
        ps, qs = p.mul(1.0 - SMOOTHING).add_(uniform), q.mul(1.0 - SMOOTHING).add_(uniform)
        m = (ps + qs).mul_(0.5).add_(outside)  # 1 off the block, where p = q = 0: each term is 0 · log(1) there
        kl = (ps * ((ps + outside) / m).log_()).sum(dim=-1).add_((qs * ((qs + outside) / m).log_()).sum(dim=-1))
        change["js_divergence"].append(kl.sum(dim=-1).mul_(0.5 / _LN2) / n)
        for model, w in maps.items():
            model_stats = stats[model]
            model_stats["entropy"].append(entropy_bits_of(w, dim=(-2, -1)) / n)  # float32; 0 · log 0 = 0
            received = w.sum(dim=-2)  # [batch, head, key]: attention each key gets, summed over own queries
            for name in ("to_cls", "to_sep", "to_punct"):
                model_stats[name].append((received * keys[model][name]).sum(dim=-1) / n)
            model_stats["to_self"].append(torch.diagonal(w, dim1=-2, dim2=-1).sum(dim=-1) / n)
    stack = lambda values: torch.stack(values, dim=1).double().numpy()  # noqa: E731 — [batch, layer, head]
    return (
        {name: stack(values) for name, values in change.items()},
        {model: {name: stack(values) for name, values in named.items()} for model, named in stats.items()},
    )
