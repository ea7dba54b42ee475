"""The sentence view in a single column (3.5 in at 7 pt): row labels whole, notes legible and clear of the rows."""

from __future__ import annotations

import numpy as np

from app.core.options import DPI
from app.figures import make_sentence
from app.figures.theme import Canvas
from attention import compare_relevance
from tests.conftest import TOKENS, make_run, plotly_figure, random_attention

SINGLE = Canvas(width=336, font_px=7 * DPI / 72, static=True)


def _frame():
    pre, ft = (make_run(random_attention(2, 2, len(TOKENS), seed=s)) for s in (1, 2))
    return compare_relevance(pre, ft, "rollout")


def test_single_column_rows_are_labelled_in_full():
    fig = plotly_figure(make_sentence(_frame(), tokens=TOKENS, canvas=SINGLE))
    labels = {a.text for a in fig.layout.annotations if a.xanchor == "right"}
    assert labels == {"pre-trained", "fine-tuned", "difference"}  # never cut to "pre" / "fine"
    assert fig.layout.margin.l >= 11 * 0.5 * SINGLE.font_px  # room for "pre-trained" at the labels' size


def test_a_missing_models_note_is_legible_and_ends_above_the_first_row():
    frame = _frame()
    frame["pretrained"] = np.nan
    message = {"pretrained": "all-MiniLM-L6-v2 has no classification head: it has no classes to explain."}
    fig = plotly_figure(
        make_sentence(frame, tokens=TOKENS, method="decompx", target="good", missing=message, canvas=SINGLE)
    )
    note = next(a for a in fig.layout.annotations if "classification head" in a.text)
    assert note.font.size >= 7 * DPI / 72  # 7 pt
    lines = note.text.count("<br>") + 1
    first_row = min(shape.y0 for shape in fig.layout.shapes)  # the boxes of the first line of text
    assert note.y + lines * note.font.size * 1.3 <= first_row  # the note's last line ends above the first row
