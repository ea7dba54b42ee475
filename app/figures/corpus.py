"""The corpus page's figures, from the corpus queries' frames (:mod:`attention.corpus.query`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.figures.theme import (
    DIVERGING,
    MODEL_COLOURS,
    MODEL_LABELS,
    NEUTRAL_SCALE,
    Canvas,
    Figure,
    empty_figure,
    figure,
    layout,
    symmetric_range,
)
from attention.defaults import MEASURE_LABELS

METRIC_LABELS = {
    "js_divergence": "JS divergence (bits)",
    "cosine": "cosine similarity",
    "tv_distance": "total-variation distance",
    "contribution_share": "contribution share",
}
SIGNED_METRICS = ("contribution_share",)  # fine-tuned − pre-trained per head: a diverging scale around 0
LAYER_LABELS = METRIC_LABELS | {"contribution_share": "share of mixing moved between heads<br>(½ Σ|Δ share|)"}
PAGE_CARD_WIDTH = 650  # px: a corpus card's width in the page, which the head map's point sizes are chosen for


def _grid(frame: pd.DataFrame, column: str) -> np.ndarray:
    """``frame``'s ``column`` as ``[layer, head]`` (layer 1 in row 0)."""
    layers, heads = int(frame["layer"].max()), int(frame["head"].max()) + 1
    grid = np.full((layers, heads), np.nan)
    grid[frame["layer"].to_numpy() - 1, frame["head"].to_numpy()] = frame[column].to_numpy()
    return grid


def make_head_change_grid(ranking: pd.DataFrame, metric: str, examples: int) -> Figure:
    """Layers × heads, each cell the mean over the corpus of the head's change (``metric`` between the two models'
    maps of one input); the hover gives p10 / p50 / p90 and n. A signed metric (``contribution_share``: fine-tuned
    − pre-trained share of the layer's mixing, :func:`attention.corpus.head_ranking`) is drawn on a diverging
    scale around 0, its hover with both models' mean shares and the 95 % interval."""
    if ranking.empty:
        return empty_figure("No examples in this corpus yet.")
    if metric in SIGNED_METRICS:
        return _signed_head_grid(ranking, metric, examples)
    mean = _grid(ranking, "mean")
    spread = np.stack([_grid(ranking, c) for c in ("p10", "p50", "p90", "n")], axis=-1)
    colours = {"colorscale": NEUTRAL_SCALE}
    hover = (
        "mean %{z:.4f}<br>p10 %{customdata[0]:.4f} · p50 %{customdata[1]:.4f} · p90 %{customdata[2]:.4f}"
        "<br>n = %{customdata[3]} examples"
    )
    title = f"Each head's {METRIC_LABELS[metric]}, mean over {examples:,} examples"
    return _layer_head_map(mean, spread, colours, f"mean {METRIC_LABELS[metric]}", hover, title)


def _signed_head_grid(ranking: pd.DataFrame, metric: str, examples: int) -> Figure:
    """:func:`make_head_change_grid` of a signed per-head change, fine-tuned − pre-trained."""
    difference = _grid(ranking, "mean")
    columns = ("pretrained", "finetuned", "p10", "p50", "p90", "ci_low", "ci_high", "n")
    details = np.stack([_grid(ranking, c) for c in columns], axis=-1)
    bound = symmetric_range(difference)
    colours = {"colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound, "zmax": bound}
    measure = str(ranking["measure"].iloc[0])
    named = MEASURE_LABELS.get(measure, measure)
    hover = (
        "pre-trained %{customdata[0]:.4f} → fine-tuned %{customdata[1]:.4f}<br>difference: mean %{z:+.4f}, 95 % "
        "interval %{customdata[5]:+.4f} – %{customdata[6]:+.4f}<br>p10 %{customdata[2]:+.4f} · p50 "
        "%{customdata[3]:+.4f} · p90 %{customdata[4]:+.4f}<br>n = %{customdata[7]} examples"
    )
    title = (f"Each head's {METRIC_LABELS[metric]} of its layer's mixing ({named}), {MODEL_LABELS['difference']}, "
             f"mean over {examples:,} examples")  # fmt: skip
    unit = f"{MODEL_LABELS['difference']}<br>{METRIC_LABELS[metric]}"
    return _layer_head_map(difference, details, colours, unit, hover, title)


def _layer_head_map(z: np.ndarray, customdata: np.ndarray, colours: dict, unit: str, hover: str, title: str) -> Figure:
    """A layers × heads heatmap (layer 1 on top) with its colour bar titled ``unit``."""
    trace = {
        "type": "heatmap",
        "z": z.tolist(),
        "x": list(range(z.shape[1])),
        "y": list(range(1, z.shape[0] + 1)),
        "customdata": customdata.tolist(),
        **colours,
        "colorbar": {"title": {"text": unit, "side": "right"}},
        "hovertemplate": f"layer %{{y}}, head %{{x}}<br>{hover}<extra></extra>",
    }
    return figure(
        [trace],
        layout(
            title,
            height=360,
            xaxis={"title": {"text": "head"}, "dtick": 1},
            yaxis={"title": {"text": "layer"}, "dtick": 1, "autorange": "reversed"},
        ),
    )


def make_layer_change(frame: pd.DataFrame, metric: str) -> Figure:
    """Per layer, the corpus mean of the layer's head-mean change, with its 95 % interval (error bars); for
    ``contribution_share``, the share of the layer's mixing that moved between its heads."""
    if frame.empty:
        return empty_figure("No examples in this corpus yet.")
    signed = metric in SIGNED_METRICS
    what = LAYER_LABELS[metric].replace("<br>", " ") if signed else f"Head-mean {METRIC_LABELS[metric]}"
    what = what[0].upper() + what[1:]  # not str.capitalize: it would lower-case the Σ and Δ of the share's label
    trace = {
        "type": "scatter",
        "mode": "markers+lines",
        "x": frame["layer"].tolist(),
        "y": frame["mean"].tolist(),
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": (frame["ci_high"] - frame["mean"]).tolist(),
            "arrayminus": (frame["mean"] - frame["ci_low"]).tolist(),
            "color": "#555",
        },
        "customdata": frame[["ci_low", "ci_high", "n"]].to_numpy().tolist(),
        "hovertemplate": (
            "layer %{x}: mean %{y:.4f}<br>95 % interval %{customdata[0]:.4f} – %{customdata[1]:.4f}"
            "<br>n = %{customdata[2]} examples<extra></extra>"
        ),
        "marker": {"color": "#333", "size": 8},
        "line": {"color": "#999", "width": 1},
        "name": "mean with 95 % interval",
        "cliponaxis": False,  # the first layer's point sits on the axis (its change is near 0): drawn whole
    }
    return figure(
        [trace],
        layout(
            f"{what} per layer: mean, 95 % interval",
            height=360,
            xaxis={"title": {"text": "layer"}, "dtick": 1},
            yaxis={"title": {"text": LAYER_LABELS[metric]}, "rangemode": "tozero"},
        ),
    )


def make_word_difference(frame: pd.DataFrame, word: str, traced: str = "[CLS]") -> Figure:
    """Layers × heads: how much more (vermillion) or less (blue) attention [CLS] (``traced``: a decoder's "the last
    token") pays to ``word`` after fine-tuning, mean over its occurrences; the hover gives each model's value."""
    difference = _grid(frame, "difference")
    both = np.stack([_grid(frame, "pretrained"), _grid(frame, "finetuned")], axis=-1)
    bound = symmetric_range(difference)
    occurrences = int(frame["occurrences"].iloc[0])
    colours = {"colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound, "zmax": bound}
    hover = "pre-trained %{customdata[0]:.4f} · fine-tuned %{customdata[1]:.4f}<br>difference %{z:+.4f}"
    title = f"{traced} → '{word}': fine-tuned − pre-trained, mean of {occurrences:,} occurrences"
    unit = f"{MODEL_LABELS['difference']}<br>attention from {traced}"
    return _layer_head_map(difference, both, colours, unit, hover, title)


def make_corpus_head_map(frame: pd.DataFrame, stress: float, examples: int, canvas: Canvas | None = None) -> Figure:
    """Every head of both models placed so that heads attending alike over the corpus sit together (classical MDS
    of their mean Hellinger distance); a line joins each head's two positions, point size grows with its change.
    ``canvas``: the width it is drawn for (points shrink on a canvas narrower than the page's card)."""
    pre = frame[frame["model"] == "pretrained"].reset_index(drop=True)
    ft = frame[frame["model"] == "finetuned"].reset_index(drop=True)
    xs, ys = [], []
    for a, b in zip(pre.itertuples(), ft.itertuples(), strict=True):
        xs += [a.x, b.x, None]
        ys += [a.y, b.y, None]
    traces = [{"type": "scatter", "mode": "lines", "x": xs, "y": ys, "hoverinfo": "skip",
               "line": {"color": "#CCCCCC", "width": 1}, "name": "same head"}]  # fmt: skip
    shrink = min(1.0, (canvas.width if canvas else PAGE_CARD_WIDTH) / PAGE_CARD_WIDTH)
    scale = 22.0 * shrink / max(float(frame["mean_change"].fillna(0.0).max()), 1e-12)
    for model, part in (("pretrained", pre), ("finetuned", ft)):
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": part["x"].tolist(),
                "y": part["y"].tolist(),
                "customdata": part[["layer", "head", "mean_change"]].to_numpy().tolist(),
                "marker": {
                    "color": MODEL_COLOURS[model],
                    "size": (5 * max(shrink, 0.6) + scale * part["mean_change"].fillna(0)).tolist(),
                    "line": {"width": 0.5, "color": "white"},
                },
                "name": MODEL_LABELS[model],
                "hovertemplate": (
                    f"{MODEL_LABELS[model]} L%{{customdata[0]}} H%{{customdata[1]}}"
                    "<br>mean change %{customdata[2]:.4f}<extra></extra>"
                ),
            }
        )
    warning = ": read neighbours only" if stress > 0.2 else ""
    return figure(
        traces,
        layout(
            f"Heads that attend alike sit together ({examples:,} examples; stress {stress:.2f}{warning})",
            height=360,
            xaxis={"visible": False},
            yaxis={"visible": False, "scaleanchor": "x"},
            legend={"orientation": "h", "y": -0.05},  # one row in a single column: short names
            hovermode="closest",
        ),
    )
