"""The shared analysis cache: both models' runs on an input, in Redis, in front of each worker's own cache.

A team server's requests land on any gunicorn worker (and, behind a proxy, any machine); without a shared cache
each worker would run the two forward passes again for a user's follow-up requests. What is stored is exactly
the :class:`attention.PairRuns` of an input — float32 weights ``[layer, head, query, key]`` of both models plus
their token facts — so a hit is bit-identical to a recomputation (no lossy float16: a view must not change with
the worker that drew it). What is derived from the runs alone (graphs, flows, rollout) is cheap next to the forward
passes and stays in the worker's cache. ``attention-flows bench team`` measures the sizes and the hit ratio.

Besides the runs it holds the two other per-input results that cost forward or backward passes: each model's
class relevance (gradients) and the faithfulness check's blank-out part (one forward pass per word), so a follow-up
request on another worker recomputes none of them. The cache is bounded three ways: entries above ``entry_mb`` are
not stored, each entry expires after ``ttl_seconds``, and the Redis server's own ``maxmemory`` with
``allkeys-lru`` bounds the total (see docs/deploy.md). Redis unreachable: requests fall back to the worker's own
cache, the state says so in ``/healthz`` and ``/metrics``, and the connection is retried every
:data:`RETRY_SECONDS`; nothing crashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from app.service.memo import fresh_locks_after_fork
from app.team.config import CacheSection
from attention import AttentionRun, ClassRelevance, PairRuns

log = logging.getLogger("attention_flows.app")
RETRY_SECONDS = 5.0
TIMEOUT_SECONDS = 0.5  # a Redis that does not answer in this time counts as unreachable
FORMAT = b"AFR3"  # magic + version of the encoding below (in every key: old entries are never read)
WAIT_FOR_OTHER_SECONDS = 20.0  # how long a worker waits for another one computing the same entry
POLL_SECONDS = 0.02
CLAIM_SECONDS = 60  # a claim expires by itself if its holder dies


def encode_arrays(header: object, arrays: dict[str, np.ndarray]) -> bytes:
    """``header`` (anything JSON can hold) and named arrays as bytes: magic, a JSON part (the header and each
    array's dtype and shape), then the arrays' raw bytes in C order. No pickle: what comes back from Redis is only
    ever parsed as data, and floats come back bit-identical."""
    layout = [[name, array.dtype.str, list(array.shape)] for name, array in arrays.items()]
    head = json.dumps({"header": header, "arrays": layout}, separators=(",", ":")).encode()
    blobs = b"".join(np.ascontiguousarray(array).tobytes() for array in arrays.values())
    return FORMAT + struct.pack("<I", len(head)) + head + blobs


def decode_arrays(data: bytes) -> tuple[object, dict[str, np.ndarray]]:
    """The inverse of :func:`encode_arrays` (arrays read-only, sharing ``data``); ValueError for anything else."""
    if data[:4] != FORMAT:
        raise ValueError("not data this cache wrote")
    (length,) = struct.unpack("<I", data[4:8])
    meta = json.loads(data[8 : 8 + length])
    offset, arrays = 8 + length, {}
    for name, dtype, shape in meta["arrays"]:
        count = int(np.prod(shape))
        array = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
        offset += array.nbytes
        arrays[name] = array
    if offset != len(data):
        raise ValueError("trailing bytes after the arrays")
    return meta["header"], arrays


def _facts(record: object, skip: tuple[str, ...]) -> dict:
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in skip}


def _tuples(facts: dict) -> dict:
    return {name: tuple(value) if isinstance(value, list) else value for name, value in facts.items()}


def encode_runs(runs: PairRuns) -> bytes:
    """Both models' runs: their facts and float32 weights ``[layer, head, query, key]``."""
    header = [_facts(run, ("weights",)) for run in (runs.pretrained, runs.finetuned)]
    return encode_arrays(header, {"pretrained": runs.pretrained.weights, "finetuned": runs.finetuned.weights})


def decode_runs(data: bytes) -> PairRuns:
    header, arrays = decode_arrays(data)
    return PairRuns(*(AttentionRun(weights=arrays[role], **_tuples(facts))
                      for facts, role in zip(header, ("pretrained", "finetuned"), strict=True)))  # fmt: skip


def encode_relevance(explained: ClassRelevance) -> bytes:
    """One model's class relevance: its facts, ``scores [layer, token]`` and ``input_x_gradient [token]``."""
    arrays = {"scores": explained.scores, "input_x_gradient": explained.input_x_gradient}
    return encode_arrays(_facts(explained, tuple(arrays)), arrays)


def decode_relevance(data: bytes) -> ClassRelevance:
    header, arrays = decode_arrays(data)
    return ClassRelevance(**_tuples(header), **arrays)


def encode_frames(frames: dict[str, pd.DataFrame]) -> bytes:
    """Named DataFrames with a RangeIndex: numeric and bool columns as raw arrays, categorical ones as codes plus
    their categories, strings (and tuples of numbers) in the JSON header; dtypes are kept so a decoded frame equals
    the original exactly (``pandas.testing.assert_frame_equal``)."""
    header: dict = {}
    arrays: dict[str, np.ndarray] = {}
    for name, frame in frames.items():
        if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
            raise ValueError(f"frame {name} has no plain RangeIndex")
        columns = []
        for number, column in enumerate(frame.columns):
            series, key = frame[column], f"{name}/{number}"
            if isinstance(series.dtype, pd.CategoricalDtype):
                categories = series.dtype.categories
                columns.append([column, "category", categories.tolist(), str(categories.dtype), series.dtype.ordered])
                arrays[key] = series.cat.codes.to_numpy()
            elif series.dtype == object and all(isinstance(v, tuple) or _is_nan(v) for v in series):
                columns.append([column, "tuples", [list(v) if isinstance(v, tuple) else None for v in series]])
            elif series.dtype == object:
                columns.append([column, "object", series.tolist()])
            elif pd.api.types.is_string_dtype(series.dtype):
                columns.append([column, "string", series.tolist(), str(series.dtype)])
            else:
                columns.append([column, "array"])
                arrays[key] = series.to_numpy()
        header[name] = {"rows": len(frame), "columns": columns}
    return encode_arrays(header, arrays)


def _is_nan(value) -> bool:
    return isinstance(value, float) and value != value


def decode_frames(data: bytes) -> dict[str, pd.DataFrame]:
    """The inverse of :func:`encode_frames`."""
    header, arrays = decode_arrays(data)
    frames = {}
    for name, meta in header.items():
        columns = {}
        for number, (column, kind, *rest) in enumerate(meta["columns"]):
            key = f"{name}/{number}"
            if kind == "category":
                categories, categories_dtype, ordered = rest
                dtype = pd.CategoricalDtype(pd.Index(categories, dtype=categories_dtype), ordered=ordered)
                columns[column] = pd.Categorical.from_codes(arrays[key], dtype=dtype)
            elif kind == "tuples":  # tuples of numbers, NaN where a row has none
                columns[column] = pd.Series([np.nan if v is None else tuple(v) for v in rest[0]], dtype=object)
            elif kind == "object":
                columns[column] = pd.Series(rest[0], dtype=object)
            elif kind == "string":
                columns[column] = pd.Series(rest[0], dtype=rest[1])
            else:
                columns[column] = arrays[key]
        frames[name] = pd.DataFrame(columns, index=pd.RangeIndex(meta["rows"]))
    return frames


def shared_key(kind: str, fingerprint: str, text: str, text_pair: str | None, *parts: object) -> str:
    """The Redis key of ``kind`` (``runs``, ``relevance``, ``faithfulness``) for an input and ``parts`` (model,
    target…) of a pair (``fingerprint``: :func:`pair_fingerprint`)."""
    digest = hashlib.sha256(json.dumps([text, text_pair, *map(str, parts)]).encode()).hexdigest()[:32]
    return f"attention-flows:{FORMAT.decode()}:{kind}:{fingerprint}:{digest}"


def pair_fingerprint(name: str, model_dirs: tuple[str, ...], version: str) -> str:
    """What makes two workers' runs interchangeable: the pair's name, its model folders with their weights' sizes
    and modification times, and the code version (a re-prepared twin or a new release never reads old entries)."""
    parts = [name, version]
    for folder in model_dirs:
        weights = sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin"))
        parts += [str(folder), *(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class _Memo:
    """What both shared caches offer the service: ``get`` / ``put`` of bytes and :meth:`memo` on top."""

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def put(self, key: str, value: bytes) -> bool:
        raise NotImplementedError

    def claim(self, key: str) -> bool:
        """Try to become the one process computing ``key`` (True); False when another one already is."""
        return True

    def release(self, key: str) -> None:
        """Give up the claim on ``key`` (its value is stored, or computing it failed)."""

    def memo(self, key: str, compute, encode, decode):
        """``decode(stored)`` when the cache has ``key``, else ``compute()``, stored as ``encode(value)``.

        The views of one input are requested in parallel and land on different workers: the first to miss claims
        the key and computes; the others wait for its value (up to :data:`WAIT_FOR_OTHER_SECONDS`, then compute
        themselves), so the forward and backward passes of an input run once, not once per worker. Damaged or
        foreign data is recomputed and overwritten."""
        deadline = time.monotonic() + WAIT_FOR_OTHER_SECONDS
        while True:
            stored = self.get(key)
            if stored is not None:
                try:
                    return decode(stored)
                except (ValueError, TypeError, KeyError):
                    log.warning("shared cache entry %s could not be read: recomputed", key)
                    break
            if self.claim(key) or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        try:
            value = compute()
            self.put(key, encode(value))
        finally:
            self.release(key)
        return value


class DiskCache(_Memo):
    """The one-machine shared cache (no Redis configured): a byte-bounded diskcache folder that every process of
    this machine reads — gunicorn workers and the child processes that run background jobs — so a job or another
    worker never repeats the forward passes of an input that one of them has run. Least recently used entries go
    first once ``budget`` bytes are stored."""

    def __init__(self, folder: Path, *, budget: int, entry_bytes: int = 16 * 2**20) -> None:
        import diskcache

        self.folder = Path(folder)
        self.entry_bytes = entry_bytes
        self._cache = diskcache.Cache(str(folder), size_limit=budget, eviction_policy="least-recently-used")
        self.hits = self.misses = self.stores = self.skipped = 0

    def get(self, key: str) -> bytes | None:
        value = self._cache.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: bytes) -> bool:
        if len(value) > self.entry_bytes:
            self.skipped += 1
            return False
        self._cache.set(key, value)
        self.stores += 1
        return True

    def claim(self, key: str) -> bool:
        return bool(self._cache.add(f"claim:{key}", os.getpid(), expire=CLAIM_SECONDS))

    def release(self, key: str) -> None:
        self._cache.delete(f"claim:{key}")


class RedisCache(_Memo):
    """A Redis connection that never raises: :meth:`get` / :meth:`put` answer None / False while Redis is down,
    and try again after :data:`RETRY_SECONDS`. Counters are read by ``/metrics``."""

    def __init__(self, url: str, *, entry_bytes: int, ttl_seconds: int) -> None:
        import redis

        self.url = url
        self.entry_bytes = entry_bytes
        self.ttl_seconds = ttl_seconds
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS, health_check_interval=30
        )
        self._lock = threading.Lock()
        fresh_locks_after_fork(self, "_lock")
        self._down_since: float | None = None
        self._last_try = 0.0
        self.hits = self.misses = self.stores = self.skipped = self.errors = 0
        self.bytes_read = self.bytes_written = 0

    @classmethod
    def connect(cls, section: CacheSection) -> RedisCache | None:
        """The shared cache a server config asks for, or None (no ``redis`` URL)."""
        if not section.redis:
            return None
        return cls(section.redis, entry_bytes=int(section.entry_mb * 2**20), ttl_seconds=section.ttl_seconds)

    @property
    def up(self) -> bool:
        return self._down_since is None

    @property
    def state(self) -> str:
        """``ok``, or since when it is unreachable and what serving does meanwhile."""
        if self._down_since is None:
            return "ok"
        since = time.strftime("%H:%M:%S", time.localtime(self._down_since))
        return f"unreachable since {since} (serving from this worker's own cache; retrying every {RETRY_SECONDS:g} s)"

    def _should_try(self) -> bool:
        with self._lock:
            if self._down_since is None:
                return True
            if time.monotonic() - self._last_try >= RETRY_SECONDS:
                self._last_try = time.monotonic()
                return True
            return False

    def _failed(self, error: Exception) -> None:
        with self._lock:
            self.errors += 1
            if self._down_since is None:
                self._down_since = time.time()
                self._last_try = time.monotonic()
                log.warning("shared cache %s unreachable (%s): serving from the local cache", self.url, error)

    def _succeeded(self) -> None:
        if self._down_since is not None:
            with self._lock:
                self._down_since = None
            log.info("shared cache %s reachable again", self.url)

    def get(self, key: str) -> bytes | None:
        if not self._should_try():
            return None
        try:
            value = self._client.get(key)
        except self._errors as error:
            self._failed(error)
            return None
        self._succeeded()
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
            self.bytes_read += len(value)
        return value

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value`` for ``ttl_seconds`` unless it is larger than ``entry_bytes``; False if not stored."""
        if len(value) > self.entry_bytes:
            self.skipped += 1
            return False
        if not self._should_try():
            return False
        try:
            self._client.set(key, value, ex=self.ttl_seconds)
        except self._errors as error:
            self._failed(error)
            return False
        self._succeeded()
        self.stores += 1
        self.bytes_written += len(value)
        return True

    def claim(self, key: str) -> bool:
        if not self.up and not self._should_try():
            return True  # Redis is away: compute here
        try:
            return bool(self._client.set(f"{key}:claim", os.getpid(), nx=True, ex=CLAIM_SECONDS))
        except self._errors as error:
            self._failed(error)
            return True

    def release(self, key: str) -> None:
        if not self.up:
            return
        try:
            self._client.delete(f"{key}:claim")
        except self._errors as error:
            self._failed(error)

    def ping(self) -> bool:
        """Check the connection now (``/healthz`` on a team server); updates :attr:`state`."""
        try:
            self._client.ping()
        except self._errors as error:
            self._failed(error)
            return False
        self._succeeded()
        return True
