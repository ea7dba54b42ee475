"""View 6: the input sentence, each token coloured by how much it matters (the chosen relevance method), one row
per model on one shared colour scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.figures.theme import MODEL_LABELS, Figure, axis_key, axis_ref, figure, layout, panel_domains
from app.options import CLASS_METHODS, METHODS

RELEVANCE_SCALE = [[0.0, "#FFFFFF"], [0.5, "#B79FD1"], [1.0, "#4A2377"]]  # white -> purple: neither model's colour


def summary_layer(relevance: pd.DataFrame) -> int:
    """The layer the sentence view summarises: the deepest in the frame (0 for input × gradient)."""
    return int(relevance["layer"].max())


def method_phrase(method: str, *, target: str | None, source: str, layer: int) -> str:
    """What a relevance number means, in words: for the titles of the sentence and influence views."""
    if method in CLASS_METHODS:
        what = METHODS[method]
        cls = f"class '{target}'" if target else "the predicted class"
        return f"{what} for {cls}" + (f", after layer {layer}" if method == "class_relevance" and layer else "")
    return f"{METHODS[method]} of {source}" + (f", after layer {layer}" if layer else "")


def make_sentence(
    relevance: pd.DataFrame,
    *,
    tokens: Sequence[str],
    method: str = "class_relevance",
    mode: str = "comparison",
    scale_without: Sequence[int] = (),
    target: str | None = None,
    source: str = "[CLS]",
    missing: dict[str, str] | None = None,
) -> Figure:
    """One row of coloured tokens per model from a relevance frame (``layer, token_idx, pretrained, finetuned``),
    at its deepest layer. Both rows share one colour scale, from 0 to the largest value over the tokens not in
    ``scale_without`` (special tokens, the traced tokens: they may exceed it and show at full colour); hovering
    gives the exact value. Tokens in ``scale_without`` are drawn uncoloured (their value is in the hover), so the
    colours say one thing: how much each word matters next to the others. ``missing[model]`` is a sentence shown
    instead of a row (e.g. no classification head).
    """
    missing = missing or {}
    models = ["pretrained", "finetuned"] if mode == "comparison" else [mode]
    layer = summary_layer(relevance)
    rows = relevance[relevance["layer"] == layer].sort_values("token_idx")
    positions = rows["token_idx"].to_numpy()
    labels = np.asarray(tokens, dtype=object)[positions].tolist()
    counted = ~np.isin(positions, list(scale_without))
    present = [m for m in models if m not in missing]
    values = rows[present].to_numpy()[counted] if present else np.zeros(0)
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    domains = panel_domains(len(models), gap=0.15)[::-1]
    traces, axes, notes = [], {}, []
    for index, model in enumerate(models, start=1):
        domain = domains[index - 1]
        axes[axis_key("x", index)] = {"visible": False, "anchor": axis_ref("y", index)}
        axes[axis_key("y", index)] = {"visible": False, "domain": domain, "anchor": axis_ref("x", index)}
        notes.append(_row_label(MODEL_LABELS[model], domain))
        if model in missing:
            notes.append(_row_note(missing[model], domain))
            continue
        values = rows[model].to_numpy()
        traces.append(
            {
                "type": "heatmap",
                "z": [np.where(counted, values, np.nan)],  # special / traced tokens: uncoloured, value in the hover
                "customdata": [values],
                "x": positions,
                "text": [labels],
                "texttemplate": "%{text}",
                "textfont": {"size": 13},
                "colorscale": RELEVANCE_SCALE,
                "zmin": 0.0,
                "zmax": peak,
                "showscale": model == present[-1],
                "colorbar": {"thickness": 10, "len": 1.0, "title": {"text": "score", "side": "right"}},
                "hoverongaps": True,
                "xgap": 2,
                "xaxis": axis_ref("x", index),
                "yaxis": axis_ref("y", index),
                "hovertemplate": "<b>%{text}</b>: %{customdata:.4f}<extra>" + MODEL_LABELS[model] + "</extra>",
            }
        )
    title = "Sentence: " + method_phrase(method, target=target, source=source, layer=layer)
    return figure(
        traces,
        layout(
            title,
            height=110 + 70 * len(models),
            annotations=notes,
            **axes,
            margin={"l": 90, "r": 20, "t": 50, "b": 10},
        ),
    )


def _row_label(text: str, domain: list[float]) -> dict:
    return {
        "text": text,
        "x": -0.005,
        "y": sum(domain) / 2,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "right",
        "showarrow": False,
        "font": {"size": 12},
    }


def _row_note(text: str, domain: list[float]) -> dict:
    return {
        "text": text,
        "x": 0.0,
        "y": sum(domain) / 2,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "left",
        "showarrow": False,
        "font": {"size": 12, "color": "#555"},
    }
