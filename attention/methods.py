"""How much each input token matters to the traced token(s), by attention alone: raw attention, rollout, exact flow
and the attention graph. Always computed on the model's own token-level weights; the word level is a view of the
result (:func:`merge_scores`), never a transform of the weights before the computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from attention.extraction import AttentionRun
from attention.graph import (
    DEFAULT_ALPHA,
    DEFAULT_TAU,
    Aggregation,
    graph_relevance,
    head_subset,
    layer_range,
    renamed,
)
from attention.mixing.contributions import Contributions
from attention.relevance_methods import method_names
from attention.rollouts import head_average, rollout

AttentionMethod = Literal["raw_attention", "rollout", "flow", "graph"]
ATTENTION_METHODS: tuple[str, ...] = method_names("graph")
Level = Literal["token", "word"]


def merge_scores(scores: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """Sum ``[..., token]`` scores over the pieces of each word: ``[..., word]`` (attended side of a merge).

    >>> merge_scores(np.array([[0.5, 0.25, 0.25]]), [0, 1, 1]).tolist()
    [[0.5, 0.5]]
    """
    groups = np.asarray(groups)
    membership = np.zeros((groups.size, int(groups.max()) + 1))
    membership[np.arange(groups.size), groups] = 1.0
    return np.asarray(scores, dtype=np.float64) @ membership


def token_positions(run: AttentionRun, positions: Sequence[int], level: Level) -> list[int]:
    """Token indices of ``positions`` given at ``level`` (a word stands for all its pieces)."""
    if level == "token":
        bad = [p for p in positions if not 0 <= int(p) < run.num_tokens]
        if bad:
            raise ValueError(f"token positions must lie in 0..{run.num_tokens - 1}, got {bad}")
        return sorted({int(p) for p in positions})
    groups = np.asarray(run.groups)
    bad = [p for p in positions if not 0 <= int(p) <= int(groups.max())]
    if bad:
        raise ValueError(f"word positions must lie in 0..{int(groups.max())}, got {bad}")
    return sorted(int(i) for i in np.flatnonzero(np.isin(groups, list(positions))))


def default_sources(run: AttentionRun) -> list[int]:
    """The classification token (a decoder's last token), else position 0."""
    return [run.cls_index if run.cls_index is not None else 0]


def sink_tokens(run: AttentionRun) -> tuple[int, ...]:
    """Token indices treated as sinks by the attention graph: the special tokens ([CLS], [SEP], <s>, </s>…) and a
    decoder's first token (its attention sink)."""
    return tuple(sorted({int(i) for i in np.flatnonzero(run.special)} | set(run.sink_indices)))


def relevance(
    run: AttentionRun | Contributions,
    method: AttentionMethod,
    *,
    sources: int | Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    layers: tuple[int, int] | None = None,
    tau: float = DEFAULT_TAU,
    alpha: float = DEFAULT_ALPHA,
    sinks: bool = True,
    aggregation: Aggregation = "mean",
    level: Level = "token",
    residual: bool | None = None,
    source: int | Sequence[int] | None = None,
    threshold: Aggregation | None = None,
) -> np.ndarray:
    """How much each input token matters to ``sources`` after every layer: ``[layer, token]`` (or ``[layer, word]``
    with ``level="word"``), float64, NaN rows outside ``layers``.

    Row ``l`` always describes the source's representation after layer ``l`` in terms of the *inputs*:
    ``raw_attention`` the head-mean attention row of layer ``l``; ``rollout`` the rollout row; ``flow`` the exact
    max-flow row; ``graph`` the input mass of the attention graph traced from depth ``l`` (rollout restricted to
    edges at or above ``tau``, attention into special tokens absorbed when ``sinks``). Several sources: mean of
    their rows. ``sources`` positions are at ``level`` (a word stands for its pieces); the word level sums the
    token-level result over each word's pieces.

    ``run`` may be :class:`~attention.mixing.Contributions`: the same methods over its contribution maps instead
    of the attention weights (``raw_attention`` is then the map's row). A measure that already holds the residual
    connection (ALTI, GlobEnc, ...) is rolled out without an added identity, and the graph lets each token keep
    its own diagonal share (never pruned or absorbed): ``alpha`` is not used for it whatever is passed.
    ``heads`` applies to attention only (a map is one per layer). ``residual`` overrides whether the methods add
    the identity (default: yes for attention, no for a measure that holds it; pass False for such maps given as an
    :class:`AttentionRun`, e.g. :meth:`Contributions.as_run`). ``source`` and ``threshold`` are the deprecated
    names of ``sources`` and ``aggregation``.
    """
    sources = renamed(sources, source, "source", "sources")
    aggregation = renamed(aggregation, threshold, "threshold", "aggregation")
    if level not in ("token", "word"):
        raise ValueError(f"level must be token or word, got {level!r}")
    if isinstance(run, Contributions):
        if heads is not None:
            raise ValueError(f"heads select attention heads; the {run.measure} maps are one per layer")
        residual = not run.includes_residual if residual is None else residual
        alpha = alpha if residual else 0.0
        run = run.as_run()
    residual = True if residual is None else residual
    sources = (
        default_sources(run)
        if sources is None
        else token_positions(run, [sources] if np.isscalar(sources) else list(sources), level)
    )
    if not sources:
        raise ValueError("trace from at least one token")
    first, last = layer_range(layers, run.num_layers)
    chosen = None if heads is None else list(head_subset(heads, run.num_heads))
    if method == "raw_attention":
        rows = head_average(run.weights, chosen)[:, sources, :].mean(axis=1)
    elif method == "rollout":
        rows = rollout(run.weights, heads=chosen, residual=residual)[:, sources, :].mean(axis=1)
    elif method == "flow":
        from attention.flow import attention_flow  # numba: imported on first use, not with the package

        flow = attention_flow(run.weights, sources=sources, heads=chosen, layers=(first, last), residual=residual)
        rows = np.nan_to_num(flow[:, sources, :]).mean(axis=1)
    elif method == "graph":
        rows = graph_relevance(
            run.weights,
            sources=sources,
            tau=tau,
            alpha=alpha,
            heads=chosen,
            sinks=sink_tokens(run) if sinks else (),
            aggregation=aggregation,
            residual_in_weights=not residual,
        )
    else:
        raise ValueError(f"method must be one of {', '.join(ATTENTION_METHODS)}; got {method!r}")
    out = np.full(rows.shape, np.nan)
    out[first - 1 : last] = rows[first - 1 : last]
    return merge_scores(out, run.groups) if level == "word" else out
