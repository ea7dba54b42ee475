"""Exact attention flow (Abnar & Zuidema, 2020), fast enough for interactive use.

The flow network has ``(L+1)·n`` nodes (depth 0 = input tokens). Token ``a`` at depth ``m`` has an edge to token
``b`` at depth ``m-1`` with capacity ``Â_m[a, b]`` (head-averaged, residual-augmented, see
:func:`attention.rollouts.residual_maps`). The flow of token ``u`` at depth ``l`` to input token ``v`` is the
max-flow value from ``(l, u)`` to ``(0, v)``, each pair solved on its own; each row is then divided by its sum.

Exact reductions make it fast (see ``docs/method.md``):

* only depths below ``l`` are reachable from ``(l, u)``, and input tokens other than ``v`` are dead ends, so the
  network is ``source -> depth l-1 -> ... -> depth 1 -> sink`` with sink capacities ``Â_1[:, v]``;
* ``l = 1`` is a single edge: ``Â_1[u, v]``;
* ``l = 2`` is ``n`` disjoint two-edge paths: ``Σ_k min(Â_2[u, k], Â_1[k, v])``;
* deeper sources run Dinic's algorithm, compiled with numba, on dense per-layer arrays (no graph objects).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from attention.rollouts import residual_maps

# Residual capacities at or below this are treated as zero (guards against float dust; error <= EPS per cut edge).
EPS = 1e-13


# Node addressing in the kernels: (m, a) is token a at depth m. The source is (depth, u); the sink is (0, 0).
# Arc j out of (m, a): j < n goes down to (m-1, j) (for m == 1 only j == 0 exists, to the sink);
# j >= n goes back up to (m+1, j-n) along an edge that carries flow. ``flow[m-1, a, b]`` is the flow on
# (m, a) -> (m-1, b) for 2 <= m <= depth-1; ``top[b]`` leaves the source, ``bottom[a]`` enters the sink.


@numba.njit(cache=True, inline="always")
def _residual(m, a, j, caps, depth, u, v, n, top, flow, bottom):
    """Residual capacity of arc j out of (m, a); -1.0 when the arc does not exist."""
    if m == depth:
        return caps[depth - 1, u, j] - top[j] if j < n else -1.0
    if j < n:
        if m == 1:
            return caps[0, a, v] - bottom[a] if j == 0 else -1.0
        return caps[m - 1, a, j] - flow[m - 1, a, j]
    if m + 1 >= depth:
        return -1.0  # back into the source: never useful
    return flow[m, j - n, a]


@numba.njit(cache=True, inline="always")
def _push(m, a, j, amount, depth, n, top, flow, bottom):
    if m == depth:
        top[j] += amount
    elif j < n:
        if m == 1:
            bottom[a] += amount
        else:
            flow[m - 1, a, j] += amount
    else:
        flow[m, j - n, a] -= amount


@numba.njit(cache=True)
def _sink_distances(caps, depth, u, v, top, flow, bottom, dist, queue_m, queue_a):
    """Breadth-first distances to the sink in the residual network, into ``dist[m, a]`` (-1 = cannot reach).
    Returns True when the source can still reach the sink (stops as soon as it is labelled)."""
    n = caps.shape[1]
    dist[:, :] = -1
    dist[0, 0] = 0
    tail = 0
    for k in range(n):
        if caps[0, k, v] - bottom[k] > EPS:
            dist[1, k] = 1
            queue_m[tail] = 1
            queue_a[tail] = k
            tail += 1
    head = 0
    while head < tail:
        m = queue_m[head]
        a = queue_a[head]
        head += 1
        d = dist[m, a] + 1
        if m == depth - 1:
            if caps[depth - 1, u, a] - top[a] > EPS:
                dist[depth, u] = d
                return True
        else:
            for c in range(n):  # (m+1, c) -> (m, a) with spare capacity
                if dist[m + 1, c] < 0 and caps[m, c, a] - flow[m, c, a] > EPS:
                    dist[m + 1, c] = d
                    queue_m[tail] = m + 1
                    queue_a[tail] = c
                    tail += 1
        if m >= 2:
            for b in range(n):  # (m-1, b) -> (m, a) by cancelling flow on (m, a) -> (m-1, b)
                if dist[m - 1, b] < 0 and flow[m - 1, a, b] > EPS:
                    dist[m - 1, b] = d
                    queue_m[tail] = m - 1
                    queue_a[tail] = b
                    tail += 1
    return False


@numba.njit(cache=True)
def _blocking_flow(caps, depth, u, v, top, flow, bottom, dist, cursor, path_m, path_a, path_j, forward_only):
    """Augment along admissible arcs (``dist`` drops by one) until none is left; returns the amount pushed."""
    n = caps.shape[1]
    arcs = n if forward_only else 2 * n
    cursor[:, :] = 0
    pushed = 0.0
    top_i = 0
    m, a = depth, u
    path_m[0] = m
    path_a[0] = a
    while True:
        if m == 0:  # reached the sink: push the bottleneck, retreat to the first saturated arc
            bottleneck = 1e300
            for i in range(top_i):
                r = _residual(path_m[i], path_a[i], path_j[i], caps, depth, u, v, n, top, flow, bottom)
                bottleneck = min(bottleneck, r)
            first_saturated = top_i
            for i in range(top_i):
                _push(path_m[i], path_a[i], path_j[i], bottleneck, depth, n, top, flow, bottom)
                if first_saturated == top_i:
                    r = _residual(path_m[i], path_a[i], path_j[i], caps, depth, u, v, n, top, flow, bottom)
                    if r <= EPS:
                        first_saturated = i
            pushed += bottleneck
            top_i = first_saturated
            m, a = path_m[top_i], path_a[top_i]
            continue
        limit = n if m + 1 >= depth else arcs  # no arc back up into the source
        want = dist[m, a] - 1
        advanced = False
        while cursor[m, a] < limit:
            j = cursor[m, a]
            if m == 1 and 0 < j < n:  # depth 1 has one downward arc, to the sink
                cursor[m, a] = n
                continue
            if j < n:
                nm, na = (0, 0) if m == 1 else (m - 1, j)
            else:
                nm, na = m + 1, j - n
            if (
                nm <= depth
                and dist[nm, na] == want
                and _residual(m, a, j, caps, depth, u, v, n, top, flow, bottom) > EPS
            ):
                path_j[top_i] = j
                top_i += 1
                path_m[top_i] = nm
                path_a[top_i] = na
                m, a = nm, na
                advanced = True
                break
            cursor[m, a] += 1
        if advanced:
            continue
        if top_i == 0:
            return pushed
        dist[m, a] = -2  # dead end for the rest of this phase
        top_i -= 1
        m, a = path_m[top_i], path_a[top_i]
        cursor[m, a] += 1


@numba.njit(cache=True, inline="always")
def _leave_arc(m, a, j, flow, current, touched, count):
    """Move past arc ``j`` of (m, a): its flow (``current[m, a]``) goes into the dense ``flow`` array, and the entry
    into ``touched`` so it can be zeroed after the pair. Returns the new number of touched entries (``-1`` once the
    list has overflowed: then the whole array is zeroed after the pair)."""
    if current[m, a] > 0.0:
        flow[m - 1, a, j] = current[m, a]
        current[m, a] = 0.0
        if 0 <= count < touched.shape[0]:
            touched[count] = ((m - 1) * flow.shape[1] + a) * flow.shape[2] + j
            count += 1
        else:
            count = -1
    return count


@numba.njit(cache=True, inline="always")
def _next_alive(alive, m, j):
    """The first live token at depth m from token j on (``n`` when none): ``alive[m]`` is a disjoint-set forest in
    which a dead token points past itself (path halving keeps skips over dead runs near constant time)."""
    while alive[m, j] != j:
        alive[m, j] = alive[m, alive[m, j]]
        j = alive[m, j]
    return j


@numba.njit(cache=True, inline="always")
def _augment(caps, depth, u, v, top, bottom, path_a, current):
    """Push the bottleneck along the path ``path_a[0..depth-1]`` (token at depth ``depth - i``) of current arcs to
    the sink. Returns (amount, index of the first path node whose arc is now full)."""
    bottleneck = caps[depth - 1, u, path_a[1]] - top[path_a[1]]
    for k in range(1, depth - 1):
        residual = caps[depth - k - 1, path_a[k], path_a[k + 1]] - current[depth - k, path_a[k]]
        bottleneck = min(bottleneck, residual)
    last = path_a[depth - 1]
    bottleneck = min(bottleneck, caps[0, last, v] - bottom[last])
    saturated = depth
    top[path_a[1]] += bottleneck
    if caps[depth - 1, u, path_a[1]] - top[path_a[1]] <= EPS:
        saturated = 0
    for k in range(1, depth - 1):
        mm = depth - k
        current[mm, path_a[k]] += bottleneck
        if saturated == depth and caps[mm - 1, path_a[k], path_a[k + 1]] - current[mm, path_a[k]] <= EPS:
            saturated = k
    bottom[last] += bottleneck
    return bottleneck, (depth - 1 if saturated == depth else saturated)


@numba.njit(cache=True)
def _first_phase(caps, depth, u, v, bound, top, flow, bottom, alive, cursor, path_a, current, touched):
    """Blocking flow on the downward edges only (the first Dinic phase, when every node at depth m is exactly
    m arcs from the sink). ``path_a[i]`` is the token at depth ``depth - i``.

    A depth-first search with current arcs pushes flow only along each node's current arc, so arcs beyond it carry
    none and arcs before it are never read again in the phase: the flow on an interior node's current arc is kept in
    ``current[m, a]`` and written to the dense ``flow`` array (which is all zeros on entry) only when the search moves
    past it. Nothing proportional to the network's size is zeroed per pair. Dead ends are skipped through ``alive``
    (:func:`_next_alive`), so a row is not rescanned over tokens already known to be dead. Stops once ``bound`` (the
    smaller of the source's and the sink's total capacity) is pushed. Returns (value, touched entries)."""
    n = caps.shape[1]
    pushed = 0.0
    count = 0
    i = 0
    path_a[0] = u
    while True:
        m = depth - i
        if m == 0:  # at the sink: push along the path, go back to the first arc it filled
            bottleneck, i = _augment(caps, depth, u, v, top, bottom, path_a, current)
            pushed += bottleneck
            if pushed >= bound:  # every sink (or source) arc is full: nothing more can be pushed
                break
            continue
        a = path_a[i]
        advanced = False
        if m == depth:
            j = _next_alive(alive, m - 1, cursor[m, 0])
            while j < n:
                if caps[m - 1, u, j] - top[j] > EPS:
                    advanced = True
                    break
                j = _next_alive(alive, m - 1, j + 1)
            cursor[m, 0] = j
        elif m == 1:
            if cursor[1, a] == 0 and caps[0, a, v] - bottom[a] > EPS:
                j = 0
                advanced = True
        else:
            row_caps = caps[m - 1, a]
            j = cursor[m, a]
            if j < n and alive[m - 1, j] == j and row_caps[j] - current[m, a] > EPS:
                advanced = True
            elif j < n:
                count = _leave_arc(m, a, j, flow, current, touched, count)
                j = _next_alive(alive, m - 1, j + 1)
                while j < n:
                    if row_caps[j] > EPS:
                        advanced = True
                        break
                    j = _next_alive(alive, m - 1, j + 1)
            cursor[m, a] = j
        if advanced:
            i += 1
            path_a[i] = j
            continue
        if i == 0:
            break
        alive[m, a] = a + 1  # dead: searches skip it
        i -= 1
        if i == 0:
            cursor[depth, 0] += 1
        else:
            parent = path_a[i]
            count = _leave_arc(depth - i, parent, cursor[depth - i, parent], flow, current, touched, count)
            cursor[depth - i, parent] += 1
    return pushed, count


@numba.njit(cache=True)
def _max_flow(
    caps,
    depth,
    u,
    v,
    top,
    flow,
    bottom,
    dist,
    cursor,
    queue_m,
    queue_a,
    path_m,
    path_a,
    path_j,
    alive,
    current,
    touched,
):
    """Max-flow value from (depth, u) to (0, v) on the pruned layered network (Dinic); ``depth >= 3``.

    ``flow`` is all zeros on entry and on return."""
    n = caps.shape[1]
    top[:] = 0.0
    bottom[:] = 0.0
    source_bound = 0.0
    sink_bound = 0.0
    for k in range(n):
        source_bound += caps[depth - 1, u, k]
        sink_bound += caps[0, k, v]
    bound = min(source_bound, sink_bound) - 1e-12
    for m in range(depth + 1):
        for j in range(n + 1):
            alive[m, j] = j
    cursor[: depth + 1] = 0
    current[: depth + 1] = 0.0
    value, count = _first_phase(caps, depth, u, v, bound, top, flow, bottom, alive, cursor, path_a, current, touched)
    if value < bound:
        for m in range(2, depth):  # later phases read whole rows: the current arcs' flows go into the dense array
            for a in range(n):
                if cursor[m, a] < n:
                    flow[m - 1, a, cursor[m, a]] = current[m, a]
        while value < bound:
            if not _sink_distances(caps, depth, u, v, top, flow, bottom, dist, queue_m, queue_a):
                break
            value += _blocking_flow(caps, depth, u, v, top, flow, bottom, dist, cursor, path_m, path_a, path_j, False)
        count = -1  # later phases may put flow anywhere
    if count < 0:
        flow[:depth] = 0.0
    else:
        for t in range(count):
            flow.reshape(-1)[touched[t]] = 0.0
    return value


@numba.njit(cache=True)
def _deep_rows(caps, depth, sources, out, touched_size):
    """``out[i, v]`` = max-flow value from (depth, sources[i]) to (0, v) for every v; ``depth >= 3``.
    ``touched_size`` bounds the list of flow entries zeroed after each pair (past it the array is zeroed whole)."""
    n = caps.shape[1]
    nodes = depth * n + 2
    top = np.zeros(n)
    bottom = np.zeros(n)
    flow = np.zeros((depth, n, n))
    dist = np.empty((depth + 1, n), dtype=np.int64)
    cursor = np.empty((depth + 1, n), dtype=np.int64)
    queue_m = np.empty(nodes, dtype=np.int64)
    queue_a = np.empty(nodes, dtype=np.int64)
    path_m = np.empty(nodes, dtype=np.int64)
    path_a = np.empty(nodes, dtype=np.int64)
    path_j = np.empty(nodes, dtype=np.int64)
    alive = np.empty((depth + 1, n + 1), dtype=np.int64)
    current = np.empty((depth + 1, n))
    touched = np.empty(touched_size, dtype=np.int64)
    for i in range(sources.shape[0]):
        for v in range(n):
            out[i, v] = _max_flow(
                caps, depth, sources[i], v, top, flow, bottom, dist, cursor, queue_m, queue_a, path_m, path_a, path_j,
                alive, current, touched,
            )  # fmt: skip


def max_flow_values(maps: np.ndarray, depth: int, sources: Sequence[int]) -> np.ndarray:
    """Raw max-flow values from tokens ``sources`` at ``depth`` to every input token.

    Args:
        maps: ``[layer, query, key]`` capacities (usually :func:`residual_maps`).
        depth: 1-based layer of the source tokens.
        sources: token indices at that depth.

    Returns:
        ``[len(sources), key]`` float64.
    """
    maps = np.ascontiguousarray(maps, dtype=np.float64)
    idx = np.asarray(list(sources), dtype=np.int64)
    if depth == 1:
        return maps[0][idx].copy()
    if depth == 2:
        # Disjoint paths u -> k -> v: each carries min of its two capacities.
        return np.minimum(maps[1][idx][:, :, None], maps[0][None, :, :]).sum(axis=1)
    out = np.empty((idx.size, maps.shape[-1]))
    _deep_rows(maps[:depth], depth, idx, out, 8 * (depth * maps.shape[-1] + 2))
    return out


def attention_flow(
    weights: np.ndarray,
    *,
    sources: Sequence[int] | None = None,
    layers: tuple[int, int] | None = None,
    residual: bool = True,
    heads: Sequence[int] | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Attention flow of ``sources`` (all tokens by default) at each layer in ``layers`` to the input tokens.

    Args:
        weights: ``[layer, head, query, key]`` attention.
        sources: query-token indices to compute; None for all.
        layers: 1-based inclusive ``(first, last)``; None for all layers.
        residual: add the residual connection (``Â = rownorm(Ā + I)``) as the paper does.
        heads: heads to average over; None for all.
        normalize: divide each row by its sum (the paper's definition); False keeps raw max-flow values.

    Returns:
        ``[layer, query, key]`` float64; rows not requested are NaN.

    >>> a = np.full((3, 1, 2, 2), 0.5)  # 3 layers, 1 head, uniform attention over 2 tokens
    >>> attention_flow(a, sources=[0], layers=(3, 3))[2, 0].tolist()
    [0.5, 0.5]
    """
    maps = residual_maps(weights, residual=residual, heads=heads)
    num_layers, n, _ = maps.shape
    first, last = layers if layers is not None else (1, num_layers)
    if not 1 <= first <= last <= num_layers:
        raise ValueError(f"layers must satisfy 1 <= first <= last <= {num_layers}, got {(first, last)}")
    rows = np.arange(n) if sources is None else np.unique(np.asarray(list(sources), dtype=np.int64))
    if rows.size == 0 or rows[0] < 0 or rows[-1] >= n:
        raise ValueError(f"sources must be token indices in 0..{n - 1}, got {sources}")
    out = np.full((num_layers, n, n), np.nan)
    for depth in range(first, last + 1):
        values = max_flow_values(maps, depth, rows)
        if normalize:
            totals = values.sum(axis=1, keepdims=True)
            values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
        out[depth - 1, rows] = values
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the max-flow kernel so the first real call has no pause."""
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(4), size=(3, 1, 4))
    attention_flow(weights, sources=[0], layers=(3, 3))
