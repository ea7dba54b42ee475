"""The corpus page's callbacks, as plain module-level functions: each reaches the server's corpus catalog with
:func:`~app.corpus.catalog.corpus_catalog` (so a test calls one inside a request of a server the page is mounted
on), and :func:`register_callbacks` wires them, with their outputs and inputs, to the page's Dash app."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pandas as pd
from dash import ALL, MATCH, Dash, Input, Output, Patch, State, ctx, dcc, html, no_update, set_props
from dash.exceptions import PreventUpdate

from app.core.options import ExportOptions
from app.corpus.catalog import CorpusEntry, corpus_catalog
from app.corpus.grid import GridRequestError, check_view, corpus_entry, grid_rows, view_table
from app.corpus.layout import (
    CHANGE_METRICS,
    EXPORT_DOWNLOAD,
    EXPORT_DOWNLOAD_SIDECAR,
    EXPORT_STATUS,
    examples_grid,
    words_grid,
)
from app.dashboard.ids import EXPORT_PARTS, export_control
from app.export.corpus import CorpusFigureRequest, corpus_export_bytes, corpus_file_stem
from app.export.corpus_figures import check_figure, figure_options
from app.figures.corpus import make_corpus_head_map, make_head_change_grid, make_layer_change, make_word_difference
from app.figures.theme import empty_figure
from attention.corpus.mixing import traced_token
from attention.corpus.query import head_map, head_ranking, label_counts, layer_change, word_changes, word_query
from attention.errors import AttentionFlowsError

WORDS_SHOWN = 50  # words in the "gained most" table
_CALLBACKS: list[tuple[Callable, tuple, dict]] = []  # (function, outputs/inputs/states, options), in page order


def _callback(*dependencies: Output | Input | State, **options: object) -> Callable[[Callable], Callable]:
    """Keep a function's outputs, inputs and states for :func:`register_callbacks`; the function stays as it is."""

    def keep(function: Callable) -> Callable:
        _CALLBACKS.append((function, dependencies, options))
        return function

    return keep


def _examples(prop: str) -> tuple[dict, str]:
    """``(pattern id, prop)`` of every example table (one per corpus and view)."""
    return {"type": "corpus-examples", "corpus": MATCH, "view": MATCH}, prop


def entry_of(context: object, corpus: object) -> CorpusEntry:
    """The corpus a callback names, checked (:func:`~app.corpus.grid.corpus_entry`)."""
    return corpus_entry(corpus_catalog(), context, corpus)[0]


def picked_head(clicked: dict | None) -> tuple[int, int] | None:
    """``(layer, head)`` of the head grid's ``clickData`` (checked: it comes from the browser), or None."""
    points = (clicked or {}).get("points") if isinstance(clicked, dict) else None
    point = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else {}
    layer, head = point.get("y"), point.get("x")
    return (layer, head) if isinstance(layer, int) and isinstance(head, int) else None


def outline(clicked: dict | None) -> list[dict]:
    """The outline of the head picked in the head grid (``clickData``), as layout shapes (none when none)."""
    if (picked := picked_head(clicked)) is None:
        return []
    layer, head = picked
    return [{"type": "rect", "x0": head - 0.5, "x1": head + 0.5, "y0": layer - 0.5, "y1": layer + 0.5,
             "line": {"color": "black", "width": 2.5}}]  # fmt: skip


def corpus_summary(entry: CorpusEntry, labels: pd.DataFrame) -> str:
    """The line under the controls: examples of rows (and skipped), labels that name no class, the data."""
    skipped = sum(chunk["rows"]["skipped"] for chunk in entry.manifest["chunks"].values())
    source = entry.manifest["source"]
    unknown = int(labels.loc[labels["gold"].isna(), "examples"].sum())
    return (f"{entry.examples:,} examples of {source['rows']:,} rows ({skipped:,} skipped: empty, too long or "
            f"not text)"
            + (f" · {unknown:,} with a label that names no class (no gold label)" if unknown else "")
            + f" · {source['description']}")  # fmt: skip


@_callback(
    Output("corpus-heads", "figure"),
    Output("corpus-layers", "figure"),
    Output("corpus-head-map", "figure"),
    Output("corpus-summary", "children"),
    Output("corpus-error", "children"),
    Input("corpus-select", "value"),
    Input("corpus-metric", "value"),
    State("corpus-context", "data"),
    State("corpus-heads", "clickData"),
)
def draw(corpus: object, metric: object, context: object, clicked: dict | None) -> tuple:
    """The head grid (the picked head outlined), the layer view, the head map and the summary of a corpus by
    ``metric``; an error leaves blank figures and says why in the banner."""
    try:
        entry = entry_of(context, corpus)
        if metric not in CHANGE_METRICS:
            raise AttentionFlowsError(f"Unknown change measure {metric!r}.", "Pick one of the listed ones.")
        catalog = corpus_catalog()
        ranking = catalog.memo(entry, "ranking", lambda: head_ranking(entry.path, metric), metric)
        layers = catalog.memo(entry, "layers", lambda: layer_change(entry.path, metric), metric)
        mapped, stress, count = catalog.memo(entry, "map", lambda: head_map(entry.path))
        labels = catalog.memo(entry, "labels", lambda: label_counts(entry.path))
    except AttentionFlowsError as error:
        blank = empty_figure(str(error))
        return blank, blank, blank, "", str(error)
    heads = make_head_change_grid(ranking, metric, entry.examples)
    heads["layout"]["shapes"] = outline(clicked)
    return (
        heads,
        make_layer_change(layers, metric),
        make_corpus_head_map(mapped, stress, count),
        corpus_summary(entry, labels),
        "",
    )


@_callback(
    Output("corpus-grid", "children"),
    Output("corpus-selected-head", "children"),
    Input("corpus-select", "value"),
    Input("corpus-examples-kind", "value"),
    Input("corpus-heads", "clickData"),
    State("corpus-context", "data"),
)
def grid(corpus: object, kind: object, clicked: dict | None, context: object) -> tuple:
    """The example table of the chosen ``kind`` (all, wrong, the picked head's) and the picked head's note."""
    try:
        entry = entry_of(context, corpus)
    except AttentionFlowsError:
        return None, ""
    picked = picked_head(clicked)
    label = f"selected head: L{picked[0]} H{picked[1]}" if picked else "selected head: click a cell of the head grid"
    if kind == "head" and picked is None:
        return html.Div("Click a cell of the head grid above to pick the head.", className="muted"), label
    if kind == "head":
        try:
            check_view(f"head-{picked[0]}-{picked[1]}", entry.manifest["pair"]["num_layers"],
                       entry.manifest["pair"]["num_heads"])  # fmt: skip
        except GridRequestError as error:
            return html.Div(str(error), className="muted"), label
    if kind == "wrong":
        examples = corpus_catalog().memo(entry, "examples", lambda: view_table(entry.path, "all"), "all")
        if examples["correct"].isna().all():
            message = "This corpus has no gold labels: run it with --label-col to see where the model is wrong."
            return html.Div(message, className="muted"), label
    view = f"head-{picked[0]}-{picked[1]}" if kind == "head" else ("wrong" if kind == "wrong" else "all")
    examples = corpus_catalog().memo(entry, "examples", lambda: view_table(entry.path, "all"), "all")
    pairs, labelled = bool(examples["text_pair"].notna().any()), bool(examples["gold"].notna().any())
    return examples_grid(entry.name, view, pairs=pairs, labelled=labelled), label


@_callback(
    Output("corpus-heads", "figure", allow_duplicate=True),
    Input("corpus-heads", "clickData"),
    prevent_initial_call=True,
)
def outline_selected_head(clicked: dict | None) -> Patch:
    """A black outline on the head picked for the example table (only the outline is sent)."""
    if picked_head(clicked) is None:
        return no_update
    patch = Patch()
    patch["layout"]["shapes"] = outline(clicked)
    return patch


@_callback(
    Output("corpus-words", "children"),
    Input("corpus-select", "value"),
    Input("corpus-word-measure", "value"),
    State("corpus-context", "data"),
)
def words(corpus: object, measure: object, context: object):
    """The table of the words whose ``measure`` gained most (or why there is none)."""
    try:
        entry = entry_of(context, corpus)
        frame = corpus_catalog().memo(entry, "words", lambda: word_changes(entry.path, measure), measure)
    except AttentionFlowsError as error:
        return html.Div(str(error), className="muted")
    return words_grid(frame.head(WORDS_SHOWN), measure, traced_token(entry.manifest))


@_callback(
    Output("corpus-word-graph", "figure"),
    Input("corpus-word-button", "n_clicks"),
    Input("corpus-word", "value"),
    Input("corpus-select", "value"),
    State("corpus-context", "data"),
)
def query_word(_clicks: object, word: str | None, corpus: object, context: object) -> dict:
    """Which heads attend to ``word`` from [CLS] (a decoder's last token), and how that changed (or what to type)."""
    if not (word or "").strip():
        return empty_figure("Type a word and press Enter: which heads attend to it from the traced token ([CLS], or "
                            "a decoder's last token), and how that changed.")  # fmt: skip
    try:
        entry = entry_of(context, corpus)
        frame = corpus_catalog().memo(entry, "word", lambda: word_query(entry.path, word), word.strip().lower())
    except AttentionFlowsError as error:
        return empty_figure(str(error))
    return make_word_difference(frame, word.strip(), traced_token(entry.manifest))


@_callback(
    Output(*_examples("getRowsResponse")),
    Input(*_examples("getRowsRequest")),
    State("corpus-context", "data"),
    State(*_examples("id")),
    prevent_initial_call=True,
)
def rows(request: object, context: object, grid_id: object) -> dict:
    """A block of the example table; a malformed request gets an empty block and says why in the banner."""
    if request is None:
        return no_update
    catalog = corpus_catalog()
    try:
        return grid_rows(catalog, request, context, grid_id, catalog.default_models)
    except AttentionFlowsError as error:
        set_props("corpus-error", {"children": str(error), "className": "error-banner"})
        return {"rowData": [], "rowCount": 0}


EXPORT_CHOICES = EXPORT_PARTS[1:]  # a card's export controls the export reads: all but the button


def export_request(
    entry: CorpusEntry, figure: object, chosen: dict, metric: object, word: object
) -> CorpusFigureRequest:
    """The export of ``figure`` (a card's name, from the browser: checked) of the corpus ``entry`` with the card's
    export controls (``chosen``: format, size, width, height, scale) and the page's change measure and word. The
    sidecar names the corpus by its folder's name under the server's corpora (never the server's path)."""
    figure = check_figure(figure)
    if figure == "word" and not (isinstance(word, str) and word.strip()):
        raise AttentionFlowsError("The word query has no word to export yet.", "Type a word above its figure first.")
    if figure in ("heads", "layers") and metric not in CHANGE_METRICS:
        raise AttentionFlowsError(f"Unknown change measure {metric!r}.", "Pick one of the listed ones.")
    options = figure_options(figure, metric=metric if figure in ("heads", "layers") else None,
                             word=word if figure == "word" else None)  # fmt: skip
    fmt = chosen["format"]
    export = ExportOptions.create(fmt, preset=chosen["size"], width=chosen["width"], height=chosen["height"],
                                  scale=chosen["scale"] if fmt == "png" else None)  # fmt: skip
    return CorpusFigureRequest(entry.path, figure, options, export, recorded_folder=entry.name)


@_callback(
    Output(EXPORT_DOWNLOAD, "data"),
    Output(EXPORT_DOWNLOAD_SIDECAR, "data"),
    Input(export_control("button", ALL), "n_clicks"),
    *(State(export_control(part, ALL), "value") for part in EXPORT_CHOICES),
    State("corpus-select", "value"),
    State("corpus-metric", "value"),
    State("corpus-word", "value"),
    State("corpus-context", "data"),
    running=[
        (Output(EXPORT_STATUS, "children"), "Exporting… (the first export also starts the exporter's browser)", ""),
        (Output(export_control("button", ALL), "disabled"), True, False),
    ],
    prevent_initial_call=True,
)
def export_figure(clicks: list, *values: object) -> tuple:
    """The clicked card's figure as a file in the publication theme (and its sidecar when the card's JSON is
    ticked), drawn from what the page has read; an error says why in the banner and downloads nothing."""
    if not isinstance(ctx.triggered_id, dict) or not any(clicks or []):
        raise PreventUpdate
    figure = ctx.triggered_id.get("view")
    corpus, metric, word, context = values[len(EXPORT_CHOICES) :]
    chosen = {part: _value_of(figure, ctx.args_grouping[1 + i]) for i, part in enumerate(EXPORT_CHOICES)}
    try:
        entry = entry_of(context, corpus)
        request = export_request(entry, figure, chosen, metric, word)
        data, side = corpus_export_bytes(request, functools.partial(corpus_catalog().memo, entry))
    except AttentionFlowsError as error:
        set_props("corpus-error", {"children": str(error), "className": "error-banner"})
        return no_update, no_update
    stem = corpus_file_stem(request.figure, request.options, entry.name, request.export)
    sidecar = {"content": side.to_json(), "filename": f"{stem}.json"} if chosen["sidecar"] else no_update
    return dcc.send_bytes(data, f"{stem}.{request.export.fmt}"), sidecar


def _value_of(figure: object, grouping: list[dict]) -> object:
    """The value of the card ``figure``'s control among a wildcard's (``ctx.args_grouping`` entries)."""
    return next((item.get("value") for item in grouping if item["id"]["view"] == figure), None)


# a click on 'open ↗' opens the example's single-example page in a new tab (a plain value, never HTML: texts are
# user data)
OPEN_EXAMPLE = """function(clicked) {
            const url = clicked && clicked.colId === 'open' ? clicked.value : null;
            if (typeof url === 'string' && url.startsWith('/?')) { window.open(url, '_blank', 'noopener'); }
            return window.dash_clientside.no_update;
        }"""
# the chosen corpus in the page's URL (so a reload or a shared link opens it)
CORPUS_IN_URL = """function(corpus, search) {
            const params = new URLSearchParams(search || '');
            if (!corpus || params.get('corpus') === corpus) { return window.dash_clientside.no_update; }
            params.set('corpus', corpus);
            return '?' + params.toString();
        }"""


def register_callbacks(app: Dash) -> None:
    """Wire every callback of the page to ``app``: the server-side ones above, then the two in the browser."""
    for function, dependencies, options in _CALLBACKS:
        app.callback(*dependencies, **options)(function)
    app.clientside_callback(
        OPEN_EXAMPLE,
        Output(*_examples("className")),
        Input(*_examples("cellClicked")),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        CORPUS_IN_URL,
        Output("corpus-url", "search"),
        Input("corpus-select", "value"),
        State("corpus-url", "search"),
    )
