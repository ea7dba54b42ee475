"""One callback per view: controls in, figure out (via :mod:`app.views.render`)."""

from __future__ import annotations

import json
import time

from dash import ALL, Input, Output, Patch, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from app.core.analysis import Analysis
from app.core.options import CANVAS_WIDTH_RANGE, CLASS_METHODS, ViewOptions
from app.core.urlstate import changed_controls
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, job_server, require_analysis, selected_head, view_options
from app.dashboard.callbacks.lazy import changed_props, declare_view
from app.dashboard.callbacks.registry import declare, declare_clientside
from app.dashboard.controls import CONTROLS, NAMES, RELEVANCE_CONTROLS, VIEW_CONTROLS, input_of, inputs, states
from app.dashboard.layout.controls import alpha_note
from app.dashboard.layout.views import faithfulness_table, fix_buttons
from app.figures.heatmaps import top_heads
from app.figures.theme import Canvas
from app.service.registry import pair_service
from app.views.render import matrix_caption, render
from app.views.render import network as render_network
from attention.defaults import RESIDUAL_MEASURES
from attention.relevance_methods import relevance_method
from attention.tokens import word_all

VIEW_INPUTS = inputs(*VIEW_CONTROLS)
RELEVANCE_INPUTS = inputs(*RELEVANCE_CONTROLS)


# Controls a view reads only through the fold of a long input (app/core/fold.py: which tokens a long input keeps). An
# input that never folds at its level and hiding draws the same figure whatever they are, so a change of one of
# them leaves that view as it is instead of redrawing it (tests/dashboard/test_callbacks.py checks each pair renders
# equal).
FOLD_ONLY: dict[str, frozenset[str]] = {
    "sankey": frozenset({"method", "target", "top_k"}),
    "network": frozenset({"method", "target", "top_k"}),
    "matrix": frozenset({"method", "target", "top_k", "tau", "alpha", "sinks", "sources"}),  # it follows the layers
    "thumbnails": frozenset({"method", "target", "top_k", "tau", "alpha", "sinks", "sources", "layers", "heads",
                             "aggregation", "measure"}),
    "headview": frozenset({"method", "target", "top_k", "tau", "alpha", "sinks", "sources", "aggregation",
                           "measure"}),
}  # fmt: skip


GRAPH_SETTINGS = frozenset({"tau", "alpha", "sinks", "aggregation"})  # read by a method with graph settings only


def unread(view: str, options: ViewOptions) -> frozenset[str]:
    """Controls ``view`` does not read at ``options``, for any input: over a measure (one map per layer) no view
    of the graph or the token scores reads the heads, nor α when the maps hold the residual; an attention method's
    token scores ignore the target class, and a method without graph settings τ, α, sinks and the head aggregation;
    a class method's scores ignore those, the heads and the measure (and, in the sentence view, which never folds,
    the traced tokens). The graph views read the scores only to fold a long input. The set depends only on what the
    view reads at these options (the method; for an attention method the measure), so a change of these alone
    leaves the figure as it was (tested per view, method and measure in tests/dashboard/test_callbacks.py)."""
    if view not in ("sentence", "influence", "sankey", "network"):
        return frozenset()
    maps = ({"heads"} if options.measure != "raw_attention" else set()) | (
        {"alpha"} if options.measure in RESIDUAL_MEASURES else set()
    )
    if options.method in CLASS_METHODS:
        scores = GRAPH_SETTINGS | {"heads", "measure"} | ({"sources", "top_k"} if view == "sentence" else set())
    else:
        scores = {"target"} | maps | (set() if relevance_method(options.method).graph_settings else GRAPH_SETTINGS)
        scores |= {"top_k"} if view == "sentence" else set()
    return frozenset(scores if view in ("sentence", "influence") else (scores & {"target"}) | maps)


def unchanged_view(view: str, analysis_data, controls: dict) -> bool:
    """True when only controls ``view`` does not read at these options changed (:func:`unread`), or only those it
    reads through the fold (:data:`FOLD_ONLY`) and this input never folds: the drawn figure is still exact, nothing
    to send."""
    triggered = changed_props()
    if triggered is None:  # called directly (tests, scripts): always draw
        return False
    names = {NAMES.get(component) for component in triggered}
    if not names or None in names:
        return False
    options, analysis = view_options(**controls), Analysis.from_store(analysis_data)
    if analysis is None:
        return False
    service = pair_service(analysis)
    if names <= unread(view, options):
        service.checked(analysis, options)  # an option out of range is still said, never silently kept
        return True
    return names <= FOLD_ONLY.get(view, frozenset()) and service.never_folds(analysis, options)


def _draw(view: str, analysis_data, selected, canvas: Canvas | None = None, **controls):
    service = pair_service(Analysis.from_store(analysis_data))
    return render(
        view,
        service,
        require_analysis(analysis_data),
        view_options(**controls),
        selected_head(selected, service),
        canvas,
    )


def canvas_of(data: dict | None) -> Canvas:
    """The canvas a laid-out view is drawn for: the width its card measured in the browser (``assets/canvas.js``),
    bounded to a sane range; the default width before the page has measured it."""
    width = (data or {}).get("width")
    if not isinstance(width, int | float) or not CANVAS_WIDTH_RANGE[0] <= width <= CANVAS_WIDTH_RANGE[1]:
        return Canvas()
    return Canvas(width=int(width))


@declare_view(
    "sankey",
    Output(ids.SANKEY, "figure"),
    Output(ids.graph_fixes("sankey"), "children"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": Input(ids.SELECTED_HEAD, "data"),
        **VIEW_INPUTS,
        **RELEVANCE_INPUTS,  # a long input keeps its most relevant tokens
    },
)
@guarded
def update_sankey(analysis_data, selected, **controls):
    """The Sankey and the buttons for the fixes its note suggests."""
    if unchanged_view("sankey", analysis_data, controls):
        return no_update, no_update
    drawn = _draw("sankey", analysis_data, selected, **controls)
    return drawn, fix_buttons("sankey", drawn)


@declare_view(
    "network",
    Output(ids.NETWORK, "figure"),
    Output(ids.graph_fixes("network"), "children"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        **inputs("arrangement"),
        **VIEW_INPUTS,
        **RELEVANCE_INPUTS,
    },
)
@guarded
def update_network(analysis_data, **controls):
    """The network and the buttons for the fixes its note suggests."""
    if unchanged_view("network", analysis_data, controls):
        return no_update, no_update
    drawn = _draw("network", analysis_data, None, **controls)
    return drawn, fix_buttons("network", drawn)


# The controls a graph fix may change (app/figures/graph_notes.py: ViewOptions fields → the controls that hold them).
FIX_CONTROLS = ("tau", "sinks", "sources", "measure", "hide")


@declare(
    output={name: Output(CONTROLS[name], "value", allow_duplicate=True) for name in FIX_CONTROLS},
    inputs={"clicks": Input(ids.graph_fix(ALL, ALL), "n_clicks")},
    prevent_initial_call=True,
)
@guarded
def apply_graph_fix(clicks):
    """A fix button under a graph view sets the controls its option change names (the views and the URL follow
    the controls)."""
    if not ctx.triggered_id or not any(clicks or []) or not ctx.triggered[0].get("value"):
        raise PreventUpdate  # buttons drawn (n_clicks 0), not pressed
    values = changed_controls(json.loads(ctx.triggered_id["change"]))
    return {name: values.get(name, no_update) for name in FIX_CONTROLS}


@declare(
    Output(ids.NETWORK, "figure", allow_duplicate=True),
    inputs={
        "hover": Input(ids.NETWORK, "hoverData"),
        "analysis_data": State(ids.ANALYSIS, "data"),
        **states("arrangement"),
        **states(*VIEW_CONTROLS, *RELEVANCE_CONTROLS),
    },
    prevent_initial_call=True,
)
@guarded
def highlight_paths(hover, analysis_data, **controls):
    """Hovering a token draws every path through it (only the highlight trace is sent, as a Patch)."""
    point = (hover or {}).get("points", [{}])[0] if isinstance(hover, dict) else {}
    where = point.get("customdata")
    if not (isinstance(where, list) and len(where) == 2 and all(isinstance(v, int) for v in where)):
        raise PreventUpdate  # an edge or the legend: keep the current highlight
    service = pair_service(Analysis.from_store(analysis_data))
    analysis = require_analysis(analysis_data)
    drawn = render_network(service, analysis, view_options(**controls), None, Canvas(), highlight=tuple(where))
    index = next(i for i, trace in enumerate(drawn["data"]) if trace.get("name") == "highlight")
    patch = Patch()
    patch["data"][index]["x"] = drawn["data"][index]["x"].tolist()  # NaN: the lines' breaks (null in JSON)
    patch["data"][index]["y"] = drawn["data"][index]["y"].tolist()
    return patch


@declare_view(
    "heads",
    Output(ids.HEAD_GRID, "figure"),
    Output(ids.TOP_HEADS, "children"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        **inputs("metric", "word", "mode", "heads", "level"),
    },
)
@guarded
def update_head_grid(analysis_data, selected, **controls):
    """The head grid, or the word query's grids and its top heads (buttons that select a head) when a word is
    picked."""
    figure = _draw("heads", analysis_data, selected, **controls)
    options = view_options(**controls)
    if options.word is None:
        return figure, []
    service = pair_service(Analysis.from_store(analysis_data))
    ranked = top_heads(service.received(require_analysis(analysis_data), options), options.mode)
    what = "largest change" if options.mode == "comparison" else "most attention"
    buttons = [
        html.Button(
            f"L{row.layer} H{row.head}: {row.value:+.3f}"
            if options.mode == "comparison"
            else f"L{row.layer} H{row.head}: {row.value:.3f}",
            id=ids.top_head(int(row.layer), int(row.head)),
            n_clicks=0,
            className="small-button",
            title="Select this head in every view",
        )
        for row in ranked.itertuples(index=False)
    ]
    return figure, [html.Span(f"Top heads ({what}):", className="muted"), *buttons]


@declare_view(
    "matrix",
    Output(ids.MATRIX, "figure"),
    Output(ids.SELECTION_LABEL, "children"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": Input(ids.SELECTED_HEAD, "data"),
        **VIEW_INPUTS,  # all of them: a long input keeps its most relevant tokens, by the current relevance
        **RELEVANCE_INPUTS,
        **inputs("renormalize"),
    },
)
@guarded
def update_matrix(analysis_data, selected, **controls):
    if unchanged_view("matrix", analysis_data, controls):
        return no_update, no_update
    service = pair_service(Analysis.from_store(analysis_data))
    options = view_options(**controls)
    head = selected_head(selected, service)
    return _draw("matrix", analysis_data, selected, **controls), matrix_caption(options, head, service.num_heads)


@declare_view(
    "thumbnails",
    Output(ids.THUMBNAILS, "figure"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        **VIEW_INPUTS,
        **RELEVANCE_INPUTS,  # a long input keeps its most relevant tokens
        **inputs("renormalize"),
    },
)
@guarded
def update_thumbnails(analysis_data, selected, **controls):
    if unchanged_view("thumbnails", analysis_data, controls):
        return no_update
    return _draw("thumbnails", analysis_data, selected, **controls)


@declare_view(
    "influence",
    Output(ids.INFLUENCE, "figure"),
    inputs={"analysis_data": Input(ids.ANALYSIS, "data"), **RELEVANCE_INPUTS, **VIEW_INPUTS},
)
@guarded
def update_influence(analysis_data, **controls):
    if unchanged_view("influence", analysis_data, controls):
        return no_update
    return _draw("influence", analysis_data, None, **controls)


@declare_view(
    "sentence",
    Output(ids.SENTENCE, "figure"),
    Output(ids.SENTENCE_DRAWN, "data"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "canvas": Input(ids.CANVAS, "data"),
        **RELEVANCE_INPUTS,
        **VIEW_INPUTS,
    },
)
@guarded
def update_sentence(analysis_data, canvas, **controls):
    """The sentence view, and a new value in the sentence-drawn store each time it answers — drawn, or left as it is
    because it does not read the control that changed: the faithfulness check, which reads some of those (τ, α,
    sinks, aggregation), is asked after it (:func:`ask_faithfulness`) without the figure in its request."""
    answered = time.time_ns() // 1000  # µs: below 2**53, exact in the browser's numbers
    if unchanged_view("sentence", analysis_data, controls):
        return no_update, answered
    return _draw("sentence", analysis_data, None, canvas=canvas_of(canvas), **controls), answered


@declare_view(
    "similarity",
    Output(ids.SIMILARITY, "figure"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        **inputs("mode"),
    },
)
@guarded
def update_similarity(analysis_data, selected, **controls):
    return _draw("similarity", analysis_data, selected, **controls)


# A new input marks the check as being computed at once, in the browser; its answer clears the mark. (Dash's
# `running=` alone is not enough: a check still running for the previous input could clear it.)
declare_clientside(
    "function(analysis) { return 'faithfulness updating'; }",
    Output(ids.FAITHFULNESS, "className", allow_duplicate=True),
    Input(ids.ANALYSIS, "data"),
    prevent_initial_call=True,
)


FAITHFULNESS_CONTROLS = ("tau", "alpha", "aggregation", "sinks")  # with the input and target: all the check reads


# Longer inputs than this are checked only when asked: the check takes one forward pass per word (and DecompX's),
# so its time grows with the square of the length (~8 s at 120 words, ~32 s at 240 on one core).
FAITHFULNESS_AUTO_WORDS = 100


@declare(
    Output(ids.FAITHFULNESS_INPUTS, "data"),
    Output(ids.FAITHFULNESS, "className", allow_duplicate=True),
    Output(ids.FAITHFULNESS, "children", allow_duplicate=True),
    Output(ids.FAITHFULNESS_OFFER, "hidden"),
    Output(ids.FAITHFULNESS_OFFER_TEXT, "children"),
    inputs={
        "_drawn": Input(ids.SENTENCE_DRAWN, "data"),  # after the sentence view: never delays the decisive view
        "_run": Input(ids.FAITHFULNESS_RUN, "n_clicks"),
        "analysis_data": State(ids.ANALYSIS, "data"),
        **states("target", *FAITHFULNESS_CONTROLS),
        "previous": State(ids.FAITHFULNESS_INPUTS, "data"),
    },
    prevent_initial_call=True,  # the sentence view is drawn on load, and that asks
)
@guarded
def ask_faithfulness(_drawn, _run, analysis_data, previous, **controls):
    """What the faithfulness check is asked for once the sentence view is drawn: a new job only when the input, the
    target or a control the check reads changed (a change of layers, heads or level redraws the views, not the
    check). Unchanged, the table shown is current: "updating" (set when an analysis starts) is cleared. An input of
    more than :data:`FAITHFULNESS_AUTO_WORDS` words is checked only when "Run the check" is pressed; until then the
    previous input's table is cleared and the offer says why."""
    asked = {"analysis_data": analysis_data, **controls}
    if asked == previous:
        return no_update, "faithfulness", no_update, True, no_update
    analysis = require_analysis(analysis_data)
    run = pair_service(analysis).runs(analysis).finetuned
    words = int((~word_all(run.special, run.groups)).sum())  # without [CLS] / [SEP]
    if words > FAITHFULNESS_AUTO_WORDS and ctx.triggered_id != ids.FAITHFULNESS_RUN:
        offer = (f"This input has {words} words: its faithfulness check needs one forward pass per word (about "
                 f"{words * words / 1800:.0f} s here), so it runs only when asked.")  # fmt: skip
        return no_update, "faithfulness", [], False, offer
    return asked, no_update, no_update, True, no_update


@declare(
    Output(ids.FAITHFULNESS, "children"),
    Output(ids.FAITHFULNESS, "className"),
    Input(ids.FAITHFULNESS_INPUTS, "data"),
    prevent_initial_call=True,
    # a new sentence's check takes ~1 s (10 s at 137 words): never show the last sentence's table as if current
    running=[(Output(ids.FAITHFULNESS, "className"), "faithfulness updating", "faithfulness")],
    # one forward pass per word: a background job (run by the manager the server passes in), so no web worker waits
    # for it; a newer request for it stops the older job
    background=True,
    interval=400,
)
@guarded
def update_faithfulness(asked):
    """This input's faithfulness check (fine-tuned model) for ``asked`` (:func:`ask_faithfulness`); a sentence
    instead when the model has no classification head."""
    asked = dict(asked or {})
    analysis_data = asked.pop("analysis_data", None)
    controls = {k: asked.get(k) for k in ("target", *FAITHFULNESS_CONTROLS)}
    analysis = Analysis.from_store(analysis_data)
    service = pair_service(analysis, server=job_server())
    if not service.pair.finetuned.is_classifier:
        message = html.Div(f"{service.pair.finetuned.name} has no classification head: no faithfulness check.")
        return message, "faithfulness"
    analysis = require_analysis(analysis_data)
    options = view_options(**controls)
    table = faithfulness_table(service.faithfulness(analysis, options), service.class_target(analysis, options))
    return table, "faithfulness"


@declare(Output(ids.ALPHA, "disabled"), Output(ids.ALPHA_NOTE, "children"), input_of("measure"))
@guarded
def note_alpha(measure):
    """The residual share α is off (and says why) for a measure that already holds the residual connection."""
    options = view_options(measure=measure)
    return options.measure in RESIDUAL_MEASURES, alpha_note(options.measure)
