"""How faithful each relevance method is: Spearman correlation with blank-out and input-gradient importance over
the words of each sentence (Abnar & Zuidema 2020, their Table 1 protocol), then mean ± std over sentences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from attention.extract import AttentionRun, extract
from attention.gradients import ClassRelevance, blank_out, class_relevance, require_classifier
from attention.methods import relevance
from attention.models import LoadedModel
from attention.tokens import word_all

FAITHFULNESS_METHODS: tuple[str, ...] = (
    "raw_attention",
    "rollout",
    "flow",
    "graph",
    "class_relevance",
    "input_x_gradient",
)
REFERENCES: tuple[str, ...] = ("blank_out", "input_gradient")
FAITHFULNESS_COLUMNS = ("method", "layer", "reference", "spearman_mean", "spearman_std", "n")


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
    **graph,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Every method's word scores for one sentence, traced from the classification token.

    ``run`` / ``explained``: this model's :func:`extract` and :func:`class_relevance` of the same input and
    target, when the caller has them (the dashboard's cache); computed otherwise.
    Returns ``(methods, references, words)``: ``methods[name]`` is ``[layer, word]`` (``input_x_gradient``:
    ``[1, word]``), ``references[name]`` is ``[word]``, ``words`` the bool mask of real (non-special) words."""
    require_classifier(model)
    run = run if run is not None else extract(model, text, text_pair)
    explained = explained if explained is not None else class_relevance(model, text, text_pair, target=target)
    groups = run.groups
    methods = {
        name: relevance(run, name, level="word", **(graph if name == "graph" else {}))
        for name in ("raw_attention", "rollout", "flow", "graph")
    }
    scores, saliency = explained.at_word_level()
    methods["class_relevance"] = scores
    methods["input_x_gradient"] = saliency[None, :]
    references = {
        "blank_out": blank_out(model, text, text_pair, target=explained.target_index, level="word"),
        "input_gradient": saliency,
    }
    return methods, references, ~word_all(run.special, groups)


def correlations(methods: dict[str, np.ndarray], references: dict[str, np.ndarray], words: np.ndarray) -> pd.DataFrame:
    """One sentence's ``method, layer, reference, spearman`` rows from :func:`sentence_scores`' output."""
    rows = [
        (name, 0 if name == "input_x_gradient" else index + 1, reference, spearman(row[words], truth[words]))
        for name, scores in methods.items()
        for index, row in enumerate(scores)
        for reference, truth in references.items()
    ]
    return pd.DataFrame(rows, columns=["method", "layer", "reference", "spearman"])


def faithfulness(
    model: LoadedModel,
    texts: Iterable[str | tuple[str, str | None]],
    *,
    target: str | int | None = "predicted",
    progress: Callable[[int], None] | None = None,
    **graph,
) -> pd.DataFrame:
    """Per method, layer and reference: mean and std over sentences of the Spearman correlation over each
    sentence's words (special tokens excluded). Columns :data:`FAITHFULNESS_COLUMNS`; ``layer`` 0 is
    ``input_x_gradient`` (the embeddings). ``n`` counts sentences with a defined correlation. ``progress`` is called
    with 1 after each sentence. ``graph`` passes ``tau``, ``alpha``, ``sinks``… to the attention graph."""
    require_classifier(model)
    frames = []
    for item in texts:
        text, text_pair = (item, None) if isinstance(item, str) else item
        frames.append(correlations(*sentence_scores(model, text, text_pair, target=target, **graph)))
        if progress is not None:
            progress(1)
    frame = pd.concat(frames, ignore_index=True)
    table = (
        frame.groupby(["method", "layer", "reference"], sort=False)["spearman"]
        .agg(spearman_mean="mean", spearman_std="std", n="count")
        .reset_index()
    )
    order = {m: i for i, m in enumerate(FAITHFULNESS_METHODS)}
    table = table.sort_values(["reference", "method", "layer"], key=lambda c: c.map(order) if c.name == "method" else c)
    return table.reset_index(drop=True)[list(FAITHFULNESS_COLUMNS)]


def top_layer(table: pd.DataFrame) -> pd.DataFrame:
    """The row of each (method, reference) at its deepest layer (``input_x_gradient``: its only row)."""
    deepest = table.groupby(["method", "reference"], sort=False)["layer"].transform("max")
    return table[table["layer"] == deepest].reset_index(drop=True)
