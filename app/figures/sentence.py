"""View 6: the input sentence, each token coloured by its influence on the traced token(s), per model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.figures.theme import MODEL_LABELS, MODEL_SCALES, Figure, axis_key, axis_ref, figure, layout, panel_domains
from app.state import METHODS


def sentence_scores(relevance: pd.DataFrame, method: str) -> tuple[int, pd.DataFrame]:
    """The layer that summarises each token's influence and that layer's rows: the first layer of the range for
    the attention graph (its influence accumulates the deeper layers), the last for rollout and flow."""
    layer = int(relevance["layer"].min() if method == "graph" else relevance["layer"].max())
    return layer, relevance[relevance["layer"] == layer].sort_values("token_idx")


def make_sentence(
    relevance: pd.DataFrame,
    *,
    tokens: Sequence[str],
    method: str = "graph",
    mode: str = "comparison",
    scale_without: Sequence[int] = (),
) -> Figure:
    """One row of coloured tokens per model from :func:`attention.compare_relevance`, each scaled to that model's
    largest value over the tokens not in ``scale_without`` (e.g. the traced tokens themselves)."""
    models = ["pretrained", "finetuned"] if mode == "comparison" else [mode]
    layer, rows = sentence_scores(relevance, method)
    positions = rows["token_idx"].to_numpy()
    labels = np.asarray(tokens, dtype=object)[positions].tolist()
    rows_top_down = panel_domains(len(models), gap=0.12)[::-1]
    traces, axes, titles = [], {}, []
    for index, model in enumerate(models, start=1):
        values = rows[model].to_numpy()
        counted = values[~np.isin(positions, list(scale_without))]
        counted = counted if counted.size else values  # every token is traced: scale over all of them
        peak = float(np.nanmax(counted)) if np.isfinite(counted).any() else 0.0
        scaled = np.clip(values / peak, 0, 1) if peak > 0 else np.zeros_like(values)
        domain = rows_top_down[index - 1]
        traces.append(
            {
                "type": "heatmap",
                "z": [scaled],
                "x": positions,
                "text": [labels],
                "customdata": [values],
                "texttemplate": "%{text}",
                "textfont": {"size": 13},
                "colorscale": MODEL_SCALES[model],
                "zmin": 0,
                "zmax": 1,
                "showscale": False,
                "xgap": 2,
                "xaxis": axis_ref("x", index),
                "yaxis": axis_ref("y", index),
                "hovertemplate": "<b>%{text}</b>: %{customdata:.3f}<extra>" + MODEL_LABELS[model] + "</extra>",
            }
        )
        axes[axis_key("x", index)] = {"visible": False, "anchor": axis_ref("y", index)}
        axes[axis_key("y", index)] = {"visible": False, "domain": domain, "anchor": axis_ref("x", index)}
        titles.append(
            {
                "text": MODEL_LABELS[model],
                "x": -0.005,
                "y": sum(domain) / 2,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "right",
                "showarrow": False,
                "font": {"size": 12},
            }
        )
    what = "I" if method == "graph" else "relevance"
    title = f"Sentence coloured by influence ({METHODS[method]}, {what} at layer {layer})"
    return figure(
        traces,
        layout(
            title, height=90 + 70 * len(models), annotations=titles, **axes, margin={"l": 90, "r": 20, "t": 50, "b": 10}
        ),
    )
