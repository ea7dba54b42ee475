"""The book of background jobs a web worker keeps: each job's outcome (counted for ``/metrics``) and how a lost
job is reported. The machinery that runs jobs (Dash's managers, the Celery app) is :mod:`app.team.jobs`."""

from __future__ import annotations

import threading
from collections import Counter

from flask import current_app

JOBS_KEY = "attention_flows_jobs"  # the app's JobBook in flask's extensions
LOST_MESSAGE = "JOB LOST: "  # prefix of the error a lost job reports (app.dashboard.callbacks.common shows it as is)
QUEUE = "attention-flows"  # the Celery queue the jobs go to


def lost_error(what: str) -> dict:
    """The result Dash's background machinery reports for a job that died (``on_error`` shows the message)."""
    return {"background_callback_error": {"msg": LOST_MESSAGE + what, "tb": ""}}


class JobBook:
    """Outcome counters of this worker's jobs (``/metrics``) and the broker's queue depth."""

    def __init__(self, broker: str = "") -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._broker = broker

    def record(self, job: str, outcome: str) -> None:
        with self._lock:
            self.outcomes[(job, outcome)] += 1

    def queued(self) -> int | None:
        """Jobs waiting in the Celery queue (None without a broker, or when Redis does not answer)."""
        if not self._broker:
            return None
        import redis  # only a team server with a broker needs it

        try:
            client = redis.Redis.from_url(self._broker, socket_timeout=0.5, socket_connect_timeout=0.5)
            return int(client.llen(QUEUE))
        except (redis.RedisError, OSError):
            return None


def record(job: str, outcome: str) -> None:
    """Count a job's outcome for /metrics, in the web worker that shows it (needs a request context)."""
    book = current_app.extensions.get(JOBS_KEY)
    if book is not None:
        book.record(job, outcome)
