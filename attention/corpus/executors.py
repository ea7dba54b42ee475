"""How a corpus run's chunks are computed: one chunk (:func:`compute_chunk`) and the executors that run many.

A run (:func:`attention.corpus.run.run_corpus`) hands its pending chunks to a :class:`ChunkExecutor` and records
each chunk it reports written. The engine has two: :class:`InProcess` (this process, on the run's loaded pair) and
:class:`ProcessPool` (local processes, each loading the pair once, one torch thread each). Others, such as the team
server's Celery workers (``app.team.corpus_tasks``), implement the same protocol: call :func:`compute_chunk` where
the chunk runs, call ``record`` here when it is written.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from attention.config import PairConfig
from attention.corpus.store import write_chunk
from attention.corpus.tables import chunk_tables
from attention.memory import release_freed_memory
from attention.models import ModelPair, load_pair
from attention.processes import die_with_parent
from attention.settings import Settings, configure_torch, load_settings

RecordChunk = Callable[[int, dict], None]  # (chunk index, its manifest record): the run records a written chunk


def chunk_rows(frame: pd.DataFrame, index: int, chunk_size: int) -> pd.DataFrame:
    """Rows of chunk ``index`` of ``frame`` (``example_id, text, text_pair, label``): ``chunk_size`` of them."""
    return frame.iloc[index * chunk_size : (index + 1) * chunk_size]


def _no_progress(index: int, inputs: int) -> None:
    """The default of :attr:`ChunkJob.advance`: no progress shown."""


@dataclass(frozen=True)
class ChunkJob:
    """The chunks a run still has to compute and what computing one needs: the loaded ``pair`` (its ``config`` for
    an executor that loads the pair elsewhere), the corpus ``folder``, the source ``frame`` (``example_id, text,
    text_pair, label``), the ``pending`` chunk indices, ``chunk_size`` rows per chunk, ``batch_size`` inputs per
    forward pass, the ``settings`` a process loads the pair with (None: the environment's), and ``advance(index,
    inputs)``: an executor may call it as a chunk's inputs are computed, before the chunk is recorded."""

    pair: ModelPair
    folder: Path
    frame: pd.DataFrame
    pending: list[int]
    chunk_size: int
    batch_size: int
    settings: Settings | None = None
    advance: Callable[[int, int], None] = field(default=_no_progress)

    def rows(self, index: int) -> pd.DataFrame:
        """The rows of chunk ``index``."""
        return chunk_rows(self.frame, index, self.chunk_size)


class ChunkExecutor(Protocol):
    """Runs a job's chunks. ``run(job, record)`` computes every chunk of ``job.pending`` with :func:`compute_chunk`
    (here or in other processes or machines, which write the chunk's files) and calls ``record(index, manifest
    record)`` in this process as each chunk is written, in any order. On any exception (Ctrl-C included) it stops
    the chunks not yet taken, never records a chunk in flight, and re-raises: the chunks recorded stay, so rerunning
    computes only the missing ones."""

    def run(self, job: ChunkJob, record: RecordChunk) -> None: ...


# --- one chunk (in this process, or in any process or machine that runs chunks) -------------------------------------

_WORKER: dict = {}  # the pair a pool process loaded once (per process, never shared between processes)


def _init_worker(config: PairConfig, settings: Settings | None, parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a SIGKILLed `corpus run` leaves no worker holding its models
    settings = settings or load_settings()
    configure_torch(settings)
    _WORKER["pair"] = load_pair(config, settings=settings)


def compute_chunk(
    folder: Path,
    index: int,
    rows: pd.DataFrame,
    batch_size: int,
    pair: ModelPair | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Compute and write one chunk of ``rows``; its manifest record. ``pair``: the loaded pair (None: the one this
    pool process loaded). ``progress(n)`` is called after each batch of n inputs. The chunk's memory is handed back
    afterwards: peak RSS stays flat however many chunks a run has."""
    tables = chunk_tables(pair or _WORKER["pair"], rows, batch_size=batch_size, progress=progress)
    record = write_chunk(folder, index, tables)
    del tables
    release_freed_memory()
    return record


# --- the engine's executors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InProcess:
    """Every chunk in this process, one after another, on the job's loaded pair (progress batch by batch)."""

    def run(self, job: ChunkJob, record: RecordChunk) -> None:
        for index in job.pending:
            progress = functools.partial(job.advance, index)
            record(index, compute_chunk(job.folder, index, job.rows(index), job.batch_size, job.pair, progress))


@dataclass(frozen=True)
class ProcessPool:
    """``workers`` local processes (spawned, each loading the pair once): at most ``workers`` chunks in flight (a
    chunk's rows are only sent when a process is free), each recorded as soon as it is written."""

    workers: int

    def run(self, job: ChunkJob, record: RecordChunk) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        start = {"mp_context": context, "initializer": _init_worker,
                 "initargs": (job.pair.config, job.settings, os.getpid())}  # fmt: skip
        with ProcessPoolExecutor(self.workers, **start) as pool:
            queue = list(job.pending)
            running: dict[Future, int] = {}
            try:
                while queue or running:
                    while queue and len(running) < self.workers:
                        index = queue.pop(0)
                        running[pool.submit(compute_chunk, job.folder, index, job.rows(index), job.batch_size)] = index
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        record(running.pop(future), future.result())
            except BaseException:
                for future in running:
                    future.cancel()
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()  # a chunk in flight is lost, never half-recorded
                raise


def local_executor(workers: int) -> ChunkExecutor:
    """The engine's executor for ``workers`` processes: 0 (or fewer) runs in this process."""
    return InProcess() if workers <= 0 else ProcessPool(workers)
