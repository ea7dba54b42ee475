"""View 5: the head similarity map (both models' heads in one 2-D embedding)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.figures.models import shown_models
from app.figures.theme import MODEL_COLOURS, MODEL_LABELS, SHARED, Figure, figure, layout

_SYMBOLS = {"pretrained": "circle", "finetuned": "diamond"}


def _sizes(change: pd.Series, peak: float) -> np.ndarray:
    return 7 + 17 * np.sqrt(change.to_numpy() / peak) if peak > 0 else np.full(len(change), 9.0)


def selected_trace_index(mode: str) -> int:
    """Position of the 'selected head' trace in :func:`make_similarity`'s figure (for ``dash.Patch``): after the
    comparison's linking lines and a trace per shown model."""
    return (1 if mode == "comparison" else 0) + len(shown_models(mode))


def selected_positions(
    embedding: pd.DataFrame, mode: str, selected: tuple[int, int | None] | None
) -> tuple[list[float], list[float]]:
    """x and y of the selected head in the shown model(s); empty when no single head is selected."""
    if selected is None or selected[1] is None:
        return [], []
    rows = embedding[(embedding["layer"] == selected[0]) & (embedding["head"] == selected[1])]
    rows = rows[rows["model"].isin(shown_models(mode))]
    return rows["x"].tolist(), rows["y"].tolist()


def make_similarity(
    embedding: pd.DataFrame, *, mode: str = "comparison", selected: tuple[int, int | None] | None = None
) -> Figure:
    """Scatter of :func:`attention.head_embedding`: colour = layer, size = the head's JS change between models,
    outline = model; in comparison mode a line links each head's two positions. ``customdata`` = [layer, head]."""
    traces = [_pair_lines(embedding)] if mode == "comparison" else []
    peak = float(embedding["js_divergence"].max())
    traces += [_model_trace(embedding[embedding["model"] == model], model, peak) for model in shown_models(mode)]
    xs, ys = selected_positions(embedding, mode, selected)
    traces.append(
        {  # always present (maybe empty) so dash.Patch can move it: see selected_trace_index
            "type": "scatter",
            "x": xs,
            "y": ys,
            "mode": "markers",
            "name": "selected head",
            "hoverinfo": "skip",
            "marker": {"symbol": "circle-open", "size": 30, "color": "black", "line": {"width": 3}},
        }
    )
    return figure(traces, _similarity_layout(int(embedding["layer"].max())))


def _pair_lines(embedding: pd.DataFrame) -> dict:
    """A grey line from each head's pre-trained position to its fine-tuned one (NaN-separated segments)."""
    pre = embedding[embedding["model"] == "pretrained"].sort_values(["layer", "head"])
    ft = embedding[embedding["model"] == "finetuned"].sort_values(["layer", "head"])
    xs = np.column_stack([pre["x"], ft["x"], np.full(len(pre), np.nan)]).ravel()  # [3 · heads]
    ys = np.column_stack([pre["y"], ft["y"], np.full(len(pre), np.nan)]).ravel()
    return {
        "type": "scatter",
        "x": xs,
        "y": ys,
        "mode": "lines",
        "line": {"color": SHARED, "width": 0.7},
        "hoverinfo": "skip",
        "name": "same head, both models",
        "opacity": 0.6,
    }


def _model_trace(rows: pd.DataFrame, model: str, peak: float) -> dict:
    """One model's heads (``rows`` of the embedding): coloured by layer, sized by JS change (``peak`` the
    largest), outlined in the model's colour."""
    return {
        "type": "scatter",
        "x": rows["x"].to_numpy(),
        "y": rows["y"].to_numpy(),
        "mode": "markers",
        "name": MODEL_LABELS[model],
        "customdata": rows[["layer", "head", "js_divergence"]].to_numpy().tolist(),
        "marker": {
            "symbol": _SYMBOLS[model],
            "size": _sizes(rows["js_divergence"], peak),
            "color": rows["layer"].to_numpy(),
            "coloraxis": "coloraxis",
            "line": {"color": MODEL_COLOURS[model], "width": 2},
            "opacity": 0.9,
        },
        "hovertemplate": "layer %{customdata[0]}, head %{customdata[1]}<br>JS change %{customdata[2]:.3f}"
        "<extra>" + MODEL_LABELS[model] + "</extra>",
    }


def _similarity_layout(layers: int) -> dict:
    """The map's layout: the layer colour axis ``1 .. layers``, equal-scaled MDS axes, the legend below."""
    return layout(
        "Head similarity (classical MDS of Hellinger distances)",
        height=480,
        coloraxis={
            "colorscale": "Viridis",
            "cmin": 1,
            "cmax": layers,
            "colorbar": {"title": {"text": "layer"}, "thickness": 12, "dtick": 1},
        },
        legend={"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0},
        margin={"l": 60, "r": 20, "t": 50, "b": 90},
        meta={"min_height": 420},  # an export keeps the map readable under its legend
        xaxis={"title": {"text": "MDS 1"}, "zeroline": False, "showgrid": True, "gridcolor": "#eee", "nticks": 5},
        yaxis={
            "title": {"text": "MDS 2"},
            "zeroline": False,
            "showgrid": True,
            "gridcolor": "#eee",
            "scaleanchor": "x",
        },
    )
