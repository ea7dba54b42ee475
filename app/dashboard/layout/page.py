"""The whole page."""

from __future__ import annotations

from dataclasses import replace

from dash import dcc, html

from app.core.analysis import Analysis
from app.core.options import ViewOptions
from app.core.urlstate import PageState, control_values
from app.dashboard import ids
from app.dashboard.help import help_icon
from app.dashboard.layout.batch import batch_card
from app.dashboard.layout.controls import (
    arrangement_control,
    control_panel,
    head_metric_control,
    input_panel,
    word_query_row,
)
from app.dashboard.layout.views import faithfulness_panel, graph_card, headview_card, view_card


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
    state: PageState | None = None,
    error: str = "",
    token_choices: tuple[list[dict], list[dict]] | None = None,
    pair_names: tuple[str, ...] = (),
    causal: bool = False,
) -> html.Div:
    """Header, input, controls and every view, in ``state`` (from the page's URL; default: ``first_text`` and
    the default options). ``first_text`` (or the state's text) is analysed on page load; ``error`` is shown in
    the banner (a link that could not be opened); ``token_choices`` are the 'Trace from' and 'Word query' options
    when the state chooses tokens. A ``causal`` pair (decoders) reads one text: no second-segment box."""
    options = state.options if state else ViewOptions()
    analysis = state.analysis if state and state.analysis else (Analysis(first_text) if first_text else None)
    if analysis is not None:
        analysis = replace(analysis, models=pair_name)  # the page's pair: every callback finds it in the analysis
    selected = state.selected if state and state.selected else (num_layers, None)
    values = control_values(options, num_layers=num_layers, num_heads=num_heads)
    sources, words = token_choices or (None, None)
    return html.Div(
        [
            page_header(pair_name, pair_names, pretrained_name),
            input_panel(examples, analysis, pretrained_name, finetuned_name, golds or {}, error=error, one_text=causal),
            html.Div(
                [
                    control_panel(num_layers, num_heads, class_names, values, sources, causal=causal),
                    view_cards(options, words),
                ],
                id=ids.WORKSPACE,
                className="workspace",
            ),
            *page_stores(analysis, selected),
        ],
        className="page",
    )


def page_header(pair_name: str, pair_names: tuple[str, ...], pretrained_name: str) -> html.Header:
    """The title, what the page compares, the pair picker and the link to the corpus page."""
    return html.Header(
        [
            html.H1("Attention Flows"),
            html.Span(
                f"how fine-tuning changed the attention of {pretrained_name}"
                + ("" if len(pair_names) > 1 else f" · pair '{pair_name}'"),
                className="subtitle",
            ),
            pair_picker(pair_name, pair_names),
            html.A(
                "Corpus →",
                href=f"/corpus/?models={pair_name}",
                id=ids.CORPUS_LINK,
                className="small-button corpus-link",
                title="What fine-tuning changed over a whole corpus (attention-flows corpus run)",
            ),
        ],
        className="page-header",
    )


def view_cards(options: ViewOptions, word_options: list[dict] | None) -> html.Div:
    """Every view's card (with its own controls, set to ``options``), then the "Longer jobs" card."""
    return html.Div(
        [
            view_card("sentence", wide=True, below=faithfulness_panel()),
            graph_card("sankey"),
            graph_card("network", extra=arrangement_control(options.arrangement)),
            view_card(
                "heads",
                extra=head_metric_control(options.metric),
                below=word_query_row(options.word, word_options),
            ),
            view_card("similarity"),
            view_card("matrix", wide=True, extra=_selection_row()),
            headview_card(),
            view_card("thumbnails", wide=True),
            view_card("influence", wide=True),
            batch_card(),
        ],
        className="views",
    )


def _selection_row() -> html.Span:
    """The matrix card's caption of the selected head, and the button back to the head mean."""
    return html.Span(
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
    )


def page_stores(analysis: Analysis | None, selected: tuple[int, int | None]) -> list:
    """What the page holds without showing it: the analysis, the selected head, the canvas width, the faithfulness
    check's last inputs, the URL, the export status and the downloads."""
    return [
        dcc.Store(id=ids.ANALYSIS, data=analysis.to_store() if analysis else None),
        dcc.Store(id=ids.SELECTED_HEAD, data={"layer": selected[0], "head": selected[1]}),
        dcc.Store(id=ids.CANVAS),
        dcc.Store(id=ids.SENTENCE_DRAWN),
        dcc.Store(id=ids.FAITHFULNESS_INPUTS),
        dcc.Location(id=ids.URL, refresh=False),
        html.Div(id=ids.EXPORT_STATUS, className="export-status", role="status"),
        dcc.Download(id=ids.DOWNLOAD),
        dcc.Download(id=ids.DOWNLOAD_SIDECAR),
    ]


def pair_picker(current: str, names: tuple[str, ...]) -> html.Span:
    """The model-pair picker of a server with several pairs (choosing one opens the page on it, same text);
    hidden when there is one."""
    return html.Span(
        [
            html.Label("model pair", htmlFor=ids.MODELS, className="muted"),
            dcc.Dropdown(
                id=ids.MODELS,
                options=[{"label": name, "value": name} for name in names or (current,)],
                value=current,
                clearable=False,
                className="pair-picker",
            ),
            help_icon("models"),
        ],
        className="pair-picker-row",
        style=None if len(names) > 1 else {"display": "none"},
    )
