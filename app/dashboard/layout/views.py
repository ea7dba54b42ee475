"""One card per view: a title row with view-specific controls and the export controls, then the graph."""

from __future__ import annotations

import json

from dash import dcc, html

from app.core.options import (
    DEFAULT_PNG_SCALE,
    FORMATS,
    GRAPH_METHODS,
    MEASURES,
    METHODS,
    PRESETS,
    SCALE_RANGE,
    VIEWS,
    WIDTH_RANGE,
)
from app.dashboard import ids
from app.dashboard.help import help_icon


def _number(component_id: dict, placeholder: str, low: float, high: float, **extra) -> dcc.Input:
    return dcc.Input(
        id=component_id, type="number", min=low, max=high, placeholder=placeholder, className="export-number", **extra
    )


def export_controls(view: str) -> html.Div:
    """Format, size preset, sidecar toggle and the Export button of one view."""
    return html.Div(
        [
            dcc.Dropdown(
                id=ids.export_control("format", view),
                value="png",
                clearable=False,
                searchable=False,
                className="export-format",
                options=[{"label": f.upper(), "value": f} for f in FORMATS],
            ),
            dcc.Dropdown(
                id=ids.export_control("size", view),
                value="double",
                clearable=False,
                searchable=False,
                className="export-size",
                options=[
                    {"label": preset.short, "value": key, "title": preset.label} for key, preset in PRESETS.items()
                ],
            ),
            dcc.Checklist(
                id=ids.export_control("sidecar", view),
                value=["sidecar"],
                className="export-sidecar",
                options=[
                    {
                        "label": html.Span(
                            "JSON",
                            title="Also download a JSON sidecar: the pair, text and every option, to reproduce it",
                        ),
                        "value": "sidecar",
                    }
                ],
            ),
            html.Details(
                [
                    html.Summary("size", title="Custom size in pixels (overrides the preset) and PNG scale"),
                    _number(ids.export_control("width", view), "width px", *WIDTH_RANGE),
                    _number(ids.export_control("height", view), "height px", *WIDTH_RANGE),
                    _number(
                        ids.export_control("scale", view),
                        "PNG scale",
                        *SCALE_RANGE,
                        step=0.125,
                        value=DEFAULT_PNG_SCALE,
                    ),
                ],
                className="export-more",
            ),
            html.Button("Export", id=ids.export_control("button", view), n_clicks=0, className="export-button"),
        ],
        className="export-controls",
    )


def faithfulness_panel() -> html.Div:
    """Where this input's faithfulness check is shown (filled by a callback), and, for a long input, the offer to
    run it (its cost grows with the square of the length: one forward pass per word)."""
    offer = html.Div(
        [
            html.Span(id=ids.FAITHFULNESS_OFFER_TEXT, className="muted"),
            html.Button("Run the check", id=ids.FAITHFULNESS_RUN, n_clicks=0, className="small-button"),
        ],
        id=ids.FAITHFULNESS_OFFER,
        className="faithfulness-offer",
        hidden=True,
    )
    return html.Div([html.Div(id=ids.FAITHFULNESS, className="faithfulness"), offer])


def faithfulness_table(table, target: str | None) -> list:
    """This input's Spearman correlations (``measure, method, blank_out, input_x_gradient`` frame) as a small
    table; a graph method's row names the measure it ran over."""

    def name(measure: str, method: str) -> str:
        label = METHODS.get(method, method)
        return f"{label} over {MEASURES[measure]}" if method in GRAPH_METHODS and measure in MEASURES else label

    header = html.Tr([html.Th("method"), html.Th("ρ with blank-out"), html.Th("ρ with input × gradient")])
    body = [
        html.Tr(
            [
                html.Td(name(row.measure, row.method)),
                html.Td(_rho(row.blank_out)),
                html.Td(_rho(row.input_x_gradient)),
            ]
        )
        for row in table.itertuples(index=False)
    ]
    cls = f"class '{target}'" if target else "the predicted class"
    return [
        html.Div(
            f"Faithfulness on this sentence (fine-tuned model, {cls}, words, deepest layer): Spearman ρ of each "
            "method with blank-out (drop in the class probability when the word is masked; a decoder's is deleted) "
            "and with input × gradient. docs/faithfulness.md has the same over 200 held-out sentences.",
            className="hint",
        ),
        html.Table([html.Thead(header), html.Tbody(body)], className="faithfulness-table"),
    ]


def _rho(value: float) -> str:
    return "–" if value != value else f"{value:+.2f}"  # NaN: fewer than 3 words, or a constant score


def view_card(view: str, *, extra=None, wide: bool = False, below=None, graph_props: dict | None = None) -> html.Div:
    """A card titled with the view's name (:data:`app.core.options.VIEWS`) holding its graph (with ``graph_props``,
    if any), and ``below`` it."""
    title = VIEWS[view]
    graph = dcc.Graph(
        id=ids.VIEWS[view],
        config={"displaylogo": False, "toImageButtonOptions": {"scale": 2}},
        className="view-graph",
        **(graph_props or {}),
    )
    return html.Div(
        [
            html.Div(
                [html.H3([title, help_icon(f"view:{view}")]), extra, export_controls(view)], className="card-header"
            ),
            dcc.Loading(graph, delay_show=300, type="dot"),
            below,
            dcc.Store(id=ids.seen(view), data=False),  # on screen? (assets/seen.js)
            dcc.Store(id=ids.want(view)),  # the inputs it was last asked to draw (callbacks/lazy.py)
            dcc.Store(id=ids.answered(view)),  # the inputs it last answered for (callbacks/lazy.py)
        ],
        className="panel view-card" + (" wide" if wide else ""),
        id=ids.card(view),
    )


def graph_card(view: str, *, extra=None) -> html.Div:
    """A graph view's card (Sankey, network): under the graph, a row of buttons applying the option changes the
    figure's note says would show more of the words (:func:`fix_buttons`)."""
    fixes = html.Div(id=ids.graph_fixes(view), className="graph-fixes", **{"aria-live": "polite"})
    return view_card(view, wide=True, extra=extra, below=fixes)


def fix_buttons(view: str, figure: dict) -> list:
    """The buttons for the fixes a graph figure offers (``layout.meta.fixes``, best first: see
    :func:`app.figures.graph_drawn.offered_fixes`); none when it offers none."""
    fixes = ((figure or {}).get("layout") or {}).get("meta", {}).get("fixes") or []
    if not fixes:
        return []
    buttons = [
        html.Button(fix["label"], id=ids.graph_fix(view, json.dumps(fix["change"], sort_keys=True)),
                    className="graph-fix", n_clicks=0)
        for fix in fixes
    ]  # fmt: skip
    return [html.Span("Show more of the words:", className="graph-fixes-lead"), *buttons]


def headview_card() -> html.Div:
    """The head view's card: its graph forgets the hovered token when the pointer leaves it, so every line comes back
    (``app/dashboard/callbacks/headview.py`` redraws the lines of the hovered token only)."""
    return view_card("headview", wide=True, graph_props={"clear_on_unhover": True})
