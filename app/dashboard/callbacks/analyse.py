"""Analyse a text: run both models once, show the prediction, reset token choices."""

from __future__ import annotations

from dash import Input, Output, State, ctx, html, no_update

from app.core.analysis import Analysis
from app.core.options import GRADIENT_METHODS, PREDICTED
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, require_analysis, view_options
from app.dashboard.callbacks.registry import declare, declare_clientside
from app.dashboard.controls import input_of, state_of
from app.dashboard.layout.controls import token_options
from app.service.registry import pair_service
from attention.defaults import DEFAULT_MEASURE


def prediction_panel(labels, probabilities, label, gold: str | None = None) -> list:
    """The fine-tuned model's decision with one bar per class, and the gold label of a held-out example."""
    if label is None:
        return [html.Span("The fine-tuned model is not a classifier.", className="muted")]
    bars = [
        html.Div(
            [
                html.Span(name, className="bar-label"),
                html.Div(
                    html.Div(
                        className="bar-fill" + (" chosen" if name == label else ""), style={"width": f"{100 * p:.1f}%"}
                    ),
                    className="bar",
                ),
                html.Span(f"{100 * p:.1f}%", className="bar-value"),
            ],
            className="bar-row",
        )
        for name, p in zip(labels, probabilities, strict=True)
    ]
    verdict = []
    if gold is not None:
        mark = "✓" if gold == label else "✗"
        verdict = [html.Div([html.Span("held-out gold label: ", className="muted"), html.B(gold), f" {mark}"],
                            className="gold")]  # fmt: skip
    return [
        html.Div([html.Span("fine-tuned prediction: ", className="muted"), html.B(label, className="label")]),
        *bars,
        *verdict,
    ]


@declare(
    Output(ids.ANALYSIS, "data"),
    Output(ids.TEXT, "value"),
    Output(ids.ERROR, "children"),
    Input(ids.ANALYSE, "n_clicks"),
    Input(ids.EXAMPLES, "value"),
    State(ids.TEXT, "value"),
    State(ids.TEXT_PAIR, "value"),
    State(ids.ANALYSIS, "data"),
    state_of("method"),
    state_of("target"),
    state_of("measure"),
    prevent_initial_call=True,
)
@guarded
def analyse(_clicks, example, text, text_pair, current=None, method=None, target=None, measure=None):
    """Run both models on the text (or the picked example); the views follow from the new analysis. When the
    page shows class relevance or input × gradient for the predicted class, it comes from the same forward pass;
    else the graph's context-mixing measure does."""
    if ctx.triggered_id == ids.EXAMPLES:
        if not example:
            return no_update, no_update, no_update
        text = example
    explain = method in GRADIENT_METHODS and target == PREDICTED
    analysis = pair_service(Analysis.from_store(current)).analyse(
        text, text_pair, explain=explain, measure=measure or DEFAULT_MEASURE
    )  # the page's pair
    return analysis.to_store(), text, ""


@declare(Output(ids.PREDICTION, "children"), Input(ids.ANALYSIS, "data"))
@guarded
def show_prediction(analysis_data):
    service = pair_service(Analysis.from_store(analysis_data))
    analysis = require_analysis(analysis_data)
    fine = service.runs(analysis).finetuned
    gold = service.golds.get(analysis.text) if analysis.text_pair is None else None
    return prediction_panel(fine.labels, fine.probabilities or (), fine.label, gold)


@declare(
    Output(ids.SOURCES, "options"),
    Output(ids.WORD, "options"),
    Input(ids.ANALYSIS, "data"),
    input_of("level"),
)
@guarded
def token_choices(analysis_data, level):
    """Tokens the user can trace from and query, at the current level (before hiding, so a choice survives
    toggling the filters); "#n" tells repeated words apart."""
    analysis = require_analysis(analysis_data)
    return token_options(pair_service(analysis).labels(analysis, view_options(level=level).level))


# The views and the prediction belong to the analysed text: while the text box holds another (typed, or refused by
# the server), they are dimmed and say whose they are. In the browser: no request per keystroke.
declare_clientside(
    """function (text, pair, analysis) {
        const norm = (s) => (s || "").trim();
        if (!analysis || (norm(text) === norm(analysis.text) && norm(pair) === norm(analysis.text_pair))) {
            return ["", "workspace"];
        }
        const shown = norm(analysis.text);
        const quote = shown.length > 80 ? shown.slice(0, 77) + "…" : shown;
        return ["The views and the prediction show the previous text, “" + quote + "”: press Analyse to show " +
                "the text above.", "workspace stale"];
    }""",
    Output(ids.STALE, "children"),
    Output(ids.WORKSPACE, "className"),
    Input(ids.TEXT, "value"),
    Input(ids.TEXT_PAIR, "value"),
    Input(ids.ANALYSIS, "data"),
)
