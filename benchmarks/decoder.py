"""``attention-flows bench decoder [--pair NAME]``: a decoder pair (``smollm-sentiment`` by default) — its twin's card,
the cost of an analysis, and what fine-tuning changed beside a second seed's twin (README, "Decoder-only models";
docs/comparison.md).

Needs ``attention-flows prepare --pair NAME`` (and ``--seed 7`` for the seed gap)."""

from __future__ import annotations

import resource
import statistics
import time

from app.core.options import ViewOptions
from app.service.analysis import AnalysisService
from app.views.render import RENDERERS, render
from attention.config import load_config
from attention.prepare import prepared_dir, read_card
from attention.settings import load_settings
from benchmarks.common import pair_and_held_out
from benchmarks.mixing import bench_changes

FIRST_SCREEN = ("sentence", "sankey", "network")  # what a 1600 x 1000 window draws first


def bench_decoder(sentences: int = 50, pair: str = "smollm-sentiment") -> None:
    """Card, analysis cost (44-52-token held-out inputs, first screen and every view, one torch thread) and the
    per-layer change vs the seed gap by weights and by ALTI."""
    config = load_config(pair)
    card = read_card(prepared_dir(config, load_settings()))
    if card is None:
        print(f"the twin is not made yet: run `attention-flows prepare --pair {pair}` first")
        return
    accuracy, zero_shot = card["held_out_accuracy"], card["base_zero_shot_accuracy"]
    print(f"twin: held-out accuracy {accuracy:.3f} (base zero-shot {zero_shot:.3f}), {card['steps']} steps in "
          f"{card['seconds']} s with {card['torch_threads']} torch thread(s)")  # fmt: skip
    started = time.perf_counter()
    service = AnalysisService.from_config(pair)
    print(f"the pair loads in {time.perf_counter() - started:.2f} s (target <= 5 s)")
    _, texts = pair_and_held_out(6, min_tokens=44, max_tokens=52, config=pair)
    options, first, every = ViewOptions(), [], []
    for text in texts:
        started = time.perf_counter()
        analysis = service.analyse(text, measure=options.measure)
        for view in FIRST_SCREEN:
            render(view, service, analysis, options)
        first.append(time.perf_counter() - started)
        for view in RENDERERS:
            render(view, service, analysis, options)
        every.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"analysis of {len(texts)} new 44-52-token inputs, both models: first screen median "
        f"{statistics.median(first):.2f} s (max {max(first):.2f}), every view median "
        f"{statistics.median(every):.2f} s (max {max(every):.2f}; target <= 2 s); peak RSS {peak:.0f} MB"
    )
    bench_changes(sentences=sentences, config=pair)
