"""The faithfulness table as a figure: Spearman correlation with a reference, per method and layer, mean ± std
over sentences (from :func:`attention.faithfulness`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.core.options import CLASS_METHODS, MEASURES, METHODS
from app.figures.theme import Figure, figure, layout

# Okabe-Ito, colour-blind safe; one colour per method (every method of attention.relevance_methods: a test checks),
# never the two model colours.
METHOD_COLOURS = {
    "class_relevance": "#CC79A7",
    "decompx": "#D55E00",
    "input_x_gradient": "#000000",
    "graph": "#009E73",
    "rollout": "#56B4E9",
    "flow": "#E69F00",
    "raw_attention": "#999999",
}
# One colour per measure when the graph method is drawn over several (the class methods keep theirs).
MEASURE_COLOURS = {
    "raw_attention": "#999999",
    "attention_norm": "#56B4E9",
    "norm_residual": "#0072B2",
    "globenc": "#E69F00",
    "alti": "#009E73",
    "value_zeroing": "#F0E442",
}
REFERENCE_LABELS = {
    "blank_out": "blank-out",
    "blank_out_magnitude": "|blank-out|",
    "input_x_gradient": "input × gradient",
}


def _lines(rows: pd.DataFrame, graph_method: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(name, colour, rows) per line: every method of a table over one measure; over several measures, the
    ``graph_method`` over each measure and the class-specific methods."""
    measures = [m for m in MEASURES if (rows["measure"] == m).any()] if "measure" in rows else []
    if len(measures) <= 1:
        return [(METHODS[m], METHOD_COLOURS[m], rows[rows["method"] == m]) for m in METHODS
                if (rows["method"] == m).any()]  # fmt: skip
    lines = [(f"{graph_method.replace('_', ' ')} over {MEASURES[m]}", MEASURE_COLOURS[m],
              rows[(rows["measure"] == m) & (rows["method"] == graph_method)]) for m in measures]  # fmt: skip
    for method in CLASS_METHODS:
        if (rows["method"] == method).any():
            lines.append((METHODS[method], METHOD_COLOURS[method], rows[rows["method"] == method]))
    return lines


def make_faithfulness(
    table: pd.DataFrame, *, reference: str = "blank_out", model: str = "", graph_method: str = "graph"
) -> Figure:
    """Lines of mean Spearman ρ per layer, one per method, with the 95 % confidence interval of the mean
    (1.96 · std / √n over sentences) as error bars, each line shifted a little sideways so the bars do not hide
    each other; ``input_x_gradient`` (no layers) is a point at layer 0 ("embeddings"). A table over several
    measures draws ``graph_method`` over each measure, plus the class-specific methods. Hover: mean ± std and n."""
    rows = table[table["reference"] == reference]
    shown = _lines(rows, graph_method)
    traces = []
    for index, (name, colour, part) in enumerate(shown):
        part = part.sort_values("layer")
        offset = 0.07 * (index - (len(shown) - 1) / 2)
        interval = 1.96 * part["spearman_std"] / np.sqrt(part["n"].clip(lower=1))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": (part["layer"] + offset).round(3).tolist(),
                "y": part["spearman_mean"].round(4).tolist(),
                "error_y": {"type": "data", "array": interval.round(4).tolist(), "thickness": 1.2, "width": 3},
                "line": {"color": colour, "width": 2},
                "marker": {"color": colour, "size": 7},
                "customdata": part[["layer", "spearman_std", "n"]].to_numpy().tolist(),
                "hovertemplate": "layer %{customdata[0]}: ρ = %{y:.3f}, std %{customdata[1]:.3f}, "
                "n = %{customdata[2]}<extra>" + name + "</extra>",
            }
        )
    layers = sorted(int(x) for x in rows["layer"].unique())
    sentences = int(rows["n"].max()) if len(rows) else 0
    title = f"Faithfulness: Spearman ρ with {REFERENCE_LABELS[reference]}, {sentences} sentences" + (
        f" ({model})" if model else ""
    )
    return figure(
        traces,
        layout(
            title,
            height=420 + 20 * (len(shown) // 4),
            xaxis={
                "title": {"text": "layer (0 = embeddings)"},
                "tickmode": "array",
                "tickvals": layers,
                "ticktext": ["emb." if layer == 0 else str(layer) for layer in layers],
            },
            yaxis={"title": {"text": "Spearman ρ (mean, 95 % CI)"}, "zeroline": True},
            legend={"orientation": "h", "y": -0.22, "x": 0.0},
            margin={"l": 60, "r": 20, "t": 50, "b": 110 + 20 * (len(shown) // 4)},
        ),
    )
