"""Compare the pre-trained run with the fine-tuned run on the same input: heads, layers, paths, similarity map.

Every function returns a tidy DataFrame (or a small dataclass of them). Layers are 1-based, heads 0-based.
Column suffixes ``_pretrained`` / ``_finetuned`` hold each model's value; comparison columns have no suffix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from attention.errors import IncompatibleModelsError
from attention.extract import AttentionRun
from attention.graph import DEFAULT_TAU, AttentionGraph, attention_graph
from attention.methods import AttentionMethod, default_sources, relevance, sink_tokens
from attention.metrics import (
    attention_shares,
    classical_mds,
    cosine_similarity,
    diagonal_share,
    entropy_bits,
    hellinger_distances,
    js_distances,
    js_divergence,
    total_variation,
)
from attention.schema import MATRIX_COLUMNS, validate_frame

MODELS = ("pretrained", "finetuned")
EDGE_STATUSES = ("shared", "pretrained_only", "finetuned_only")


def _check_same_input(run_pre: AttentionRun, run_ft: AttentionRun) -> None:
    if run_pre.weights.shape != run_ft.weights.shape or run_pre.tokens != run_ft.tokens:
        raise IncompatibleModelsError(
            f"The two runs do not cover the same tokens ({run_pre.weights.shape} vs {run_ft.weights.shape}).",
            "Extract both models on the same input with extract_pair().",
        )


def head_stat_arrays(run: AttentionRun) -> dict[str, np.ndarray]:
    """One model's head behaviours (Clark et al., 2019), each ``[layer, head]`` float64: ``entropy`` (mean row
    entropy, bits) and the mean share of attention ``to_cls``, ``to_sep``, ``to_punct``, ``to_self``, ``to_prev``,
    ``to_next``."""
    w = run.weights
    cls_mask = np.zeros(run.num_tokens, dtype=bool)
    if run.cls_index is not None:
        cls_mask[run.cls_index] = True
    sep_mask = np.zeros(run.num_tokens, dtype=bool)
    sep_mask[list(run.sep_indices)] = True
    return {
        "entropy": entropy_bits(w).mean(axis=-1),
        "to_cls": attention_shares(w, cls_mask),
        "to_sep": attention_shares(w, sep_mask),
        "to_punct": attention_shares(w, np.asarray(run.punctuation)),
        "to_self": diagonal_share(w, 0),
        "to_prev": diagonal_share(w, -1),
        "to_next": diagonal_share(w, 1),
    }


def head_stats(run: AttentionRun) -> pd.DataFrame:
    """:func:`head_stat_arrays` as one row per (layer, head)."""
    columns = head_stat_arrays(run)
    layer, head = np.indices(run.weights.shape[:2]).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head, **{k: v.reshape(-1) for k, v in columns.items()}})


def head_change_arrays(p: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
    """How each head changed between two ``[layer, head, query, key]`` weights of one input, each ``[layer, head]``:
    ``js_divergence`` (bits, mean over query rows, smoothed), ``cosine`` (flattened maps), ``tv_distance`` (mean
    over rows). One layer at a time: float64 temporaries of a whole 500-token run would be ~150 MB each."""
    pairs = list(zip(p, q, strict=True))
    return {
        "js_divergence": np.stack([js_divergence(a, b).mean(axis=-1) for a, b in pairs]),
        "cosine": np.stack([cosine_similarity(a, b) for a, b in pairs]),
        "tv_distance": np.stack([total_variation(a, b).mean(axis=-1) for a, b in pairs]),
    }


def compare_heads(run_pre: AttentionRun, run_ft: AttentionRun) -> pd.DataFrame:
    """Per (layer, head): ``js_divergence`` (bits, mean over query rows, smoothed), ``cosine`` (flattened maps),
    ``tv_distance`` (mean over rows), each model's :func:`head_stats` with suffixes, and ``change_rank``
    (1 = largest JS divergence)."""
    _check_same_input(run_pre, run_ft)
    frame = pd.DataFrame({k: v.reshape(-1) for k, v in head_change_arrays(run_pre.weights, run_ft.weights).items()})
    stats = [
        head_stats(run).drop(columns=["layer", "head"]).add_suffix(f"_{m}")
        for run, m in zip((run_pre, run_ft), MODELS, strict=True)
    ]
    keys = head_stats(run_pre)[["layer", "head"]]
    frame = pd.concat([keys, frame, *stats], axis=1)
    frame["change_rank"] = frame["js_divergence"].rank(ascending=False, method="first").astype(int)
    return frame


def _edge_sets(graph: AttentionGraph) -> dict[int, set[tuple[int, int]]]:
    """Per layer, the (query, key) attention edges that pass τ (residual and sink edges left out)."""
    sets: dict[int, set[tuple[int, int]]] = {layer: set() for layer in range(graph.layers[0], graph.layers[1] + 1)}
    attention = graph.edges[graph.edges["kind"] == "attention"]
    for layer, query, key in attention[["layer", "query_idx", "key_idx"]].itertuples(index=False):
        sets[int(layer)].add((int(query), int(key)))
    return sets


def _jaccard(a: set, b: set) -> float:
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)


@dataclass(frozen=True, eq=False)
class GraphComparison:
    """Union of two attention graphs.

    ``edges``: ``layer, query_idx, key_idx, query_token, key_token, kind, status`` and per model ``weight_*`` /
    ``weight_max_*`` (head mean / max), ``heads_*`` (heads at or above τ), ``flow_*`` (share of that model's traced
    mass the edge carries; NaN where that model's graph does not reach it) and ``in_graph_*``.
    ``status`` (:data:`EDGE_STATUSES`) says **where the attention is**, not where a trace went: for attention edges,
    given both models' weights, ``shared`` = at or above τ in both models, ``pretrained_only`` / ``finetuned_only`` =
    in one only (the other model's weight is still filled in); without the weights, which graphs draw the edge.
    Residual and sink edges are ``shared``.
    ``nodes``: ``depth, token_idx, token, sink`` and per model ``mass_*``, ``absorbed_*``, ``reached_*``;
    ``mass_change`` (fine-tuned minus pre-trained).
    ``layers``: ``layer, edges_pretrained, edges_finetuned, edges_shared, edge_jaccard`` (attention edges drawn).
    """

    edges: pd.DataFrame
    nodes: pd.DataFrame
    layers: pd.DataFrame


def _strengths(
    weights: np.ndarray, graph: AttentionGraph, edges: pd.DataFrame, groups: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per edge of ``edges``: the head-mean weight, the max over heads and whether it passes the graph's τ (its
    threshold rule), from ``weights`` ``[layer, head, query, key]`` — whether or not the graph reached the edge. At
    word level (``groups``; or folded, where a group need not be contiguous) each is the largest over its tokens'
    edges, as :func:`attention.graph.word_graph` merges them."""
    mean, strongest = np.full(len(edges), np.nan), np.full(len(edges), np.nan)
    starts = order = None
    if groups is not None:
        order = np.argsort(np.asarray(groups), kind="stable")  # each group's tokens side by side, for reduceat
        grouped = np.asarray(groups)[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    for layer, rows in edges.groupby("layer").indices.items():
        selected = np.asarray(weights[int(layer) - 1])[list(graph.heads)].astype(np.float64)
        maps = [selected.mean(axis=0), selected.max(axis=0)]
        if starts is not None:
            maps = [
                np.maximum.reduceat(np.maximum.reduceat(m[order][:, order], starts, axis=0), starts, axis=1)
                for m in maps
            ]
        queries, keys = edges["query_idx"].to_numpy()[rows], edges["key_idx"].to_numpy()[rows]
        mean[rows], strongest[rows] = maps[0][queries, keys], maps[1][queries, keys]
    passes = (mean if graph.threshold == "mean" else strongest) >= graph.tau
    return mean, strongest, passes


def compare_graphs(
    graph_pre: AttentionGraph,
    graph_ft: AttentionGraph,
    *,
    weights: tuple[np.ndarray, np.ndarray] | None = None,
    groups: Sequence[int] | None = None,
) -> GraphComparison:
    """The union of both graphs. With ``weights`` (both runs' ``[layer, head, query, key]``) every attention edge
    is coloured by where the attention is at or above τ, and both models' weights are filled in even where only one
    graph reaches the edge; ``groups`` when the graphs were merged into words (:func:`attention.graph.word_graph`).
    Without ``weights``, the status says which graphs draw the edge."""
    if graph_pre.layers != graph_ft.layers or len(graph_pre.nodes) != len(graph_ft.nodes):
        raise ValueError("compare graphs built over the same layer range and tokens")
    keys = ["layer", "query_idx", "key_idx", "kind"]
    per_model = ["weight", "weight_max", "heads", "flow"]
    left, right = (
        graph.edges[[*keys, "query_token", "key_token", *per_model]].rename(columns={c: f"{c}_{m}" for c in per_model})
        for graph, m in zip((graph_pre, graph_ft), MODELS, strict=True)
    )
    edges = left.merge(right, on=keys, how="outer", suffixes=("", "_ft"))
    edges["query_token"] = edges["query_token"].fillna(edges.pop("query_token_ft"))
    edges["key_token"] = edges["key_token"].fillna(edges.pop("key_token_ft"))
    edges = edges.sort_values(keys, ascending=[False, True, True, True], ignore_index=True)
    in_pre = edges["in_graph_pretrained"] = edges["flow_pretrained"].notna()
    in_ft = edges["in_graph_finetuned"] = edges["flow_finetuned"].notna()
    status = np.where(in_pre & in_ft, "shared", np.where(in_pre, "pretrained_only", "finetuned_only"))
    attention = (edges["kind"] == "attention").to_numpy()
    if weights is not None:
        passes = []
        for model, graph, model_weights in zip(MODELS, (graph_pre, graph_ft), weights, strict=True):
            mean, strongest, passing = _strengths(model_weights, graph, edges, groups)
            missing = edges[f"weight_{model}"].isna().to_numpy()
            edges.loc[missing & attention, f"weight_{model}"] = mean[missing & attention]
            edges.loc[missing & attention, f"weight_max_{model}"] = strongest[missing & attention]
            passes.append(passing)
        status = np.where(
            attention,
            np.where(passes[0] & passes[1], "shared", np.where(passes[0], "pretrained_only", "finetuned_only")),
            status,
        )
    edges["status"] = pd.Categorical(np.where(attention, status, "shared"), categories=EDGE_STATUSES)

    nodes = graph_pre.nodes[["depth", "token_idx", "token", "sink"]].copy()
    for graph, model in zip((graph_pre, graph_ft), MODELS, strict=True):
        nodes[f"mass_{model}"] = graph.nodes["mass"].to_numpy()
        nodes[f"absorbed_{model}"] = graph.nodes["absorbed"].to_numpy()
        nodes[f"reached_{model}"] = graph.nodes["reached"].to_numpy()
    nodes["mass_change"] = nodes["mass_finetuned"] - nodes["mass_pretrained"]

    sets_pre, sets_ft = _edge_sets(graph_pre), _edge_sets(graph_ft)
    layers = pd.DataFrame(
        [
            {
                "layer": layer,
                "edges_pretrained": len(sets_pre[layer]),
                "edges_finetuned": len(sets_ft[layer]),
                "edges_shared": len(sets_pre[layer] & sets_ft[layer]),
                "edge_jaccard": _jaccard(sets_pre[layer], sets_ft[layer]),
            }
            for layer in sorted(sets_pre)
        ]
    )
    return GraphComparison(edges=edges, nodes=nodes, layers=layers)


def graph_for(run: AttentionRun, *, sinks: bool = True, **options) -> AttentionGraph:
    """:func:`attention_graph` of a run's own token-level weights, tracing from its classification token unless
    ``sources`` is given; with ``sinks`` the run's special tokens absorb the attention they receive."""
    if options.get("sources") is None:
        options["sources"] = default_sources(run)
    return attention_graph(run.weights, tokens=run.tokens, sinks=sink_tokens(run) if sinks else (), **options)


def compare_layers(
    run_pre: AttentionRun,
    run_ft: AttentionRun,
    *,
    tau: float = DEFAULT_TAU,
    heads: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Per layer: the head metrics of :func:`compare_heads` averaged over heads (``js_divergence_max`` too), and
    ``edge_jaccard`` between the two models' attention graphs (traced from the classification token at ``tau``)."""
    per_head = compare_heads(run_pre, run_ft)
    if heads is not None:
        per_head = per_head[per_head["head"].isin(list(heads))]
    numeric = per_head.drop(columns=["head", "change_rank"])
    layers = numeric.groupby("layer", as_index=False).mean()
    layers["js_divergence_max"] = per_head.groupby("layer")["js_divergence"].max().to_numpy()
    graphs = compare_graphs(graph_for(run_pre, tau=tau, heads=heads), graph_for(run_ft, tau=tau, heads=heads))
    return layers.merge(graphs.layers, on="layer")


def relevance_frame(pretrained: np.ndarray, finetuned: np.ndarray, tokens: Sequence[str]) -> pd.DataFrame:
    """Two ``[layer, token]`` score arrays as a frame ``layer, token_idx, token, pretrained, finetuned,
    difference`` (fine-tuned minus pre-trained); rows where both are NaN (layers outside the range) left out. A
    model without scores (no classification head) is passed as all-NaN and its columns stay NaN."""
    layer, token = np.indices(pretrained.shape).reshape(2, -1)
    frame = pd.DataFrame(
        {
            "layer": layer + 1,
            "token_idx": token,
            "token": np.asarray(tokens, dtype=object)[token],
            "pretrained": pretrained.reshape(-1),
            "finetuned": finetuned.reshape(-1),
            "difference": (finetuned - pretrained).reshape(-1),
        }
    )
    keep = ~(np.isnan(frame["pretrained"].to_numpy()) & np.isnan(frame["finetuned"].to_numpy()))
    return frame[keep].reset_index(drop=True)


def compare_relevance(run_pre: AttentionRun, run_ft: AttentionRun, method: AttentionMethod, **options) -> pd.DataFrame:
    """:func:`attention.methods.relevance` of both models as a :func:`relevance_frame` (token or word level by
    ``options["level"]``; the frame's ``token`` column then holds words)."""
    _check_same_input(run_pre, run_ft)
    pre, ft = relevance(run_pre, method, **options), relevance(run_ft, method, **options)
    level = options.get("level", "token")
    names = run_pre.tokens if level == "token" else run_pre.words()
    return relevance_frame(pre, ft, names)


def attention_received(
    run_pre: AttentionRun, run_ft: AttentionRun, keys: Sequence[int], *, queries: Sequence[int] | None = None
) -> pd.DataFrame:
    """The word query (DeRose et al. 2020): per layer and head, how much attention a word receives.

    ``received[l, h] = mean over queries q of Σ_{k ∈ keys} A[l, h, q, k]`` on the token-level weights
    ``[layer, head, query, key]``: the share of a query's attention that lands on the word's tokens ``keys``
    (its pieces), averaged over ``queries`` (default every token). Returns ``layer, head, pretrained,
    finetuned, difference`` (layers 1-based, heads 0-based), each in [0, 1].
    """
    _check_same_input(run_pre, run_ft)
    keys = list(keys)
    if not keys:
        raise ValueError("the word query needs at least one token position")
    rows = slice(None) if queries is None else list(queries)
    values = {}
    for name, run in (("pretrained", run_pre), ("finetuned", run_ft)):
        weights = np.asarray(run.weights)[:, :, rows, :]
        values[name] = weights[..., keys].sum(axis=-1, dtype=np.float64).mean(axis=-1)  # [layer, head]
    layers, heads = values["pretrained"].shape
    layer, head = np.meshgrid(np.arange(1, layers + 1), np.arange(heads), indexing="ij")
    frame = pd.DataFrame(
        {
            "layer": layer.ravel(),
            "head": head.ravel(),
            "pretrained": values["pretrained"].ravel(),
            "finetuned": values["finetuned"].ravel(),
        }
    )
    frame["difference"] = frame["finetuned"] - frame["pretrained"]
    return frame


def attention_matrices(
    run_pre: AttentionRun,
    run_ft: AttentionRun,
    layer: int,
    *,
    heads: Sequence[int] | None = None,
    aggregation: Literal["mean", "max"] = "mean",
) -> pd.DataFrame:
    """One layer's attention of both models and their difference, as a tidy frame.

    ``heads`` selects the heads to aggregate (a single head gives that head's map); ``aggregation`` is ``mean``
    or ``max`` over them. Columns: ``model`` (``pretrained``, ``finetuned``, ``difference`` = fine-tuned minus
    pre-trained), ``query_idx, query_token, key_idx, key_token, weight``.
    """
    _check_same_input(run_pre, run_ft)
    if not 1 <= layer <= run_pre.num_layers:
        raise ValueError(f"layer must be in 1..{run_pre.num_layers}, got {layer}")
    chosen = list(range(run_pre.num_heads)) if heads is None else list(heads)
    reduce = np.mean if aggregation == "mean" else np.max
    pre, ft = (reduce(run.weights[layer - 1, chosen], axis=0).astype(np.float64) for run in (run_pre, run_ft))
    n = run_pre.num_tokens
    query, key = np.indices((n, n)).reshape(2, -1)
    tokens = np.asarray(run_pre.tokens, dtype=object)
    frames = [
        pd.DataFrame(
            {
                "model": name,
                "query_idx": query,
                "query_token": tokens[query],
                "key_idx": key,
                "key_token": tokens[key],
                "weight": values.reshape(-1),
            }
        )
        for name, values in (("pretrained", pre), ("finetuned", ft), ("difference", ft - pre))
    ]
    return validate_frame(pd.concat(frames, ignore_index=True), MATRIX_COLUMNS)


def head_embedding(
    run_pre: AttentionRun, run_ft: AttentionRun, *, distance: Literal["hellinger", "js"] = "hellinger"
) -> pd.DataFrame:
    """2-D map of every head of both models (classical metric MDS of pairwise head distances).

    ``hellinger`` (default, one matrix product) or ``js`` (Jensen-Shannon distance, as Clark et al.; exact but
    O(heads² · tokens²) logarithms). Columns: ``model, layer, head, x, y, js_divergence`` (the head's change
    between the two models, for sizing points). Deterministic.
    """
    _check_same_input(run_pre, run_ft)
    maps = np.concatenate([run_pre.weights, run_ft.weights]).reshape(-1, run_pre.num_tokens, run_pre.num_tokens)
    pairwise = hellinger_distances(maps) if distance == "hellinger" else js_distances(maps)
    coords = classical_mds(pairwise)
    layers, heads = run_pre.num_layers, run_pre.num_heads
    layer, head = np.indices((layers, heads)).reshape(2, -1)
    change = js_divergence(run_pre.weights, run_ft.weights).mean(axis=-1).reshape(-1)
    return pd.DataFrame(
        {
            "model": np.repeat(MODELS, layers * heads),
            "layer": np.tile(layer + 1, 2),
            "head": np.tile(head, 2),
            "x": coords[:, 0],
            "y": coords[:, 1],
            "js_divergence": np.tile(change, 2),
        }
    )
