"""Every example's head figures of one batch at once, from the padded attention of both models.

The single-example engine computes them per input (:func:`attention.compare.head_change_arrays`,
:func:`attention.compare.head_stat_arrays`); a corpus run computed them the same way per example, which cost a fifth
of a run in small numpy calls. Here the same formulas run on a whole batch: padded query rows and keys are zeroed, so
each sum covers exactly an example's own tokens and each mean divides by its own length ``n``. Results equal the
per-example functions to float64 rounding (tests/test_corpus.py compares them on mixed-length batches).
"""

from __future__ import annotations

import numpy as np

from attention.extract import AttentionRun
from attention.metrics import SMOOTHING, entropy_bits_of

CHANGE = ("js_divergence", "cosine", "tv_distance")
STATS = ("entropy", "to_cls", "to_sep", "to_punct", "to_self")
FIGURE_CELLS = 2**20  # attention weights per float64 temporary of one layer (8 MB; ~10 of them live at once)


def _key_masks(runs: list[AttentionRun], masks: np.ndarray) -> dict[str, np.ndarray]:
    """``[batch, position]`` float64 masks of each example's [CLS], [SEP] and punctuation keys, in padded positions."""
    out = {name: np.zeros(masks.shape) for name in ("to_cls", "to_sep", "to_punct")}
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
    position]`` per model, equal); otherwise — tokenizers that pad on different sides — each example's own
    unpadded runs with the single-example functions. Same results either way."""
    if np.array_equal(masks[0], masks[1]):
        return batch_head_figures(pretrained, finetuned, masks[0], runs)
    return per_example_figures(runs)


def per_example_figures(
    runs: dict[str, list[AttentionRun]],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """The figures of :func:`batch_head_figures` from each example's unpadded runs, one example at a time."""
    from attention.compare import head_change_arrays, head_stat_arrays

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
    """How each head changed and each model's head statistics, for every example of a batch.

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
    if step < pretrained.shape[1]:  # long inputs: a few examples at a time (bounded float64 temporaries)
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
    """:func:`batch_head_figures` of examples whose float64 maps fit :data:`FIGURE_CELLS`."""
    import torch

    real = torch.as_tensor(np.asarray(masks), dtype=torch.float64)  # [batch, position]
    n = real.sum(dim=1)[:, None]  # [batch, 1]: divides sums over rows → means over own rows
    block = real[:, None, :, None] * real[:, None, None, :]  # [batch, 1, query, key]
    keys = {model: _key_masks(model_runs, np.asarray(masks)) for model, model_runs in runs.items()}
    layers = pretrained.shape[0]
    change = {name: [] for name in CHANGE}
    stats = {model: {name: [] for name in STATS} for model in runs}
    for layer in range(layers):
        maps = {}
        for model, weights in (("pretrained", pretrained), ("finetuned", finetuned)):
            maps[model] = torch.from_numpy(np.ascontiguousarray(weights[layer])).double().mul_(block)
        p, q = maps["pretrained"], maps["finetuned"]  # [batch, head, query, key], zero off the own block
        change["tv_distance"].append(0.5 * (p - q).abs_().sum(dim=(-2, -1)) / n)
        norms = (p * p).sum(dim=(-2, -1)).sqrt_() * (q * q).sum(dim=(-2, -1)).sqrt_()
        dots = (p * q).sum(dim=(-2, -1))
        change["cosine"].append(torch.where(norms > 0, dots / norms.where(norms > 0, torch.ones_like(norms)), 0.0))
        uniform = (SMOOTHING / n)[:, :, None, None] * block  # smoothing as metrics.smooth, own tokens only
        ps, qs = p.mul(1.0 - SMOOTHING).add_(uniform), q.mul(1.0 - SMOOTHING).add_(uniform)
        js_rows = 0.5 * (entropy_bits_of(ps) + entropy_bits_of(qs))
        js_rows = entropy_bits_of(ps.add_(qs).mul_(0.5)).sub_(js_rows)  # H(m) − ½(H(p) + H(q)); 0 on padded rows
        change["js_divergence"].append(js_rows.sum(dim=-1) / n)
        for model, w in maps.items():
            model_stats = stats[model]
            model_stats["entropy"].append(entropy_bits_of(w).sum(dim=-1) / n)
            received = w.sum(dim=-2)  # [batch, head, key]: attention each key gets, summed over own queries
            for name in ("to_cls", "to_sep", "to_punct"):
                target = torch.from_numpy(keys[model][name])[:, None, :]
                model_stats[name].append((received * target).sum(dim=-1) / n)
            model_stats["to_self"].append(torch.diagonal(w, dim1=-2, dim2=-1).sum(dim=-1) / n)
    stack = lambda values: torch.stack(values, dim=1).numpy()  # noqa: E731 — [batch, layer, head]
    return (
        {name: stack(values) for name, values in change.items()},
        {model: {name: stack(values) for name, values in named.items()} for model, named in stats.items()},
    )
