"""Corpus chunks as Celery tasks: ``corpus run --broker redis://…`` sends every pending chunk to the team server's
Celery workers (``attention-flows worker``, on this or other machines) and records each chunk as its result comes
back. Workers write the chunk files themselves, so the corpus folder must be the same path on every machine (a
shared file system); the manifest is only ever written by the run that sent the chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from attention.config import PairConfig
from attention.corpus.source import CorpusError

TASK = "attention_flows.corpus_chunk"


def config_reference(config: PairConfig) -> str:
    """How a worker finds the pair: a shipped config's name, else its file's path (same path on every machine)."""
    from attention.resources import configs_dir

    path = config.source_path
    if path is None:
        raise CorpusError(f"Pair '{config.name}' was not loaded from a file.", "Give --config a .toml file.")
    return path.stem if path.parent.resolve() == configs_dir().resolve() else str(path.resolve())


def register_corpus_task(celery_app) -> None:
    """Add the chunk task to a worker's Celery app. Each worker process loads a pair once, on its first chunk (a
    Celery task object lives once per process, so it holds the loaded pairs)."""
    from attention.corpus.run import compute_chunk

    class ChunkTask(celery_app.Task):
        loaded: dict | None = None

        def pair(self, reference: str):
            from attention.models import load_pair

            if self.loaded is None:
                self.loaded = {}
            if reference not in self.loaded:
                self.loaded[reference] = load_pair(reference)
            return self.loaded[reference]

    @celery_app.task(name=TASK, base=ChunkTask, bind=True)
    def corpus_chunk(self, reference: str, folder: str, index: int, rows: list[dict], batch_size: int) -> dict:
        frame = pd.DataFrame(rows, columns=["example_id", "text", "text_pair", "label"])
        return compute_chunk(Path(folder), index, frame, batch_size, self.pair(reference))


def run_on_celery(
    broker: str,
    queue: str,
    config: PairConfig,
    folder: Path,
    frame: pd.DataFrame,
    pending: list[int],
    chunk_size: int,
    batch_size: int,
    record: Callable[[int, dict], None],
    *,
    chunk_timeout: float = 3600.0,
    idle_timeout: float = 300.0,
) -> None:
    """Send every pending chunk, record each as it finishes. A chunk that fails, one that does not finish within
    ``chunk_timeout`` seconds of being taken (its worker stopped), and ``idle_timeout`` seconds in which no worker
    takes or finishes a chunk (none is running) are each a :class:`CorpusError`; the chunks already recorded stay,
    so rerunning computes only what is missing."""
    from celery import Celery

    from attention.corpus.run import chunk_rows

    celery_app = Celery("attention_flows", broker=broker, backend=broker)
    celery_app.conf.update(broker_connection_retry_on_startup=True, task_track_started=True)
    reference = config_reference(config)
    sent = {}
    for index in pending:
        rows = chunk_rows(frame, index, chunk_size).astype(object).where(lambda f: f.notna(), None)
        result = celery_app.send_task(
            TASK, args=[reference, str(Path(folder).resolve()), index, rows.to_dict("records"), batch_size],
            queue=queue,
        )  # fmt: skip
        sent[result.id] = (index, result, None)
    progress = time.monotonic()
    try:
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
                elif started is not None and time.monotonic() - started > chunk_timeout:
                    raise CorpusError(
                        f"Chunk {index} did not finish within {chunk_timeout:.0f} s of starting (its worker stopped?).",
                        "Rerun the same command: the recorded chunks are kept, the missing ones sent again.",
                    )
            if sent and time.monotonic() - progress > idle_timeout:
                raise CorpusError(
                    f"No Celery worker took or finished a chunk for {idle_timeout:.0f} s ({len(sent)} chunks left).",
                    f"Start one: attention-flows worker --broker {broker} --config {reference}; then rerun.",
                )
            time.sleep(0.2)
    except BaseException:
        for _, result, _ in sent.values():
            result.revoke()  # not yet taken: never run; the chunks in flight finish and are simply not recorded
        raise
