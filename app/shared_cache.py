"""The shared analysis cache: both models' runs on an input, in Redis, in front of each worker's own cache.

A team server's requests land on any gunicorn worker (and, behind a proxy, any machine); without a shared cache
each worker would run the two forward passes again for a user's follow-up requests. What is stored is exactly
the :class:`attention.PairRuns` of an input — float32 weights ``[layer, head, query, key]`` of both models plus
their token facts — so a hit is bit-identical to a recomputation (no lossy float16: a view must not change with
the worker that drew it). Everything derived (graphs, flows, relevance) is cheap next to the forward passes and
stays in the worker's cache. ``attention-flows bench team`` measures the sizes and the hit ratio.

The cache is bounded three ways: entries above ``entry_mb`` are not stored, each entry expires after
``ttl_seconds``, and the Redis server's own ``maxmemory`` with ``allkeys-lru`` bounds the total (see
docs/deploy.md). Redis unreachable: requests fall back to the worker's own cache, the state says so in
``/healthz`` and ``/metrics``, and the connection is retried every :data:`RETRY_SECONDS`; nothing crashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
import time
from dataclasses import fields

import numpy as np

from app.server_config import CacheSection
from attention import AttentionRun, PairRuns

log = logging.getLogger("attention_flows.app")
RETRY_SECONDS = 5.0
TIMEOUT_SECONDS = 0.5  # a Redis that does not answer in this time counts as unreachable
FORMAT = b"AFR1"  # magic + version of the encoding below


def encode_runs(runs: PairRuns) -> bytes:
    """``runs`` as bytes: magic, a JSON header (every field but the weights, and their shapes), then both models'
    float32 weights in C order. No pickle: what comes back from Redis is only ever parsed as data."""
    header, blobs = [], []
    for run in (runs.pretrained, runs.finetuned):
        facts = {f.name: getattr(run, f.name) for f in fields(run) if f.name != "weights"}
        weights = np.ascontiguousarray(run.weights, dtype=np.float32)
        header.append({**facts, "shape": list(weights.shape)})
        blobs.append(weights.tobytes())
    head = json.dumps(header, separators=(",", ":")).encode()
    return FORMAT + struct.pack("<I", len(head)) + head + b"".join(blobs)


def decode_runs(data: bytes) -> PairRuns:
    """The inverse of :func:`encode_runs`; ValueError for anything that is not its output."""
    if data[:4] != FORMAT:
        raise ValueError("not an encoded pair of runs")
    (length,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + length])
    offset = 8 + length
    runs = []
    for facts in header:
        shape = tuple(facts.pop("shape"))
        count = int(np.prod(shape))
        weights = np.frombuffer(data, dtype=np.float32, count=count, offset=offset).reshape(shape)
        offset += 4 * count
        weights.flags.writeable = False
        for name, value in facts.items():
            if isinstance(value, list):
                facts[name] = tuple(value)
        runs.append(AttentionRun(weights=weights, **facts))
    if offset != len(data):
        raise ValueError("an encoded pair of runs with trailing bytes")
    return PairRuns(*runs)


def runs_key(fingerprint: str, text: str, text_pair: str | None) -> str:
    """The Redis key of an input's runs for a pair (``fingerprint``: :func:`pair_fingerprint`)."""
    digest = hashlib.sha256(json.dumps([text, text_pair]).encode()).hexdigest()[:32]
    return f"attention-flows:runs:{fingerprint}:{digest}"


def pair_fingerprint(name: str, model_dirs: tuple[str, ...], version: str) -> str:
    """What makes two workers' runs interchangeable: the pair's name, its model folders with their weights' sizes
    and modification times, and the code version (a re-prepared twin or a new release never reads old entries)."""
    from pathlib import Path

    parts = [name, version]
    for folder in model_dirs:
        weights = sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin"))
        parts += [str(folder), *(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class SharedCache:
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
        self._down_since: float | None = None
        self._last_try = 0.0
        self.hits = self.misses = self.stores = self.skipped = self.errors = 0
        self.bytes_read = self.bytes_written = 0

    @classmethod
    def connect(cls, section: CacheSection) -> SharedCache | None:
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

    def ping(self) -> bool:
        """Check the connection now (``/healthz`` on a team server); updates :attr:`state`."""
        try:
            self._client.ping()
        except self._errors as error:
            self._failed(error)
            return False
        self._succeeded()
        return True
