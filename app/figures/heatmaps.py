"""Views 2-4: the head grid, the attention matrices and the token influence heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.theme import DIVERGING, MODEL_LABELS, MODEL_SCALES, NEUTRAL_SCALE, base_layout, symmetric_range
from app.state import HEAD_METRICS, METHODS, PAIR_METRICS


def _panels(mode: str) -> list[str]:
    return ["pretrained", "finetuned", "difference"] if mode == "comparison" else [mode]


def _token_axis(tokens: Sequence[str]) -> dict:
    return {
        "tickmode": "array",
        "tickvals": list(range(len(tokens))),
        "ticktext": list(tokens),
        "tickfont": {"size": 10},
    }


def make_head_grid(
    heads: pd.DataFrame,
    *,
    metric: str = "js_divergence",
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
) -> go.Figure:
    """Layers x heads, coloured by ``metric`` (a column family of :func:`attention.compare_heads`).

    Metrics comparing the models (JS divergence, TV, cosine) are shown as they are; per-model statistics show
    the chosen model, or in comparison mode the fine-tuned minus pre-trained difference. Clicking a cell selects
    the head (``customdata`` = [layer, head]).
    """
    if metric not in HEAD_METRICS:
        raise ValueError(f"metric must be one of {', '.join(HEAD_METRICS)}, got {metric!r}")
    layers, num_heads = int(heads["layer"].max()), int(heads["head"].max()) + 1
    if metric in PAIR_METRICS:
        values, colourscale, label = heads[metric], NEUTRAL_SCALE, HEAD_METRICS[metric]
        zmid = None
    elif mode == "comparison":
        values = heads[f"{metric}_finetuned"] - heads[f"{metric}_pretrained"]
        colourscale, label, zmid = DIVERGING, f"{HEAD_METRICS[metric]}: fine-tuned − pre-trained", 0.0
    else:
        values, colourscale = heads[f"{metric}_{mode}"], MODEL_SCALES[mode]
        label, zmid = f"{HEAD_METRICS[metric]} ({MODEL_LABELS[mode]})", None
    z = np.full((layers, num_heads), np.nan)
    z[heads["layer"].to_numpy() - 1, heads["head"].to_numpy()] = values.to_numpy()
    layer_idx, head_idx = np.indices(z.shape)
    custom = np.stack([layer_idx + 1, head_idx], axis=-1)
    heatmap = go.Heatmap(
        z=z,
        x=list(range(num_heads)),
        y=list(range(1, layers + 1)),
        colorscale=colourscale,
        customdata=custom,
        zmid=zmid,
        colorbar={"title": {"text": ""}, "thickness": 12},
        hovertemplate="layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>",
    )
    if zmid is not None:
        bound = symmetric_range(z)
        heatmap.update(zmin=-bound, zmax=bound)
    fig = go.Figure(heatmap)
    fig.update_xaxes(title_text="head", tickmode="linear", dtick=1)
    fig.update_yaxes(title_text="layer", tickmode="linear", dtick=1)
    fig = base_layout(fig, f"Heads: {label}", height=60 + 38 * layers + 60)
    return highlight_head(fig, selected)


def head_outline(selected: tuple[int, int | None] | None, num_heads: int) -> list[dict]:
    """Layout shapes outlining the selected (layer, head) cell, or the whole layer when ``head`` is None."""
    if selected is None:
        return []
    layer, head = selected
    x0, x1 = (head - 0.5, head + 0.5) if head is not None else (-0.5, num_heads - 0.5)
    return [
        {
            "type": "rect",
            "x0": x0,
            "x1": x1,
            "y0": layer - 0.5,
            "y1": layer + 0.5,
            "line": {"color": "black", "width": 3},
        }
    ]


def highlight_head(fig: go.Figure, selected: tuple[int, int | None] | None) -> go.Figure:
    """Outline the selected head (see :func:`head_outline`) on a head-grid figure."""
    fig.layout.shapes = head_outline(selected, len(fig.data[0].x))
    return fig


def _add_panel(fig: go.Figure, col: int, panels: list[str], panel: str, z: np.ndarray, peak: float, **trace) -> None:
    """One heatmap panel: white-to-model-colour scale up to ``peak`` (shared by both models, so they compare), or
    the diverging scale for the difference. Colour bars sit right of their own panel: one for the two models,
    one for the difference."""
    diverging = panel == "difference"
    bound = symmetric_range(z) if diverging else max(peak, 1e-9)
    axis = fig.layout["xaxis" if col == 1 else f"xaxis{col}"]
    show_bar = diverging or panel == "finetuned" or len(panels) == 1

    fig.add_trace(
        go.Heatmap(
            z=z,
            colorscale=DIVERGING if diverging else MODEL_SCALES[panel],
            zmin=-bound if diverging else 0.0,
            zmax=bound,
            showscale=show_bar,
            colorbar={"x": axis.domain[1] + 0.005, "xanchor": "left", "thickness": 10, "len": 0.75},
            **trace,
        ),
        row=1,
        col=col,
    )


def make_matrix(
    matrices: pd.DataFrame, *, tokens: Sequence[str], mode: str = "comparison", caption: str = ""
) -> go.Figure:
    """Side-by-side attention matrices (query rows, key columns) from :func:`attention.attention_matrices`."""
    panels = _panels(mode)
    n = len(tokens)
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[MODEL_LABELS[p] for p in panels], horizontal_spacing=0.09
    )
    peak = float(matrices.loc[matrices["model"] != "difference", "weight"].max())
    rows_idx, cols_idx = np.indices((n, n))
    labels = np.asarray(tokens, dtype=object)
    for col, panel in enumerate(panels, start=1):
        rows = matrices[matrices["model"] == panel]
        z = np.zeros((n, n))
        z[rows["query_idx"].to_numpy(), rows["key_idx"].to_numpy()] = rows["weight"].to_numpy()
        _add_panel(
            fig,
            col,
            panels,
            panel,
            z,
            peak,
            customdata=labels[cols_idx],
            text=labels[rows_idx],
            hovertemplate="<b>%{text}</b> → <b>%{customdata}</b><br>weight %{z:.3f}<extra>"
            + MODEL_LABELS[panel]
            + "</extra>",
        )
        fig.update_xaxes(**_token_axis(tokens), tickangle=-60, title_text="key (attended to)", row=1, col=col)
        fig.update_yaxes(
            **_token_axis(tokens),
            autorange="reversed",
            row=1,
            col=col,
            title_text="query" if col == 1 else None,
            showticklabels=col == 1,
        )
    return base_layout(fig, f"Attention matrix {caption}".strip(), height=max(360, 15 * n + 190))


def make_influence(
    relevance: pd.DataFrame,
    *,
    tokens: Sequence[str],
    method: str = "graph",
    mode: str = "comparison",
    scale_without: Sequence[int] = (),
) -> go.Figure:
    """Tokens x layers: how much each token matters to the traced token(s), for each model and the difference
    (frame from :func:`attention.compare_relevance`). ``scale_without`` (e.g. the traced tokens themselves) are
    left out when choosing the top of the colour scale, so they do not wash out the rest."""
    panels = _panels(mode)
    layers = sorted(int(x) for x in relevance["layer"].unique())
    n = len(tokens)
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[MODEL_LABELS[p] for p in panels], horizontal_spacing=0.09
    )
    scaled = relevance[~relevance["token_idx"].isin(list(scale_without))]
    scaled = scaled if len(scaled) else relevance  # every token is traced: scale over all of them
    values = scaled[["pretrained", "finetuned"]].to_numpy()
    peak = float(np.nanmax(values)) if values.size and np.isfinite(values).any() else 1.0
    labels = np.asarray(tokens, dtype=object)[:, None].repeat(len(layers), axis=1)
    for col, panel in enumerate(panels, start=1):
        z = np.full((n, len(layers)), np.nan)
        z[relevance["token_idx"].to_numpy(), relevance["layer"].to_numpy() - layers[0]] = relevance[panel].to_numpy()
        _add_panel(
            fig,
            col,
            panels,
            panel,
            z,
            peak,
            x=layers,
            text=labels,
            hovertemplate="<b>%{text}</b>, layer %{x}: %{z:.3f}<extra>" + MODEL_LABELS[panel] + "</extra>",
        )
        fig.update_xaxes(title_text="layer", tickmode="linear", dtick=1, row=1, col=col)
        fig.update_yaxes(**_token_axis(tokens), autorange="reversed", row=1, col=col, showticklabels=col == 1)
    return base_layout(fig, f"Token influence on the traced token(s): {METHODS[method]}", height=max(340, 15 * n + 150))
