"""Corpus chunks as Celery tasks: ``corpus run --broker redis://…`` sends every pending chunk to the team server's
Celery workers (``attention-flows worker``, on this or other machines) and records each chunk as its result comes
back. Workers write the chunk files themselves, so the corpus folder must be the same path on every machine (a
shared file system); the manifest is only ever written by the run that sent the chunks.

Both sides use the one Celery app of the background jobs (:func:`app.team.jobs.make_celery`, queue
:data:`app.service.jobbook.QUEUE`): :func:`register_corpus_task` adds the chunk task to a worker's app
(:mod:`app.team.worker`), :class:`CeleryExecutor` is the run's :class:`~attention.corpus.executors.ChunkExecutor`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from app.service.jobbook import QUEUE
from app.team.jobs import make_celery
from attention.config import PairConfig
from attention.corpus.executors import ChunkJob, RecordChunk, compute_chunk
from attention.corpus.source import CorpusError
from attention.models import load_pair
from attention.resources import configs_dir

TASK = "attention_flows.corpus_chunk"
ROW_COLUMNS = ["example_id", "text", "text_pair", "label"]  # a chunk's rows as the task receives them


def config_reference(config: PairConfig) -> str:
    """How a worker finds the pair: a shipped config's name, else its file's path (same path on every machine)."""
    path = config.source_path
    if path is None:
        raise CorpusError(f"Pair '{config.name}' was not loaded from a file.", "Give --config a .toml file.")
    return path.stem if path.parent.resolve() == configs_dir().resolve() else str(path.resolve())


def register_corpus_task(celery_app) -> None:
    """Add the chunk task to a worker's Celery app. Each worker process loads a pair once, on its first chunk (a
    Celery task object lives once per process, so it holds the loaded pairs)."""

    class ChunkTask(celery_app.Task):
        loaded: dict | None = None

        def pair(self, reference: str):
            if self.loaded is None:
                self.loaded = {}
            if reference not in self.loaded:
                self.loaded[reference] = load_pair(reference)
            return self.loaded[reference]

    @celery_app.task(name=TASK, base=ChunkTask, bind=True)
    def corpus_chunk(self, reference: str, folder: str, index: int, rows: list[dict], batch_size: int) -> dict:
        frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
        return compute_chunk(Path(folder), index, frame, batch_size, self.pair(reference))


@dataclass(frozen=True)
class CeleryExecutor:
    """Every pending chunk sent at once as a task on ``queue`` of the Celery app on ``broker``; each recorded as it
    finishes. A chunk that fails, one that does not finish within ``chunk_timeout`` seconds of being taken (its
    worker stopped), and ``idle_timeout`` seconds in which no worker takes or finishes a chunk (none is running) are
    each a :class:`~attention.corpus.source.CorpusError`; the chunks already recorded stay, so rerunning computes
    only what is missing."""

    broker: str
    queue: str = QUEUE
    chunk_timeout: float = 3600.0
    idle_timeout: float = 300.0

    def run(self, job: ChunkJob, record: RecordChunk) -> None:
        reference = config_reference(job.pair.config)
        sent = self._send(job, reference)
        try:
            self._collect(sent, record, reference)
        except BaseException:
            for _, result, _ in sent.values():
                result.revoke()  # not yet taken: never run; the chunks in flight finish and are simply not recorded
            raise

    def _send(self, job: ChunkJob, reference: str) -> dict:
        """Send every pending chunk: ``{task id: (index, AsyncResult, None)}`` (the None: when it started)."""
        celery_app = make_celery(self.broker)
        folder = str(Path(job.folder).resolve())
        sent = {}
        for index in job.pending:
            rows = job.rows(index).astype(object).where(lambda f: f.notna(), None)
            result = celery_app.send_task(
                TASK, args=[reference, folder, index, rows.to_dict("records"), job.batch_size], queue=self.queue
            )
            sent[result.id] = (index, result, None)
        return sent

    def _collect(self, sent: dict, record: RecordChunk, reference: str) -> None:
        """Wait for the ``sent`` chunks (emptied as they finish), recording each; the timeouts as the class says."""
        progress = time.monotonic()
        while sent:
            for job, (index, result, started) in list(sent.items()):
                if result.state == "STARTED" and started is None:
                    sent[job] = (index, result, time.monotonic())
                    progress = time.monotonic()
                elif result.ready():
                    del sent[job]
                    progress = time.monotonic()
                    if result.failed():
                        raise CorpusError(f"Chunk {index} failed on its worker: {result.result!r}.",
                                          "See the worker's log; rerun to compute the missing chunks.")  # fmt: skip
                    record(index, result.get())
                elif started is not None and time.monotonic() - started > self.chunk_timeout:
                    raise CorpusError(
                        f"Chunk {index} did not finish within {self.chunk_timeout:.0f} s of starting (its worker "
                        "stopped?).",
                        "Rerun the same command: the recorded chunks are kept, the missing ones sent again.",
                    )
            if sent and time.monotonic() - progress > self.idle_timeout:
                raise CorpusError(
                    f"No Celery worker took or finished a chunk for {self.idle_timeout:.0f} s ({len(sent)} chunks "
                    "left).",
                    f"Start one: attention-flows worker --broker {self.broker} --config {reference}; then rerun.",
                )
            time.sleep(0.2)
