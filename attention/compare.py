"""Compare the pre-trained run with the fine-tuned run on the same input: heads, layers, paths, similarity map.

Every function returns a tidy DataFrame (or a small dataclass of them). Layers are 1-based, heads 0-based.
Column suffixes ``_pretrained`` / ``_finetuned`` hold each model's value; comparison columns have no suffix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from attention.errors import IncompatibleModelsError
from attention.extraction import AttentionRun
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
from attention.mixing.contributions import Contributions
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
    js, cosine, tv = [], [], []
    for a, b in zip(p, q, strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)  # once per layer, not once per measure
        js.append(js_divergence(a, b).mean(axis=-1))
        cosine.append(cosine_similarity(a, b))
        tv.append(total_variation(a, b).mean(axis=-1))
    return {"js_divergence": np.stack(js), "cosine": np.stack(cosine), "tv_distance": np.stack(tv)}


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


def _layer_overlap(graph_pre: AttentionGraph, graph_ft: AttentionGraph) -> pd.DataFrame:
    """Per layer of the range: the attention edges (residual and sink edges left out) each graph draws, those both
    draw, and their Jaccard index (1 where neither draws any)."""
    first, last = graph_pre.layers
    width = graph_pre.mass.size + graph_ft.mass.size  # above any token index

    def codes(graph: AttentionGraph) -> np.ndarray:
        edges = graph.edge_columns
        attention = np.asarray(edges["kind"], dtype=object) == "attention"
        layer, query, key = (np.asarray(edges[c], dtype=np.int64)[attention] for c in ("layer", "query_idx", "key_idx"))
        return np.unique((layer * width + query) * width + key)

    code_pre, code_ft = codes(graph_pre), codes(graph_ft)
    shared = np.intersect1d(code_pre, code_ft, assume_unique=True)
    counts = [np.bincount(c // (width * width), minlength=last + 1)[first:] for c in (code_pre, code_ft, shared)]
    union = counts[0] + counts[1] - counts[2]
    return pd.DataFrame(
        {
            "layer": np.arange(first, last + 1),
            "edges_pretrained": counts[0],
            "edges_finetuned": counts[1],
            "edges_shared": counts[2],
            "edge_jaccard": np.where(union > 0, counts[2] / np.maximum(union, 1), 1.0),
        }
    )


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
    weights: np.ndarray, graph: AttentionGraph, edges: dict[str, np.ndarray], groups: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per edge of ``edges`` (columns as arrays): the head-mean weight, the max over heads and whether it passes the
    graph's τ (its head aggregation), from ``weights`` ``[layer, head, query, key]`` — whether or not the graph reached
    the edge. At word level (``groups``; or folded, where a group need not be contiguous) each is the largest over
    its tokens' edges, as :func:`attention.graph.word_graph` merges them."""
    layer_of, queries_of, keys_of = edges["layer"], edges["query_idx"], edges["key_idx"]
    mean, strongest = np.full(layer_of.size, np.nan), np.full(layer_of.size, np.nan)
    starts = order = None
    if groups is not None:
        order = np.argsort(np.asarray(groups), kind="stable")  # each group's tokens side by side, for reduceat
        grouped = np.asarray(groups)[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    for layer in np.unique(layer_of).tolist():
        rows = np.flatnonzero(layer_of == layer)
        selected = np.asarray(weights[int(layer) - 1])[list(graph.heads)].astype(np.float64)
        maps = [selected.mean(axis=0), selected.max(axis=0)]
        if starts is not None:
            maps = [
                np.maximum.reduceat(np.maximum.reduceat(m[order][:, order], starts, axis=0), starts, axis=1)
                for m in maps
            ]
        queries, keys = queries_of[rows], keys_of[rows]
        mean[rows], strongest[rows] = maps[0][queries, keys], maps[1][queries, keys]
    passes = (mean if graph.aggregation == "mean" else strongest) >= graph.tau
    return mean, strongest, passes


def _edge_union(pre: Mapping[str, Sequence], ft: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
    """Every edge of either graph's edge columns (key ``layer, query_idx, key_idx, kind``), layer descending then
    query, key and kind ascending, with each model's ``weight``, ``weight_max``, ``heads`` and ``flow`` (NaN where
    its graph has no such edge), as columns: an outer join on integer codes of the keys (a pandas merge of frames
    costs ~10× more)."""
    kinds = sorted(
        set(np.asarray(pre["kind"], dtype=object).tolist()) | set(np.asarray(ft["kind"], dtype=object).tolist())
    )
    top = int(np.concatenate([np.asarray(pre["layer"]), np.asarray(ft["layer"]), [0]]).max())
    width = 1 + int(max(np.asarray(edges[c]).max(initial=0) for edges in (pre, ft) for c in ("query_idx", "key_idx")))

    def codes(edges: Mapping[str, Sequence]) -> np.ndarray:  # sorts as layer descending, query, key, kind ascending
        kind = np.searchsorted(kinds, np.asarray(edges["kind"], dtype=object).astype(str))
        layer, query, key = (np.asarray(edges[c], dtype=np.int64) for c in ("layer", "query_idx", "key_idx"))
        return (((top - layer) * width + query) * width + key) * len(kinds) + kind

    code_pre, code_ft = codes(pre), codes(ft)
    union = np.union1d(code_pre, code_ft)
    rows = []
    for code in (code_pre, code_ft):
        row = np.full(union.size, -1)
        row[np.searchsorted(union, code)] = np.arange(code.size)
        rows.append(row)
    rest, kind = np.divmod(union, len(kinds))
    rest, key = np.divmod(rest, width)
    rest, query = np.divmod(rest, width)
    columns: dict[str, np.ndarray] = {"layer": top - rest, "query_idx": query, "key_idx": key,
                                  "kind": np.asarray(kinds, dtype=object)[kind]}  # fmt: skip
    for name in ("query_token", "key_token"):
        columns[name] = _taken(ft, rows[1], name, None)
        columns[name][rows[0] >= 0] = np.asarray(pre[name], dtype=object)[rows[0][rows[0] >= 0]]
    for frame, row, model in ((pre, rows[0], "pretrained"), (ft, rows[1], "finetuned")):
        for name in ("weight", "weight_max", "heads", "flow"):
            columns[f"{name}_{model}"] = _taken(frame, row, name, np.nan)
    return columns


def _taken(edges: Mapping[str, Sequence], rows: np.ndarray, column: str, missing) -> np.ndarray:
    """``edges[column]`` at ``rows``, ``missing`` where a row is -1 (floats stay floats, the rest objects: a list of
    tuples stays one object per row)."""
    values = edges[column]
    if isinstance(values, list):
        values, listed = np.empty(len(values), dtype=object), values
        values[:] = listed
    values = np.asarray(values)
    dtype = np.float64 if values.dtype.kind == "f" else object
    out = np.full(rows.size, missing, dtype=dtype)
    out[rows >= 0] = values[rows[rows >= 0]]
    return out


def _status_codes(pre: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """Per edge, the code of its :data:`EDGE_STATUSES` entry from two bool arrays: both (``shared``), the
    pre-trained only, else the fine-tuned only."""
    return np.where(pre & ft, 0, np.where(pre, 1, 2)).astype(np.int8)


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
    if graph_pre.layers != graph_ft.layers or graph_pre.mass.shape != graph_ft.mass.shape:
        raise ValueError("compare graphs built over the same layer range and tokens")
    edges = _edge_union(graph_pre.edge_columns, graph_ft.edge_columns)
    in_pre = edges["in_graph_pretrained"] = ~np.isnan(edges["flow_pretrained"])
    in_ft = edges["in_graph_finetuned"] = ~np.isnan(edges["flow_finetuned"])
    status = _status_codes(in_pre, in_ft)  # codes of EDGE_STATUSES
    attention = edges["kind"] == "attention"
    if weights is not None:
        passes = []
        for model, graph, model_weights in zip(MODELS, (graph_pre, graph_ft), weights, strict=True):
            mean, strongest, passing = _strengths(model_weights, graph, edges, groups)
            fill = np.isnan(edges[f"weight_{model}"]) & attention
            edges[f"weight_{model}"][fill] = mean[fill]
            edges[f"weight_max_{model}"][fill] = strongest[fill]
            passes.append(passing)
        status = np.where(attention, _status_codes(*passes), status)
    status[~attention] = 0  # residual and sink edges: "shared"
    edges["status"] = pd.Categorical.from_codes(status, categories=EDGE_STATUSES)
    edges = pd.DataFrame(edges)

    nodes = {c: graph_pre.node_columns[c] for c in ("depth", "token_idx", "token", "sink")}
    for graph, model in zip((graph_pre, graph_ft), MODELS, strict=True):
        for column in ("mass", "absorbed", "reached"):
            nodes[f"{column}_{model}"] = graph.node_columns[column]
    nodes["mass_change"] = nodes["mass_finetuned"] - nodes["mass_pretrained"]
    nodes = pd.DataFrame(nodes)

    layers = _layer_overlap(graph_pre, graph_ft)
    return GraphComparison(edges=edges, nodes=nodes, layers=layers)


def graph_for(run: AttentionRun | Contributions, *, sinks: bool = True, **options) -> AttentionGraph:
    """:func:`attention_graph` of a run's own token-level weights, tracing from its classification token unless
    ``sources`` is given; with ``sinks`` the run's special tokens absorb the attention they receive. Over
    :class:`~attention.mixing.Contributions` the graph is drawn on the contribution maps (one per layer: ``heads``
    must be None); a measure that already holds the residual keeps each token's own share as its residual edge
    (``residual_in_weights``, :func:`attention.graph.pruned_maps`) and ``alpha`` is not used."""
    if isinstance(run, Contributions):
        if options.get("heads") is not None:
            raise ValueError(f"heads select attention heads; the {run.measure} maps are one per layer")
        options["residual_in_weights"] = run.includes_residual
        run = run.as_run()
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
    pre, ft = pretrained.reshape(-1), finetuned.reshape(-1)
    keep = ~(np.isnan(pre) & np.isnan(ft))  # chosen before the frame is built: filtering a frame costs more
    layer, token, pre, ft = layer[keep], token[keep], pre[keep], ft[keep]
    return pd.DataFrame(
        {
            "layer": layer + 1,
            "token_idx": token,
            "token": np.asarray(tokens, dtype=object)[token],
            "pretrained": pre,
            "finetuned": ft,
            "difference": ft - pre,
        }
    )


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
