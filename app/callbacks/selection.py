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
def select_head(grid_click, similarity_click, _clear, current):
    """A click on a head (either view) selects it; 'head mean' keeps the layer and drops the head."""
    if ctx.triggered_id == ids.CLEAR_HEAD:
        return {"layer": (current or {}).get("layer"), "head": None}
    if ctx.triggered_id == ids.HEAD_GRID:  # heatmap cells: x is the head, y the layer
        point = ((grid_click or {}).get("points") or [{}])[0]
        layer, head = point.get("y"), point.get("x")
    else:  # similarity markers carry [layer, head, change]; the linking lines carry nothing
        point = ((similarity_click or {}).get("points") or [{}])[0]
        data = point.get("customdata")
        layer, head = (data[0], data[1]) if isinstance(data, list | tuple) and len(data) >= 2 else (None, None)
    if layer is None or head is None:
        raise PreventUpdate
    return {"layer": int(layer), "head": int(head)}


@declare(
    Output(ids.HEAD_GRID, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    prevent_initial_call=True,
)
def outline_selected_head(selected):
    """Move the outline in the head grid without redrawing it."""
    service = current_service()
    patch = Patch()
    patch["layout"]["shapes"] = head_outline(selected_head(selected, service.num_layers), service.num_heads)
    return patch


@declare(
    Output(ids.SIMILARITY, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    State(ids.ANALYSIS, "data"),
    State(ids.MODE, "value"),
    State(ids.LEVEL, "value"),
    State(ids.HIDE, "value"),
    prevent_initial_call=True,
)
@guarded
def mark_selected_head(selected, analysis_data, mode, level, hide):
    """Move the 'selected head' markers in the similarity map without redrawing it."""
    service = current_service()
    options = view_options(mode=mode, level=level, hide=hide)
    embedding = service.embedding(require_analysis(analysis_data), options)
    xs, ys = selected_positions(embedding, options.mode, selected_head(selected, service.num_layers))
    patch = Patch()
    trace = selected_trace_index(options.mode)
    patch["data"][trace]["x"] = xs
    patch["data"][trace]["y"] = ys
    return patch
