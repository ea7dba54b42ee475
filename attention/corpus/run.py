"""``corpus run``: every chunk of a corpus through both models, resumable (:mod:`attention.corpus.store`). The run
coordinates: it checks and locks the folder, hands the pending chunks to an executor (:mod:`attention.corpus.executors`:
this process, a local process pool, or any other :class:`~attention.corpus.executors.ChunkExecutor`) and records
each chunk as it is written."""

from __future__ import annotations

import fcntl
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from attention.corpus.executors import ChunkExecutor, ChunkJob, local_executor
from attention.corpus.mixing import mixing_record, traced_token_name
from attention.corpus.source import CorpusError, CorpusSource
from attention.corpus.store import (
    FORMAT,
    check_identity,
    read_manifest,
    verify_chunks,
    write_manifest,
)
from attention.models import ModelPair
from attention.settings import Settings
from attention.version import __version__

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
        "mixing": mixing_record(pair.pretrained.causal),
        "traced_token": traced_token_name(pair.pretrained.causal),
        "chunks": {},
    }


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
    executor: ChunkExecutor | None = None,
    celery: object | None = None,
    timeouts: object | None = None,
) -> RunSummary:
    """Compute every chunk not yet recorded in ``folder``. ``workers`` 0 runs in this process (on ``pair``); more
    start that many processes, each loading the pair (:func:`~attention.corpus.executors.local_executor`);
    ``executor`` runs the chunks its own way instead (e.g. on the team server's Celery workers,
    ``app.team.corpus_tasks.CeleryExecutor``). Ctrl-C stops after recording the chunks already written: rerunning
    resumes. Another run on the same folder at the same time is refused. ``celery`` / ``timeouts`` (the engine's
    own Celery app before it took an executor) are refused with the replacement named."""
    if celery is not None or timeouts is not None:
        raise TypeError(
            "run_corpus(celery=, timeouts=) is gone: the engine knows no Celery. Pass "
            "executor=app.team.corpus_tasks.CeleryExecutor(broker, chunk_timeout=…, idle_timeout=…) instead."
        )
    folder = Path(folder)
    if folder.is_dir() and read_manifest(folder) is None and any(e.name != ".lock" for e in folder.iterdir()):
        # never scatter tables (or a lock) into someone's folder
        raise CorpusError(f"{folder} is not empty and holds no corpus.", "Give a new or empty --out folder.")
    executor = executor if executor is not None else local_executor(workers)
    with exclusive(folder):
        return _run_locked(pair, source, folder, chunk_size, batch_size, settings, progress, executor)


def _run_locked(
    pair: ModelPair,
    source: CorpusSource,
    folder: Path,
    chunk_size: int,
    batch_size: int,
    settings: Settings | None,
    progress: bool,
    executor: ChunkExecutor,
) -> RunSummary:
    """:func:`run_corpus` once it holds the folder's lock: the pending chunks to ``executor``, each recorded in the
    manifest as it is written; a progress bar of examples."""
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
    shown: dict[int, int] = {}  # inputs of a chunk not yet recorded that the bar already counted, batch by batch

    def advance(index: int, inputs: int) -> None:
        shown[index] = shown.get(index, 0) + inputs
        bar.update(inputs)

    def record(index: int, chunk: dict) -> None:
        """Record a written chunk."""
        manifest["chunks"][str(index)] = chunk
        write_manifest(folder, manifest)
        summary.computed += 1
        bar.update(chunk["rows"]["examples"] + chunk["rows"]["skipped"] - shown.pop(index, 0))

    job = ChunkJob(pair, folder, source.frame, pending, chunk_size, batch_size, settings, advance)
    try:
        executor.run(job, record)
    finally:
        bar.close()
    summary.examples = sum(r["rows"]["examples"] for r in manifest["chunks"].values())
    summary.skipped = sum(r["rows"]["skipped"] for r in manifest["chunks"].values())
    summary.seconds = time.perf_counter() - started
    return summary
