"""The corpus page's components: the page for the pair and corpus its URL names (:func:`corpus_layout`, one
function per section), the example table and the table of words that gained. Ids, classes and texts are those the
callbacks (:mod:`app.corpus.callbacks`), the stylesheet and the tests know."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import dash_ag_grid as dag  # a component library: Dash refuses one first imported inside a callback
import pandas as pd
from dash import dcc, html
from flask import has_request_context, request

from app.core.options import PAIR_METRICS
from app.corpus.catalog import CorpusCatalog, CorpusEntry
from app.corpus.grid import COLUMN_FILTERS, FILTER_TYPES, PAGE_ROWS
from app.dashboard.help import help_icon
from app.dashboard.layout.views import export_controls
from app.export.corpus_figures import CORPUS_FIGURES
from attention.corpus.mixing import traced_token
from attention.corpus.query import SHARE
from attention.defaults import MEASURE_LABELS
from attention.errors import AttentionFlowsError

CHANGE_METRICS = (*PAIR_METRICS, SHARE)  # the head grid's choices: how the two models' maps differ, and the share
METRIC_CHOICES = {  # the change measure's radio buttons, in CHANGE_METRICS' order
    "js_divergence": "JS divergence",
    "tv_distance": "total variation",
    "cosine": "cosine",
    SHARE: "contribution share (fine-tuned − pre-trained)",
}
if tuple(METRIC_CHOICES) != CHANGE_METRICS:
    raise AssertionError("METRIC_CHOICES must label exactly CHANGE_METRICS, in their order")
GRAPH_IDS = {  # each corpus figure's graph (app.export.corpus_figures.CORPUS_FIGURES), in the page's order
    "heads": "corpus-heads",
    "layers": "corpus-layers",
    "word": "corpus-word-graph",
    "head-map": "corpus-head-map",
}
if tuple(GRAPH_IDS) != tuple(CORPUS_FIGURES):
    raise AssertionError("GRAPH_IDS must give a graph to exactly CORPUS_FIGURES, in their order")
EXPORT_DOWNLOAD = "corpus-export-download"  # the figure file of the card whose Export button was clicked
EXPORT_DOWNLOAD_SIDECAR = "corpus-export-download-sidecar"  # and its sidecar, when the card's JSON is ticked
EXPORT_STATUS = "corpus-export-status"  # "Exporting…" while an export runs


def _query_of_page() -> dict[str, str]:
    """The query of the page's URL (the layout request's referrer), first value of each key; empty outside a
    request."""
    search = urlsplit(request.referrer or "").query if has_request_context() else ""
    return {key: values[0] for key, values in parse_qs(search).items()}


def corpus_layout(catalog: CorpusCatalog) -> html.Div:
    """The page for the pair and corpus its URL names (``?models=NAME&corpus=FOLDER``; NAME is a pair's name or
    its config's file name; none: the catalog's default pair); other URL parts are the single-example page's
    options, carried to the examples it links to."""
    query = _query_of_page()
    default_models = catalog.default_models
    asked = query.pop("models", default_models)
    error, entry, models = "", None, catalog.resolve(asked)
    if models is None:
        error, models = f"There is no model pair called {asked!r} on this server.", default_models
    try:
        entry = catalog.check(models, query.pop("corpus", None))
    except AttentionFlowsError as problem:
        error = str(problem)
    entries = catalog.entries(models)
    options = urlencode({k: v for k, v in query.items() if k not in ("text", "pair")})
    header = _header(models, default_models)
    if not entries:
        message = f"Pair '{models}' has no corpus yet. Compute one with: {catalog.run_command(models)}"
        return html.Div([header, html.Div(error or message, className="error-banner", id="corpus-error")],
                        className="page corpus-page")  # fmt: skip
    chosen = entry or entries[0]
    return html.Div(
        [
            header,
            html.Div(error, className="error-banner" if error else "", id="corpus-error"),
            _controls(entries, chosen),
            _views(),
            _words_card(chosen),
            _examples_card(),
            dcc.Store(id="corpus-context", data={"models": models, "options": options}),
            dcc.Download(id=EXPORT_DOWNLOAD),
            dcc.Download(id=EXPORT_DOWNLOAD_SIDECAR),
            html.Div(id=EXPORT_STATUS, className="export-status", role="status"),
            dcc.Location(id="corpus-url", refresh=False),
        ],
        className="page corpus-page",
    )


def _header(models: str, default_models: str) -> html.Header:
    """The title, the pair, the help link and the way back to the single-example page (of the same pair)."""
    back = "/?" + urlencode({"models": models} if models != default_models else {})
    return html.Header(
        [
            html.H1("Attention Flows · corpus"),
            html.Span(f"what fine-tuning changed over a whole corpus · pair '{models}'", className="subtitle"),
            help_icon("corpus"),
            html.A("← single example", href=back.rstrip("?"), className="small-button corpus-link", id="corpus-back"),
        ],
        className="page-header",
    )


def _controls(entries: list[CorpusEntry], chosen: CorpusEntry) -> html.Div:
    """The corpus menu (``chosen`` selected), the change measure and the corpus's summary line."""
    return html.Div(
        [
            html.Label("corpus", htmlFor="corpus-select", className="muted"),
            dcc.Dropdown(
                id="corpus-select",
                options=[{"label": e.label, "value": e.name} for e in entries],
                value=chosen.name,
                clearable=False,
                className="corpus-select",
            ),
            html.Label("change measure", htmlFor="corpus-metric", className="muted"),
            dcc.RadioItems(
                id="corpus-metric",
                options=[{"label": label, "value": value} for value, label in METRIC_CHOICES.items()],
                value="js_divergence",
                inline=True,
            ),
            html.Span(id="corpus-summary", className="muted"),
        ],
        className="corpus-controls",
    )


def _card(figure: str, above: html.Div | None = None) -> html.Div:
    """The card of one corpus figure: its title and export controls (the single-example page's, keyed by the
    figure's name), ``above`` the graph when given, and the graph."""
    header = html.Div([html.H2(CORPUS_FIGURES[figure].title), export_controls(figure)], className="card-header")
    graph = dcc.Graph(id=GRAPH_IDS[figure], config={"displaylogo": False})
    return html.Div([header, *([above] if above else []), graph], className="card")


def _views() -> html.Div:
    """The four graphs, each with its export controls: head and layer change, the word query (with its input) and
    the head similarity map."""
    word_row = html.Div(
        [
            dcc.Input(id="corpus-word", type="text", placeholder="a word, e.g. great", debounce=True),
            html.Button("Query word", id="corpus-word-button", n_clicks=0, className="small-button"),
        ],
        className="corpus-word-row",
    )
    return html.Div(
        [
            _card("heads"),
            _card("layers"),
            _card("word", word_row),
            _card("head-map"),
        ],
        className="corpus-views",
    )


def _words_card(chosen: CorpusEntry) -> html.Div:
    """The words that gained most, by a measure the radio buttons choose (the table: ``corpus-words``)."""
    traced = traced_token(chosen.manifest)
    return html.Div(
        [
            html.H2("Words that gained most after fine-tuning"),
            choice_row(
                "corpus-word-measure",
                {
                    "rollout": traced_phrase(traced, "rollout"),
                    "mixing_rollout": traced_phrase(traced, f"contribution rollout ({_rollout_measure(chosen)})"),
                    "cls_attention": f"attention from {traced}",
                    "relevance": "class relevance (fine-tuned only)",
                },
                "seen at least 5 times; a word's pieces summed, mean over its occurrences",
            ),
            html.Div(id="corpus-words"),
        ],
        className="card wide",
    )


def _examples_card() -> html.Div:
    """The example table's card: which examples (all, wrong, the selected head's) and the table (``corpus-grid``)."""
    return html.Div(
        [
            html.H2("Examples (open ↗: the single-example page, in a new tab)"),
            choice_row(
                "corpus-examples-kind",
                {
                    "all": "all",
                    "wrong": "the fine-tuned model is wrong",
                    "head": "where the selected head changed most",
                },
                "selected head: click a cell of the head grid",
                note_id="corpus-selected-head",
            ),
            html.Div(id="corpus-grid"),
        ],
        className="card wide",
    )


def traced_phrase(traced: str, what: str) -> str:
    """``what`` of the traced token: "[CLS] rollout", or "rollout from the last token"."""
    return f"{traced} {what}" if traced == "[CLS]" else f"{what} from {traced}"


def _rollout_measure(entry: CorpusEntry) -> str:
    """The name of the measure of a corpus's [CLS] contribution rows, as its manifest records it."""
    measure = entry.manifest.get("mixing", {}).get("mixing_rollout")
    return MEASURE_LABELS.get(measure, measure or "context mixing")


def choice_row(radio_id: str, choices: dict[str, str], note: str, note_id: str | None = None) -> html.Div:
    """Radio buttons (``value: label``, the first chosen) and a muted note after them."""
    return html.Div(
        [
            dcc.RadioItems(
                id=radio_id,
                options=[{"label": label, "value": value} for value, label in choices.items()],
                value=next(iter(choices)),
                inline=True,
            ),
            html.Span(note, className="muted", **({"id": note_id} if note_id else {})),
        ],
        className="corpus-controls",
    )


def examples_grid(corpus: str, view: str, *, pairs: bool = False, labelled: bool = True) -> dag.AgGrid:
    """The example table of ``view`` (``all``, ``wrong`` or ``head-L-H``): rows fetched page by page from the
    server (sorted and filtered there); with ``pairs``, a column for each example's second sentence; without
    ``labelled`` (no example has a gold label), no gold and correct columns (they would be empty)."""
    columns = [
        {"field": "example_id", "headerName": "#", "width": 80},
        {"field": "open", "headerName": "", "valueFormatter": {"function": "'open ↗'"}, "cellClass": "corpus-open",
         "width": 80, "sortable": False, "headerTooltip": "open the example in the single-example page (new tab)"},
        {"field": "text", "flex": 3, "tooltipField": "text"},
        *([{"field": "text_pair", "headerName": "second sentence", "flex": 2, "tooltipField": "text_pair"}]
          if pairs else []),
        *([{"field": "gold", "width": 100}] if labelled else []),
        {"field": "predicted_finetuned", "headerName": "predicted", "width": 120,
         "headerTooltip": "the fine-tuned model's class"},
        {"field": "confidence", "headerName": "probability", "width": 120,
         "headerTooltip": "the fine-tuned model's probability of its class",
         "valueFormatter": {"function": "d3.format('.3f')(params.value)"}},
        {"field": "mean_change", "headerName": "change", "width": 110,
         "headerTooltip": "mean JS divergence (bits) over the example's heads, between the two models",
         "valueFormatter": {"function": "d3.format('.4f')(params.value)"}},
        *([{"field": "correct", "width": 100,
            "headerTooltip": "is the fine-tuned model's class the gold label? (empty: no label)"}] if labelled else []),
        *([{"field": "head_change", "headerName": f"L{view.split('-')[1]}H{view.split('-')[2]} change", "width": 150,
            "sort": "desc", "valueFormatter": {"function": "d3.format('.4f')(params.value)"},
            "headerTooltip": "this head's JS divergence (bits) between the two models on the example"}]
          if view.startswith("head-") else []),
        {"field": "n_tokens", "headerName": "tokens", "width": 105},
    ]  # fmt: skip
    for column in columns:  # the filters the server applies (example_rows), one condition or two
        if (kind := COLUMN_FILTERS.get(column["field"])) is not None:
            column |= {"filter": f"ag{kind.title()}ColumnFilter", "filterParams": {"filterOptions": FILTER_TYPES[kind]}}
    return dag.AgGrid(
        id={"type": "corpus-examples", "corpus": corpus, "view": view},
        columnDefs=columns,
        defaultColDef={"sortable": True, "resizable": True},
        rowModelType="infinite",
        dashGridOptions={"cacheBlockSize": PAGE_ROWS, "maxBlocksInCache": 20, "rowBuffer": 0},
        style={"height": "460px"},
    )


def words_grid(frame: pd.DataFrame, measure: str, traced: str = "[CLS]") -> dag.AgGrid:
    """The words whose ``measure`` grew most (a small table, sorted in the browser); the contribution rollout's
    headers name its measure (the frame's ``measure`` column); ``traced``: :func:`traced_token`."""
    number = {"valueFormatter": {"function": "d3.format('.4f')(params.value)"}, "width": 140}
    what = {"rollout": traced_phrase(traced, "rollout"), "cls_attention": f"attention from {traced}",
            "relevance": "class relevance"}  # fmt: skip
    if measure == "mixing_rollout":
        named = str(frame["measure"].iloc[0]) if "measure" in frame and len(frame) else None
        what[measure] = traced_phrase(traced, f"{MEASURE_LABELS.get(named, 'contribution')} rollout")
    columns = [
        {"field": "word", "flex": 1},
        {"field": "count", "width": 90},
        {"field": "pretrained", "headerName": f"pre-trained {what[measure]}", **number, "width": 200},
        {"field": "finetuned", "headerName": f"fine-tuned {what[measure]}", **number, "width": 200},
        {"field": "change", "headerName": "change", **number},
    ]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return dag.AgGrid(id="corpus-words-grid", columnDefs=columns, rowData=rows,
                      defaultColDef={"sortable": True, "resizable": True}, style={"height": "300px"})  # fmt: skip
