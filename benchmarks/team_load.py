"""A team at work on one server (issue 28, item 5): how many users it holds.

**The load model.** A user arrives at a random moment of a step's first :data:`ARRIVAL_SECONDS`, analyses a new
held-out sentence, then thinks :data:`THINK_SECONDS` (3-10 s) before each next action: a control change (the
next of :data:`LOAD_CHANGES`, cheap redraws and new computations such as DecompX alike), or, once
:data:`ANALYSE_EVERY` (30-90 s) has passed since their last analysis, a new sentence. Their window shows the first
screen (:data:`benchmarks.common.FIRST_SCREEN`), so only those views are drawn, as in a 1600 x 1000 browser. Each
user is a process of its own (JSON parsing does not share one GIL), sending an action's callbacks as the page does.

**The ramp.** One user alone first (:data:`BASELINE_ANALYSES` analyses, each followed by a few changes), then
5 -> 10 -> 20 -> 40 users for :data:`STEP_SECONDS` each. Per step: p50 / p95 of each action's time, errors,
the web workers' CPU per action and the simulated browsers' CPU (they share the server's cores).

**Capacity** is the largest step whose p95 of both actions stays within 2x one user's, with no error.
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import psutil

from benchmarks.common import FIRST_SCREEN, app_row
from benchmarks.dashboard import CHANGES, initial_values
from benchmarks.team import Browser, Outcome, Stack, bench_team, held_out_texts

RAMP = (5, 10, 20, 40)
STEP_SECONDS = 120.0
ARRIVAL_SECONDS = 30.0
ANALYSE_EVERY = (30.0, 90.0)
THINK_SECONDS = (3.0, 10.0)
BASELINE_ANALYSES = 16
BASELINE_CHANGES = 4  # after each of the one user's analyses: 64 changes, the whole cycle of LOAD_CHANGES once
QUIET_PERCENT = 20.0  # the machine's CPU use below which the server counts as idle (its warm-ups done)
ACTIONS = ("analyse", "control change")
_DEFAULTS = initial_values()


def _cycle() -> list[tuple[str, object]]:
    """:data:`~benchmarks.dashboard.CHANGES` as a user makes them: a look at another relevance method or class, then
    back to the default, and every control back to its default at the end of the cycle (a user explores and returns;
    the dashboard bench's list leaves DecompX on for its last third, making every later analysis compute it)."""
    method, target = "relevance-method-dropdown.value", "target-class-dropdown.value"
    cycle: list[tuple[str, object]] = []
    for changed, value in CHANGES:
        cycle.append((changed, value))
        if changed in (method, target) and value != _DEFAULTS[changed]:
            cycle.append((changed, _DEFAULTS[changed]))
    left = {changed for changed, _ in CHANGES} - {method, target, "selected-head-store.data"}
    return cycle + [(changed, _DEFAULTS[changed]) for changed in sorted(left)]


LOAD_CHANGES = _cycle()


@dataclass
class Step:
    """What one step of the ramp measured."""

    users: int
    outcomes: list[Outcome]
    seconds: float
    server_cpu: float  # the web workers' CPU seconds during the step

    def times(self, action: str) -> list[float]:
        return [seconds for outcome in self.outcomes for name, seconds in outcome.actions if name == action]

    def p(self, action: str, q: float) -> float:
        times = self.times(action)
        return float(np.percentile(times, q)) if times else float("nan")

    @property
    def errors(self) -> list[str]:
        return [error for outcome in self.outcomes for error in outcome.errors]

    @property
    def actions(self) -> int:
        return sum(len(outcome.actions) for outcome in self.outcomes)


def working_user(url: str, texts: list[str], seed: int, seconds: float, arrive_within: float) -> Outcome:
    """One user of the load model (module docstring) for ``seconds`` from the step's start; runs in its own process."""
    rng = random.Random(seed)
    started, cpu = time.perf_counter(), time.process_time()
    browser, outcome, values = Browser(url, seen=FIRST_SCREEN), Outcome(), initial_values()
    sentences, changes = iter(texts), itertools.count(seed)
    time.sleep(rng.uniform(0, arrive_within))
    analyse_at = 0.0
    while time.perf_counter() - started < seconds:
        try:
            analyse_at = _next_action(browser, outcome, values, sentences, changes, rng, analyse_at, started)
        except Exception as error:  # what the page would show; the user goes on
            outcome.errors.append(f"{type(error).__name__}: {str(error)[:120]}")
        time.sleep(rng.uniform(*THINK_SECONDS))
    outcome.cpu_seconds = time.process_time() - cpu
    return outcome


def _next_action(browser, outcome, values, sentences, changes, rng, analyse_at: float, started: float) -> float:
    """A new sentence if its time has come, else the next control change; returns when the next sentence is due."""
    if time.perf_counter() - started >= analyse_at:
        values["text-input.value"] = next(sentences)
        values["analyse-button.n_clicks"] = int(values.get("analyse-button.n_clicks") or 0) + 1
        browser.act(values, "analyse-button.n_clicks", outcome, "analyse")
        return time.perf_counter() - started + rng.uniform(*ANALYSE_EVERY)
    changed, value = LOAD_CHANGES[next(changes) % len(LOAD_CHANGES)]
    values[changed] = value
    browser.act(values, changed, outcome, "control change")
    return analyse_at


def lone_user(url: str, texts: list[str]) -> Outcome:
    """One user alone, with more actions than a step gives one user (a p95 needs them): each analysis followed by
    :data:`BASELINE_CHANGES` changes, 1-2 s apart (alone, think time changes nothing the server sees)."""
    rng = random.Random(0)
    browser, outcome, values = Browser(url, seen=FIRST_SCREEN), Outcome(), initial_values()
    changes = itertools.count()
    for number, text in enumerate(texts[:BASELINE_ANALYSES], start=1):
        values["text-input.value"], values["analyse-button.n_clicks"] = text, number
        browser.act(values, "analyse-button.n_clicks", outcome, "analyse")
        for _ in range(BASELINE_CHANGES):
            time.sleep(rng.uniform(1.0, 2.0))
            changed, value = LOAD_CHANGES[next(changes) % len(LOAD_CHANGES)]
            values[changed] = value
            browser.act(values, changed, outcome, "control change")
    return outcome


def wait_until_idle(timeout: float = 120.0) -> None:
    """Return once the machine's CPU use over 3 s is below :data:`QUIET_PERCENT` (or after ``timeout``): the
    workers' warm-ups (numba, each one's export Chromium, a child of the worker) are done."""
    ends = time.perf_counter() + timeout
    while time.perf_counter() < ends and psutil.cpu_percent(interval=3.0) >= QUIET_PERCENT:
        pass


def sentences(count: int, skip: int) -> list[str]:
    """``count`` distinct new inputs: held-out sentences after the first ``skip``, then pairs of them."""
    pool = held_out_texts(10_000)[skip:]
    pairs = (f"{a} {b}" for a, b in itertools.combinations(pool, 2))
    return [*pool, *itertools.islice(pairs, max(0, count - len(pool)))][:count]


def run_step(stack: Stack, users: int, texts: list[str]) -> Step:
    """``users`` users of the load model for :data:`STEP_SECONDS`, each with its own slice of ``texts``."""
    per_user = len(texts) // users
    cpu, started = stack.cpu_seconds(), time.perf_counter()
    with ProcessPoolExecutor(max_workers=users) as pool:
        futures = [
            pool.submit(working_user, stack.url, texts[n * per_user : (n + 1) * per_user], n, STEP_SECONDS,
                        ARRIVAL_SECONDS)
            for n in range(users)
        ]  # fmt: skip
        outcomes = [future.result() for future in futures]
    return Step(users, outcomes, time.perf_counter() - started, stack.cpu_seconds() - cpu)


def team_ramp(stack: Stack) -> None:
    """The ramp (module docstring) and its capacity headline."""
    print(f"a team at work: users arrive within {ARRIVAL_SECONDS:.0f} s, a new sentence every "
          f"{ANALYSE_EVERY[0]:.0f}-{ANALYSE_EVERY[1]:.0f} s, a control change after {THINK_SECONDS[0]:.0f}-"
          f"{THINK_SECONDS[1]:.0f} s of thought; views on screen: {', '.join(FIRST_SCREEN)}")  # fmt: skip
    per_step = int(STEP_SECONDS / ANALYSE_EVERY[0]) + 2
    texts = sentences(BASELINE_ANALYSES + per_step * sum(RAMP), skip=200)  # the bench's other parts use the first
    wait_until_idle()  # a worker replaced or just started warms up (numba, Chromium): not a lone user's time
    cpu = stack.cpu_seconds()
    alone = lone_user(stack.url, texts[:BASELINE_ANALYSES])
    one = Step(1, [alone], 0.0, stack.cpu_seconds() - cpu)
    base = {action: one.p(action, 95) for action in ACTIONS}
    for action in ACTIONS:
        p50 = statistics.median(one.times(action)) * 1000
        app_row(f"one user alone, {action}: p50 / p95 ({len(one.times(action))})",
                f"{p50:.0f} / {base[action] * 1000:.0f} ms", "report")  # fmt: skip
    app_row("  web workers' CPU per action", f"{one.server_cpu / max(1, one.actions) * 1000:.0f} ms", "report")
    texts, capacity, holding = texts[BASELINE_ANALYSES:], 0, True
    for users in RAMP:
        step = run_step(stack, users, texts[: per_step * users])
        texts = texts[per_step * users :]
        held = not step.errors and all(step.p(action, 95) <= 2 * base[action] for action in ACTIONS)
        holding = holding and held  # capacity: every step up to it held
        capacity = users if holding else capacity
        report_step(step, base, held)
    cores = os.cpu_count() or 1
    app_row(f"capacity: users whose p95 stays within 2x one user's, on {cores} cores",
            f"{capacity} users ({capacity / cores:.0f} per core)", ">= 20 (>= 10 per core)",
            capacity >= 20)  # fmt: skip


def report_step(step: Step, base: dict[str, float], held: bool) -> None:
    """One line per figure of a step."""
    app_row(f"{step.users} users for {step.seconds:.0f} s: actions, errors",
            f"{step.actions}, {len(step.errors)}", "0 errors", not step.errors)  # fmt: skip
    for error in step.errors[:3]:
        print(f"    {error}")
    for action in ACTIONS:
        times = step.times(action)
        p50 = statistics.median(times) * 1000 if times else float("nan")
        app_row(f"  {action}: p50 / p95 ({len(times)})", f"{p50:.0f} / {step.p(action, 95) * 1000:.0f} ms",
                f"p95 <= {2 * base[action] * 1000:.0f} ms", step.p(action, 95) <= 2 * base[action])  # fmt: skip
    browsers = sum(outcome.cpu_seconds for outcome in step.outcomes)
    app_row("  CPU: web workers per action; simulated browsers in all",
            f"{step.server_cpu / max(1, step.actions) * 1000:.0f} ms; {browsers:.1f} s", "report")  # fmt: skip
    app_row("  within 2x one user's p95", str(held), "report")


def bench_team_at_work() -> None:
    """``attention-flows bench team``: :func:`benchmarks.team.bench_team` with :func:`team_ramp`."""
    bench_team(ramp=team_ramp)
