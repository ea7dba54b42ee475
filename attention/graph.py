"""The attention graph: the share of the traced token(s) that travels down each attention edge, layer by layer
(our definition of the Attention Flows view; ``docs/method.md`` §1 gives the reasons for each choice).

It is attention rollout (Abnar & Zuidema 2020) restricted to the edges a reader can see:

- ``P_l = α·I + (1−α)·(Ā_l ⊙ keep_l)``: ``α`` is the residual share, ``Ā_l`` the head mean of the model's own
  weights, ``keep_l[i, k]`` is 1 when the edge passes ``τ`` and ``k`` is not a sink;
- ``mass_{l-1} = mass_l · P_l`` from one unit of mass on the sources at depth ``last`` (split evenly);
- attention into a sink ([CLS], [SEP]: Clark et al. 2019 find it mostly a no-op) is *absorbed*: drawn and counted
  per layer, never expanded; attention below ``τ`` is *pruned* and counted per layer.

So at every depth ``live + absorbed + pruned = 1`` (conservation), and with ``τ = 0`` and no sinks the mass that
reaches the inputs is the rollout row of the source (``α = 0.5`` is the paper's ``rownorm(Ā + I)``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from attention.defaults import DEFAULT_ALPHA, DEFAULT_TAU
from attention.schema import GRAPH_EDGE_COLUMNS, GRAPH_NODE_COLUMNS, validate_frame
from attention.tokens import word_all

# Edges carrying less than this share of the source's mass are left out of ``edges`` (never out of ``mass``).
MIN_EDGE_FLOW = 1e-4
Aggregation = Literal["mean", "max"]  # how the selected heads are combined before τ is applied


@dataclass(frozen=True, eq=False)
class AttentionGraph:
    """Result of :func:`attention_graph`.

    ``mass``: ``[depth, token]`` live share of the sources at depths ``first-1 .. last`` (row 0 = depth
    ``first-1``); ``absorbed``: ``[layer, token]`` share absorbed by each sink through layer ``first .. last``;
    ``pruned``: ``[layer]`` share lost below τ in that layer; ``labels`` / ``is_sink``: ``[token]`` display strings
    and sinks. ``nodes`` / ``edges``: the same as tidy frames (``schema.GRAPH_NODE_COLUMNS`` /
    ``GRAPH_EDGE_COLUMNS``), built when first read; ``edges.flow`` is the share carried by the edge.
    ``edge_columns``: the edges' columns as arrays (``heads`` a list of tuples), what the frame is built from —
    merging words and comparing two graphs read these and never build the frames.
    """

    sources: tuple[int, ...]
    sinks: tuple[int, ...]
    layers: tuple[int, int]
    heads: tuple[int, ...]
    tau: float
    alpha: float
    aggregation: str
    mass: np.ndarray
    absorbed: np.ndarray
    pruned: np.ndarray
    labels: np.ndarray = field(repr=False)
    is_sink: np.ndarray = field(repr=False)
    edge_columns: Mapping[str, Sequence] = field(repr=False)

    @functools.cached_property
    def node_columns(self) -> dict[str, np.ndarray]:
        """The nodes' columns as arrays (:func:`_node_columns`)."""
        return _node_columns(self.mass, self.absorbed, self.labels, self.is_sink, self.layers[0])

    @functools.cached_property
    def nodes(self) -> pd.DataFrame:
        return validate_frame(pd.DataFrame(self.node_columns), GRAPH_NODE_COLUMNS)

    @functools.cached_property
    def edges(self) -> pd.DataFrame:
        return validate_frame(pd.DataFrame(dict(self.edge_columns)), GRAPH_EDGE_COLUMNS)

    @property
    def num_tokens(self) -> int:
        return int(self.mass.shape[1])

    @property
    def threshold(self) -> str:
        """Deprecated name of :attr:`aggregation`."""
        warnings.warn("AttentionGraph.threshold is now AttentionGraph.aggregation", DeprecationWarning, stacklevel=2)
        return self.aggregation

    def reached(self, depth: int) -> tuple[int, ...]:
        """Token indices holding live mass at ``depth`` (``first-1 .. last``)."""
        return tuple(int(i) for i in np.flatnonzero(self.mass[depth - self.layers[0] + 1] > 0))

    def layer_shares(self) -> pd.DataFrame:
        """Per layer of the range: ``layer, live, absorbed, pruned`` (shares of the sources' mass after it)."""
        first, last = self.layers
        return pd.DataFrame(
            {
                "layer": np.arange(first, last + 1),
                "live": self.mass[:-1].sum(axis=1),
                "absorbed": np.cumsum(self.absorbed[::-1].sum(axis=1))[::-1],
                "pruned": np.cumsum(self.pruned[::-1])[::-1],
            }
        )


def layer_range(layers: tuple[int, int] | None, num_layers: int) -> tuple[int, int]:
    """1-based inclusive ``(first, last)``; None means every layer."""
    first, last = layers if layers is not None else (1, num_layers)
    if not 1 <= first <= last <= num_layers:
        raise ValueError(f"layers must satisfy 1 <= first <= last <= {num_layers}, got {(first, last)}")
    return int(first), int(last)


def head_subset(heads: Sequence[int] | None, num_heads: int) -> tuple[int, ...]:
    """Sorted head indices; None means every head."""
    chosen = tuple(range(num_heads)) if heads is None else tuple(sorted({int(h) for h in heads}))
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_heads:
        raise ValueError(f"heads must be a non-empty subset of 0..{num_heads - 1}, got {heads}")
    return chosen


def _token_set(values: Sequence[int] | None, n: int, what: str, default: tuple[int, ...]) -> np.ndarray:
    chosen = np.array(sorted({int(s) for s in (values if values is not None else default)}), dtype=np.int64)
    if chosen.size and (chosen[0] < 0 or chosen[-1] >= n):
        raise ValueError(f"{what} must be token indices in 0..{n - 1}, got {values}")
    return chosen


def check_graph_options(tau: float, alpha: float, aggregation: str) -> None:
    if not (0.0 <= tau <= 1.0 and 0.0 <= alpha <= 1.0):
        raise ValueError(f"tau and alpha must lie in [0, 1], got tau={tau}, alpha={alpha}")
    if aggregation not in ("mean", "max"):
        raise ValueError(f"aggregation must be mean or max, got {aggregation!r}")


def renamed(new: object, old: object, old_name: str, new_name: str) -> object:
    """``new``, or ``old`` with a DeprecationWarning when a caller still passes the old keyword ``old_name``."""
    if old is None:
        return new
    warnings.warn(f"the keyword {old_name!r} is now {new_name!r}", DeprecationWarning, stacklevel=3)
    return old


def pruned_maps(
    weights: np.ndarray,
    *,
    tau: float,
    alpha: float,
    heads: Sequence[int] | None = None,
    sinks: Sequence[int] = (),
    aggregation: Aggregation = "mean",
    residual_in_weights: bool = False,
    threshold: Aggregation | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(P, attention, keep, own)``: the propagation maps ``P_l = diag(own_l) + (1−α)·(Ā_l ⊙ keep_l)``, the head
    mean ``Ā_l`` and the bool ``keep_l``, each ``[layer, query, key]`` float64 / bool, and ``own`` ``[layer,
    token]``: the share each token keeps as itself one layer down (its residual edge).

    ``keep_l[i, k]``: ``k`` is no sink and the head mean (``aggregation="mean"``) or the strongest selected head
    (``"max"``) of ``A_l[i, k]`` is at least ``tau``. ``own`` is ``α`` for attention. With ``residual_in_weights``
    (contribution maps that hold the residual connection, e.g. ALTI) ``α`` is not used: a token keeps what the map
    says of itself (``own_l = diag Ā_l``, never pruned or absorbed, even for a sink), and only what it takes from
    *other* tokens is pruned by τ and absorbed by sinks (``Ā_l`` then has a zero diagonal). ``threshold``: the
    deprecated name of ``aggregation``."""
    aggregation = renamed(aggregation, threshold, "threshold", "aggregation")
    weights = np.asarray(weights)
    if weights.ndim != 4:
        raise ValueError(f"weights must be [layer, head, query, key], got shape {weights.shape}")
    check_graph_options(tau, alpha, aggregation)
    sinks = _token_set(sinks, weights.shape[-1], "sinks", ())
    chosen = list(head_subset(heads, weights.shape[1]))
    selected = weights[:, chosen]
    attention = np.add.reduce(selected, axis=1, dtype=np.float64) / len(chosen)
    strength = attention if aggregation == "mean" else selected.max(axis=1)
    diagonal = np.arange(weights.shape[-1])
    if residual_in_weights:
        own = attention[:, diagonal, diagonal].copy()
        attention[:, diagonal, diagonal] = 0.0
        alpha = 0.0
    else:
        own = np.full(attention.shape[:2], float(alpha))
    keep = strength >= tau
    keep[..., list(sinks)] = False
    if residual_in_weights:
        keep[:, diagonal, diagonal] = False
    maps = (1.0 - alpha) * np.where(keep, attention, 0.0)
    maps[:, diagonal, diagonal] += own
    return maps, attention, keep, own


def attention_graph(
    weights: np.ndarray,
    *,
    tau: float = DEFAULT_TAU,
    alpha: float = DEFAULT_ALPHA,
    heads: Sequence[int] | None = None,
    layers: tuple[int, int] | None = None,
    sources: Sequence[int] | None = None,
    sinks: Sequence[int] | None = None,
    aggregation: Aggregation = "mean",
    tokens: Sequence[str] | None = None,
    residual_in_weights: bool = False,
    threshold: Aggregation | None = None,
) -> AttentionGraph:
    """Trace one unit of mass from ``sources`` at depth ``last`` down to depth ``first-1``.

    Args:
        weights: ``[layer, head, query, key]`` attention, rows sum to 1 (the model's own token-level weights).
        tau: an attention edge carries mass when its head mean (or max, see ``aggregation``) is at least ``tau``.
        alpha: residual share in [0, 1]: each token keeps ``alpha`` of its mass as itself one layer down.
        heads: head subset ``S`` (0-based) averaged for ``Ā_l``; None for all heads.
        layers: 1-based inclusive ``(first, last)``; None for all layers.
        sources: token indices traced from (mass split evenly); None for position 0.
        sinks: token indices whose incoming attention is absorbed (e.g. [CLS], [SEP]); None for none.
        aggregation: ``"mean"`` or ``"max"`` over the selected heads, compared with ``tau`` (old name: threshold).
        tokens: display strings for the frames; None for ``"#i"``.
        residual_in_weights: the weights are contribution maps that hold the residual (ALTI, GlobEnc, ...): each
            token keeps its own diagonal share as its residual edge, ``alpha`` is not used (:func:`pruned_maps`).
    """
    aggregation = renamed(aggregation, threshold, "threshold", "aggregation")
    weights = np.asarray(weights)
    maps, attention, keep, own = pruned_maps(
        weights, tau=tau, alpha=alpha, heads=heads, sinks=sinks or (), aggregation=aggregation,
        residual_in_weights=residual_in_weights,
    )  # fmt: skip
    alpha = 0.0 if residual_in_weights else alpha
    num_layers, num_heads, n, _ = weights.shape
    first, last = layer_range(layers, num_layers)
    chosen_heads = head_subset(heads, num_heads)
    source_set = _token_set(sources, n, "sources", (0,))
    sink_set = _token_set(sinks, n, "sinks", ())
    if source_set.size == 0:
        raise ValueError("trace from at least one token")
    labels = np.asarray(list(tokens) if tokens is not None else [f"#{i}" for i in range(n)], dtype=object)
    is_sink = np.zeros(n, dtype=bool)
    is_sink[sink_set] = True

    edge_parts = []

    def keep_edges(layer: int, live: np.ndarray, carried: np.ndarray) -> None:
        edge_parts.append(
            _layer_edges(
                layer, live, carried, keep[layer - 1], is_sink, own[layer - 1], weights[layer - 1], chosen_heads, tau
            )
        )

    mass, absorbed, pruned = _propagate(maps, attention, keep, alpha, (first, last), source_set, is_sink, keep_edges)

    return AttentionGraph(
        labels=labels,
        is_sink=is_sink,
        edge_columns=_edge_columns(edge_parts, labels),
        sources=tuple(int(s) for s in source_set),
        sinks=tuple(int(s) for s in sink_set),
        layers=(first, last),
        heads=chosen_heads,
        tau=float(tau),
        alpha=float(alpha),
        aggregation=aggregation,
        mass=mass,
        absorbed=absorbed,
        pruned=pruned,
    )


def _propagate(
    maps, attention, keep, alpha: float, layers: tuple[int, int], sources, is_sink, each_layer=None,
    *, with_pruned: bool = True,
):  # fmt: skip
    """``(mass, absorbed, pruned)`` of :class:`AttentionGraph` from :func:`pruned_maps`' arrays: one unit of mass on
    ``sources`` at depth ``last``, pushed down layer by layer; ``each_layer(layer, live, carried)`` sees each
    layer's live mass ``[token]`` and the mass on its attention edges ``[query, key]``. Without ``each_layer`` and
    ``with_pruned``, ``pruned`` stays zero and no ``[query, key]`` array is made."""
    first, last = layers
    span, n = last - first + 1, maps.shape[-1]
    mass = np.zeros((span + 1, n))
    mass[span, sources] = 1.0 / len(sources)
    absorbed = np.zeros((span, n))
    pruned = np.zeros(span)
    for layer in range(last, first - 1, -1):
        row = layer - first
        live = mass[row + 1]
        mass[row] = live @ maps[layer - 1]
        if each_layer is None and not with_pruned:  # only masses and absorbed shares: no [query, key] array
            absorbed[row, is_sink] = (1.0 - alpha) * (live @ attention[layer - 1][:, is_sink])
            continue
        carried = (1.0 - alpha) * live[:, None] * attention[layer - 1]  # [query, key] mass on attention edges
        absorbed[row, is_sink] = carried[:, is_sink].sum(axis=0)
        pruned[row] = carried[:, ~is_sink][~keep[layer - 1][:, ~is_sink]].sum()
        if each_layer is not None:
            each_layer(layer, live, carried)
    return mass, absorbed, pruned


def mass_split(
    weights: np.ndarray,
    *,
    special: Sequence[int],
    tau: float = DEFAULT_TAU,
    alpha: float = DEFAULT_ALPHA,
    heads: Sequence[int] | None = None,
    layers: tuple[int, int] | None = None,
    sources: Sequence[int] | None = None,
    sinks: Sequence[int] | None = None,
    aggregation: Aggregation = "mean",
    residual_in_weights: bool = False,
) -> tuple[float, float, float]:
    """Where :func:`attention_graph`'s traced mass ends, without building its frames: ``(words, specials, lost)``
    — the share at the input (depth ``first-1``) on tokens not in ``special``; the share there on ``special`` plus
    all that sinks absorbed; the rest (pruned below τ). ``special``: the positions counted with the special tokens
    (the caller says whether sinks are: a word-level view counts a sink inside a longer word as that word's). The
    other arguments are :func:`attention_graph`'s."""
    weights = np.asarray(weights)
    maps, attention, keep, _ = pruned_maps(
        weights, tau=tau, alpha=alpha, heads=heads, sinks=sinks or (), aggregation=aggregation,
        residual_in_weights=residual_in_weights,
    )  # fmt: skip
    n = weights.shape[-1]
    is_sink = np.zeros(n, dtype=bool)
    is_sink[_token_set(sinks, n, "sinks", ())] = True
    source_set = _token_set(sources, n, "sources", (0,))
    if source_set.size == 0:
        raise ValueError("trace from at least one token")
    alpha = 0.0 if residual_in_weights else alpha
    mass, absorbed, _ = _propagate(maps, attention, keep, alpha, layer_range(layers, weights.shape[0]), source_set,
                                   is_sink, with_pruned=False)  # fmt: skip
    is_special = np.zeros(n, dtype=bool)
    is_special[list(special)] = True
    words = float(mass[0][~is_special].sum())
    specials = float(mass[0][is_special].sum() + absorbed.sum())
    return words, specials, max(0.0, 1.0 - words - specials)


def _node_columns(
    mass: np.ndarray, absorbed: np.ndarray, labels: np.ndarray, is_sink: np.ndarray, first: int
) -> dict[str, np.ndarray]:
    """Node columns from ``mass`` ``[depth, token]`` (depths ``first-1 .. last``) and ``absorbed``
    ``[layer, token]``: what layer ``l`` absorbs sits at depth ``l-1``."""
    depth, token = np.indices(mass.shape).reshape(2, -1)
    absorbed_at_depth = np.vstack([absorbed, np.zeros((1, mass.shape[1]))])
    return {
        "depth": depth + first - 1,
        "token_idx": token,
        "token": labels[token],
        "mass": mass.reshape(-1),
        "absorbed": absorbed_at_depth.reshape(-1),
        "reached": (mass > 0).reshape(-1),
        "sink": np.tile(is_sink, mass.shape[0]),
    }


def _layer_edges(
    layer: int,
    live: np.ndarray,
    carried: np.ndarray,
    keep: np.ndarray,
    is_sink: np.ndarray,
    own: np.ndarray,
    layer_weights: np.ndarray,
    heads: tuple[int, ...],
    tau: float,
) -> dict:
    """One layer's edges as arrays: kept attention edges, residual edges (each token keeps ``own`` ``[token]`` of
    its mass) and edges into sinks that carry at least :data:`MIN_EDGE_FLOW`."""
    drawn = (keep | is_sink[None, :]) & (carried >= MIN_EDGE_FLOW)
    query, key = np.nonzero(drawn)
    flow = carried[query, key]
    kind = np.where(is_sink[key], "sink", "attention")
    selected = layer_weights[list(heads)][:, query, key].astype(np.float64)  # [|S|, edges]
    passing = selected >= tau
    head_ids = np.asarray(heads)
    residual = np.flatnonzero(own * live >= MIN_EDGE_FLOW)
    return {
        "layer": np.full(query.size + residual.size, layer),
        "query_idx": np.concatenate([query, residual]),
        "key_idx": np.concatenate([key, residual]),
        "kind": np.concatenate([kind, np.full(residual.size, "residual")]),
        "weight": np.concatenate([selected.mean(axis=0), np.full(residual.size, np.nan)]),
        "weight_max": np.concatenate([selected.max(axis=0, initial=0.0), np.full(residual.size, np.nan)]),
        "heads": [tuple(head_ids[mask].tolist()) for mask in passing.T] + [()] * residual.size,
        "multiplicity": np.concatenate([passing.sum(axis=0), np.zeros(residual.size, dtype=np.int64)]),
        "flow": np.concatenate([flow, own[residual] * live[residual]]),
    }


def _edge_columns(parts: list[dict], labels: np.ndarray) -> dict[str, Sequence]:
    """The per-layer edge arrays as one set of columns, sorted (layer descending, then query, key and kind)."""
    columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0] if key != "heads"}
    heads = [h for p in parts for h in p["heads"]]
    order = np.lexsort((columns["kind"].astype(str), columns["key_idx"], columns["query_idx"], -columns["layer"]))
    frame = {key: values[order] for key, values in columns.items()}
    frame["heads"] = [heads[i] for i in order.tolist()]
    frame["query_token"] = labels[frame["query_idx"]]
    frame["key_token"] = labels[frame["key_idx"]]
    frame["multiplicity"] = frame["multiplicity"].astype(np.int64)
    for name in ("weight", "weight_max", "flow"):
        frame[name] = frame[name].astype(np.float64)
    return frame


def graph_relevance(
    weights: np.ndarray,
    *,
    sources: Sequence[int],
    tau: float = DEFAULT_TAU,
    alpha: float = DEFAULT_ALPHA,
    heads: Sequence[int] | None = None,
    sinks: Sequence[int] = (),
    aggregation: Aggregation = "mean",
    residual_in_weights: bool = False,
    threshold: Aggregation | None = None,
) -> np.ndarray:
    """``[layer, token]``: row ``l`` is the live mass that reaches the *input* tokens when the graph is traced from
    ``sources`` at depth ``l`` through every layer below (mean over sources), i.e. rollout with the pruned maps
    ``P``. With ``tau=0``, no sinks and ``alpha=0.5`` it equals :func:`attention.rollouts` rows (with
    ``residual_in_weights``, rollout of the maps themselves). ``threshold``: the deprecated name of ``aggregation``."""
    aggregation = renamed(aggregation, threshold, "threshold", "aggregation")
    maps, _, _, _ = pruned_maps(weights, tau=tau, alpha=alpha, heads=heads, sinks=sinks, aggregation=aggregation,
                                residual_in_weights=residual_in_weights)  # fmt: skip
    chosen = list(sources)
    joint = maps[0].copy()
    out = np.empty((maps.shape[0], maps.shape[-1]))
    out[0] = joint[chosen].mean(axis=0)
    for layer in range(1, maps.shape[0]):
        joint = maps[layer] @ joint
        out[layer] = joint[chosen].mean(axis=0)
    return out


def _merge_edges(edges: Mapping[str, Sequence]) -> dict[str, Sequence]:
    """Edge columns with equal ``layer, query_idx, key_idx, kind`` merged (in order of first appearance):
    ``weight``, ``weight_max`` and ``multiplicity`` the largest (NaN ignored), ``heads`` the sorted union, ``flow``
    the sum."""
    kinds, kind = np.unique(np.asarray(edges["kind"], dtype=object).astype(str), return_inverse=True)
    layer, query, key = (np.asarray(edges[c], dtype=np.int64) for c in ("layer", "query_idx", "key_idx"))
    width = int(max(query.max(initial=0), key.max(initial=0))) + 1
    code = ((layer * width + query) * width + key) * len(kinds) + kind
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    group, count = rank[inverse], first.size
    leader = np.sort(first)  # each merged edge's first row

    def largest(column: str) -> np.ndarray:
        values = np.asarray(edges[column])
        out = np.full(count, np.nan) if values.dtype.kind == "f" else np.full(count, np.iinfo(np.int64).min)
        (np.fmax if values.dtype.kind == "f" else np.maximum).at(out, group, values)
        return out

    flow = np.zeros(count)
    np.add.at(flow, group, np.asarray(edges["flow"], dtype=np.float64))
    heads: list[set] = [set() for _ in range(count)]
    for g, members in zip(group.tolist(), list(edges["heads"]), strict=True):
        heads[g].update(members)
    return {
        "layer": layer[leader],
        "query_idx": query[leader],
        "key_idx": key[leader],
        "kind": kinds.astype(object)[kind[leader]],
        "weight": largest("weight"),
        "weight_max": largest("weight_max"),
        "heads": [tuple(sorted(h)) for h in heads],
        "multiplicity": largest("multiplicity"),
        "flow": flow,
    }


def word_graph(graph: AttentionGraph, groups: Sequence[int], words: Sequence[str]) -> AttentionGraph:
    """The graph with each word's pieces merged, as a view of the token-level result: masses, absorbed shares and
    edge flows add up over pieces (they are shares of one unit); a merged edge's ``weight`` / ``weight_max`` are
    the largest of its piece-to-piece edges, its ``heads`` their union."""
    groups = np.asarray(groups)
    count = int(groups.max()) + 1
    membership = np.zeros((groups.size, count))
    membership[np.arange(groups.size), groups] = 1.0
    labels = np.asarray(list(words), dtype=object)
    mass, absorbed = graph.mass @ membership, graph.absorbed @ membership
    word_sink = word_all(graph.is_sink, groups)
    columns = graph.edge_columns
    merged = _merge_edges(
        dict(columns) | {"query_idx": groups[np.asarray(columns["query_idx"], dtype=np.int64)],
                         "key_idx": groups[np.asarray(columns["key_idx"], dtype=np.int64)]}
    )  # fmt: skip
    merged["query_token"] = labels[merged["query_idx"]]
    merged["key_token"] = labels[merged["key_idx"]]
    return AttentionGraph(
        labels=labels,
        is_sink=word_sink,
        edge_columns=merged,
        sources=tuple(sorted({int(groups[s]) for s in graph.sources})),
        sinks=tuple(int(g) for g in np.flatnonzero(word_sink)),
        layers=graph.layers,
        heads=graph.heads,
        tau=graph.tau,
        alpha=graph.alpha,
        aggregation=graph.aggregation,
        mass=mass,
        absorbed=absorbed,
        pruned=graph.pruned,
    )
