"""The one bridge from the dashboard to the engine. Owns the loaded model pair and a bounded cache.

The browser keeps only an :class:`Analysis` (the texts); everything derived from it lives here, per process, and
is recomputed deterministically on a miss, so gunicorn workers need share nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import pandas as pd
from flask import current_app

from app.state import ViewOptions
from attention import (
    AttentionGraph,
    AttentionRun,
    GraphComparison,
    ModelPair,
    PairRuns,
    Settings,
    attention_matrices,
    compare_graphs,
    compare_heads,
    compare_relevance,
    extract_pair,
    graph_for,
    head_embedding,
    load_pair,
)
from attention.config import PairConfig
from attention.errors import InputTextError

T = TypeVar("T")
EXTENSION_KEY = "attention_flows"
MAX_TEXT_CHARS = 5000


@dataclass(frozen=True)
class Analysis:
    """One analysed input: what the browser stores (a few hundred bytes, never tensors)."""

    text: str
    text_pair: str | None = None

    def to_store(self) -> dict:
        return {"text": self.text, "text_pair": self.text_pair}

    @classmethod
    def from_store(cls, data: dict | None) -> Analysis | None:
        if not data or not data.get("text"):
            return None
        return cls(text=str(data["text"]), text_pair=data.get("text_pair") or None)


class _LRU:
    """Thread-safe bounded memo owned by one service instance."""

    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return value


def hidden_mask(run: AttentionRun, hide: tuple[str, ...]) -> np.ndarray:
    """``[token]`` bool: the tokens of the kinds in ``hide`` ("special", "punctuation")."""
    drop = np.zeros(run.num_tokens, dtype=bool)
    if "special" in hide:
        drop |= np.asarray(run.special)
    if "punctuation" in hide:
        drop |= np.asarray(run.punctuation)
    return drop


def view_run(run: AttentionRun, level: str, hide: tuple[str, ...]) -> AttentionRun:
    """A run at the requested level with hidden token kinds removed (rows renormalised)."""
    if level == "word":
        run = run.at_word_level()
    drop = hidden_mask(run, hide)
    return run.without_tokens(drop) if drop.any() else run


class AnalysisService:
    """Runs both models once per input and serves every view's data from a per-process cache."""

    def __init__(self, pair: ModelPair, *, examples: list[str] | None = None, capacity: int = 256) -> None:
        self.pair = pair
        self.examples = examples or []
        self._cache = _LRU(capacity)
        self._forward_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: str | PairConfig = "default", settings: Settings | None = None) -> AnalysisService:
        pair = load_pair(config, settings=settings)
        return cls(pair, examples=example_texts(pair.config))

    @property
    def num_layers(self) -> int:
        return self.pair.pretrained.num_layers

    @property
    def num_heads(self) -> int:
        return self.pair.pretrained.num_heads

    def analyse(self, text: str | None, text_pair: str | None = None) -> Analysis:
        """Validate and run both models (raises :class:`InputTextError` with a readable message)."""
        text = (text or "").strip()
        if len(text) + len(text_pair or "") > MAX_TEXT_CHARS:
            raise InputTextError(
                f"The text is {len(text) + len(text_pair or '')} characters long.",
                f"Paste at most {MAX_TEXT_CHARS} characters (the model reads at most "
                f"{self.pair.pretrained.max_length} tokens).",
            )
        analysis = Analysis(text=text, text_pair=(text_pair or "").strip() or None)
        self.runs(analysis)
        return analysis

    def runs(self, analysis: Analysis) -> PairRuns:
        """Both models' runs on the input (cached; recomputed on a miss)."""

        def compute() -> PairRuns:
            with self._forward_lock:
                return extract_pair(self.pair, analysis.text, analysis.text_pair)

        return self._cache.get_or_compute(("runs", analysis), compute)

    def view_runs(self, analysis: Analysis, options: ViewOptions) -> PairRuns:
        key = ("view", analysis, options.level, options.hide)
        return self._cache.get_or_compute(
            key, lambda: self.runs(analysis).map(lambda run: view_run(run, options.level, options.hide))
        )

    def clamped(self, analysis: Analysis, options: ViewOptions) -> ViewOptions:
        """``options`` without choices that do not exist for this input (e.g. a token of a previous text)."""
        run = self.view_runs(analysis, replace(options, hide=())).pretrained
        return options.clamp(run.num_layers, run.num_heads, run.num_tokens)

    def trace_sources(self, analysis: Analysis, options: ViewOptions) -> tuple[int, ...]:
        """Positions, in the shown (possibly filtered) tokens, to trace from: the chosen tokens that are not
        hidden; else the classification token; else (it is hidden) every token.

        ``options.sources`` are positions at the chosen level *before* hiding, so they survive toggling filters.
        """
        drop = hidden_mask(self.view_runs(analysis, replace(options, hide=())).pretrained, options.hide)
        shown_index = np.cumsum(~drop) - 1
        chosen = tuple(int(shown_index[s]) for s in options.sources if s < drop.size and not drop[s])
        if chosen:
            return chosen
        run = self.view_runs(analysis, options).pretrained
        return (run.cls_index,) if run.cls_index is not None else tuple(range(run.num_tokens))

    def _memo(self, name: str, analysis: Analysis, parts: tuple, compute: Callable[[], T]) -> T:
        return self._cache.get_or_compute((name, analysis, *parts), compute)

    def _trace_settings(self, analysis: Analysis, options: ViewOptions) -> dict:
        """The attention-graph settings shared by the Sankey and the graph-influence views."""
        return {
            "tau": options.tau,
            "alpha": options.alpha,
            "heads": options.heads,
            "layers": options.layers,
            "sources": self.trace_sources(analysis, options),
        }

    def _graph_key(self, analysis: Analysis, options: ViewOptions) -> tuple[ViewOptions, dict, tuple]:
        """Clamped options, the attention-graph settings, and the cache key they make."""
        options = self.clamped(analysis, options)
        settings = self._trace_settings(analysis, options)
        return options, settings, (options.level, options.hide, *settings.values())

    def model_graphs(self, analysis: Analysis, options: ViewOptions) -> tuple[AttentionGraph, AttentionGraph]:
        """Both models' attention graphs (pre-trained, fine-tuned), shared by the Sankey and the influence views."""
        options, settings, key = self._graph_key(analysis, options)
        runs = self.view_runs(analysis, options)
        return self._memo(
            "model_graphs",
            analysis,
            key,
            lambda: (graph_for(runs.pretrained, **settings), graph_for(runs.finetuned, **settings)),
        )

    def graphs(self, analysis: Analysis, options: ViewOptions) -> GraphComparison:
        _, _, key = self._graph_key(analysis, options)
        return self._memo("graphs", analysis, key, lambda: compare_graphs(*self.model_graphs(analysis, options)))

    def heads(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        runs = self.view_runs(analysis, options)
        return self._memo("heads", analysis, (options.level, options.hide), lambda: compare_heads(*_both(runs)))

    def embedding(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        runs = self.view_runs(analysis, options)
        return self._memo("embedding", analysis, (options.level, options.hide), lambda: head_embedding(*_both(runs)))

    def relevance(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        options = self.clamped(analysis, options)
        settings = self._trace_settings(analysis, options)
        settings["source"] = settings.pop("sources")
        if options.method != "graph":
            del settings["tau"], settings["alpha"]
        runs = self.view_runs(analysis, options)

        def compute() -> pd.DataFrame:
            graphs = self.model_graphs(analysis, options) if options.method == "graph" else None
            return compare_relevance(*_both(runs), options.method, graphs=graphs, **settings)

        return self._memo(
            "relevance", analysis, (options.level, options.hide, options.method, *settings.values()), compute
        )

    def matrices(self, analysis: Analysis, options: ViewOptions, layer: int, head: int | None) -> pd.DataFrame:
        options = self.clamped(analysis, options)
        heads = (head,) if head is not None else options.heads
        runs = self.view_runs(analysis, options)
        return self._memo(
            "matrices",
            analysis,
            (options.level, options.hide, layer, heads, options.aggregation),
            lambda: attention_matrices(*_both(runs), layer, heads=heads, aggregation=options.aggregation),
        )


def _both(runs: PairRuns) -> tuple[AttentionRun, AttentionRun]:
    return runs.pretrained, runs.finetuned


def example_texts(config: PairConfig) -> list[str]:
    """The sentences the page offers: the config's ``examples``, else held-out sentences of its data."""
    if config.examples:
        return list(config.examples)
    if config.prepare is None:
        return []
    from attention.data import example_sentences

    try:
        return example_sentences(config.prepare)
    except Exception:  # examples are a convenience: a missing data package must not stop the dashboard
        return []


def current_service() -> AnalysisService:
    """The service of the app handling the current request: waits while the models load (see
    :mod:`app.loading`), raises their load error if they failed."""
    return current_app.extensions[EXTENSION_KEY].get()
