"""Views 2-4: the head grid, the attention matrices and the token influence heatmap."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.core.options import HEAD_METRICS, PAIR_METRICS
from app.figures.models import DIFFERENCE, MODELS, shown_models, shown_panels, single_panel
from app.figures.sentence import SIGNED_SCALE, method_phrase
from app.figures.theme import (
    DIVERGING,
    MODEL_LABELS,
    MODEL_SCALES,
    NEUTRAL_SCALE,
    Canvas,
    Figure,
    axis_key,
    axis_ref,
    empty_figure,
    figure,
    layout,
    panel_domains,
    panel_title,
    symmetric_range,
)


def _token_axis(tokens: Sequence[str]) -> dict:
    return {
        "tickmode": "array",
        "tickvals": list(range(len(tokens))),
        "ticktext": list(tokens),
        "tickfont": {"size": 10},
    }


def grid_shapes(
    selected: tuple[int, int | None] | None,
    num_heads: int,
    num_layers: int,
    *,
    panels: int = 1,
    shown_heads: Sequence[int] | None = None,
) -> list[dict]:
    """Layout shapes of a layers × heads grid with ``panels`` panels: an outline on the selected (layer, head)
    cell (the whole layer when ``head`` is None), and a white veil over the heads the 'Heads' filter leaves out
    (``shown_heads``; None = all)."""
    shapes = []
    for panel in range(1, panels + 1):
        refs = {"xref": axis_ref("x", panel), "yref": axis_ref("y", panel)}
        for head in sorted(set(range(num_heads)) - set(shown_heads if shown_heads is not None else range(num_heads))):
            shapes.append(
                {
                    "type": "rect",
                    **refs,
                    "x0": head - 0.5,
                    "x1": head + 0.5,
                    "y0": 0.5,
                    "y1": num_layers + 0.5,
                    "fillcolor": "rgba(255,255,255,0.72)",
                    "line": {"width": 0},
                }
            )
        if selected is not None:
            layer, head = selected
            x0, x1 = (head - 0.5, head + 0.5) if head is not None else (-0.5, num_heads - 0.5)
            shapes.append(
                {
                    "type": "rect",
                    **refs,
                    "x0": x0,
                    "x1": x1,
                    "y0": layer - 0.5,
                    "y1": layer + 0.5,
                    "line": {"color": "black", "width": 3},
                }
            )
    return shapes


def _heads_note(shown_heads: Sequence[int] | None, num_heads: int) -> str:
    if shown_heads is None or len(shown_heads) == num_heads:
        return ""
    return " (heads outside the 'Heads' filter veiled)"


def _by_layer_and_head(frame: pd.DataFrame, values: pd.Series) -> np.ndarray:
    """``[layer, head]``: ``values`` (one per row of ``frame``, whose ``layer`` counts from 1 and ``head`` from 0)
    on a grid of every layer and head, NaN where a head has no row."""
    grid = np.full((int(frame["layer"].max()), int(frame["head"].max()) + 1), np.nan)
    grid[frame["layer"].to_numpy() - 1, frame["head"].to_numpy()] = values.to_numpy()
    return grid


def make_head_grid(
    heads: pd.DataFrame,
    *,
    metric: str = "js_divergence",
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    shown_heads: Sequence[int] | None = None,
) -> Figure:
    """Layers x heads, coloured by ``metric`` (a column family of :func:`attention.compare_heads`).

    Metrics comparing the models (JS divergence, TV, cosine) are shown as they are; per-model statistics show
    the chosen model, or in comparison mode the fine-tuned minus pre-trained difference. Clicking a cell selects
    the head (the click's x is the head, y the layer); heads outside ``shown_heads`` are veiled.
    """
    if metric not in HEAD_METRICS:
        raise ValueError(f"metric must be one of {', '.join(HEAD_METRICS)}, got {metric!r}")
    trace: dict = {"colorbar": {"thickness": 12}}
    if metric in PAIR_METRICS:
        values, label = heads[metric], HEAD_METRICS[metric]
        trace["colorscale"] = NEUTRAL_SCALE
    elif (panel := single_panel(mode)) == DIFFERENCE:
        values = heads[f"{metric}_finetuned"] - heads[f"{metric}_pretrained"]
        label = f"{HEAD_METRICS[metric]}: fine-tuned − pre-trained"
        bound = symmetric_range(values)
        trace |= {"colorscale": DIVERGING, "zmid": 0.0, "zmin": -bound, "zmax": bound}
    else:
        values, label = heads[f"{metric}_{panel}"], f"{HEAD_METRICS[metric]} ({MODEL_LABELS[panel]})"
        trace["colorscale"] = MODEL_SCALES[panel]
    z = _by_layer_and_head(heads, values)
    layers, num_heads = z.shape
    heatmap = {
        "type": "heatmap",
        "z": z,
        "x": list(range(num_heads)),
        "y": list(range(1, layers + 1)),
        "hovertemplate": "layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>",
        **trace,
    }
    return figure(
        [heatmap],
        layout(
            f"Heads: {label}{_heads_note(shown_heads, num_heads)}",
            height=120 + 38 * layers,
            xaxis={"title": {"text": "head"}, "tickmode": "linear", "dtick": 1},
            yaxis={"title": {"text": "layer"}, "tickmode": "linear", "dtick": 1},
            shapes=grid_shapes(selected, num_heads, layers, shown_heads=shown_heads),
        ),
    )


def make_word_query(
    received: pd.DataFrame,
    *,
    word: str,
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    shown_heads: Sequence[int] | None = None,
) -> Figure:
    """The word query as layers × heads grids: the attention ``word`` receives in every head (a frame of
    :func:`attention.attention_received`), one panel per model on one scale plus their difference in
    comparison mode. Clicking a cell selects the head."""
    panels = shown_panels(mode)
    peak = float(received[list(shown_models(mode))].to_numpy().max())
    traces = []
    for panel in panels:
        z = _by_layer_and_head(received, received[panel])
        layers, num_heads = z.shape
        traces.append(
            {
                "z": z,
                "x": list(range(num_heads)),
                "y": list(range(1, layers + 1)),
                "hovertemplate": "layer %{y}, head %{x}<br>received %{z:.3f}<extra>" + MODEL_LABELS[panel] + "</extra>",
            }
        )
    title = f"Word query: attention '{word}' receives, mean over all tokens{_heads_note(shown_heads, num_heads)}"
    return _panel_figure(
        panels,
        traces,
        title=title,
        height=150 + 38 * layers,
        peak=peak,
        xaxis={"title": {"text": "head"}, "tickmode": "linear", "dtick": 2 if len(panels) > 1 else 1},
        yaxis={"title": {"text": "layer"}, "tickmode": "linear", "dtick": 1},
        shapes=grid_shapes(selected, num_heads, layers, panels=len(panels), shown_heads=shown_heads),
    )


def top_heads(received: pd.DataFrame, mode: str, count: int = 5) -> pd.DataFrame:
    """The heads the word query lists: in comparison mode the largest changes (by magnitude), else the heads
    where the word receives most. Columns ``layer, head, value``."""
    column = single_panel(mode)
    order = received[column].abs() if column == DIFFERENCE else received[column]
    ranked = received.assign(value=received[column], order=order).nlargest(count, "order")
    return ranked[["layer", "head", "value"]].reset_index(drop=True)


def segment_lines(start: int | None, panels: int, *, columns: bool) -> list[dict]:
    """Dashed lines before row ``start`` (and column, when ``columns``) of every panel: where the second
    segment of a sentence pair begins."""
    if start is None:
        return []
    line = {"color": "#333333", "width": 1, "dash": "dash"}
    shapes = []
    for panel in range(1, panels + 1):
        x, y = axis_ref("x", panel), axis_ref("y", panel)
        shapes.append({"type": "line", "xref": f"{x} domain", "x0": 0, "x1": 1, "yref": y, "y0": start - 0.5,
                       "y1": start - 0.5, "line": line})  # fmt: skip
        if columns:
            shapes.append({"type": "line", "yref": f"{y} domain", "y0": 0, "y1": 1, "xref": x, "x0": start - 0.5,
                           "x1": start - 0.5, "line": line})  # fmt: skip
    return shapes


def _panel_figure(
    panels: Sequence[str],
    traces: list[dict],
    *,
    title: str,
    height: int,
    peak: float,
    xaxis: dict,
    yaxis: dict,
    shapes: list[dict],
    narrow: bool = False,
    signed: bool = False,
    keep_height: bool = False,
) -> Figure:
    """Side-by-side heatmap panels (one trace dict with a ``[rows, columns]`` ``z`` per panel) sharing one colour
    scale for the two models (so they compare) and a diverging one for the difference; each colour bar sits right
    of its panel. ``signed`` model values (a signed method such as DecompX) get a scale symmetric around 0
    (``peak`` its bound), never one clipped at 0. ``keep_height``: exports keep the figure's ``height``, so a row
    per token stays legible."""
    domains = panel_domains(len(panels))
    data, axes, titles = [], {}, []
    for index, (panel, trace, domain) in enumerate(zip(panels, traces, domains, strict=True), start=1):
        diverging = panel == "difference"
        bound = symmetric_range(trace["z"]) if diverging else max(peak, 1e-9)
        data.append(
            {
                "type": "heatmap",
                **trace,
                "xaxis": axis_ref("x", index),
                "yaxis": axis_ref("y", index),
                "colorscale": DIVERGING if diverging else (SIGNED_SCALE if signed else MODEL_SCALES[panel]),
                "zmin": -bound if diverging or signed else 0.0,
                "zmax": bound,
                "showscale": True,  # every panel has its own colour bar (the models are drawn in their own colours)
                "colorbar": {"x": domain[1] + 0.005, "xanchor": "left", "thickness": 10, "len": 0.75},
            }
        )
        axes[axis_key("x", index)] = {**xaxis, "domain": domain, "anchor": axis_ref("y", index), "automargin": True}
        axes[axis_key("y", index)] = {
            **yaxis,
            "anchor": axis_ref("x", index),
            "automargin": True,
            "showticklabels": index == 1,
            "title": yaxis.get("title") if index == 1 else None,
        }
        titles.append(panel_title("difference" if narrow and panel == "difference" else MODEL_LABELS[panel], domain))
    kept = {"meta": {"min_height": height}} if keep_height else {}
    return figure(data, layout(title, height=height, annotations=titles, **axes, shapes=shapes, **kept))


def make_matrix(
    matrices: pd.DataFrame,
    *,
    tokens: Sequence[str],
    mode: str = "comparison",
    caption: str = "",
    what: str = "Attention",
    other: int | None = None,
    canvas: Canvas | None = None,
    segment_start: int | None = None,
) -> Figure:
    """Side-by-side attention matrices (query rows, key columns) from :func:`attention.attention_matrices`.

    Axes are categories ``"<position>:<token>"`` (unique even when a word repeats) shown as the bare token, so
    hovering names both tokens without an n x n array of strings. ``other`` is the position of a long input's
    folded tokens (:mod:`app.core.fold`): its row and column do not set the top of the colour scale (its column sums
    many tokens and may exceed it). Key labels are vertical, and thinned to every k-th when the ``canvas`` leaves
    a column narrower than a line of text (every label is in the hover). A dashed line marks ``segment_start``,
    the first token of a pair's second segment."""
    panels = shown_panels(mode)
    n = len(tokens)
    canvas = canvas or Canvas()
    narrow = canvas.width < 640  # a single-column figure: short titles
    plot_share = 0.55 if narrow else 0.8  # margins and colour bars take more of a narrow figure
    column_px = canvas.width * plot_share / len(panels) / max(n, 1)
    step = max(1, math.ceil(canvas.font_px * 1.25 / column_px))
    scaled = matrices["model"] != "difference"
    if other is not None:
        scaled &= (matrices["query_idx"] != other) & (matrices["key_idx"] != other)
    peak = float(matrices.loc[scaled, "weight"].max()) if scaled.any() else 1.0
    names = [f"{i}:{token}" for i, token in enumerate(tokens)]
    ticks = {
        "tickmode": "array",
        "tickvals": names,
        "ticktext": list(tokens),
        "tickfont": {"size": 10},
        "type": "category",
    }
    traces = []
    for panel in panels:
        rows = matrices[matrices["model"] == panel]
        z = np.zeros((n, n))
        z[rows["query_idx"].to_numpy(), rows["key_idx"].to_numpy()] = rows["weight"].to_numpy()
        traces.append(
            {
                "z": z.round(4),  # hover shows 3 decimals; full float64 digits would double the payload
                "x": names,
                "y": names,
                "hovertemplate": "%{y} → %{x}<br>" + ("weight" if what == "Attention" else "share")
                + " %{z:.3f}<extra>" + MODEL_LABELS[panel] + "</extra>",
            }
        )
    return _panel_figure(
        panels,
        traces,
        title=f"{what} matrix {caption}".strip(),
        height=max(360, 15 * n + 190),
        peak=peak,
        xaxis={
            **ticks,
            "tickvals": names[::step],
            "ticktext": list(tokens)[::step],
            "tickangle": -90,
            "title": {"text": "key" if narrow else "key (attended to)" + (f"; 1 label in {step}" if step > 1 else "")},
        },
        yaxis={**ticks, "autorange": "reversed", "title": {"text": "query"}},
        shapes=segment_lines(segment_start, len(panels), columns=True),
        narrow=narrow,
        keep_height=True,
    )


def make_influence(
    relevance: pd.DataFrame,
    *,
    tokens: Sequence[str],
    method: str = "class_relevance",
    mode: str = "comparison",
    scale_without: Sequence[int] = (),
    target: str | None = None,
    source: str = "[CLS]",
    missing: dict[str, str] | None = None,
    segment_start: int | None = None,
    measure: str | None = None,
) -> Figure:
    """Tokens x layers: each token's score after every layer, for each model and the difference (a relevance
    frame: ``layer, token_idx, pretrained, finetuned, difference``; layer 0 = the embeddings, input × gradient).
    Only the shown tokens are rows. ``scale_without`` (special and traced tokens) are left out when choosing the
    top of the colour scale; ``missing[model]`` replaces that model's panel by a sentence; a dashed line marks
    ``segment_start`` (the row where a pair's second segment begins)."""
    missing = missing or {}
    panels = [p for p in shown_panels(mode) if p not in missing and not (p == "difference" and missing)]
    if not panels:
        return empty_figure(" ".join(missing.values()))
    layers = sorted(int(x) for x in relevance["layer"].unique())
    positions = sorted(int(t) for t in relevance["token_idx"].unique())
    row_of = {t: i for i, t in enumerate(positions)}
    shown_tokens = [tokens[t] for t in positions]
    counted = relevance[~relevance["token_idx"].isin(list(scale_without))]
    counted = counted if len(counted) else relevance
    values = counted[[m for m in MODELS if m not in missing]].to_numpy(dtype=float)  # both models, in any mode
    finite = values[np.isfinite(values)]
    signed = bool(finite.size and finite.min() < 0)
    peak = float(np.abs(finite).max() if signed else finite.max()) if finite.size else 1.0
    labels = np.asarray(shown_tokens, dtype=object)[:, None].repeat(len(layers), axis=1).tolist()
    columns = ["embeddings" if layer == 0 else f"after {layer}" for layer in layers]
    uncoloured = np.isin(positions, list(scale_without))[:, None]  # special / traced tokens: value in the hover
    traces = []
    for panel in panels:
        z = np.full((len(positions), len(layers)), np.nan)
        rows = relevance["token_idx"].map(row_of).to_numpy()
        z[rows, relevance["layer"].to_numpy() - layers[0]] = relevance[panel].to_numpy()
        traces.append(
            {
                "z": np.where(uncoloured & (panel != "difference"), np.nan, z),
                "customdata": z,
                "hoverongaps": True,
                "x": columns,
                "text": labels,
                "hovertemplate": "<b>%{text}</b>, %{x}: %{customdata:.4f}<extra>" + MODEL_LABELS[panel] + "</extra>",
            }
        )
    title = "Token scores per layer: " + method_phrase(method, target=target, source=source, layer=0, measure=measure)
    fig = _panel_figure(
        panels,
        traces,
        title=title,
        height=max(340, 15 * len(positions) + 150),
        peak=peak,
        signed=signed,
        xaxis={"title": {"text": "layer"}, "type": "category"},
        yaxis={**_token_axis(shown_tokens), "autorange": "reversed"},
        shapes=segment_lines(segment_start, len(panels), columns=False),
        keep_height=True,
    )
    if missing:
        fig["layout"]["title"]["subtitle"] = {
            "text": "; ".join(missing.values()),
            "font": {"size": 11, "color": "#555"},
        }
        fig["layout"]["margin"] = {**fig["layout"].get("margin", {}), "t": 80}
    return fig
