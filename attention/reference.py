"""Slow, obviously-correct reference computations used by the tests and benchmarks (needs ``networkx``).

They follow the published code (samiraabnar/attention_flow) literally: a networkx graph over all ``(L+1)·n``
nodes and one Edmonds-Karp ``maximum_flow_value`` call per (output, input) pair.
"""

from __future__ import annotations

# Lazy imports (networkx): only for the reference max-flow, a test and benchmark oracle.
import numpy as np


def networkx_flow_graph(maps: np.ndarray):
    """DiGraph with nodes ``(depth, token)``, depth 0..L, and edges ``(m, a) -> (m-1, b)`` of capacity
    ``maps[m-1][a, b]``. ``maps`` is ``[layer, query, key]``."""
    import networkx as nx

    layers, n, _ = maps.shape
    graph = nx.DiGraph()
    graph.add_nodes_from((m, a) for m in range(layers + 1) for a in range(n))
    for m in range(1, layers + 1):
        for a in range(n):
            for b in range(n):
                graph.add_edge((m, a), (m - 1, b), capacity=float(maps[m - 1][a, b]))
    return graph


def networkx_flow_value(graph, depth: int, source: int, sink: int) -> float:
    """Max-flow value from ``(depth, source)`` to ``(0, sink)`` with networkx's Edmonds-Karp."""
    import networkx as nx

    return float(nx.maximum_flow_value(graph, (depth, source), (0, sink), flow_func=nx.algorithms.flow.edmonds_karp))


def networkx_attention_flow(maps: np.ndarray, pairs=None) -> dict[tuple[int, int, int], float]:
    """Raw flow values ``{(depth, source, sink): value}`` for ``pairs`` (default: every pair)."""
    layers, n, _ = maps.shape
    graph = networkx_flow_graph(maps)
    if pairs is None:
        pairs = [(d, u, v) for d in range(1, layers + 1) for u in range(n) for v in range(n)]
    return {(d, u, v): networkx_flow_value(graph, d, u, v) for d, u, v in pairs}


def joint_attention(maps: np.ndarray) -> np.ndarray:
    """Rollout exactly as the reference ``compute_joint_attention`` does it, from ``[layer, query, key]``
    head-averaged attention (residual already applied or not)."""
    joint = np.zeros(maps.shape)
    joint[0] = maps[0]
    for i in range(1, maps.shape[0]):
        joint[i] = maps[i].dot(joint[i - 1])
    return joint
