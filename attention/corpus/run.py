"""``corpus run``: every chunk of a corpus through both models, on a local process pool (one torch thread each) or
in this process, resumable (:mod:`attention.corpus.store`)."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attention import __version__
from attention.config import PairConfig
from attention.corpus.source import CorpusError, CorpusSource
from attention.corpus.store import (
    FORMAT,
    check_identity,
    read_manifest,
    verify_chunks,
    write_chunk,
    write_manifest,
)
from attention.corpus.tables import chunk_tables
from attention.memory import release_freed_memory
from attention.models import ModelPair
from attention.settings import Settings

DEFAULT_CHUNK_SIZE = 256
DEFAULT_BATCH_SIZE = 16


@dataclass
class RunSummary:
    """What a run did: chunks computed now, chunks already done, chunks recomputed after a failed check,
    examples written and skipped (over the whole corpus), seconds."""

    computed: int = 0
    reused: int = 0
    recomputed: list[int] = field(default_factory=list)
    examples: int = 0
    skipped: int = 0
    seconds: float = 0.0


def pair_identity(pair: ModelPair) -> dict:
    """The pair as a manifest records it: names, paths, revisions (file digests), labels, shape and recipe."""
    config = pair.config
    return {
        "name": config.name,
        "pretrained": {"name": pair.pretrained.name, "sha256": pair.pretrained.files_sha256},
        "finetuned": {"name": pair.finetuned.name, "sha256": pair.finetuned.files_sha256},
        "labels": list(pair.finetuned.labels),
        "num_layers": pair.pretrained.num_layers,
        "num_heads": pair.pretrained.num_heads,
        "recipe": config.prepare.model_dump(mode="json") if config.prepare else None,
    }


def new_manifest(pair: ModelPair, source: CorpusSource, chunk_size: int) -> dict:
    return {
        "format": FORMAT,
        "code_version": __version__,
        "pair": pair_identity(pair),
        "source": {"description": source.description, "fingerprint": source.fingerprint, "rows": len(source.frame)},
        "chunk_size": chunk_size,
        "chunks": {},
    }


def chunk_rows(frame: pd.DataFrame, index: int, chunk_size: int) -> pd.DataFrame:
    return frame.iloc[index * chunk_size : (index + 1) * chunk_size]


# --- worker side (a process of the pool, or this process) ---------------------------------------------------------

_WORKER: dict = {}  # the pair a pool process loaded once (per process, never shared between processes)


def _init_worker(config: PairConfig, settings: Settings | None, parent_pid: int) -> None:
    from attention.models import load_pair
    from attention.processes import die_with_parent
    from attention.settings import configure_torch, load_settings

    die_with_parent(parent_pid)  # a SIGKILLed `corpus run` leaves no worker holding its models
    settings = settings or load_settings()
    configure_torch(settings)
    _WORKER["pair"] = load_pair(config, settings=settings)


def compute_chunk(
    folder: Path, index: int, rows: pd.DataFrame, batch_size: int, pair: ModelPair | None = None, progress=None
) -> dict:
    """Compute and write one chunk; its manifest record. ``progress(n)`` is called after each batch of n inputs.
    The chunk's memory is handed back afterwards: peak RSS stays flat however many chunks a run has."""
    tables = chunk_tables(pair or _WORKER["pair"], rows, batch_size=batch_size, progress=progress)
    record = write_chunk(folder, index, tables)
    del tables
    release_freed_memory()
    return record


# --- coordinator ----------------------------------------------------------------------------------------------------


def prepare_folder(folder: Path, manifest: dict) -> tuple[dict, list[int]]:
    """The folder's manifest (new, or the existing one after checking it is the same corpus) and the indices of
    recorded chunks that failed their check and must be recomputed."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = read_manifest(folder)
    if existing is None:
        write_manifest(folder, manifest)
        return manifest, []
    check_identity(folder, existing, manifest)
    bad = verify_chunks(folder, existing)
    if bad:
        write_manifest(folder, existing)
    return existing, bad


@contextmanager
def exclusive(folder: Path):
    """Hold ``folder``'s lock for a run: a second run on the same folder at the same time is refused (two runs
    would compute the same chunks and each rewrite the manifest)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CorpusError(
                f"Another run is computing {folder} now.", "Wait for it, or stop it (Ctrl-C) and rerun this one."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_corpus(
    pair: ModelPair,
    source: CorpusSource,
    folder: Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 0,
    settings: Settings | None = None,
    progress: bool = True,
    celery: tuple[str, str] | None = None,
    timeouts: tuple[float, float] = (3600.0, 300.0),
) -> RunSummary:
    """Compute every chunk not yet recorded in ``folder``. ``workers`` 0 runs in this process (on ``pair``); more
    start that many processes, each loading the pair; ``celery`` = (broker URL, queue) sends the chunks to Celery
    workers instead (:mod:`attention.corpus.distributed`; ``timeouts``: seconds a taken chunk may run, seconds
    with no worker taking or finishing one). Ctrl-C stops after recording the chunks already written:
    rerunning resumes. Another run on the same folder at the same time is refused."""
    folder = Path(folder)
    if folder.is_dir() and read_manifest(folder) is None and any(e.name != ".lock" for e in folder.iterdir()):
        # never scatter tables (or a lock) into someone's folder
        raise CorpusError(f"{folder} is not empty and holds no corpus.", "Give a new or empty --out folder.")
    with exclusive(folder):
        return _run_locked(pair, source, folder, chunk_size, batch_size, workers, settings, progress, celery,
                           timeouts)  # fmt: skip


def _run_locked(
    pair, source, folder, chunk_size, batch_size, workers, settings, progress, celery, timeouts
) -> RunSummary:
    from tqdm import tqdm

    started = time.perf_counter()
    manifest, recomputed = prepare_folder(folder, new_manifest(pair, source, chunk_size))
    total_chunks = -(-len(source.frame) // chunk_size)
    pending = [i for i in range(total_chunks) if str(i) not in manifest["chunks"]]
    summary = RunSummary(reused=total_chunks - len(pending), recomputed=recomputed)
    done_examples = sum(sum(r["rows"][t] for t in ("examples", "skipped")) for r in manifest["chunks"].values())
    bar = tqdm(
        total=len(source.frame), initial=done_examples, unit="ex", disable=not progress, file=sys.stderr,
        desc="corpus", dynamic_ncols=True,
    )  # fmt: skip

    def record(index: int, chunk: dict, shown: int = 0) -> None:
        """Record a written chunk (``shown``: its inputs the bar already counted, batch by batch)."""
        manifest["chunks"][str(index)] = chunk
        write_manifest(folder, manifest)
        summary.computed += 1
        bar.update(chunk["rows"]["examples"] + chunk["rows"]["skipped"] - shown)

    try:
        if celery is not None:
            from attention.corpus.distributed import run_on_celery

            run_on_celery(*celery, pair.config, folder, source.frame, pending, chunk_size, batch_size, record,
                          chunk_timeout=timeouts[0], idle_timeout=timeouts[1])  # fmt: skip
        elif workers <= 0:
            for index in pending:  # in this process: the bar moves batch by batch
                rows = chunk_rows(source.frame, index, chunk_size)
                counted = [0]

                def advance(n: int, counted=counted) -> None:
                    counted[0] += n
                    bar.update(n)

                record(index, compute_chunk(folder, index, rows, batch_size, pair, advance), counted[0])
        else:
            _run_pool(folder, source.frame, pending, chunk_size, batch_size, workers, pair.config, settings, record)
    finally:
        bar.close()
    summary.examples = sum(r["rows"]["examples"] for r in manifest["chunks"].values())
    summary.skipped = sum(r["rows"]["skipped"] for r in manifest["chunks"].values())
    summary.seconds = time.perf_counter() - started
    return summary


def _run_pool(folder, frame, pending, chunk_size, batch_size, workers, config, settings, record) -> None:
    """At most ``workers`` chunks in flight (a chunk's rows are only sent when a process is free); each recorded as
    soon as it is written."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
    start = {"mp_context": context, "initializer": _init_worker, "initargs": (config, settings, os.getpid())}
    with ProcessPoolExecutor(workers, **start) as pool:
        queue = list(pending)
        running: dict[Future, int] = {}
        try:
            while queue or running:
                while queue and len(running) < workers:
                    index = queue.pop(0)
                    rows = chunk_rows(frame, index, chunk_size)
                    running[pool.submit(compute_chunk, folder, index, rows, batch_size)] = index
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(running.pop(future), future.result())
        except BaseException:
            for future in running:
                future.cancel()
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()  # a chunk in flight is lost, never half-recorded
            raise
