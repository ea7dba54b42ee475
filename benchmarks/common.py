"""What the benchmarks share: how a figure is printed next to its target, the timer, the default pair with its
held-out sentences, the second fine-tuned twin (seed noise), and where Chromium is."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from attention.config import load_config
from attention.data import held_out
from attention.models import load_model, load_pair
from attention.settings import load_settings

# The views a 1600 x 1000 window draws as the page opens: on screen, or within half a screen below it (views are drawn
# when seen: app/dashboard/callbacks/lazy.py, assets/seen.js).
FIRST_SCREEN = ("sentence", "sankey", "network")


def row(name: str, measured: str, target: str, verdict: bool | None = None, *, name_width: int = 58) -> None:
    """Print one figure: its name and measured value (together 80 columns), its target and, when there is a
    verdict, ``ok`` or ``MISSED``."""
    mark = "" if verdict is None else ("  ok" if verdict else "  MISSED")
    print(f"  {name:<{name_width}} {measured:>{80 - name_width}}   target {target}{mark}")


def app_row(name: str, measured: str, target: str, verdict: bool | None = None) -> None:
    """:func:`row` with the wider name column of the app's benchmarks (dashboard, export, memory, team, corpus)."""
    row(name, measured, target, verdict, name_width=60)


def timed(fn: Callable[[], object], repeats: int = 5) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls (seconds) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def pair_and_held_out(count: int, *, min_tokens: int = 0, max_tokens: int = 10_000, config: str = "default"):
    """A pair (default: the default pair), loaded, and up to ``count`` of its held-out sentences of
    ``min_tokens..max_tokens`` tokens."""
    config = load_config(config)
    pair = load_pair(config)
    texts = held_out(config.prepare)["text"].tolist()
    tokenizer = pair.finetuned.tokenizer
    chosen = [t for t in texts if min_tokens <= len(tokenizer(t)["input_ids"]) <= max_tokens]
    return pair, chosen[:count]


def seed_twin(pair, seed: int):
    """The pair's fine-tuned twin made with another ``seed`` (``attention-flows prepare --seed``), loaded; None,
    after saying how to make it, when it does not exist."""
    folder = load_settings().models_dir / f"{pair.config.finetuned.prepared}-seed{seed}"
    if not (folder / "config.json").is_file():
        named = pair.config.source_path.stem if pair.config.source_path else pair.config.name
        print(f"no second twin at {folder}: run `attention-flows prepare --pair {named} --seed {seed}` first")
        return None
    return load_model(folder, name=f"seed {seed}")
