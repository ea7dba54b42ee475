"""View 8: every head's attention map at a glance (bertviz's "model view"): a small matrix per layer and head,
for one model or the difference; clicking one selects that head in every view.

The maps are sent as one heatmap of 8-bit levels (a 6 × 12 grid of 30 × 30 maps is 65 k cells: 65 KB instead of
~400 KB of floats); the colour bar is labelled in attention weights, so colours read exactly as in the matrix view,
whose hover gives any exact value.
"""

from __future__ import annotations

import numpy as np

from app.figures.models import DIFFERENCE, single_panel
from app.figures.theme import DIVERGING, MODEL_LABELS, MODEL_SCALES, Figure, figure, layout, tick_labels

GAP = 2  # cells between two maps
LEVELS = 255


def thumbnail_grid(maps: np.ndarray, gap: int = GAP) -> np.ndarray:
    """``[layer, head, query, key]`` -> one 2-D array of maps, the last layer on top, 0 (white on every scale)
    between maps.

    Map ``(layer l, head h)`` occupies rows ``(L − l)·(m + gap) ..`` and columns ``h·(m + gap) ..``."""
    layers, heads, m, _ = maps.shape
    step = m + gap
    grid = np.zeros((layers * step - gap, heads * step - gap), dtype=np.float32)
    for layer in range(layers):
        row = (layers - 1 - layer) * step
        for head in range(heads):
            grid[row : row + m, head * step : head * step + m] = maps[layer, head]
    return grid


def head_at(x: float, y: float, *, layers: int, tokens: int, gap: int = GAP) -> tuple[int, int]:
    """The (layer, head) of a clicked cell ``(x, y)`` (column, row of :func:`thumbnail_grid`)."""
    step = tokens + gap
    return layers - int(y // step), int(x // step)


def thumbnail_outline(selected: tuple[int, int | None] | None, *, layers: int, tokens: int) -> list[dict]:
    """A black frame around the selected head's map (none when no single head is selected)."""
    if selected is None or selected[1] is None:
        return []
    layer, head = selected
    step = tokens + GAP
    row, col = (layers - layer) * step, head * step
    return [{"type": "rect", "x0": col - 1.5, "x1": col + tokens + 0.5, "y0": row - 1.5, "y1": row + tokens + 0.5,
             "line": {"color": "black", "width": 2}}]  # fmt: skip


def make_thumbnails(
    pretrained: np.ndarray,
    finetuned: np.ndarray,
    *,
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    width: int = 1150,
    static: bool = False,
) -> Figure:
    """The thumbnail grid of ``pretrained`` / ``finetuned`` maps ``[layer, head, query, key]``: the chosen model
    on its sequential scale, or in comparison mode fine-tuned − pre-trained on a diverging one; as tall as square
    cells need at ``width`` px. A ``static`` figure (a file) never asks to click a map."""
    panel = single_panel(mode)
    maps = finetuned - pretrained if panel == DIFFERENCE else {"pretrained": pretrained, "finetuned": finetuned}[panel]
    layers, heads, m, _ = maps.shape
    grid = thumbnail_grid(maps)
    if panel == DIFFERENCE:
        bound = max(float(np.abs(grid).max()), 1e-9)
        z = np.rint(grid / bound * 127).astype(np.int8)
        scale, low, high, levels = DIVERGING, -127, 127, 127
    else:
        bound = max(float(grid.max()), 1e-9)
        z = np.rint(grid / bound * LEVELS).astype(np.uint8)
        scale, low, high, levels = MODEL_SCALES[panel], 0, LEVELS, LEVELS
    ticks = tick_labels(bound, signed=panel == DIFFERENCE)  # round weights, as the matrices' colour bars
    step = m + GAP
    heatmap = {
        "type": "heatmap",
        "z": z,
        "zmin": low,
        "zmax": high,
        "colorscale": scale,
        "hoverinfo": "none",
        "colorbar": {
            "thickness": 10,
            "tickvals": [value / bound * levels for value, _ in ticks],
            "ticktext": [label for _, label in ticks],
            "title": {"text": "weight" if panel != DIFFERENCE else "change", "side": "top"},
        },
    }
    shapes = thumbnail_outline(selected, layers=layers, tokens=m)
    what = MODEL_LABELS[panel]
    cell = (width - 140) / grid.shape[1]  # px per cell across the plot (margins and colour bar: ~140 px)
    side = int(max(220, min(1400, grid.shape[0] * cell + 120)))
    return figure(
        [heatmap],
        layout(
            f"Every head's attention map ({what})" + ("" if static else "; click one to select it"),
            height=side,
            meta={"min_height": side},
            shapes=shapes,
            xaxis={
                "tickmode": "array",
                "tickvals": [h * step + (m - 1) / 2 for h in range(heads)],
                "ticktext": [str(h) for h in range(heads)],
                "title": {"text": "head"},
                "showgrid": False,
                "zeroline": False,
            },
            yaxis={
                "tickmode": "array",
                "tickvals": [(layers - layer) * step + (m - 1) / 2 for layer in range(1, layers + 1)],
                "ticktext": [str(layer) for layer in range(1, layers + 1)],
                "title": {"text": "layer"},
                "autorange": "reversed",
                "showgrid": False,
                "zeroline": False,
                "scaleanchor": "x",
            },
        ),
    )
