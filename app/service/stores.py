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
import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from app.service.codecs import FORMAT
from app.service.memo import fresh_locks_after_fork

log = logging.getLogger("attention_flows.app")
RETRY_SECONDS = 5.0
TIMEOUT_SECONDS = 0.5  # a Redis that does not answer in this time counts as unreachable
WAIT_FOR_OTHER_SECONDS = 20.0  # how long a worker waits for another one computing the same entry
POLL_SECONDS = 0.02
CLAIM_SECONDS = 60  # a claim expires by itself if its holder dies


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


class RedisSettings(Protocol):
    """What :meth:`RedisCache.connect` reads of a server config's cache section (``app.team.config.CacheSection``)."""

    redis: str
    entry_mb: float
    ttl_seconds: int


class _Memo:
    """What both shared caches offer the service: ``get`` / ``put`` of bytes and :meth:`memo` on top."""

    def get(self, key: str, *, again: bool = False) -> bytes | None:
        """The bytes stored under ``key``, or None; ``again``: a second look for one lookup (not counted twice)."""
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
        claimed = False
        while True:
            stored = self.get(key, again=claimed)
            if stored is not None:
                try:
                    value = decode(stored)
                except (ValueError, TypeError, KeyError):
                    log.warning("shared cache entry %s could not be read: recomputed", key)
                    break
                if claimed:
                    self.release(key)
                return value
            if claimed or time.monotonic() > deadline:
                break
            # claimed: look once more before computing, since another worker may have stored the value and released
            # its claim between this worker's look and its claim
            claimed = self.claim(key)
            if not claimed:
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
        import diskcache  # only the one-machine cache needs it

        self.folder = Path(folder)
        self.entry_bytes = entry_bytes
        self._cache = diskcache.Cache(str(folder), size_limit=budget, eviction_policy="least-recently-used")
        self.hits = self.misses = self.stores = self.skipped = 0

    def get(self, key: str, *, again: bool = False) -> bytes | None:
        value = self._cache.get(key)
        if value is None:
            self.misses += not again
        else:
            self.hits += 1
            self.misses -= again  # the first look of this lookup counted a miss
        return value

    def put(self, key: str, value: bytes) -> bool:
        if len(value) > self.entry_bytes:
            self.skipped += 1
            return False
        if len(value) >= self._cache.disk.min_file_size:
            # as a file object: diskcache writes a bytes value by iterating a BytesIO, i.e. line by line (~8,000
            # writes for 2 MB of floats, 7 ms of CPU); a file object is copied in 4 MB chunks. Read back as bytes.
            self._cache.set(key, io.BytesIO(value), read=True)
        else:
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
        import redis  # the server extra: only a team server with Redis needs it

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
    def connect(cls, section: RedisSettings) -> RedisCache | None:
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

    def get(self, key: str, *, again: bool = False) -> bytes | None:
        if not self._should_try():
            return None
        try:
            value = self._client.get(key)
        except self._errors as error:
            self._failed(error)
            return None
        self._succeeded()
        if value is None:
            self.misses += not again
        else:
            self.hits += 1
            self.misses -= again  # the first look of this lookup counted a miss
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
