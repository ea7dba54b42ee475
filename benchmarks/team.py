"""``attention-flows bench team`` (needs redis-server and Chromium): the team server under load and faults, on
loopback, bounded in time.

It starts the whole stack as an operator would — two throwaway Redis servers (the shared cache and the Celery
broker), ``attention-flows serve --workers 4 --redis … --broker …`` (gunicorn) and ``attention-flows worker`` — then:

1. **a team at work** (:mod:`benchmarks.team_load`): users who arrive over time and think, ramped 5 → 10 → 20 → 40,
   and the server's capacity in users;
   then, as a stress figure, **20 users at once** (separate processes, like browsers): each analyses a distinct
   held-out sentence, then makes 10 control changes with 1–3 s of think time. An action's time is the server time of
   every callback it triggers (the page sends independent ones in parallel, so a user waits less); the faithfulness
   check the page runs after the views is run too but not counted in the action. Reported: 0 errors, and each
   action's p95 with 20 users against one user's (no target: a team does not all press Analyse in one second);
2. the shared cache's hit ratio under that load (Redis' own counters);
3. **faults** under a lighter load of 6 users: kill -9 the web worker busy with an analysis, restart Redis, and kill
   the Celery worker in the middle of a job (driven in Chromium) — each with what the users saw.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from redis import Redis

from app.dashboard import ids
from app.service.stores import RETRY_SECONDS
from app.testing.dash_http import HttpClient, dependencies, next_round, request_body, updated
from app.testing.localredis import LocalRedis
from app.testing.servers import CHROMIUM, free_port, wait_until_ready
from attention import load_config
from attention.data import held_out
from benchmarks.common import app_row
from benchmarks.dashboard import CHANGES, initial_values

USERS = 20
CHANGES_PER_USER = 10
WEB_WORKERS = 4
THINK_SECONDS = (1.0, 3.0)
FAULT_USERS = 6
LOST_JOB_BOUND = 40.0  # seconds from killing the Celery worker to the page saying the job failed
SKIP = ("faithfulness-panel",)


@dataclass
class Outcome:
    """What one simulated user saw: ``(action, seconds)`` per action, and every error with its reason."""

    actions: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    cpu_seconds: float = 0.0  # the simulated browser's own CPU (on the same 2 cores as the server)


class Browser:
    """Sends a user's callback requests as the page does: every callback one change triggers at once (at most
    :data:`CONNECTIONS` in flight, a browser's limit per host), then those their answers trigger."""

    CONNECTIONS = 6

    def __init__(self, url: str, seen: tuple[str, ...] | None = None) -> None:

        self._local = threading.local()
        self._url = url
        self._pool = ThreadPoolExecutor(self.CONNECTIONS)
        self.specs = dependencies(HttpClient(url))
        self.seen = seen  # the views on screen (None: every view, a window as tall as the page)

    def _client(self):

        if not hasattr(self._local, "client"):
            self._local.client = HttpClient(self._url, timeout=120)
        return self._local.client

    def _post(self, spec: dict, values: dict, prop: str):

        return spec, self._client().post("/_dash-update-component", json=request_body(spec, values, prop))

    def act(self, values: dict, changed: str, outcome: Outcome, action: str) -> None:
        """One user action: wall time until every request it causes is answered (the faithfulness check, which
        the page runs after the views, is sent but not waited for in the action's time)."""

        started, counted = time.perf_counter(), 0.0
        level = next_round([(changed, frozenset())], self.specs, self.seen)
        try:
            while level:
                futures = [
                    (self._pool.submit(self._post, spec, dict(values), prop), chain) for spec, prop, chain in level
                ]
                answered = []
                for future, chain in futures:
                    spec, response = future.result()
                    outcome.requests += 1
                    if response.status_code not in (200, 204):
                        outcome.errors.append(f"{action}: HTTP {response.status_code} from {spec['output'][:60]}")
                        continue
                    if b"Something went wrong" in response.data:
                        outcome.errors.append(f"{action}: the page showed an error ({spec['output'][:60]})")
                    if not any(part in spec["output"] for part in SKIP):  # what runs after the views: not timed
                        counted = time.perf_counter() - started
                    answered.append((spec, response, chain))
                level = next_round(updated(answered, values), self.specs, self.seen)
        except OSError as error:  # requests' ConnectionError is an OSError
            outcome.errors.append(f"{action}: {type(error).__name__}: {str(error)[:120]}")
            return
        outcome.actions.append((action, counted))


def simulated_user(url: str, text: str, seed: int, changes: int, think: tuple[float, float]) -> Outcome:
    """One user: analyse ``text``, then ``changes`` control changes with think time (runs in its own process)."""
    started = time.process_time()
    rng = random.Random(seed)
    browser = Browser(url)
    values = initial_values()
    outcome = Outcome()
    values["text-input.value"] = text
    values["analyse-button.n_clicks"] = 1
    time.sleep(rng.uniform(*think))  # users think before their first action too: they do not all click at once
    browser.act(values, "analyse-button.n_clicks", outcome, "analyse")
    start = seed % len(CHANGES)
    for step in range(changes):
        time.sleep(rng.uniform(*think))
        changed, value = CHANGES[(start + step) % len(CHANGES)]
        values[changed] = value
        browser.act(values, changed, outcome, "control change")
    outcome.cpu_seconds = time.process_time() - started
    return outcome


def run_users(url: str, texts: list[str], *, changes: int, think: tuple[float, float]) -> list[Outcome]:
    """``len(texts)`` users at once, each in its own process (so their JSON parsing does not share one GIL)."""
    with ProcessPoolExecutor(max_workers=len(texts)) as pool:
        futures = [pool.submit(simulated_user, url, text, seed, changes, think) for seed, text in enumerate(texts)]
        return [future.result() for future in futures]


def p95(outcomes: list[Outcome], action: str) -> float:
    times = [seconds for outcome in outcomes for name, seconds in outcome.actions if name == action]
    return float(np.percentile(times, 95)) if times else float("nan")


@dataclass
class Stack:
    """The processes of a team server on loopback."""

    folder: Path
    cache: LocalRedis
    broker: LocalRedis
    port: int
    web: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "ATTENTION_FLOWS_TORCH_THREADS": "1"}

    def start_web(self) -> None:
        command = [sys.executable, "-m", "app.cli", "serve", "--no-prepare", "--port", str(self.port), "--workers",
                   str(WEB_WORKERS), "--redis", self.cache.url(0), "--broker", self.broker.url(0)]  # fmt: skip
        with (self.folder / "web.log").open("a") as log:
            self.web = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment(),
                                        start_new_session=True)  # fmt: skip

    def start_worker(self) -> None:
        command = [sys.executable, "-m", "app.cli", "worker", "--broker", self.broker.url(0)]
        with (self.folder / "worker.log").open("a") as log:
            self.worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment(),
                                           start_new_session=True)  # fmt: skip

    def web_workers(self) -> list[int]:
        """PIDs of gunicorn's worker processes (children of its master)."""

        return [child.pid for child in psutil.Process(self.web.pid).children()] if self.web else []

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds until every web worker answers /healthz ``ok`` (several answers in a row)."""
        return wait_until_ready(f"{self.url}/healthz", timeout=timeout, process=self.web, log=self.folder / "web.log",
                                in_a_row=4 * WEB_WORKERS, interval=0.2)  # fmt: skip

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the web workers have used so far."""

        total = 0.0
        for pid in self.web_workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(psutil.Process(pid).cpu_times()[:2])
        return total

    def job_cpu_seconds(self) -> float:
        """CPU time the Celery worker (and its children) has used so far."""

        if self.worker is None:
            return 0.0
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.worker.pid)
            return sum(sum(p.cpu_times()[:2]) for p in (root, *root.children(recursive=True)))
        return 0.0

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        self.cache.stop()
        self.broker.stop()


def redis_hits(redis: LocalRedis) -> tuple[int, int]:
    """(keyspace hits, misses) of a Redis server since it started."""
    stats = Redis.from_url(redis.url()).info("stats")
    return int(stats["keyspace_hits"]), int(stats["keyspace_misses"])


def held_out_texts(count: int) -> list[str]:
    """Distinct held-out sentences of the default pair (never trained on)."""
    recipe = load_config("default").prepare
    held_out_rows = held_out(recipe)
    short = held_out_rows[held_out_rows["text"].str.split().str.len().between(8, 30)]
    return short["text"].tolist()[:count]


def fault_kill_web_worker(stack: Stack, long_text: str) -> dict:
    """Kill -9 the gunicorn worker busy with an analysis of ``long_text`` while 6 users work: what that request
    got, whether its retry was served, and whether the other users saw errors."""
    background = threading.Thread(
        target=lambda: result.__setitem__("others", run_users(stack.url, held_out_texts(FAULT_USERS + 40)[40:],
                                                              changes=5, think=(0.5, 1.5))),
    )  # fmt: skip
    result: dict = {}
    background.start()
    time.sleep(3)
    browser = Browser(stack.url)
    values = initial_values() | {"text-input.value": long_text, "analyse-button.n_clicks": 1}
    outcome = Outcome()
    workers = [psutil.Process(pid) for pid in stack.web_workers()]
    before = {w.pid: sum(w.cpu_times()[:2]) for w in workers}
    request = threading.Thread(target=browser.act, args=(values, "analyse-button.n_clicks", outcome, "analyse"))
    request.start()
    time.sleep(0.6)
    busiest = max(workers, key=lambda w: sum(w.cpu_times()[:2]) - before[w.pid])
    os.kill(busiest.pid, signal.SIGKILL)
    request.join(timeout=120)
    result["killed_request"] = outcome.errors[0] if outcome.errors else "answered (the killed worker was not it)"
    retry = Outcome()
    started = time.perf_counter()
    values = initial_values() | {"text-input.value": long_text, "analyse-button.n_clicks": 1}
    Browser(stack.url).act(values, "analyse-button.n_clicks", retry, "analyse")
    result["retry"] = "served" if not retry.errors else retry.errors[0]
    result["retry_seconds"] = time.perf_counter() - started
    background.join(timeout=300)
    result["other_errors"] = [e for o in result.get("others", []) for e in o.errors]
    result["replaced"] = len(stack.web_workers()) == WEB_WORKERS
    return result


def fault_restart_redis(stack: Stack) -> dict:
    """Stop the shared cache's Redis for 3 s under the load of 6 users, then start it again."""
    result: dict = {}
    texts = held_out_texts(FAULT_USERS + 60)[60:]
    background = threading.Thread(
        target=lambda: result.__setitem__("outcomes", run_users(stack.url, texts, changes=6, think=(0.5, 1.5)))
    )
    background.start()
    time.sleep(4)
    stack.cache.stop()
    time.sleep(3)
    stack.cache.start()
    restarted = time.perf_counter()
    background.join(timeout=300)
    outcomes = result.get("outcomes", [])
    # the users may be done before a worker looks at Redis again (every RETRY_SECONDS while it is down): one more
    # new analysis once that has passed, and the restarted (empty) server must be written again
    time.sleep(max(0.0, RETRY_SECONDS + 1 - (time.perf_counter() - restarted)))
    after = Outcome()
    values = initial_values() | {"text-input.value": held_out_texts(FAULT_USERS + 61)[-1], "analyse-button.n_clicks": 1}
    Browser(stack.url).act(values, "analyse-button.n_clicks", after, "analyse")
    stored = Redis.from_url(stack.cache.url()).dbsize()
    return {
        "errors": [e for o in outcomes for e in o.errors],
        "actions": sum(len(o.actions) for o in outcomes),
        "stored_after_restart": stored,
    }


def fault_kill_celery_worker(stack: Stack) -> dict:
    """Start a 40-text batch export in Chromium, kill -9 the Celery worker mid-job: seconds until the page says
    the job failed, and whether its Run button came back."""
    from playwright.sync_api import sync_playwright  # lazy: playwright

    texts = "\n".join(f"sentence number {n} is a fine film" for n in range(1, 41))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(stack.url)
        page.wait_for_selector("#sankey-graph .sankey", timeout=120_000)
        page.fill(f"#{ids.JOB_EXPORT_TEXTS}", texts)
        page.click(f"#{ids.JOB_EXPORT_RUN}")
        page.wait_for_function(
            f"() => (document.getElementById('{ids.JOB_EXPORT_STATUS}')?.textContent || '').includes('of 40')",
            timeout=120_000,
        )
        progress = page.locator(f"#{ids.JOB_EXPORT_STATUS}").text_content()
        os.killpg(stack.worker.pid, signal.SIGKILL)
        killed = time.perf_counter()
        page.wait_for_function(
            f"() => (document.getElementById('{ids.ERROR}')?.textContent || '').includes('This job failed')",
            timeout=int(LOST_JOB_BOUND * 2000),
        )
        seconds = time.perf_counter() - killed
        message = page.locator(f"#{ids.ERROR}").text_content()
        page.wait_for_function(f"() => !document.getElementById('{ids.JOB_EXPORT_RUN}').disabled", timeout=10_000)
        browser.close()
    return {"progress_at_kill": progress, "seconds": seconds, "message": message}


def memory_mb(pid: int) -> tuple[float, float]:
    """(PSS, USS) of process ``pid`` in MB from ``/proc/PID/smaps_rollup``: its proportional share of every page it
    maps, and the pages only it maps (what it adds above the process it was forked from)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])  # kB
    return fields["Pss"] / 1024, (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024


def preforked(stack: Stack) -> None:
    """The master holds the models, the workers share them: each process's PSS and USS after every worker has
    analysed a sentence, then how long gunicorn's replacement of a killed worker takes to answer."""
    run_users(stack.url, held_out_texts(WEB_WORKERS * 2)[-WEB_WORKERS * 2 :], changes=2, think=(0.1, 0.3))
    master_pss, master_uss = memory_mb(stack.web.pid)
    app_row("memory: gunicorn master (holds the models), PSS / USS", f"{master_pss:.0f} / {master_uss:.0f} MB",
            "report")  # fmt: skip
    for pid in stack.web_workers():
        pss, uss = memory_mb(pid)
        app_row(f"  worker {pid}: PSS / USS (its own pages)", f"{pss:.0f} / {uss:.0f} MB", "USS <= 200 MB",
                uss <= 200)  # fmt: skip
    victim = stack.web_workers()[0]
    started = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    while victim in stack.web_workers() or len(stack.web_workers()) < WEB_WORKERS:
        time.sleep(0.02)
    wait_until_ready(f"{stack.url}/healthz", timeout=120, process=stack.web, in_a_row=4 * WEB_WORKERS,
                     interval=0.02)  # every worker answers ok, the new one too  # fmt: skip
    replaced = time.perf_counter() - started
    app_row("kill -9 an idle web worker: its replacement answers after", f"{replaced:.1f} s", "<= 2 s",
            replaced <= 2)  # fmt: skip


def bench_team(ramp: Callable[[Stack], None] | None = None) -> None:
    """``attention-flows bench team``: start the stack, preforked workers (:func:`preforked`), the ``ramp`` of a team
    at work (:mod:`benchmarks.team_load`), 20 users at once as a stress figure (:func:`under_load`), then the faults
    (:func:`faults`); stop everything it started."""
    for program in ("redis-server", CHROMIUM):
        if shutil.which(program) is None:
            raise SystemExit(f"bench team needs {program} (make test installs it)")
    folder = Path(tempfile.mkdtemp(prefix="attention-flows-team-"))
    stack = Stack(folder, LocalRedis(folder / "cache", maxmemory="512mb"), LocalRedis(folder / "broker"), free_port())
    print(f"team server on loopback ({WEB_WORKERS} gunicorn workers, Redis cache and broker, 1 Celery worker); "
          f"logs in {folder}")  # fmt: skip
    try:
        stack.cache.start()
        stack.broker.start()
        stack.start_web()
        stack.start_worker()
        app_row("start: every web worker ready", f"{stack.wait_ready():.1f} s", "report")
        preforked(stack)
        if ramp is not None:
            ramp(stack)
        texts = held_out_texts(USERS + 1)
        under_load(stack, texts)
        faults(stack, long_text=" ".join(texts)[:1800])
    finally:
        stack.stop()


def under_load(stack: Stack, texts: list[str]) -> None:
    """One user, then :data:`USERS` at once (``texts``: one sentence each, and one more): CPU, errors, each
    action's p95 against the one user's, and the shared cache's hit ratio."""
    # warm every worker (lazy imports, first draws) with other sentences, so the one-user figures are not a
    # cold start's
    run_users(stack.url, held_out_texts(USERS + 1 + WEB_WORKERS)[-WEB_WORKERS:], changes=3, think=(0.2, 0.5))
    cpu0, jobs0 = stack.cpu_seconds(), stack.job_cpu_seconds()
    single = run_users(stack.url, texts[:1], changes=CHANGES_PER_USER, think=THINK_SECONDS)
    cpu1 = stack.cpu_seconds()
    app_row("one user: web workers' CPU for the session", f"{cpu1 - cpu0:.1f} s", "report")
    hits0, misses0 = redis_hits(stack.cache)
    started = time.perf_counter()
    many = run_users(stack.url, texts[1:], changes=CHANGES_PER_USER, think=THINK_SECONDS)
    elapsed = time.perf_counter() - started
    cpu2, jobs2 = stack.cpu_seconds(), stack.job_cpu_seconds()
    hits, misses = redis_hits(stack.cache)
    clients = sum(outcome.cpu_seconds for outcome in many)
    app_row(f"{USERS} users: CPU of web workers, Celery worker, browsers",
            f"{cpu2 - cpu1:.0f} s, {jobs2 - jobs0:.0f} s, {clients:.0f} s in {elapsed:.0f} s", "report")  # fmt: skip
    errors = [error for outcome in single + many for error in outcome.errors]
    requests = sum(outcome.requests for outcome in many)
    app_row(f"{USERS} users x (analyse + {CHANGES_PER_USER} changes): requests", f"{requests} in {elapsed:.0f} s",
            "report")  # fmt: skip
    app_row("  errors (one user and 20 users)", f"{len(errors)}", "0", not errors)
    for error in errors[:5]:
        print(f"    {error}")
    for action in ("analyse", "control change"):  # a stress figure: a team does not all click in one second
        one, twenty = p95(single, action), p95(many, action)
        app_row(f"  {action}: p95 one user -> {USERS} users", f"{one * 1000:.0f} -> {twenty * 1000:.0f} ms",
                f"stress: {twenty / one:.1f}x")  # fmt: skip
        medians = [s for o in many for name, s in o.actions if name == action]
        app_row(f"  {action}: p50 with {USERS} users", f"{statistics.median(medians) * 1000:.0f} ms", "report")
    looked = (hits - hits0) + (misses - misses0)
    ratio = (hits - hits0) / looked if looked else float("nan")
    app_row("  shared cache hit ratio under load (Redis lookups)", f"{ratio:.0%} of {looked}", "report")


def faults(stack: Stack, long_text: str) -> None:
    """Kill -9 the web worker busy with an analysis of ``long_text``, restart Redis, kill -9 the Celery worker
    mid-job: what the users saw of each."""
    print("faults")
    killed = fault_kill_web_worker(stack, long_text)
    app_row("  kill -9 the web worker busy with an analysis: that request", killed["killed_request"][:40], "report")
    app_row("  ... its retry", f"{killed['retry']} in {killed['retry_seconds']:.1f} s", "served",
            killed["retry"] == "served")  # fmt: skip
    app_row("  ... other users' errors", f"{len(killed['other_errors'])}", "0", not killed["other_errors"])
    app_row("  ... gunicorn replaced the worker", str(killed["replaced"]), "True", killed["replaced"])
    stack.wait_ready()
    restarted = fault_restart_redis(stack)
    app_row("  restart Redis under load: errors", f"{len(restarted['errors'])} in {restarted['actions']} actions",
            "0", not restarted["errors"])  # fmt: skip
    app_row("  ... entries written to the restarted Redis", f"{restarted['stored_after_restart']}", "> 0",
            restarted["stored_after_restart"] > 0)  # fmt: skip
    lost = fault_kill_celery_worker(stack)
    app_row("  kill -9 the Celery worker mid-job: reported failed after", f"{lost['seconds']:.1f} s",
            f"<= {LOST_JOB_BOUND:.0f} s", lost["seconds"] <= LOST_JOB_BOUND)  # fmt: skip
    print(f"    page said: {lost['message']}")
