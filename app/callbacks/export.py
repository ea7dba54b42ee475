"""Export a view from the dashboard: the figure file and, optionally, its JSON sidecar."""

from __future__ import annotations

import re

from dash import ALL, Input, Output, State, callback, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from app import ids
from app.callbacks.common import guarded, require_analysis, selected_head, view_options
from app.callbacks.views import CONTROLS
from app.export import figure_bytes, pixel_size, publication_figure, sidecar, sidecar_json
from app.render import render
from app.services import current_service


def _value_for(view: str, states: list[dict]) -> object:
    return next(s.get("value") for s in states if s["id"]["view"] == view)


def _filename(text: str, view: str, fmt: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "figure"
    return f"attention-flows-{view}-{stem}.{fmt}"


@callback(
    Output(ids.DOWNLOAD, "data"),
    Output(ids.DOWNLOAD_SIDECAR, "data"),
    inputs={
        "clicks": Input(ids.export_button(ALL), "n_clicks"),
        "formats": State(ids.export_format(ALL), "value"),
        "sizes": State(ids.export_size(ALL), "value"),
        "sidecars": State(ids.export_sidecar(ALL), "value"),
        "analysis_data": State(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        "metric": State(ids.METRIC, "value"),
        "method": State(ids.METHOD, "value"),
        **{name: State(dep.component_id, dep.component_property) for name, dep in CONTROLS.items()},
    },
    prevent_initial_call=True,
)
@guarded
def export_view(clicks, formats, sizes, sidecars, analysis_data, selected, **controls):
    """Render the clicked view in the publication theme and send it (plus the sidecar when ticked)."""
    if not ctx.triggered_id or not any(clicks):
        raise PreventUpdate
    view = ctx.triggered_id["view"]
    states = ctx.states_list
    fmt = _value_for(view, states[0])
    preset = _value_for(view, states[1])
    wants_sidecar = bool(_value_for(view, states[2]))
    service = current_service()
    analysis = require_analysis(analysis_data)
    options = view_options(**controls)
    head = selected_head(selected, service.num_layers)
    width, height, font = pixel_size(preset, None, None)
    scale = 300 / 96 if fmt == "png" else 1.0
    figure = publication_figure(
        render(view, service, analysis, options, head), width=width, height=height, font_px=font
    )
    data = figure_bytes(figure, fmt, width=width, height=height, scale=scale)
    filename = _filename(analysis.text, view, fmt)
    side = no_update
    if wants_sidecar:
        config = service.pair.config
        pair = {
            "name": config.name,
            "config": str(config.source_path),
            "pretrained": config.pretrained.display_name,
            "finetuned": config.finetuned.display_name,
        }
        content = sidecar(
            pair=pair,
            analysis=analysis.to_store(),
            view=view,
            options=options.to_dict(),
            selected={"layer": head[0], "head": head[1]},
            fmt=fmt,
            width=width,
            height=height,
            scale=scale,
        )
        side = {"content": sidecar_json(content), "filename": filename.rsplit(".", 1)[0] + ".json"}
    return dcc.send_bytes(data, filename), side
