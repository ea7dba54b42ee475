"""Per-head attention statistics of one run and distances between attention maps (numpy; torch for one log)."""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
import numpy as np

# Uniform mix added before JS divergence so zeros are safe (as Clark et al., 2019 smooth their distributions).
SMOOTHING = 1e-3


def smooth(rows: np.ndarray, amount: float = SMOOTHING) -> np.ndarray:
    """``(1 - amount) · rows + amount / n``: still rows summing to 1, no zeros. ``rows`` is ``[..., n]``."""
    return (1.0 - amount) * rows + amount / rows.shape[-1]


_LN2 = np.log(2.0)


def entropy_bits(rows: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each row, ``[..., n] -> [...]`` (float64; :func:`entropy_bits_of`)."""
    import torch

    return entropy_bits_of(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64))).numpy()


def entropy_bits_of(values, dim: int | tuple[int, ...] = -1):
    """``-Σ p log₂ p`` of a float torch tensor over ``dim``, in its own dtype: a zero times the finite log of the
    dtype's smallest normal number is 0 (no NaN). torch's vectorised ``log`` is about twice numpy's on CPUs without
    AVX-512 and three times ``xlogy``/``special.entr``; natural logs, converted to bits once per sum."""
    import torch

    tiny = torch.finfo(values.dtype).tiny
    return values.clamp_min(tiny).log_().mul_(values).sum(dim=dim) / -_LN2


def js_divergence(p: np.ndarray, q: np.ndarray, *, smoothing: float = SMOOTHING) -> np.ndarray:
    """Jensen-Shannon divergence in bits (0..1) between matching rows, ``[..., n] x [..., n] -> [...]``.

    >>> round(float(js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0]), smoothing=0.0)), 6)
    1.0
    """
    p = smooth(np.asarray(p, dtype=np.float64), smoothing)
    q = smooth(np.asarray(q, dtype=np.float64), smoothing)
    m = 0.5 * (p + q)
    return entropy_bits(m) - 0.5 * (entropy_bits(p) + entropy_bits(q))


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance ``½ Σ |p - q|`` between matching rows, ``[..., n] -> [...]``."""
    return 0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum(axis=-1)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the flattened last two axes, ``[..., n, n] x [..., n, n] -> [...]``."""
    a = np.asarray(a, dtype=np.float64).reshape(*a.shape[:-2], -1)
    b = np.asarray(b, dtype=np.float64).reshape(*b.shape[:-2], -1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.divide((a * b).sum(axis=-1), norms, out=np.zeros(norms.shape), where=norms > 0)


def attention_shares(weights: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean attention (over query tokens) that goes to the key tokens in ``targets``.

    Args:
        weights: ``[layer, head, query, key]``.
        targets: ``[key]`` bool mask.

    Returns:
        ``[layer, head]`` float64 in [0, 1].
    """
    return weights[..., np.asarray(targets, dtype=bool)].sum(axis=-1, dtype=np.float64).mean(axis=-1)


def diagonal_share(weights: np.ndarray, offset: int) -> np.ndarray:
    """Mean attention to the token ``offset`` positions away (0 = itself, -1 = previous, +1 = next).

    Averaged over all query tokens (a query without such a neighbour contributes 0). ``[layer, head, q, k] ->
    [layer, head]``."""
    n = weights.shape[-1]
    return np.diagonal(weights, offset=offset, axis1=-2, axis2=-1).sum(axis=-1, dtype=np.float64) / n


def hellinger_distances(maps: np.ndarray) -> np.ndarray:
    """Pairwise distance between attention maps: root-mean over query rows of the squared Hellinger distance.

    ``d(P, Q) = sqrt(1 - mean_rows Σ_k sqrt(p_k q_k))``, a metric on row-stochastic maps, computed for all pairs
    with one matrix product. ``[m, n, n] -> [m, m]``.
    """
    maps = np.asarray(maps, dtype=np.float32)  # float32 halves the [m, n²] temporaries; affinities keep ~1e-7
    roots = maps / maps.sum(axis=-1, keepdims=True)
    roots = np.sqrt(roots, out=roots).reshape(maps.shape[0], -1)  # in place: one [m, n²] temporary, not two
    affinity = (roots @ roots.T).astype(np.float64) / maps.shape[-2]
    distances = np.sqrt(np.clip(1.0 - affinity, 0.0, None))
    np.fill_diagonal(distances, 0.0)
    return distances


def js_distances(maps: np.ndarray, *, smoothing: float = SMOOTHING) -> np.ndarray:
    """Pairwise Jensen-Shannon distance ``sqrt(mean_rows JS)`` between attention maps, ``[m, n, n] -> [m, m]``.

    Exact but O(m² n²) logarithms: seconds for 288 heads at 64 tokens (prefer :func:`hellinger_distances`)."""
    smoothed = smooth(np.asarray(maps, dtype=np.float64), smoothing)
    own = -entropy_bits(smoothed).mean(axis=-1)  # mean Σ p log p per map
    count = smoothed.shape[0]
    out = np.zeros((count, count))
    for i in range(count):
        mixed = 0.5 * (smoothed[i][None] + smoothed[i + 1 :])
        cross = -entropy_bits(mixed).mean(axis=-1)
        out[i, i + 1 :] = np.sqrt(np.clip(0.5 * (own[i] + own[i + 1 :]) - cross, 0.0, None))
    return out + out.T


def classical_mds(distances: np.ndarray, dims: int = 2) -> np.ndarray:
    """Classical (Torgerson) metric multidimensional scaling; deterministic up to our sign convention
    (the largest-magnitude coordinate of each axis is positive). ``[m, m] -> [m, dims]``."""
    count = distances.shape[0]
    centering = np.eye(count) - 1.0 / count
    gram = -0.5 * centering @ (distances**2) @ centering
    values, vectors = np.linalg.eigh(gram)  # ascending; the top ``dims`` pairs are the last columns
    values, vectors = values[count - dims :], vectors[:, count - dims :]
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    coords = vectors * np.sqrt(values)
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(dims)])
    return coords * np.where(signs == 0, 1.0, signs)
