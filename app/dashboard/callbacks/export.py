"""Export a view from the dashboard: the figure file and, optionally, its JSON sidecar."""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from app.core.options import ExportOptions
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, require_analysis, selected_head, service_for, view_options
from app.dashboard.callbacks.registry import declare
from app.dashboard.callbacks.views import CONTROLS
from app.export.requests import FigureRequest, export_bytes, file_stem


def _value_for(view: str, grouping: list[dict]) -> object:
    """The value of the wildcard control that belongs to ``view`` (``ctx.args_grouping`` entries)."""
    return next(item.get("value") for item in grouping if item["id"]["view"] == view)


@declare(
    Output(ids.DOWNLOAD, "data"),
    Output(ids.DOWNLOAD_SIDECAR, "data"),
    inputs={
        "clicks": Input(ids.export_button(ALL), "n_clicks"),
        "formats": State(ids.export_format(ALL), "value"),
        "sizes": State(ids.export_size(ALL), "value"),
        "sidecars": State(ids.export_sidecar(ALL), "value"),
        "widths": State(ids.export_width(ALL), "value"),
        "heights": State(ids.export_height(ALL), "value"),
        "scales": State(ids.export_scale(ALL), "value"),
        "analysis_data": State(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        "metric": State(ids.METRIC, "value"),
        "method": State(ids.METHOD, "value"),
        "target": State(ids.TARGET, "value"),
        "renormalize": State(ids.RENORMALIZE, "value"),
        "word": State(ids.WORD, "value"),
        "arrangement": State(ids.ARRANGEMENT, "value"),
        **{name: State(dep.component_id, dep.component_property) for name, dep in CONTROLS.items()},
    },
    running=[
        (
            Output(ids.EXPORT_STATUS, "children"),
            "Exporting… (the first export in a session also starts the exporter's browser: a few seconds)",
            "",
        ),
        (Output(ids.export_button(ALL), "disabled"), True, False),
    ],
    prevent_initial_call=True,
)
@guarded
def export_view(clicks, formats, sizes, sidecars, widths, heights, scales, analysis_data, selected, **controls):
    """Render the clicked view in the publication theme and send it (plus the sidecar when ticked)."""
    if not ctx.triggered_id or not any(clicks):
        raise PreventUpdate
    view = ctx.triggered_id["view"]
    chosen = {
        name: _value_for(view, ctx.args_grouping[name])
        for name in ("formats", "sizes", "sidecars", "widths", "heights", "scales")
    }
    service = service_for(analysis_data)
    export = ExportOptions.create(
        chosen["formats"],
        preset=chosen["sizes"],
        width=chosen["widths"],
        height=chosen["heights"],
        scale=chosen["scales"] if chosen["formats"] == "png" else None,
    )
    job = FigureRequest(
        analysis=require_analysis(analysis_data),
        view=view,
        options=view_options(**controls),
        selected=selected_head(selected, service),
        export=export,
    )
    data, side = export_bytes(service, job)
    stem = "attention-flows-" + file_stem(view, side.options, job.analysis.text)
    sidecar = no_update
    if chosen["sidecars"]:
        sidecar = {"content": side.to_json(), "filename": f"{stem}.json"}
    return dcc.send_bytes(data, f"{stem}.{export.fmt}"), sidecar
