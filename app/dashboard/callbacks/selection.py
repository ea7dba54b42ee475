"""Selecting a head by clicking the head grid or the similarity map; highlighted with ``dash.Patch``."""

from __future__ import annotations

from dash import ALL, Input, Output, Patch, State, ctx
from dash.exceptions import PreventUpdate

from app.core.analysis import Analysis
from app.core.options import parse_head
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, require_analysis, selected_head, view_options
from app.dashboard.callbacks.lazy import drawn_state
from app.dashboard.callbacks.registry import declare
from app.dashboard.controls import RELEVANCE_CONTROLS, VIEW_CONTROLS, state_of, states
from app.figures.heatmaps import grid_shapes
from app.figures.models import shown_panels
from app.figures.scatter import selected_ring, selected_trace_index
from app.figures.thumbnails import head_at, thumbnail_outline
from app.service.registry import pair_service

# Every option that decides which tokens the thumbnail grid draws (a long input keeps its most relevant tokens).
DRAWN_STATES = states(*VIEW_CONTROLS, *RELEVANCE_CONTROLS, "renormalize")


@declare(
    Output(ids.SELECTED_HEAD, "data"),
    Input(ids.HEAD_GRID, "clickData"),
    Input(ids.SIMILARITY, "clickData"),
    Input(ids.CLEAR_HEAD, "n_clicks"),
    Input({"type": ids.TOP_HEAD, "index": ALL}, "n_clicks"),
    Input(ids.THUMBNAILS, "clickData"),
    State(ids.SELECTED_HEAD, "data"),
    State(ids.ANALYSIS, "data"),
    *DRAWN_STATES.values(),
    prevent_initial_call=True,
)
@guarded
def select_head(grid_click, similarity_click, _clear, _top_heads, thumbnail_click, current, analysis_data=None,
                *controls):  # fmt: skip
    """A click on a head (either view, or a head the word query lists) selects it; 'head mean' keeps the layer
    and drops the head."""
    service = pair_service(Analysis.from_store(analysis_data))
    if ctx.triggered_id == ids.CLEAR_HEAD:
        layer, _ = selected_head(current, service)
        return {"layer": layer, "head": None}
    if isinstance(ctx.triggered_id, dict):  # a word-query button: only a real click (they are drawn with 0)
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        layer, head = parse_head(str(ctx.triggered_id.get("index")))
    elif ctx.triggered_id == ids.THUMBNAILS:  # a cell of one head's map: which map it is in
        point = _first_point(thumbnail_click)
        drawn = _drawn_tokens(service, analysis_data, controls)
        if not isinstance(point.get("x"), int | float) or not isinstance(point.get("y"), int | float):
            raise PreventUpdate
        layer, head = head_at(point["x"], point["y"], layers=service.num_layers, tokens=drawn)
    elif ctx.triggered_id == ids.HEAD_GRID:  # heatmap cells: x is the head, y the layer
        point = _first_point(grid_click)
        layer, head = point.get("y"), point.get("x")
    else:  # similarity markers carry [layer, head, change]; the linking lines carry nothing
        data = _first_point(similarity_click).get("customdata")
        layer, head = (data[0], data[1]) if isinstance(data, list | tuple) and len(data) >= 2 else (None, None)
    if layer is None or head is None:
        raise PreventUpdate
    layer, head = selected_head({"layer": layer, "head": head}, service)
    return {"layer": layer, "head": head}


def _drawn_tokens(service, analysis_data, controls: tuple) -> int:
    """How many tokens each map of the thumbnail grid has (as drawn: level, hiding, a long input folded)."""
    options = view_options(**dict(zip(DRAWN_STATES, controls, strict=True)))
    return len(service.thumbnails(require_analysis(analysis_data), options)[2])


def _first_point(click: object) -> dict:
    """The first point of a plotly ``clickData``; an empty dict for anything else."""
    points = click.get("points") if isinstance(click, dict) else None
    first = points[0] if isinstance(points, list) and points else None
    return first if isinstance(first, dict) else {}


@declare(
    Output(ids.HEAD_GRID, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    state_of("mode"),
    state_of("word"),
    state_of("heads"),
    State(ids.ANALYSIS, "data"),
    drawn_state("heads"),
    prevent_initial_call=True,
)
@guarded
def outline_selected_head(selected, mode, word, heads, analysis_data=None, drawn=True):
    """Move the outline in the head grid (each panel of the word query) without redrawing it (once it is drawn;
    until then the head grid draws the selection itself)."""
    if not drawn:
        raise PreventUpdate
    service = pair_service(Analysis.from_store(analysis_data))
    options = view_options(mode=mode, word=word, heads=heads)
    panels = len(shown_panels(options.mode)) if options.word is not None else 1  # the word query's panels
    patch = Patch()
    patch["layout"]["shapes"] = grid_shapes(
        selected_head(selected, service),
        service.num_heads,
        service.num_layers,
        panels=panels,
        shown_heads=options.heads,
    )
    return patch


@declare(
    Output(ids.THUMBNAILS, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    State(ids.ANALYSIS, "data"),
    drawn_state("thumbnails"),
    *DRAWN_STATES.values(),
    prevent_initial_call=True,
)
@guarded
def frame_selected_thumbnail(selected, analysis_data, drawn, *controls):
    """Move the frame in the thumbnail grid without redrawing it (once it is drawn)."""
    if not drawn:
        raise PreventUpdate
    service = pair_service(Analysis.from_store(analysis_data))
    drawn = _drawn_tokens(service, analysis_data, controls)
    patch = Patch()
    patch["layout"]["shapes"] = thumbnail_outline(
        selected_head(selected, service), layers=service.num_layers, tokens=drawn
    )
    return patch


@declare(
    Output(ids.SIMILARITY, "figure", allow_duplicate=True),
    Input(ids.SELECTED_HEAD, "data"),
    State(ids.ANALYSIS, "data"),
    state_of("mode"),
    drawn_state("similarity"),
    prevent_initial_call=True,
)
@guarded
def mark_selected_head(selected, analysis_data, mode, drawn=True):
    """Move the ring around the selected head in the similarity map without redrawing it (the ring sits where the
    map draws the head, which may be nudged off its MDS position); nothing before the map is drawn."""
    if not drawn:
        raise PreventUpdate
    service = pair_service(Analysis.from_store(analysis_data))
    options = view_options(mode=mode)
    embedding = service.embedding(require_analysis(analysis_data), options)
    patch = Patch()
    patch["data"][selected_trace_index(options.mode)] = selected_ring(
        embedding, options.mode, selected_head(selected, service)
    )
    return patch
