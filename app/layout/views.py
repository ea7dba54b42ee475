"""One card per view: a title row with view-specific controls and the export controls, then the graph."""

from __future__ import annotations

from dash import dcc, html

from app import ids

EXPORT_PRESETS = {
    "single": "single column (3.5 in)",
    "double": "double column (7.2 in)",
    "slide": "slide (16:9)",
}


def _number(component_id: dict, placeholder: str, low: float, high: float, **extra) -> dcc.Input:
    return dcc.Input(
        id=component_id, type="number", min=low, max=high, placeholder=placeholder, className="export-number", **extra
    )


def export_controls(view: str) -> html.Div:
    """Format, size preset, sidecar toggle and the Export button of one view."""
    return html.Div(
        [
            dcc.Dropdown(
                id=ids.export_format(view),
                value="png",
                clearable=False,
                searchable=False,
                className="export-format",
                options=[{"label": f.upper(), "value": f} for f in ("png", "svg", "pdf")],
            ),
            dcc.Dropdown(
                id=ids.export_size(view),
                value="double",
                clearable=False,
                searchable=False,
                className="export-size",
                options=[{"label": label, "value": key} for key, label in EXPORT_PRESETS.items()],
            ),
            dcc.Checklist(
                id=ids.export_sidecar(view),
                value=["sidecar"],
                className="export-sidecar",
                options=[{"label": "JSON sidecar", "value": "sidecar"}],
            ),
            html.Details(
                [
                    html.Summary("size", title="Custom size in pixels (overrides the preset) and PNG scale"),
                    _number(ids.export_width(view), "width px", 100, 4000),
                    _number(ids.export_height(view), "height px", 100, 4000),
                    _number(ids.export_scale(view), "PNG scale", 0.5, 8, step=0.125, value=3.125),
                ],
                className="export-more",
            ),
            html.Button("Export", id=ids.export_button(view), n_clicks=0, className="export-button"),
        ],
        className="export-controls",
    )


def view_card(view: str, title: str, *, extra=None, wide: bool = False) -> html.Div:
    """A titled card holding the graph of ``view`` (a key of :data:`app.ids.VIEWS`)."""
    graph = dcc.Graph(
        id=ids.VIEWS[view], config={"displaylogo": False, "toImageButtonOptions": {"scale": 2}}, className="view-graph"
    )
    return html.Div(
        [
            html.Div([html.H3(title), extra, export_controls(view)], className="card-header"),
            dcc.Loading(graph, delay_show=300, type="dot"),
        ],
        className="panel view-card" + (" wide" if wide else ""),
        id=ids.card(view),
    )
