"""One callback per view: controls in, figure out (via :mod:`app.render`)."""

from __future__ import annotations

from dash import Input, Output, State

from app import ids
from app.callbacks.common import guarded, require_analysis, selected_head, view_options
from app.callbacks.registry import declare
from app.render import matrix_caption, render
from app.services import current_service

CONTROLS = {
    "mode": Input(ids.MODE, "value"),
    "layers": Input(ids.LAYERS, "value"),
    "heads": Input(ids.HEADS, "value"),
    "tau": Input(ids.TAU, "value"),
    "alpha": Input(ids.ALPHA, "value"),
    "aggregation": Input(ids.AGGREGATION, "value"),
    "level": Input(ids.LEVEL, "value"),
    "sources": Input(ids.SOURCES, "value"),
    "hide": Input(ids.HIDE, "value"),
}


def _draw(view: str, analysis_data, selected, **controls):
    service = current_service()
    return render(
        view,
        service,
        require_analysis(analysis_data),
        view_options(**controls),
        selected_head(selected, service.num_layers),
    )


@declare(
    Output(ids.SANKEY, "figure"),
    inputs={"analysis_data": Input(ids.ANALYSIS, "data"), "selected": Input(ids.SELECTED_HEAD, "data"), **CONTROLS},
)
@guarded
def update_sankey(analysis_data, selected, **controls):
    return _draw("sankey", analysis_data, selected, **controls)


@declare(
    Output(ids.HEAD_GRID, "figure"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        "metric": Input(ids.METRIC, "value"),
        "mode": CONTROLS["mode"],
        "level": CONTROLS["level"],
        "hide": CONTROLS["hide"],
    },
)
@guarded
def update_head_grid(analysis_data, selected, **controls):
    return _draw("heads", analysis_data, selected, **controls)


@declare(
    Output(ids.MATRIX, "figure"),
    Output(ids.SELECTION_LABEL, "children"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": Input(ids.SELECTED_HEAD, "data"),
        **{k: CONTROLS[k] for k in ("mode", "heads", "aggregation", "level", "hide")},
    },
)
@guarded
def update_matrix(analysis_data, selected, **controls):
    service = current_service()
    options = view_options(**controls)
    head = selected_head(selected, service.num_layers)
    return _draw("matrix", analysis_data, selected, **controls), matrix_caption(options, head, service.num_heads)


@declare(
    Output(ids.INFLUENCE, "figure"),
    Output(ids.SENTENCE, "figure"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "method": Input(ids.METHOD, "value"),
        **{k: v for k, v in CONTROLS.items() if k != "aggregation"},
    },
)
@guarded
def update_influence(analysis_data, **controls):
    return (_draw("influence", analysis_data, None, **controls), _draw("sentence", analysis_data, None, **controls))


@declare(
    Output(ids.SIMILARITY, "figure"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        "mode": CONTROLS["mode"],
        "level": CONTROLS["level"],
        "hide": CONTROLS["hide"],
    },
)
@guarded
def update_similarity(analysis_data, selected, **controls):
    return _draw("similarity", analysis_data, selected, **controls)
