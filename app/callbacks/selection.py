"""Selecting a head by clicking the head grid or the similarity map; highlighted with ``dash.Patch``."""

from __future__ import annotations

from dash import Input, Output, Patch, State, ctx
from dash.exceptions import PreventUpdate

from app import ids
from app.callbacks.common import guarded, require_analysis, selected_head, view_options
from app.callbacks.registry import declare
from app.figures.heatmaps import head_outline
from app.figures.scatter import selected_positions, selected_trace_index
from app.services import current_service


@declare(
    Output(ids.SELECTED_HEAD, "data"),
    Input(ids.HEAD_GRID, "clickData"),
    Input(ids.SIMILARITY, "clickData"),
    Input(ids.CLEAR_HEAD, "n_clicks"),
    State(ids.SELECTED_HEAD, "data"),
    prevent_initial_call=True,
)
@guarded
def select_head(grid_click, similarity_click, _clear, current):
    """A click on a head (either view) selects it; 'head mean' keeps the layer and drops the head."""
    service = current_service()
    if ctx.triggered_id == ids.CLEAR_HEAD:
        layer, _ = selected_head(current, service)
        return {"layer": layer, "head": None}
    if ctx.triggered_id == ids.HEAD_GRID:  # heatmap cells: x is the head, y the layer
        point = _first_point(grid_click)
        layer, head = point.get("y"), point.get("x")
    else:  # similarity markers carry [layer, head, change]; the linking lines carry nothing
        data = _first_point(similarity_click).get("customdata")
        layer, head = (data[0], data[1]) if isinstance(data, list | tuple) and len(data) >= 2 else (None, None)
    if layer is None or head is None:
        raise PreventUpdate
    layer, head = selected_head({"layer": layer, "head": head}, service)
    return {"layer": layer, "head": head}


def _first_point(click: object) -> dict:
    """The first point of a plotly ``clickData``; an empty dict for anything else."""
    points = click.get("points") if isinstance(click, dict) else None
    first = points[0] if isinstance(points, list) and points else None
    return first if isinstance(first, dict) else {}


@declare(
    Output(ids.HEAD_GRID, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    prevent_initial_call=True,
)
@guarded
def outline_selected_head(selected):
    """Move the outline in the head grid without redrawing it."""
    service = current_service()
    patch = Patch()
    patch["layout"]["shapes"] = head_outline(selected_head(selected, service), service.num_heads)
    return patch


@declare(
    Output(ids.SIMILARITY, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    State(ids.ANALYSIS, "data"),
    State(ids.MODE, "value"),
    prevent_initial_call=True,
)
@guarded
def mark_selected_head(selected, analysis_data, mode):
    """Move the 'selected head' markers in the similarity map without redrawing it."""
    service = current_service()
    options = view_options(mode=mode)
    embedding = service.embedding(require_analysis(analysis_data), options)
    xs, ys = selected_positions(embedding, options.mode, selected_head(selected, service))
    patch = Patch()
    trace = selected_trace_index(options.mode)
    patch["data"][trace]["x"] = xs
    patch["data"][trace]["y"] = ys
    return patch
