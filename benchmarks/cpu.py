"""Where the server's CPU goes for one new analysis, part by part, beside its floor (issue 28, item 1).

Every part is timed in CPU seconds of the calling thread (``time.thread_time``; torch runs its one thread inline),
in the order the page needs them, so each part is measured once and later parts find it cached:

- **passes**: both models' forward passes with attentions (``service.runs``);
- **contributions**: the context-mixing measure the graph is drawn over (ALTI by default: a traced pass per model);
- **relevance**: the sentence view's token scores (rollout over ALTI by default; class methods add a backward pass);
- **graph**: the attention graph of both models and their comparison;
- **figure: VIEW**: what is left of drawing each view (its own data, e.g. head metrics, and the figure dict);
- **serialisation**: every figure to JSON, as Dash sends it (the views seen first count only their own).

The **floor** is measured in the same run on the same texts: the two models' bare forward passes (attentions out)
and the fine-tuned model's backward pass from its predicted logit, nothing else — what no design can avoid.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np
from plotly.io.json import to_json_plotly  # what Dash sends

from app.core.options import ViewOptions
from app.service.analysis import AnalysisService
from app.views.render import RENDERERS, render
from benchmarks.common import FIRST_SCREEN, app_row


def bare_passes(service: AnalysisService, text: str) -> float:
    """CPU seconds of the floor for ``text``: both forward passes with attentions, the fine-tuned backward."""
    import torch  # lazy: torch

    started = time.thread_time()
    for loaded in (service.pair.pretrained, service.pair.finetuned):
        inputs = loaded.tokenizer(text, return_tensors="pt", truncation=True)
        if loaded is service.pair.finetuned and loaded.is_classifier:  # the weights are frozen: grad to the input
            ids = inputs.pop("input_ids")
            embedded = loaded.model.get_input_embeddings()(ids).detach().requires_grad_(True)
            logits = loaded.model(**inputs, inputs_embeds=embedded, output_attentions=True).logits[0]
            logits[int(logits.argmax())].backward()
        else:
            with torch.no_grad():
                loaded.model(**inputs, output_attentions=True)
    return time.thread_time() - started


def analysis_parts(service: AnalysisService, text: str, options: ViewOptions) -> dict[str, float]:
    """CPU seconds of each part of a new analysis of ``text`` drawn with ``options`` (module docstring)."""
    parts: dict[str, float] = {}

    def part(name: str, work) -> object:
        started = time.thread_time()
        result = work()
        parts[name] = parts.get(name, 0.0) + time.thread_time() - started
        return result

    analysis = part("passes", lambda: service.analyse(text))
    part("passes", lambda: service.runs(analysis))
    part("contributions", lambda: service.measure_runs(analysis, options.measure))
    part("relevance", lambda: service.relevance(analysis, options))
    part("graph", lambda: service.graphs(analysis, options))
    selected = (service.num_layers, None)
    for view in RENDERERS:
        figure = part(f"figure: {view}", lambda view=view: render(view, service, analysis, options, selected))
        part(f"serialisation: {view}", lambda figure=figure: to_json_plotly(figure))
    return parts


def _seen(name: str) -> bool:
    """Whether a part is paid for the views seen first: every part but the other views' drawing and sending."""
    view = name.partition(": ")[2]
    return not view or view in FIRST_SCREEN


def measure_cpu(service: AnalysisService, texts: list[str]) -> None:
    """Print the median CPU seconds of each part over ``texts`` (new inputs), their total with every view and with
    only the views seen first, and each against the floor measured on the same texts."""
    import torch  # lazy: torch

    torch.manual_seed(0)
    options = ViewOptions()
    floors, totals, seen = [], [], []
    by_part: dict[str, list[float]] = defaultdict(list)
    for text in texts:
        floors.append(bare_passes(service, text))
        parts = analysis_parts(service, text, options)
        for name in {name.partition(": ")[0] if name.startswith("serialisation") else name for name in parts}:
            by_part[name].append(sum(s for part, s in parts.items() if part == name or part.startswith(f"{name}: ")))
        totals.append(sum(parts.values()))
        seen.append(sum(s for name, s in parts.items() if _seen(name)))
    floor = statistics.median(floors)
    print(f"  server CPU per new analysis, by part (median of {len(texts)} inputs, CPU ms of the serving thread)")
    for name, values in sorted(by_part.items(), key=lambda item: -statistics.median(item[1])):
        app_row(f"    {name}", f"{statistics.median(values) * 1000:.0f} ms", "report")
    app_row("  floor: bare forward passes + fine-tuned backward", f"{floor * 1000:.0f} ms", "report")
    total, visible = statistics.median(totals), statistics.median(seen)
    app_row("  new analysis, every view drawn", f"{total * 1000:.0f} ms = {total / floor:.1f}x floor", "report")
    app_row(f"  new analysis, the views seen first ({', '.join(FIRST_SCREEN)})",
            f"{visible * 1000:.0f} ms = {visible / floor:.2f}x floor", "<= 1.5x floor",
            visible <= 1.5 * floor)  # fmt: skip
    spread = float(np.percentile(np.asarray(totals) / np.asarray(floors), 95))
    app_row("  every view / floor, p95 over the inputs", f"{spread:.1f}x", "report")
