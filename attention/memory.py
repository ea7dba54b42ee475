"""Handing freed memory back to the operating system (glibc keeps freed heap blocks otherwise)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


# Work that took this much CPU may have freed a lot (an analysis, an export, a long input's views): release after it.
HEAVY_CPU_SECONDS = 0.05


def release_freed_memory() -> None:
    """Hand memory freed by Python, numpy and torch back to the operating system. Without it glibc keeps large
    freed blocks in the heap (its mmap threshold grows after the first big free): a web worker's RSS stays ~400 MB
    above what it holds after a few long inputs (``attention-flows bench memory``), and a corpus run's peak creeps up
    chunk after chunk (``attention-flows bench corpus-memory``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
