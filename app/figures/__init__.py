"""Pure figure builders: ``(DataFrame, options) -> plotly Figure``. No Dash, no I/O, no globals that change.

The same functions serve the dashboard and the static export, so a paper figure is the dashboard figure. Which
models a view draws for the "mode" option is decided once, in :mod:`app.figures.models`.
"""

from app.figures.faithfulness import make_faithfulness
from app.figures.heatmaps import make_head_grid, make_influence, make_matrix
from app.figures.sankey import make_sankey
from app.figures.scatter import make_similarity
from app.figures.sentence import make_sentence

__all__ = [
    "make_faithfulness",
    "make_head_grid",
    "make_influence",
    "make_matrix",
    "make_sankey",
    "make_sentence",
    "make_similarity",
]
