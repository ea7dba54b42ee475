"""Export a view from the dashboard: the figure file and, optionally, its JSON sidecar.

Every card has the same export controls, keyed by its view (:func:`app.dashboard.ids.export_control`); one callback
reads them all (``ALL``) and exports the view whose button was clicked. (Not one ``MATCH`` callback per card: its
outputs, the page's two downloads and the export status, are one each for the whole page.)
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from app.core.analysis import Analysis
from app.core.options import ExportOptions
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, require_analysis, selected_head, view_options
from app.dashboard.callbacks.registry import declare
from app.dashboard.controls import VIEW_CONTROLS, states
from app.export.requests import FigureRequest, export_bytes, file_stem
from app.service.registry import pair_service

CHOICES = ids.EXPORT_PARTS[1:]  # the export controls the callback reads: every part of a card's but the button


def _value_for(view: str, grouping: list[dict]) -> object:
    """The value of the wildcard control that belongs to ``view`` (``ctx.args_grouping`` entries)."""
    return next(item.get("value") for item in grouping if item["id"]["view"] == view)


@declare(
    Output(ids.DOWNLOAD, "data"),
    Output(ids.DOWNLOAD_SIDECAR, "data"),
    inputs={
        "clicks": Input(ids.export_control("button", ALL), "n_clicks"),
        **{f"{part}s": State(ids.export_control(part, ALL), "value") for part in CHOICES},
        "analysis_data": State(ids.ANALYSIS, "data"),
        "selected": State(ids.SELECTED_HEAD, "data"),
        **states("metric", "method", "target", "renormalize", "word", "arrangement", *VIEW_CONTROLS),
    },
    running=[
        (
            Output(ids.EXPORT_STATUS, "children"),
            "Exporting… (the first export in a session also starts the exporter's browser: a few seconds)",
            "",
        ),
        (Output(ids.export_control("button", ALL), "disabled"), True, False),
    ],
    prevent_initial_call=True,
)
@guarded
def export_view(clicks, formats, sizes, sidecars, widths, heights, scales, analysis_data, selected, **controls):
    """Render the clicked view in the publication theme and send it (plus the sidecar when ticked)."""
    if not ctx.triggered_id or not any(clicks):
        raise PreventUpdate
    view = ctx.triggered_id["view"]
    chosen = {part: _value_for(view, ctx.args_grouping[f"{part}s"]) for part in CHOICES}
    service = pair_service(Analysis.from_store(analysis_data))
    export = ExportOptions.create(
        chosen["format"],
        preset=chosen["size"],
        width=chosen["width"],
        height=chosen["height"],
        scale=chosen["scale"] if chosen["format"] == "png" else None,
    )
    request = FigureRequest(
        analysis=require_analysis(analysis_data),
        view=view,
        options=view_options(**controls),
        selected=selected_head(selected, service),
        export=export,
    )
    data, side = export_bytes(service, request)
    stem = "attention-flows-" + file_stem(view, side.options, request.analysis.text, export)
    sidecar = no_update
    if chosen["sidecar"]:
        sidecar = {"content": side.to_json(), "filename": f"{stem}.json"}
    return dcc.send_bytes(data, f"{stem}.{export.fmt}"), sidecar
