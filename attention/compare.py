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
from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU, AttentionGraph, attention_graph, normalize_per_layer
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
from attention.rollout import rollout
from attention.schema import MATRIX_COLUMNS, validate_frame

MODELS = ("pretrained", "finetuned")
EDGE_STATUSES = ("shared", "pretrained_only", "finetuned_only")
Method = Literal["graph", "rollout", "flow"]


def _check_same_input(run_pre: AttentionRun, run_ft: AttentionRun) -> None:
    if run_pre.weights.shape != run_ft.weights.shape or run_pre.tokens != run_ft.tokens:
        raise IncompatibleModelsError(
            f"The two runs do not cover the same tokens ({run_pre.weights.shape} vs {run_ft.weights.shape}).",
            "Extract both models on the same input with extract_pair().",
        )


def head_stats(run: AttentionRun) -> pd.DataFrame:
    """One model's head behaviours (Clark et al., 2019), one row per (layer, head).

    Columns: ``entropy`` (mean row entropy, bits) and the mean share of attention ``to_cls``, ``to_sep``,
    ``to_punct``, ``to_self``, ``to_prev``, ``to_next``.
    """
    w = run.weights
    cls_mask = np.zeros(run.num_tokens, dtype=bool)
    if run.cls_index is not None:
        cls_mask[run.cls_index] = True
    sep_mask = np.zeros(run.num_tokens, dtype=bool)
    sep_mask[list(run.sep_indices)] = True
    columns = {
        "entropy": entropy_bits(w).mean(axis=-1),
        "to_cls": attention_shares(w, cls_mask),
        "to_sep": attention_shares(w, sep_mask),
        "to_punct": attention_shares(w, np.asarray(run.punctuation)),
        "to_self": diagonal_share(w, 0),
        "to_prev": diagonal_share(w, -1),
        "to_next": diagonal_share(w, 1),
    }
    layer, head = np.indices(w.shape[:2]).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head, **{k: v.reshape(-1) for k, v in columns.items()}})


def compare_heads(run_pre: AttentionRun, run_ft: AttentionRun) -> pd.DataFrame:
    """Per (layer, head): ``js_divergence`` (bits, mean over query rows, smoothed), ``cosine`` (flattened maps),
    ``tv_distance`` (mean over rows), each model's :func:`head_stats` with suffixes, and ``change_rank``
    (1 = largest JS divergence)."""
    _check_same_input(run_pre, run_ft)
    p, q = run_pre.weights, run_ft.weights
    frame = pd.DataFrame(
        {
            "js_divergence": js_divergence(p, q).mean(axis=-1).reshape(-1),
            "cosine": cosine_similarity(p, q).reshape(-1),
            "tv_distance": total_variation(p, q).mean(axis=-1).reshape(-1),
        }
    )
    stats = [
        head_stats(run).drop(columns=["layer", "head"]).add_suffix(f"_{m}")
        for run, m in zip((run_pre, run_ft), MODELS, strict=True)
    ]
    keys = head_stats(run_pre)[["layer", "head"]]
    frame = pd.concat([keys, frame, *stats], axis=1)
    frame["change_rank"] = frame["js_divergence"].rank(ascending=False, method="first").astype(int)
    return frame


def _edge_sets(graph: AttentionGraph) -> dict[int, set[tuple[int, int]]]:
    sets: dict[int, set[tuple[int, int]]] = {layer: set() for layer in range(graph.layers[0], graph.layers[1] + 1)}
    for layer, query, key in graph.edges[["layer", "query_idx", "key_idx"]].itertuples(index=False):
        sets[int(layer)].add((int(query), int(key)))
    return sets


def _jaccard(a: set, b: set) -> float:
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)


@dataclass(frozen=True, eq=False)
class GraphComparison:
    """Union of two attention graphs.

    ``edges``: ``layer, query_idx, key_idx, query_token, key_token, status`` (one of :data:`EDGE_STATUSES`), and per
    model ``weight_*`` / ``weight_max_*`` (mean / max over the selected heads) and ``heads_*`` (heads at or above
    τ); NaN where the model has no such edge.
    ``nodes``: ``layer, token_idx, token, influence_*, reached_*, influence_change`` (fine-tuned minus pre-trained).
    ``layers``: ``layer, edges_pretrained, edges_finetuned, edges_shared, edge_jaccard``.
    """

    edges: pd.DataFrame
    nodes: pd.DataFrame
    layers: pd.DataFrame


def compare_graphs(graph_pre: AttentionGraph, graph_ft: AttentionGraph) -> GraphComparison:
    """Mark each edge of either graph shared / pretrained_only / finetuned_only; compare node influence."""
    if graph_pre.layers != graph_ft.layers or len(graph_pre.nodes) != len(graph_ft.nodes):
        raise ValueError("compare graphs built over the same layer range and tokens")
    keys = ["layer", "query_idx", "key_idx"]
    per_model = ["weight", "weight_max", "heads"]
    left, right = (
        graph.edges[[*keys, "query_token", "key_token", *per_model]].rename(columns={c: f"{c}_{m}" for c in per_model})
        for graph, m in zip((graph_pre, graph_ft), MODELS, strict=True)
    )
    edges = left.merge(right, on=keys, how="outer", suffixes=("", "_ft"), indicator=True)

    edges["query_token"] = edges["query_token"].fillna(edges.pop("query_token_ft"))
    edges["key_token"] = edges["key_token"].fillna(edges.pop("key_token_ft"))
    status = {"both": "shared", "left_only": "pretrained_only", "right_only": "finetuned_only"}
    edges["status"] = pd.Categorical(edges.pop("_merge").map(status).astype(str), categories=EDGE_STATUSES)
    edges = edges.sort_values(keys, ignore_index=True)

    nodes = graph_pre.nodes[["layer", "token_idx", "token"]].copy()
    for graph, model in zip((graph_pre, graph_ft), MODELS, strict=True):
        nodes[f"influence_{model}"] = graph.nodes["influence"].to_numpy()
        nodes[f"reached_{model}"] = graph.nodes["reached"].to_numpy()
    nodes["influence_change"] = nodes["influence_finetuned"] - nodes["influence_pretrained"]

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


def graph_for(run: AttentionRun, **options) -> AttentionGraph:
    """:func:`attention_graph` of a run, tracing from its classification token unless ``sources`` is given."""
    if options.get("sources") is None:
        options["sources"] = (run.cls_index if run.cls_index is not None else 0,)
    return attention_graph(run.weights, tokens=run.tokens, **options)


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


def relevance(
    run: AttentionRun,
    method: Method,
    *,
    source: int | Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    layers: tuple[int, int] | None = None,
    tau: float = DEFAULT_TAU,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """How much each token matters to ``source`` (default the classification token) at every layer.

    ``graph``: the attention graph's influence ``I_l(w)`` traced from ``source`` down through ``layers``
    (normalised per layer); ``rollout`` / ``flow``: the mean over ``source`` of their rows of the rollout / the
    attention flow (computed through every layer below). Returns ``[layer, token]`` float64 with NaN rows outside
    ``layers``.
    """
    if source is None:
        sources = [run.cls_index if run.cls_index is not None else 0]
    else:
        sources = [int(source)] if np.isscalar(source) else [int(s) for s in source]
    first, last = layers if layers is not None else (1, run.num_layers)
    out = np.full((run.num_layers, run.num_tokens), np.nan)
    if method == "rollout":
        out[first - 1 : last] = rollout(run.weights, heads=heads)[first - 1 : last][:, sources, :].mean(axis=1)
    elif method == "flow":
        from attention.flow import attention_flow  # numba: imported on first use, not with the package

        flow = attention_flow(run.weights, sources=sources, heads=heads, layers=(first, last))
        out[first - 1 : last] = flow[first - 1 : last][:, sources, :].mean(axis=1)
    elif method == "graph":
        graph = graph_for(run, tau=tau, alpha=alpha, heads=heads, sources=sources, layers=(first, last))
        return graph_relevance(graph, run.num_layers)
    else:
        raise ValueError(f"method must be one of graph, rollout, flow; got {method!r}")
    return out


def graph_relevance(graph: AttentionGraph, num_layers: int) -> np.ndarray:
    """``[layer, token]``: the graph's influence divided by each layer's sum (rows of zeros stay zero), NaN rows
    for layers outside ``graph.layers``."""
    first, last = graph.layers
    out = np.full((num_layers, graph.influence.shape[1]), np.nan)
    out[first - 1 : last] = normalize_per_layer(graph.influence)
    return out


def compare_relevance(
    run_pre: AttentionRun,
    run_ft: AttentionRun,
    method: Method,
    *,
    graphs: tuple[AttentionGraph, AttentionGraph] | None = None,
    **options,
) -> pd.DataFrame:
    """:func:`relevance` of both models as a frame: ``layer, token_idx, token, pretrained, finetuned,
    difference`` (fine-tuned minus pre-trained); layers outside ``options["layers"]`` are left out.

    For ``method="graph"``, ``graphs`` (pre-trained, fine-tuned) already traced with the same settings are reused
    instead of tracing again."""
    _check_same_input(run_pre, run_ft)
    if method == "graph" and graphs is not None:
        pre, ft = (graph_relevance(graph, run_pre.num_layers) for graph in graphs)
    else:
        pre, ft = relevance(run_pre, method, **options), relevance(run_ft, method, **options)
    layer, token = np.indices(pre.shape).reshape(2, -1)
    frame = pd.DataFrame(
        {
            "layer": layer + 1,
            "token_idx": token,
            "token": np.asarray(run_pre.tokens, dtype=object)[token],
            "pretrained": pre.reshape(-1),
            "finetuned": ft.reshape(-1),
            "difference": (ft - pre).reshape(-1),
        }
    )
    return frame[~np.isnan(frame["pretrained"].to_numpy())].reset_index(drop=True)


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
