"""The one bridge from the dashboard to the engine. Owns the loaded model pair and a bounded cache.

The browser keeps only an :class:`Analysis` (the texts); everything derived from it lives here, per process, and
is recomputed deterministically on a miss, so gunicorn workers need share nothing.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import numpy as np
import pandas as pd

from app.core.analysis import Analysis
from app.core.fold import Fold, choose_fold, first_of_groups
from app.core.options import CLASS_METHODS, FOLD_ABOVE, PREDICTED, OptionError, ViewOptions
from app.service.codecs import (
    decode_faithfulness,
    decode_graphs,
    decode_relevance,
    decode_runs,
    encode_faithfulness,
    encode_graphs,
    encode_relevance,
    encode_runs,
)
from app.service.drawn import hidden_mask, matrix_run, shown_labels
from app.service.examples import Examples
from app.service.memo import ByteLRU, fresh_locks_after_fork
from app.service.stores import DiskCache, RedisCache, pair_fingerprint, shared_key
from attention import (
    AttentionGraph,
    AttentionRun,
    ClassRelevance,
    GraphComparison,
    LoadedModel,
    ModelPair,
    PairRuns,
    Settings,
    attention_matrices,
    attention_received,
    class_relevance,
    compare_graphs,
    compare_heads,
    compare_relevance,
    extract,
    graph_for,
    head_embedding,
    load_pair,
    load_settings,
    relevance_frame,
)
from attention.config import PairConfig
from attention.defaults import DEFAULT_MEASURE, RESIDUAL_MEASURES, share_measure
from attention.errors import InputTextError
from attention.evaluation import correlations, sentence_scores, top_layer
from attention.extraction import check_length
from attention.gradients import extract_and_explain
from attention.graph import mass_split, word_graph
from attention.methods import default_sources, merge_scores, relevance, sink_tokens, token_positions
from attention.mixing import MIXING_MEASURES, contributions, contributions_for
from attention.mixing.contributions import run_and_contributions
from attention.mixing.decompx import decompx
from attention.relevance_methods import Evidence, relevance_method
from attention.tokens import word_all
from attention.version import __version__

T = TypeVar("T")


# Graphs of an input up to this many tokens are kept in this worker's memo only: at 64 tokens both models' graphs
# cost ~5 ms to compute, ~2 ms to encode and store and ~3 ms for another worker to fetch and decode; at 400 tokens
# ~29 ms against the same few ms (docs/deploy.md, "Shared analysis cache").
SHARE_GRAPHS_ABOVE = 128


class AnalysisService:
    """Runs both models once per input and serves every view's data from a per-process cache."""

    def __init__(
        self,
        pair: ModelPair,
        *,
        examples: list[str] | None = None,
        golds: dict[str, str] | None = None,
        cache_bytes: int | None = None,
        shared: RedisCache | DiskCache | None = None,
    ) -> None:
        self.pair = pair
        self.shared = shared  # Redis (team server) or a disk cache shared by this machine's processes, or None
        self.examples = examples or []
        self.golds = golds or {}  # held-out example -> its gold label
        budget = cache_bytes if cache_bytes is not None else load_settings().cache_mb * 2**20
        self.cache = ByteLRU(budget)
        self._forward_lock = threading.Lock()
        fresh_locks_after_fork(self, "_forward_lock")

    @classmethod
    def from_config(cls, config: str | PairConfig = "default", settings: Settings | None = None) -> AnalysisService:
        settings = settings or load_settings()
        pair = load_pair(config, settings=settings)
        examples = Examples.of(pair.config)
        return cls(pair, examples=examples.texts, golds=examples.golds, cache_bytes=settings.cache_mb * 2**20)

    @property
    def name(self) -> str:
        """The pair's name (what the page sends to pick it)."""
        return self.pair.config.name

    @property
    def num_layers(self) -> int:
        return self.pair.pretrained.num_layers

    @property
    def num_heads(self) -> int:
        return self.pair.pretrained.num_heads

    def models(self) -> dict[str, LoadedModel]:
        return {"pretrained": self.pair.pretrained, "finetuned": self.pair.finetuned}

    def class_names(self) -> tuple[str, ...]:
        """The classes the class methods can explain (the fine-tuned model's labels)."""
        return next((m.labels for m in (self.pair.finetuned, self.pair.pretrained) if m.is_classifier), ())

    def analyse(
        self, text: str | None, text_pair: str | None = None, *, explain: bool = False, measure: str = DEFAULT_MEASURE
    ) -> Analysis:
        """Validate and run both models (raises :class:`InputTextError` with a readable message); ``explain`` and
        ``measure``: see :meth:`runs`."""
        if not isinstance(text, str | None) or not isinstance(text_pair, str | None):
            raise OptionError("The page sent an input that is not text.", "Type the text again and press Analyse.")
        text, text_pair = (text or "").strip(), (text_pair or "").strip() or None
        check_length(text, text_pair)
        analysis = Analysis(text=text, text_pair=text_pair, models=self.name)
        self.runs(analysis, explain=explain, measure=measure)
        return analysis

    def runs(self, analysis: Analysis, *, explain: bool = False, measure: str | None = None) -> PairRuns:
        """Both models' runs on the input (cached; recomputed on a miss). With ``explain``, a classifier's class
        relevance for its predicted class (the default view) comes from the same forward pass and is cached too:
        one forward pass fewer than the run and :meth:`explained` apart; without, no backward pass is run. Else,
        with a context-mixing ``measure`` (the page's), its maps (:meth:`measure_runs`) come from the same pass."""

        def compute() -> PairRuns:
            runs, explained, maps = {}, {}, {}
            with self._forward_lock:
                for model, loaded in self.models().items():
                    if explain and loaded.is_classifier:
                        runs[model], explained[model] = extract_and_explain(loaded, analysis.text, analysis.text_pair)
                    elif measure in MIXING_MEASURES:
                        runs[model], measured = run_and_contributions(
                            loaded, analysis.text, analysis.text_pair, measures=(measure,)
                        )
                        maps[model] = measured[measure].as_run()
                    else:
                        runs[model] = extract(loaded, analysis.text, analysis.text_pair)
            for model, value in explained.items():
                self._keep_explained(analysis, model, value)
            if len(maps) == 2:
                self._keep_maps(analysis, measure, PairRuns(maps["pretrained"], maps["finetuned"]))
            return PairRuns(runs["pretrained"], runs["finetuned"])

        shared = functools.partial(self._shared, "runs", analysis, (), compute, encode_runs, decode_runs)
        return self.cache.get_or_compute(("runs", self._key(analysis)), shared)

    def measure_runs(self, analysis: Analysis, measure: str) -> PairRuns:
        """What the graph views are drawn over: :meth:`runs` for raw attention, else both models' contribution
        maps under ``measure`` as runs (``weights`` ``[layer, 1, query, key]``: one map per layer)."""
        if measure == "raw_attention":
            return self.runs(analysis)
        runs = self.runs(analysis)

        def compute() -> PairRuns:
            with self._forward_lock:
                maps = [
                    contributions(loaded, analysis.text, analysis.text_pair, measure=measure,
                                  probabilities=run.probabilities).as_run()
                    for loaded, run in zip(self.models().values(), _both(runs), strict=True)
                ]  # fmt: skip
            return PairRuns(*maps)

        shared = functools.partial(self._shared, "maps", analysis, (measure,), compute, encode_runs, decode_runs)
        return self._memo("maps", analysis, (measure,), shared)

    def contribution_shares(self, analysis: Analysis) -> pd.DataFrame:
        """``layer, head, contribution_share_pretrained, contribution_share_finetuned``: each head's share of its
        layer's mixing, from the heads' parts after the first LayerNorm (``‖g1_i(α^h_ij f^h(x_j))‖`` summed over
        query and key, over all heads'; Kobayashi et al. 2021) — for a decoder, of what the layer adds to the
        residual stream (``‖α^h_ij f^h(x_j)‖ / ρ_i``) — whatever measure the graph views use."""

        def compute() -> pd.DataFrame:
            with self._forward_lock:
                shares = [
                    contributions_for(loaded, analysis.text, analysis.text_pair, measures=(measure,))[
                        measure
                    ].head_shares()
                    for loaded in self.models().values()
                    for measure in (share_measure(loaded.causal),)
                ]
            layer, head = np.indices(shares[0].shape).reshape(2, -1)
            return pd.DataFrame({"layer": layer + 1, "head": head,
                                 **{f"contribution_share_{m}": v.reshape(-1) for m, v in zip(
                                     ("pretrained", "finetuned"), shares, strict=True)}})  # fmt: skip

        return self._memo("contribution_shares", analysis, (), compute)

    def _keep_maps(self, analysis: Analysis, measure: str, maps: PairRuns) -> None:
        """Cache both models' maps under ``measure`` computed along with their runs (here and in the shared cache),
        so :meth:`measure_runs` does not run the models again."""
        self._memo("maps", analysis, (measure,), lambda: maps)
        if self.shared is not None:
            self.shared.put(shared_key("maps", self.fingerprint, analysis.text, analysis.text_pair, measure),
                            encode_runs(maps))  # fmt: skip

    def _keep_explained(self, analysis: Analysis, model: str, explained: ClassRelevance) -> None:
        """Cache a class relevance for the predicted class computed along with a run (here and, if any, in the
        shared cache), so the default view does not run the model again."""
        self._memo("explained", analysis, (model, PREDICTED), lambda: explained)
        if self.shared is not None:
            key = shared_key("relevance", self.fingerprint, analysis.text, analysis.text_pair, model, PREDICTED)
            self.shared.put(key, encode_relevance(explained))

    def _shared(self, kind: str, analysis: Analysis, parts: tuple, compute: Callable[[], T], encode, decode) -> T:
        """``compute()`` through the shared cache (:mod:`app.service.stores`: Redis, or this machine's disk) if any."""
        if self.shared is None:
            return compute()
        key = shared_key(kind, self.fingerprint, analysis.text, analysis.text_pair, *parts)
        return self.shared.memo(key, compute, encode, decode)

    @functools.cached_property
    def fingerprint(self) -> str:
        """What identifies this pair's runs across workers and machines
        (:func:`app.service.stores.pair_fingerprint`)."""
        dirs = (str(self.pair.pretrained.path), str(self.pair.finetuned.path))
        return pair_fingerprint(self.name, dirs, __version__)

    def labels(self, analysis: Analysis, level: str) -> tuple[str, ...]:
        """Token (or word) strings of the input at ``level``."""
        return shown_labels(self.runs(analysis).pretrained, level)

    def segments(self, analysis: Analysis, level: str) -> tuple[int, ...]:
        """Segment (0 or 1, the second text of a pair) of each token (or word) at ``level``."""
        run = self.runs(analysis).pretrained
        if level == "token":
            return run.segments
        return tuple(first_of_groups(run.segments, run.groups, int(max(run.groups)) + 1).tolist())

    def segment_start(self, analysis: Analysis, options: ViewOptions) -> int | None:
        """Where the second segment of a pair starts among the rows the matrices and token scores draw (hidden
        tokens left out, a long input folded); None for a single text."""
        segments = np.asarray(self.segments(analysis, options.level))
        hidden = self.hidden(analysis, options)
        fold = self.fold(analysis, options)
        if fold is not None:  # a drawn row's segment is its first token's; "other" (last) is never a boundary
            groups, _ = fold.without(hidden)
            segments = first_of_groups(segments[~hidden], groups, int(groups.max()))
        else:
            segments = segments[~hidden]
        starts = np.flatnonzero(np.diff(segments) != 0)
        return int(starts[0]) + 1 if starts.size else None

    def hidden(self, analysis: Analysis, options: ViewOptions) -> np.ndarray:
        """``[position]`` bool at ``options.level``: what the views leave out."""
        return hidden_mask(self.runs(analysis).pretrained, options.hide, options.level)

    def matrix_tokens(self, analysis: Analysis, options: ViewOptions) -> tuple[str, ...]:
        """The rows and columns the matrices draw: tokens (or words) at ``options.level``, hidden ones left out, a
        long input folded (:meth:`fold`)."""
        hidden = self.hidden(analysis, options)
        fold = self.fold(analysis, options)
        if fold is not None:
            return fold.without(hidden)[1]
        return tuple(
            label for label, gone in zip(self.labels(analysis, options.level), hidden, strict=True) if not gone
        )

    def checked(self, analysis: Analysis, options: ViewOptions) -> ViewOptions:
        """``options`` checked against this model and input (:meth:`ViewOptions.checked`: a layer, head or token
        that does not exist is refused with an :class:`~app.core.options.OptionError`, never dropped)."""
        run = self.runs(analysis).pretrained
        count = run.num_tokens if options.level == "token" else int(max(run.groups)) + 1
        return options.checked(run.num_layers, run.num_heads, count)

    def trace_sources(self, analysis: Analysis, options: ViewOptions) -> tuple[int, ...]:
        """Token-level positions traced from: the chosen tokens (a word stands for its pieces), every token with
        ``trace_all``, else the classification token. Hiding never changes them."""
        run = self.runs(analysis).pretrained
        options = self.checked(analysis, options)
        if options.trace_all:
            return tuple(range(run.num_tokens))
        if options.sources:
            return tuple(token_positions(run, options.sources, options.level))
        return tuple(default_sources(run))

    def source_names(self, analysis: Analysis, options: ViewOptions) -> str:
        """How the views name what is traced: "[CLS]", a decoder's "the last token "."", "all tokens (mean)", or
        the chosen words."""
        options = self.checked(analysis, options)
        if options.trace_all:
            return "all tokens (mean)"
        run = self.runs(analysis).pretrained
        if not options.sources:
            token = run.tokens[default_sources(run)[0]]
            return f"the last token “{token}”" if run.facts.causal else token
        labels = shown_labels(run, options.level)
        names = [labels[s] for s in options.sources]
        return ", ".join(names[:4]) + (" …" if len(names) > 4 else "")

    def view_memo(self, name: str, analysis: Analysis, parts: tuple, compute: Callable[[], T]) -> T:
        """``compute()`` kept in this worker's cache under ``name``, the analysis and ``parts`` (hashable): what two
        views drawn from the same values share (the Sankey's and the network's drawn edges and notes). Callers must
        not change what it returns."""
        return self._memo(f"view:{name}", analysis, parts, compute)

    def _memo(self, name: str, analysis: Analysis, parts: tuple, compute: Callable[[], T]) -> T:
        return self.cache.get_or_compute((name, self._key(analysis), *parts), compute)

    def _key(self, analysis: Analysis) -> Analysis:
        """``analysis`` as a cache key: with this pair's name, so a page's first (unnamed) analysis and its later
        named ones share entries."""
        return analysis if analysis.models == self.name else replace(analysis, models=self.name)

    @staticmethod
    def _graph_settings(options: ViewOptions) -> dict:
        """The attention-graph settings shared by the Sankey and the graph relevance."""
        return {
            "tau": options.tau,
            "alpha": options.graph_alpha,
            "heads": options.graph_heads,
            "sinks": options.sinks,
            "aggregation": options.aggregation,
            "measure": options.measure,
        }

    def model_graphs(self, analysis: Analysis, options: ViewOptions) -> tuple[AttentionGraph, AttentionGraph]:
        """Both models' graphs (pre-trained, fine-tuned) over ``options.measure``'s token-level maps."""
        options = self.checked(analysis, options)
        settings = self._graph_settings(options)
        measure = settings.pop("measure")
        runs = self.measure_runs(analysis, measure)
        settings["residual_in_weights"] = measure in RESIDUAL_MEASURES
        settings["layers"] = options.layers
        settings["sources"] = self.trace_sources(analysis, options)
        return self._memo(
            "model_graphs",
            analysis,
            (measure, *settings.values()),
            lambda: (graph_for(runs.pretrained, **settings), graph_for(runs.finetuned, **settings)),
        )

    def mass_splits(self, analysis: Analysis, options: ViewOptions) -> dict[str, tuple[float, float, float]]:
        """Per model, where its graph's traced mass ends (:func:`attention.graph.mass_split`: words, special tokens
        and sinks, lost below τ) — what :meth:`graphs`' nodes say, at a fraction of its cost (no frames, any level
        or fold: both only merge positions)."""
        options = self.checked(analysis, options)
        settings = self._graph_settings(options)
        measure, sinks = settings.pop("measure"), settings.pop("sinks")
        runs = self.measure_runs(analysis, measure)
        sources = self.trace_sources(analysis, options)

        def counted(run) -> np.ndarray:
            """The tokens whose drawn position counts with the specials: a special token or a sink (at word level,
            a word made only of them, as the word graph marks it)."""
            special, sink = np.asarray(run.special), np.zeros(len(run.special), dtype=bool)
            sink[list(sink_tokens(run) if sinks else ())] = True
            if options.level == "word":
                groups = np.asarray(run.groups)
                return np.flatnonzero((word_all(special, groups) | word_all(sink, groups))[groups])
            return np.flatnonzero(special | sink)

        def compute() -> dict[str, tuple[float, float, float]]:
            return {
                model: mass_split(
                    run.weights, special=counted(run), sinks=sink_tokens(run) if sinks else (), sources=sources,
                    layers=options.layers, residual_in_weights=measure in RESIDUAL_MEASURES, **settings,
                )
                for model, run in (("pretrained", runs.pretrained), ("finetuned", runs.finetuned))
            }  # fmt: skip

        key = (measure, sinks, options.level, options.layers, sources, *settings.values())
        return self._memo("mass_splits", analysis, key, compute)

    def graphs(self, analysis: Analysis, options: ViewOptions) -> GraphComparison:
        """The union of both graphs, at ``options.level`` (a word's pieces merged: masses and flows add up), a long
        input folded (:meth:`fold`)."""
        options = self.checked(analysis, options)
        run = self.runs(analysis).pretrained
        fold = self.fold(analysis, options)

        def compute() -> GraphComparison:
            graphs = self.model_graphs(analysis, options)
            runs = self.measure_runs(analysis, options.measure)
            weights = (runs.pretrained.weights, runs.finetuned.weights)
            groups, labels = (np.asarray(run.groups), run.words()) if options.level == "word" else (None, None)
            if fold is not None:
                groups, labels = (fold.groups if groups is None else fold.groups[groups]), fold.labels
            if groups is None:
                return compare_graphs(*graphs, weights=weights)
            graphs = tuple(word_graph(g, groups, labels) for g in graphs)
            return compare_graphs(*graphs, weights=weights, groups=groups)

        settings = self._graph_settings(options)
        key = (options.level, options.layers, self.trace_sources(analysis, options), *settings.values())
        key = (*key, fold.key if fold else None)
        if run.num_tokens <= SHARE_GRAPHS_ABOVE:  # cheaper to compute again than to store, fetch and decode
            return self._memo("graphs", analysis, key, compute)
        # the Sankey and the network ask for the same graphs at once, usually on two workers: computed once
        shared = functools.partial(self._shared, "graphs", analysis, key, compute, encode_graphs, decode_graphs)
        return self._memo("graphs", analysis, key, shared)

    def never_folds(self, analysis: Analysis, options: ViewOptions) -> bool:
        """True when the input is short enough at ``options.level`` and hiding to be drawn whole whatever the
        fold's other options (top-k, relevance, tracing) are."""
        options = self.checked(analysis, options)
        return int((~self.hidden(analysis, options)).sum()) <= FOLD_ABOVE

    def fold(self, analysis: Analysis, options: ViewOptions) -> Fold | None:
        """How a long input is folded at ``options.level`` (:mod:`app.core.fold`), or None when it is drawn whole: the
        ``top_k`` positions by the current relevance (fine-tuned model, else pre-trained; deepest layer) kept, with
        every special, sink (a decoder's first token), hidden and traced position."""
        options = self.checked(analysis, options)

        def compute() -> Fold | None:
            labels, hidden = self.labels(analysis, options.level), self.hidden(analysis, options)
            if options.top_k == 0 or (~hidden).sum() <= FOLD_ABOVE:
                return None
            frame = self.relevance(analysis, options)
            layer = frame["layer"].to_numpy()
            deepest = layer == layer.max() if layer.size else np.zeros(0, dtype=bool)
            values = frame["finetuned"].to_numpy(dtype=float)[deepest]
            if np.isnan(values).all():
                values = frame["pretrained"].to_numpy(dtype=float)[deepest]
            scores = np.full(len(labels), np.nan)
            scores[frame["token_idx"].to_numpy()[deepest]] = values
            run = self.runs(analysis).pretrained
            kept = np.asarray(run.special).copy()
            kept[list(run.sink_indices)] = True  # special tokens and sinks are never folded
            always = kept
            if options.level == "word":  # the words holding them (a special token is a word of its own)
                always = np.zeros(len(labels), dtype=bool)
                always[np.asarray(run.groups)[kept]] = True
            if not options.trace_all:
                sources = self.trace_sources(analysis, options)
                always[[run.groups[s] for s in sources] if options.level == "word" else list(sources)] = True
            return choose_fold(labels, scores, always=always, hidden=hidden, top_k=options.top_k)

        # one render asks up to five times (graphs, tokens, matrices, segments): computed once for what it reads
        key = (self._relevance_key(analysis, options)[0], options.level, options.hide, options.top_k,
               options.trace_all, options.sources)  # fmt: skip
        return self._memo("fold", analysis, key, compute)

    def heads(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        """Per-head comparison on the full token-level maps (level and hiding do not apply to head metrics); with the
        ``contribution_share`` metric, each head's :meth:`contribution_shares` too."""
        runs = self.runs(analysis)
        frame = self._memo("heads", analysis, (), lambda: compare_heads(*_both(runs)))
        if options.metric == "contribution_share":
            frame = frame.merge(self.contribution_shares(analysis), on=["layer", "head"])
        return frame

    def received(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        """The word query: per layer and head, the attention ``options.word`` (a position at ``options.level``)
        receives, mean over every token (:func:`attention.attention_received`)."""
        options = self.checked(analysis, options)
        if options.word is None:
            raise OptionError("No word is chosen for the word query.", "Pick a word in the 'Word query' box.")
        runs = self.runs(analysis)
        groups = np.asarray(runs.pretrained.groups)
        keys = np.flatnonzero(groups == options.word) if options.level == "word" else np.array([options.word])
        return self._memo(
            "received", analysis, (options.level, options.word), lambda: attention_received(*_both(runs), keys)
        )

    def embedding(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        runs = self.runs(analysis)
        return self._memo("embedding", analysis, (), lambda: head_embedding(*_both(runs)))

    def explained(self, analysis: Analysis, model: str, target: str) -> ClassRelevance | None:
        """Class relevance of one model (``"pretrained"`` / ``"finetuned"``) for ``target``; None when the model
        has no classification head."""
        loaded = self.models()[model]
        if not loaded.is_classifier:
            return None

        def compute() -> ClassRelevance:
            with self._forward_lock:
                return class_relevance(loaded, analysis.text, analysis.text_pair, target=_target(target))

        shared = functools.partial(
            self._shared, "relevance", analysis, (model, target), compute, encode_relevance, decode_relevance
        )
        return self._memo("explained", analysis, (model, target), shared)

    def relevance(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        """``layer, token_idx, token, pretrained, finetuned, difference`` at ``options.level`` for
        ``options.method`` (class methods: NaN for a model without a head; ``input_x_gradient`` has one row per
        token at layer 0). Hidden tokens are left out; nothing is renormalised."""
        options = self.checked(analysis, options)
        key, settings = self._relevance_key(analysis, options)
        if settings is None:
            frame = self._memo("class_relevance", analysis, key, lambda: self._class_frame(analysis, options))
        else:
            maps = self.measure_runs(analysis, options.measure)
            frame = self._memo(
                "relevance", analysis, key, lambda: compare_relevance(*_both(maps), options.method, **settings)
            )
        hidden = np.flatnonzero(self.hidden(analysis, options))
        if hidden.size == len(self.labels(analysis, options.level)):
            raise InputTextError("Every token of this input is hidden.", "Untick a 'Hide' choice.")
        return frame[~frame["token_idx"].isin(hidden)].reset_index(drop=True) if hidden.size else frame

    def _relevance_key(self, analysis: Analysis, options: ViewOptions) -> tuple[tuple, dict | None]:
        """What :meth:`relevance`'s token scores depend on at ``options`` (checked), as a cache key, and an
        attention method's keyword arguments for :func:`~attention.compare.compare_relevance` (None for a class
        method): a method without graph settings reads no τ, α, sinks or head aggregation."""
        if options.method in CLASS_METHODS:
            return (options.method, options.target, options.level, options.layers), None
        settings = self._graph_settings(options)
        del settings["measure"]
        settings |= {"layers": options.layers, "level": options.level}
        sources = self.trace_sources(analysis, options)
        groups = self.runs(analysis).pretrained.groups
        settings["sources"] = sources if options.level == "token" else sorted({groups[s] for s in sources})
        if not relevance_method(options.method).graph_settings:
            for unused in ("tau", "alpha", "sinks", "aggregation"):
                del settings[unused]
        if options.measure in RESIDUAL_MEASURES:
            settings["residual"] = False  # the maps hold the residual connection already
        key = (options.method, options.measure,
               *(tuple(v) if isinstance(v, list) else v for v in settings.values()))  # fmt: skip
        return key, settings

    def decomposed(self, analysis: Analysis, model: str, target: str):
        """DecompX of one model for ``target`` (:func:`attention.mixing.decompx.decompx`); None without a
        classification head, or for a decoder (DecompX decomposes encoder blocks)."""
        loaded = self.models()[model]
        if not loaded.is_classifier or loaded.causal:
            return None

        def compute():
            with self._forward_lock:
                return decompx(loaded, analysis.text, analysis.text_pair, target=_target(target))

        return self._memo("decompx", analysis, (model, target), compute)

    def _class_frame(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        """The class method's ``[row, token]`` scores of both models as a relevance frame (NaN rows outside the chosen
        layers; a method without layers is one row at layer 0, the embeddings)."""
        run = self.runs(analysis).pretrained
        method = relevance_method(options.method)
        first, last = options.layers or (1, self.num_layers)
        count = len(self.labels(analysis, options.level))
        scores = {}
        for model in ("pretrained", "finetuned"):
            evidence = Evidence(
                explained=functools.partial(self.explained, analysis, model, options.target),
                decomposed=functools.partial(self.decomposed, analysis, model, options.target),
            )
            values = method.token_scores(evidence)
            if values is None:  # no classification head: nothing to explain
                values = np.full((self.num_layers if method.layered else 1, count), np.nan)
            elif options.level == "word":
                values = merge_scores(values, run.groups)
            else:
                values = values.copy()
            if method.layered:
                values[: first - 1] = np.nan
                values[last:] = np.nan
            scores[model] = values
        frame = relevance_frame(scores["pretrained"], scores["finetuned"], shown_labels(run, options.level))
        if not method.layered:
            frame["layer"] = 0
        return frame

    def class_target(self, analysis: Analysis, options: ViewOptions) -> str | None:
        """The class the class methods explain for this input (the fine-tuned model's), or None."""
        for model in ("finetuned", "pretrained"):
            explained = self.explained(analysis, model, options.target)
            if explained is not None:
                return explained.target
        return None

    def matrices(self, analysis: Analysis, options: ViewOptions, layer: int, head: int | None) -> pd.DataFrame:
        """One layer's matrices (:func:`attention.attention_matrices`) as drawn: that layer alone is merged into
        words and has hidden tokens removed (nothing of the whole run is copied or cached for it). A selected
        ``head`` shows that head's attention; without one, over a context-mixing measure, the layer's contribution
        map (one per layer), else the mean or max of the chosen heads."""
        options = self.checked(analysis, options)
        heads = (head,) if head is not None else options.heads
        measure = "raw_attention" if head is not None else options.measure
        if measure != "raw_attention":
            heads = None
        fold = self.fold(analysis, options)
        folded = fold.without(self.hidden(analysis, options)) if fold is not None else None

        def compute() -> pd.DataFrame:
            def drawn(run: AttentionRun) -> AttentionRun:
                one_layer = replace(run, weights=run.weights[layer - 1 : layer])
                run = matrix_run(one_layer, options.level, options.hide, options.renormalize)
                return run.merged(*folded) if folded is not None else run

            runs = self.measure_runs(analysis, measure).map(drawn)
            return attention_matrices(*_both(runs), 1, heads=heads, aggregation=options.aggregation)

        key = (measure, options.level, options.hide, options.renormalize, layer, heads, options.aggregation)
        return self._memo("matrices", analysis, (*key, fold.key if fold else None), compute)

    def thumbnails(self, analysis: Analysis, options: ViewOptions) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """Every head's map as the matrices draw it (level, hiding, a long input folded): pre-trained and
        fine-tuned ``[layer, head, query, key]`` float32, and the drawn tokens."""
        options = self.checked(analysis, options)
        fold = self.fold(analysis, options)
        folded = fold.without(self.hidden(analysis, options)) if fold is not None else None

        def compute() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
            def drawn(run: AttentionRun) -> AttentionRun:
                run = matrix_run(run, options.level, options.hide, options.renormalize)
                return run.merged(*folded) if folded is not None else run

            runs = self.runs(analysis).map(drawn)
            return np.asarray(runs.pretrained.weights), np.asarray(runs.finetuned.weights), runs.pretrained.tokens

        key = (options.level, options.hide, options.renormalize, fold.key if fold else None)
        return self._memo("thumbnails", analysis, key, compute)

    def faithfulness(self, analysis: Analysis, options: ViewOptions) -> pd.DataFrame:
        """This input's Spearman correlations (words, fine-tuned model) of each method at the deepest layer with
        blank-out and input × gradient: ``measure, method, blank_out, blank_out_magnitude, input_x_gradient`` (layer
        row, rollout and flow over raw attention; the attention graph over the current measure, as the Sankey
        draws it). The costly parts (blank-out, flow) are cached per target and reuse the run and class relevance
        the views computed; the attention graph's row follows the current τ, α and sinks. Raises
        :class:`NotAClassifierError` without a head."""
        options = self.checked(analysis, options)
        model = self.pair.finetuned

        def fixed() -> tuple:
            run = self.runs(analysis).finetuned  # both cached: the views computed them already
            explained = self.explained(analysis, "finetuned", options.target)
            decomposed = self.decomposed(analysis, "finetuned", options.target)  # the sentence view's, cached
            with self._forward_lock:  # (taken after the two above: each takes it itself when it computes)
                methods, references, words = sentence_scores(
                    model, analysis.text, analysis.text_pair, target=explained.target_index, run=run,
                    explained=explained, decompx=True, decomposed=decomposed,
                )  # fmt: skip
            rows = correlations({k: v for k, v in methods.items() if k[1] != "graph"}, references, words)
            return top_layer(rows), references, words

        shared = functools.partial(
            self._shared, "faithfulness", analysis, (options.target,), fixed, encode_faithfulness, decode_faithfulness
        )
        rows, references, words = self._memo("faithfulness", analysis, (options.target,), shared)
        settings = self._graph_settings(options)
        del settings["heads"]
        measure = settings.pop("measure")
        maps = self.measure_runs(analysis, measure)
        residual = measure not in RESIDUAL_MEASURES
        graph = relevance(maps.finetuned, "graph", level="word", residual=residual, **settings)[-1:]
        graph_rows = top_layer(correlations({(options.measure, "graph"): graph}, references, words))
        table = pd.concat([rows, graph_rows], ignore_index=True)
        return table.pivot(index=["measure", "method"], columns="reference", values="spearman").reset_index()


def _target(target: str) -> str | None:
    return None if target == PREDICTED else target


def _both(runs: PairRuns) -> tuple[AttentionRun, AttentionRun]:
    return runs.pretrained, runs.finetuned
