"""The whole page."""

from __future__ import annotations

from dash import dcc, html

from app import ids
from app.layout.controls import control_panel, head_metric_control, input_panel
from app.layout.views import faithfulness_panel, view_card


def build_layout(
    *,
    pair_name: str,
    pretrained_name: str,
    finetuned_name: str,
    num_layers: int,
    num_heads: int,
    examples: list[str],
    first_text: str,
    golds: dict[str, str] | None = None,
    class_names: tuple[str, ...] = (),
) -> html.Div:
    """Header, input, controls and the six views. ``first_text`` is analysed on page load."""
    return html.Div(
        [
            html.Header(
                [
                    html.H1("Attention Flows"),
                    html.Span(
                        f"how fine-tuning changed the attention of {pretrained_name} · pair '{pair_name}'",
                        className="subtitle",
                    ),
                ],
                className="page-header",
            ),
            input_panel(examples, first_text, pretrained_name, finetuned_name, golds or {}),
            html.Div(
                [
                    control_panel(num_layers, num_heads, class_names),
                    html.Div(
                        [
                            view_card("sentence", wide=True, below=faithfulness_panel()),
                            view_card("sankey", wide=True),
                            view_card("heads", extra=head_metric_control()),
                            view_card("similarity"),
                            view_card(
                                "matrix",
                                wide=True,
                                extra=html.Span(
                                    [
                                        html.Span(id=ids.SELECTION_LABEL, className="selection-label"),
                                        html.Button(
                                            "head mean",
                                            id=ids.CLEAR_HEAD,
                                            n_clicks=0,
                                            className="small-button",
                                            title="Show the mean (or max) over the selected heads",
                                        ),
                                    ]
                                ),
                            ),
                            view_card("influence", wide=True),
                        ],
                        className="views",
                    ),
                ],
                className="workspace",
            ),
            dcc.Store(id=ids.ANALYSIS, data={"text": first_text, "text_pair": None} if first_text else None),
            dcc.Store(id=ids.SELECTED_HEAD, data={"layer": num_layers, "head": None}),
            dcc.Store(id=ids.CANVAS),
            dcc.Download(id=ids.DOWNLOAD),
            dcc.Download(id=ids.DOWNLOAD_SIDECAR),
        ],
        className="page",
    )
