"""A least-recently-used memo bounded by **bytes**, not entries: one long input's tensors weigh hundreds of
megabytes, a short one's a few hundred kilobytes. Sizes are counted with :func:`size_of` when a value is stored."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np
import pandas as pd

from attention.memory import release_freed_memory

T = TypeVar("T")
SAMPLE_ABOVE = 64  # items: longer containers are sized from an even sample of this many
RELEASE_AFTER = 8 * 2**20  # bytes: storing a value this large (or evicting) hands freed memory back to the OS


def size_of(value: object, _seen: set[int] | None = None) -> int:
    """Bytes held by ``value``: numpy buffers, DataFrame columns (object columns as pointers: their strings are
    the shared token strings), dataclasses, containers (long ones estimated from a sample); each object counted
    once."""
    if isinstance(value, str | int | float | bool | None):  # most items of a graph's tuples: nothing to walk
        return sys.getsizeof(value)
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        base = value.base if isinstance(value.base, np.ndarray) else None
        return value.nbytes if base is None else size_of(base, seen)
    if isinstance(value, pd.DataFrame):  # what memory_usage(deep=False) says
        return int(sum(array.nbytes for array in _column_arrays(value)) + value.index.nbytes)
    if isinstance(value, pd.Series):
        return int(value.array.nbytes + value.index.nbytes)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(size_of(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(size_of(k, seen) + size_of(v, seen) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        items = value if isinstance(value, list | tuple) else list(value)
        if len(items) <= SAMPLE_ABOVE:
            return sys.getsizeof(value) + sum(size_of(item, seen) for item in items)
        # long containers (token tuples, edge lists): measure an even sample and scale it; walking every item of
        # every cached graph cost ~10 % of a team server's CPU (py-spy), for a budget that needs no byte precision
        sample = items[:: len(items) // SAMPLE_ABOVE][:SAMPLE_ABOVE]
        return sys.getsizeof(value) + sum(size_of(item, seen) for item in sample) * len(items) // len(sample)
    return sys.getsizeof(value)


def _column_arrays(frame: pd.DataFrame) -> list:
    """A frame's column arrays: its block manager's own list (12 µs for a graph's 17 columns), else one Series per
    column (340 µs: ``items()`` builds each Series; pandas' manager is not public API, hence the fallback)."""
    try:
        return list(frame._mgr.arrays)
    except AttributeError:
        return [column.array for _, column in frame.items()]


def fresh_locks_after_fork(owner: object, *names: str) -> None:
    """Give ``owner`` new, unheld locks ``names`` in a forked child process. Background jobs run in children forked
    from a web worker (Dash's diskcache manager); a lock another thread held at the fork would stay held in the
    child forever, and its job with it. Holds ``owner`` weakly (an unloaded pair is freed)."""
    ref = weakref.ref(owner)

    def renew() -> None:
        alive = ref()
        if alive is not None:
            for name in names:
                setattr(alive, name, threading.Lock())

    os.register_at_fork(after_in_child=renew)


class ByteLRU:
    """Thread-safe memo owned by one service instance, holding at most ``budget`` bytes (least recently used
    evicted first). A value larger than the whole budget is computed and returned, never stored."""

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        fresh_locks_after_fork(self, "_lock")
        self.hits = self.misses = self.evictions = 0  # for /metrics

    @property
    def held(self) -> int:
        """Bytes held now."""
        return self._held

    def __len__(self) -> int:
        return len(self._items)

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]  # type: ignore[return-value]
            self.misses += 1
        value = compute()
        size = size_of(value)
        if size > self.budget:
            return value
        with self._lock:
            if key in self._items:  # computed meanwhile by another request
                self._held -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._held += size
            evicted_any = False
            while self._held > self.budget:
                _, (_, evicted) = self._items.popitem(last=False)
                self._held -= evicted
                self.evictions += 1
                evicted_any = True
        if evicted_any or size >= RELEASE_AFTER:  # the temporaries of a large computation are free by now
            release_freed_memory()
        return value
