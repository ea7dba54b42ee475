"""Background jobs: long work runs outside the web request, with progress and a cancel button in the page.

Dash's background callbacks do the plumbing. On one machine (the default, nothing to install) the
:class:`LostJobsDiskcacheManager` runs each job in a child process of the web worker; with a broker
(``serve --broker redis://…``) the :class:`LostJobsCeleryManager` queues it for ``attention-flows worker``
processes on this or other machines. Either way a web request only starts a job or reads its progress, never
waits for it.

A job whose process dies (killed, out of memory, a worker machine lost) is reported as failed instead of shown as
running forever: a diskcache job's process is checked directly; a Celery worker beats a heartbeat into Redis every
:data:`HEARTBEAT_SECONDS` while it runs a job, and a job whose heartbeat is older than ``[jobs] lost_after_seconds``
(:data:`LOST_AFTER_SECONDS` by default) is reported lost (the job is not retried on its own: it is acknowledged when a
worker takes it, so a killed job never runs twice; the user starts it again).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

from dash import CeleryManager, DiskcacheManager

from app.service.jobbook import QUEUE, lost_error
from app.team.config import ServerConfig
from attention.settings import Settings, load_settings

log = logging.getLogger("attention_flows.app")
HEARTBEAT_SECONDS = 2.0
LOST_AFTER_SECONDS = 15.0  # the default of ``[jobs] lost_after_seconds``


def make_manager(server_config: ServerConfig, settings: Settings | None = None):
    """The background-callback manager ``server_config`` asks for: Celery with a broker, else diskcache in
    ``jobs.folder`` (default ``<data home>/jobs``)."""
    if server_config.jobs.broker:
        jobs = server_config.jobs
        return LostJobsCeleryManager(make_celery(jobs.broker), lost_after=jobs.lost_after_seconds)
    import diskcache  # only for the one-machine manager: loaded when it is made

    settings = settings or load_settings()
    folder = Path(server_config.jobs.folder or settings.home / "jobs").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return LostJobsDiskcacheManager(diskcache.Cache(str(folder)))


def make_celery(broker: str):
    """A Celery app on ``broker`` (Redis, also the result backend) set up for jobs that may be killed: a job is
    acknowledged when taken (never run twice), one at a time per worker process, heartbeats while it runs."""
    from celery import Celery  # heavy: loaded only with a broker

    celery_app = Celery("attention_flows", broker=broker, backend=broker)
    celery_app.conf.update(
        task_default_queue=QUEUE,
        task_track_started=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 5},
        redis_socket_timeout=5,
        redis_socket_connect_timeout=5,
    )
    return celery_app


def heartbeat_key(job_id: str) -> str:
    return f"attention-flows:heartbeat:{job_id}"


JOB_NICE = 10  # a job process's CPU priority below the web workers' (as ``attention-flows worker --nice``)


def _below_web_workers(job_fn):
    """``job_fn``, run at :data:`JOB_NICE` in its own process: a job never slows the page's requests."""

    def run(*args):
        os.nice(JOB_NICE)
        try:
            return job_fn(*args)
        finally:  # the job's process ends with os._exit (no exit handlers): close an exporter it started here
            if "app.export.files" in sys.modules:
                sys.modules["app.export.files"].stop_export_server()

    return run


class LostJobsDiskcacheManager(DiskcacheManager):
    """Dash's diskcache manager, but a job whose process died without a result is reported, not dropped (a job
    the user cancelled is marked when it is stopped, so it is not reported), and jobs run below the web workers'
    CPU priority."""

    def call_job_fn(self, key, job_fn, args, context):
        # Fork only while no other thread is compiling with numba (the max-flow kernel's warm-up, a first "flow"
        # request): a child forked then would inherit numba's compiler lock held by a thread it does not have, and
        # hang at its first numba call (the flow row of a faithfulness check) with the page showing it "updating".
        # Holding the lock across the fork makes the child's only thread its owner (an RLock: re-entered freely).
        from numba.core.compiler_lock import global_compiler_lock  # heavy: numba loads on the first job

        with global_compiler_lock:
            return super().call_job_fn(key, _below_web_workers(job_fn), args, context)

    def terminate_job(self, job):
        if job is not None:
            self.handle.set(f"attention-flows-stopped-{job}", True, expire=3600)
        return super().terminate_job(job)

    def get_result(self, key, job):
        result = super().get_result(key, job)
        if (
            result is self.UNDEFINED
            and job is not None
            and not self.job_running(job)
            and not self.result_ready(key)
            and not self.handle.get(f"attention-flows-stopped-{job}", False)
        ):
            return lost_error("the process running this job stopped before it finished (killed or out of memory).")
        return result


class LostJobsCeleryManager(CeleryManager):
    """Dash's Celery manager, but a started job whose worker beat no heartbeat for ``lost_after`` seconds is reported
    failed."""

    def __init__(self, celery_app, *, lost_after: float = LOST_AFTER_SECONDS, **options) -> None:
        super().__init__(celery_app, **options)
        self.lost_after = lost_after

    def terminate_job(self, job):
        if job is not None:
            self.handle.backend.set(f"attention-flows:stopped:{job}", "1")
        return super().terminate_job(job)

    def get_result(self, key, job):
        result = super().get_result(key, job)
        if result is self.UNDEFINED and job is not None and self._lost(job):
            self.handle.control.revoke(job)
            return lost_error(
                "the worker running this job stopped (killed, crashed or its machine lost). Start the job again."
            )
        return result

    def job_running(self, job):
        return super().job_running(job) and not self._lost(job)

    def _lost(self, job) -> bool:
        task = self.get_task(job)
        if task is None or task.status not in ("STARTED", "PROGRESS"):
            return False
        if self.handle.backend.get(f"attention-flows:stopped:{job}") is not None:
            return False  # cancelled by the user
        beat = self.handle.backend.get(heartbeat_key(job))
        return beat is None or time.time() - float(beat) > self.lost_after


def install_heartbeat(celery_app) -> None:
    """In a worker: beat ``heartbeat_key(task id)`` every :data:`HEARTBEAT_SECONDS` while a task runs."""
    from celery.signals import task_postrun, task_prerun  # heavy: loaded only in a worker

    beating: dict[str, threading.Event] = {}

    @task_prerun.connect(weak=False)
    def start(task_id=None, task=None, **_):
        stop = threading.Event()
        beating[task_id] = stop
        backend = task.backend

        def beat() -> None:
            while not stop.is_set():
                try:
                    backend.set(heartbeat_key(task_id), str(time.time()))
                except Exception:  # a missed beat only makes the job look older
                    log.warning("heartbeat for job %s failed", task_id)
                stop.wait(HEARTBEAT_SECONDS)

        threading.Thread(target=beat, name=f"heartbeat-{task_id}", daemon=True).start()

    @task_postrun.connect(weak=False)
    def stop(task_id=None, **_):
        event = beating.pop(task_id, None)
        if event is not None:
            event.set()
