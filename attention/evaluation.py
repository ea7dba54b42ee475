"""How faithful each relevance method is: Spearman correlation with blank-out and input-gradient importance over
the words of each sentence (Abnar & Zuidema 2020, their Table 1 protocol), then mean ± std over sentences. Every
graph method (the layer's row, rollout, flow, the attention graph) over every measure (raw attention or a
context-mixing measure), and the class-specific methods (class relevance, DecompX, input × gradient).

Blank-out is signed (a word whose removal *raises* the class's probability scores below 0); the graph methods and
class relevance are never negative, so besides signed blank-out they are also compared with its magnitude
(``blank_out_magnitude``), which shows where a signed method's advantage comes from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from attention.extraction import AttentionRun, extract
from attention.gradients import ClassRelevance, blank_out, class_relevance, require_classifier
from attention.methods import merge_scores, relevance
from attention.mixing import contributions_for
from attention.mixing.contributions import MEASURES
from attention.mixing.decompx import decompx as decompose
from attention.models import LoadedModel
from attention.relevance_methods import RELEVANCE_METHODS, Evidence, method_names
from attention.relevance_methods import relevance_method as _method
from attention.tokens import word_all

GRAPH_METHODS: tuple[str, ...] = method_names("graph")
CLASS_METHODS: tuple[str, ...] = method_names("class")
FAITHFULNESS_METHODS: tuple[str, ...] = tuple(RELEVANCE_METHODS)
NO_MEASURE = "none"  # the measure column of class-specific methods (they read gradients or the logit, no map)
REFERENCES: tuple[str, ...] = ("blank_out", "blank_out_magnitude", "input_x_gradient")
FAITHFULNESS_COLUMNS = ("measure", "method", "layer", "reference", "spearman_mean", "spearman_std", "n")
Key = tuple[str, str]  # (measure, method)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties) of two 1-D arrays; NaN when either is constant or
    shorter than 3.

    >>> spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 40.0, 30.0]))
    0.8
    """
    if a.size < 3:
        return float("nan")
    ranks_a, ranks_b = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if np.ptp(ranks_a) == 0 or np.ptp(ranks_b) == 0:
        return float("nan")
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def sentence_scores(
    model: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    target: str | int | None = None,
    run: AttentionRun | None = None,
    explained: ClassRelevance | None = None,
    measures: tuple[str, ...] = ("raw_attention",),
    decompx: bool = False,
    decomposed=None,
    **graph,
) -> tuple[dict[Key, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Every method's word scores for one sentence, traced from the classification token.

    ``run`` / ``explained``: this model's :func:`extract` and :func:`class_relevance` of the same input and
    target, when the caller has them (the dashboard's cache); computed otherwise. ``measures``: the graph methods
    over each of these (``raw_attention``: the weights, as the paper; any :data:`attention.mixing.MEASURES`).
    ``decompx``: DecompX's signed logit parts too, for an encoder (``decomposed``: this input's
    :class:`~attention.mixing.decompx.DecompX` for the same target, when the caller has it).
    Returns ``(methods, references, words)``: ``methods[(measure, method)]`` is ``[layer, word]``
    (``input_x_gradient``: ``[1, word]``; class-specific methods have measure :data:`NO_MEASURE`),
    ``references[name]`` is ``[word]``, ``words`` the bool mask of real (non-special) words."""
    require_classifier(model)
    run = run if run is not None else extract(model, text, text_pair)
    explained = explained if explained is not None else class_relevance(model, text, text_pair, target=target)
    maps: dict[str, AttentionRun | object] = {"raw_attention": run} if "raw_attention" in measures else {}
    mixing = tuple(m for m in measures if m != "raw_attention")
    if mixing:
        maps.update(contributions_for(model, text, text_pair, measures=mixing))
    methods: dict[Key, np.ndarray] = {
        (measure, name): relevance(source, name, level="word", **(graph if _method(name).graph_settings else {}))
        for measure, source in maps.items()
        for name in GRAPH_METHODS
    }
    decompose = functools.partial(_decomposed, model, text, text_pair, explained.target_index, decomposed)
    evidence = Evidence(explained=lambda: explained, decomposed=decompose)
    decompx = decompx and not model.causal  # DecompX decomposes encoder blocks (docs/method.md, "Decoders")
    for name in CLASS_METHODS:
        if decompx or not _method(name).costly:
            methods[(NO_MEASURE, name)] = merge_scores(_method(name).token_scores(evidence), run.groups)
    saliency = methods[(NO_MEASURE, "input_x_gradient")][0]
    blank = blank_out(model, text, text_pair, target=explained.target_index, level="word")
    references = {"blank_out": blank, "blank_out_magnitude": np.abs(blank), "input_x_gradient": saliency}
    return methods, references, ~word_all(run.special, run.groups)


def _decomposed(model: LoadedModel, text: str, text_pair: str | None, target: int, given: object | None):
    """``given`` (the caller's DecompX of this input and target), else computed."""
    if given is not None:
        return given
    return decompose(model, text, text_pair, target=target)


def correlations(methods: dict[Key, np.ndarray], references: dict[str, np.ndarray], words: np.ndarray) -> pd.DataFrame:
    """One sentence's ``measure, method, layer, reference, spearman`` rows from :func:`sentence_scores`' output."""
    rows = [
        (measure, name, index + 1 if _method(name).layered else 0, reference, spearman(row[words], truth[words]))
        for (measure, name), scores in methods.items()
        for index, row in enumerate(scores)
        for reference, truth in references.items()
    ]
    return pd.DataFrame(rows, columns=["measure", "method", "layer", "reference", "spearman"])


def faithfulness(
    model: LoadedModel,
    texts: Iterable[str | tuple[str, str | None]],
    *,
    target: str | int | None = "predicted",
    progress: Callable[[int], None] | None = None,
    measures: tuple[str, ...] = ("raw_attention",),
    decompx: bool = False,
    **graph,
) -> pd.DataFrame:
    """Per measure, method, layer and reference: mean and std over sentences of the Spearman correlation over each
    sentence's words (special tokens excluded). Columns :data:`FAITHFULNESS_COLUMNS`; ``layer`` 0 is
    ``input_x_gradient`` (the embeddings). ``n`` counts sentences with a defined correlation. ``progress`` is called
    with 1 after each sentence. ``measures`` and ``decompx`` as :func:`sentence_scores`; ``graph`` passes ``tau``,
    ``alpha``, ``sinks``… to the attention graph."""
    require_classifier(model)
    frames = []
    for item in texts:
        text, text_pair = (item, None) if isinstance(item, str) else item
        scores = sentence_scores(model, text, text_pair, target=target, measures=measures, decompx=decompx, **graph)
        frames.append(correlations(*scores))
        if progress is not None:
            progress(1)
    frame = pd.concat(frames, ignore_index=True)
    table = (
        frame.groupby(["measure", "method", "layer", "reference"], sort=False)["spearman"]
        .agg(spearman_mean="mean", spearman_std="std", n="count")
        .reset_index()
    )
    methods = {m: i for i, m in enumerate(FAITHFULNESS_METHODS)}
    kinds = {m: i for i, m in enumerate((*MEASURES, NO_MEASURE))}
    ranks = {"method": methods, "measure": kinds}
    table = table.sort_values(
        ["reference", "measure", "method", "layer"], key=lambda c: c.map(ranks[c.name]) if c.name in ranks else c
    )
    return table.reset_index(drop=True)[list(FAITHFULNESS_COLUMNS)]


def top_layer(table: pd.DataFrame) -> pd.DataFrame:
    """The row of each (measure, method, reference) at its deepest layer (``input_x_gradient``: its only row)."""
    deepest = table.groupby(["measure", "method", "reference"], sort=False)["layer"].transform("max")
    return table[table["layer"] == deepest].reset_index(drop=True)
