"""The corpus page (``/corpus/``): what fine-tuning changed over a whole corpus, linked to single examples.

A second Dash app on the dashboard's Flask server, so sign-in, metrics and the pair list are the same. (Not Dash
pages: they render a page's content through an extra callback after load, and the single-example page renders
its URL's state in its first response.) Everything is read from a corpus folder under ``<data home>/corpora``
(``attention-flows corpus run``); the browser only ever names a pair and a corpus folder, checked against the
lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import dash_ag_grid as dag  # a component library: Dash refuses one first imported inside a callback
import pandas as pd
from dash import Dash, Input, Output, State, dcc, html, no_update

from app.cache import ByteLRU
from app.figures.corpus import make_corpus_head_map, make_head_change_grid, make_layer_change, make_word_difference
from app.figures.theme import empty_figure
from app.help import help_icon
from attention.errors import AttentionFlowsError

CATALOG_KEY = "attention_flows_corpora"
CHANGE_METRICS = ("js_divergence", "tv_distance", "cosine")
PAGE_ROWS = 100  # rows per block the grid asks for
WORDS_SHOWN = 50  # words in the "gained most" table
TEXT_FILTERS = ["contains", "notContains", "equals", "startsWith"]
NUMBER_FILTERS = ["equals", "greaterThan", "lessThan"]


@dataclass(frozen=True)
class CorpusEntry:
    """A corpus the page may open: its folder name (all the browser sends), folder and manifest."""

    name: str
    path: Path
    manifest: dict

    @property
    def examples(self) -> int:
        return sum(chunk["rows"]["examples"] for chunk in self.manifest["chunks"].values())

    @property
    def label(self) -> str:
        return f"{self.name} ({self.examples:,} examples)"


class CorpusCatalog:
    """The corpora of each pair under ``root`` and a byte-bounded memo of what the page reads from them (keyed by
    the manifest's modification time, so a corpus still being computed is read afresh)."""

    def __init__(self, root: Path, pair_config_names: dict[str, str], budget: int = 256 * 2**20) -> None:
        self.root = Path(root)
        self.pair_config_names = pair_config_names
        self.cache = ByteLRU(budget)

    def entries(self, models: str) -> list[CorpusEntry]:
        from attention.corpus.store import list_corpora

        name = self.pair_config_names.get(models)
        if name is None:
            return []
        return [CorpusEntry(folder, self.root / folder, manifest) for folder, manifest in list_corpora(self.root, name)]

    def check(self, models: str, corpus: str | None) -> CorpusEntry | None:
        """The corpus called ``corpus`` of pair ``models`` (the first one when None); an error for any other name."""
        entries = self.entries(models)
        if corpus is None:
            return entries[0] if entries else None
        for entry in entries:
            if entry.name == corpus:
                return entry
        names = ", ".join(e.name for e in entries) or "none yet"
        raise AttentionFlowsError(f"Pair '{models}' has no corpus called {corpus!r}.", f"Its corpora: {names}.")

    def memo(self, entry: CorpusEntry, what: str, compute, *parts):
        stamp = (entry.path / "manifest.json").stat().st_mtime_ns
        return self.cache.get_or_compute((str(entry.path), stamp, what, *parts), compute)


def _report_unexpected_error(error: Exception) -> None:
    """``Dash(on_error=...)``: log the traceback, show one plain sentence in the page's banner."""
    import logging
    import uuid

    from dash import set_props

    reference = uuid.uuid4().hex[:8]
    logging.getLogger(__name__).exception("unexpected error on the corpus page (%s)", reference, exc_info=error)
    set_props("corpus-error", {"children": f"Something went wrong on the server (reference {reference}). Try again; "
                                           "the server log has the details under that reference.",
                               "className": "error-banner"})  # fmt: skip


def _catalog(app: Dash) -> CorpusCatalog:
    return app.server.extensions[CATALOG_KEY]


def mount_corpus_page(
    server, *, pair_config_names: dict[str, str], default_models: str, root: Path, assets_folder: str
) -> Dash:
    """Serve the corpus page at ``/corpus/`` on the Flask ``server``. Mount it before the dashboard's own Dash app
    is made: Dash takes the last app made in a process as ``dash.get_app()``, which background jobs use."""
    corpus_app = Dash(
        __name__,
        server=server,
        url_base_pathname="/corpus/",
        title="Attention Flows · corpus",
        assets_folder=assets_folder,
        update_title=None,
        suppress_callback_exceptions=True,  # a pair without corpora gets a page without the views
        on_error=_report_unexpected_error,
    )
    server.extensions[CATALOG_KEY] = CorpusCatalog(root, pair_config_names)
    corpus_app.layout = lambda: corpus_layout(corpus_app, default_models)
    _register(corpus_app, default_models)
    return corpus_app


def _query_of_page() -> dict[str, str]:
    from flask import has_request_context, request

    search = urlsplit(request.referrer or "").query if has_request_context() else ""
    return {key: values[0] for key, values in parse_qs(search).items()}


def corpus_layout(app: Dash, default_models: str) -> html.Div:
    """The page for the pair and corpus its URL names (``?models=NAME&corpus=FOLDER``); other URL parts are the
    single-example page's options, carried to the examples it links to."""
    query = _query_of_page()
    catalog = _catalog(app)
    models = query.pop("models", default_models)
    error, entry = "", None
    if models not in catalog.pair_config_names:
        error, models = f"There is no model pair called {models!r} on this server.", default_models
    try:
        entry = catalog.check(models, query.pop("corpus", None))
    except AttentionFlowsError as problem:
        error = str(problem)
    entries = catalog.entries(models)
    options = urlencode({k: v for k, v in query.items() if k not in ("text", "pair")})
    back = "/?" + urlencode({"models": models} if models != default_models else {})
    header = html.Header(
        [
            html.H1("Attention Flows · corpus"),
            html.Span(f"what fine-tuning changed over a whole corpus · pair '{models}'", className="subtitle"),
            help_icon("corpus"),
            html.A("← single example", href=back.rstrip("?"), className="small-button corpus-link", id="corpus-back"),
        ],
        className="page-header",
    )
    if not entries:
        command = "attention-flows corpus run" + ("" if models == "default" else f" --config {models}")
        message = f"Pair '{models}' has no corpus yet. Compute one with: {command}"
        return html.Div([header, html.Div(error or message, className="error-banner", id="corpus-error")],
                        className="page corpus-page")  # fmt: skip
    chosen = entry or entries[0]
    controls = html.Div(
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
                options=[
                    {"label": label, "value": value}
                    for value, label in (
                        ("js_divergence", "JS divergence"),
                        ("tv_distance", "total variation"),
                        ("cosine", "cosine"),
                    )
                ],
                value="js_divergence",
                inline=True,
            ),
            html.Span(id="corpus-summary", className="muted"),
        ],
        className="corpus-controls",
    )
    word_row = html.Div(
        [
            dcc.Input(id="corpus-word", type="text", placeholder="a word, e.g. great", debounce=True),
            html.Button("Query word", id="corpus-word-button", n_clicks=0, className="small-button"),
        ],
        className="corpus-word-row",
    )

    def card(title: str, graph_id: str, above=None) -> html.Div:
        return html.Div(
            [html.H2(title), *([above] if above else []), dcc.Graph(id=graph_id, config={"displaylogo": False})],
            className="card",
        )

    return html.Div(
        [
            header,
            html.Div(error, className="error-banner" if error else "", id="corpus-error"),
            controls,
            html.Div(
                [
                    card("Which heads changed", "corpus-heads"),
                    card("Which layers changed", "corpus-layers"),
                    card("Word query: attention from [CLS] to a word", "corpus-word-graph", word_row),
                    card("Head similarity map", "corpus-head-map"),
                ],
                className="corpus-views",
            ),
            html.Div(
                [
                    html.H2("Words that gained most after fine-tuning"),
                    choice_row(
                        "corpus-word-measure",
                        {
                            "rollout": "[CLS] rollout",
                            "cls_attention": "attention from [CLS]",
                            "relevance": "class relevance (fine-tuned only)",
                        },
                        "seen at least 5 times; a word's pieces summed, mean over its occurrences",
                    ),
                    html.Div(id="corpus-words"),
                ],
                className="card wide",
            ),
            html.Div(
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
            ),
            dcc.Store(id="corpus-context", data={"models": models, "options": options}),
            dcc.Location(id="corpus-url", refresh=False),
        ],
        className="page corpus-page",
    )


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


def examples_grid(corpus: str, view: str, *, pairs: bool = False, labelled: bool = True) -> html.Div:
    """The example table of ``view`` (``all``, ``wrong`` or ``head-L-H``): rows fetched page by page from the
    server (sorted and filtered there); with ``pairs``, a column for each example's second sentence; without
    ``labelled`` (no example has a gold label), no gold and correct columns (they would be empty)."""
    text, number = {"filterOptions": TEXT_FILTERS}, {"filterOptions": NUMBER_FILTERS}
    columns = [
        {"field": "example_id", "headerName": "#", "width": 80, "filter": "agNumberColumnFilter",
         "filterParams": number},
        {"field": "open", "headerName": "", "valueFormatter": {"function": "'open ↗'"}, "cellClass": "corpus-open",
         "width": 80, "sortable": False, "headerTooltip": "open the example in the single-example page (new tab)"},
        {"field": "text", "flex": 3, "filter": "agTextColumnFilter", "filterParams": text, "tooltipField": "text"},
        *([{"field": "text_pair", "headerName": "second sentence", "flex": 2, "filter": "agTextColumnFilter",
            "filterParams": text, "tooltipField": "text_pair"}] if pairs else []),
        *([{"field": "gold", "width": 100, "filter": "agTextColumnFilter", "filterParams": text}] if labelled else []),
        {"field": "predicted_finetuned", "headerName": "predicted", "width": 120,
         "headerTooltip": "the fine-tuned model's class",
         "filter": "agTextColumnFilter", "filterParams": text},
        {"field": "confidence", "headerName": "probability", "width": 120,
         "headerTooltip": "the fine-tuned model's probability of its class", "filter": "agNumberColumnFilter",
         "filterParams": number, "valueFormatter": {"function": "d3.format('.3f')(params.value)"}},
        {"field": "mean_change", "headerName": "change", "width": 110,
         "headerTooltip": "mean JS divergence (bits) over the example's heads, between the two models",
         "filter": "agNumberColumnFilter", "filterParams": number,
         "valueFormatter": {"function": "d3.format('.4f')(params.value)"}},
        *([{"field": "correct", "width": 100, "filter": "agTextColumnFilter", "filterParams": text,
            "headerTooltip": "is the fine-tuned model's class the gold label? (empty: no label)"}] if labelled else []),
        *([{"field": "head_change", "headerName": f"L{view.split('-')[1]}H{view.split('-')[2]} change", "width": 150,
            "filter": "agNumberColumnFilter", "filterParams": number, "sort": "desc",
            "valueFormatter": {"function": "d3.format('.4f')(params.value)"},
            "headerTooltip": "this head's JS divergence (bits) between the two models on the example"}]
          if view.startswith("head-") else []),
        {"field": "n_tokens", "headerName": "tokens", "width": 105, "filter": "agNumberColumnFilter",
         "filterParams": number},
    ]  # fmt: skip
    return dag.AgGrid(
        id={"type": "corpus-examples", "corpus": corpus, "view": view},
        columnDefs=columns,
        defaultColDef={"sortable": True, "resizable": True},
        rowModelType="infinite",
        dashGridOptions={"cacheBlockSize": PAGE_ROWS, "maxBlocksInCache": 20, "rowBuffer": 0},
        style={"height": "460px"},
    )


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


def words_grid(frame: pd.DataFrame, measure: str) -> dag.AgGrid:
    """The words whose ``measure`` grew most (a small table, sorted in the browser)."""
    number = {"valueFormatter": {"function": "d3.format('.4f')(params.value)"}, "width": 140}
    what = {"rollout": "[CLS] rollout", "cls_attention": "attention from [CLS]", "relevance": "class relevance"}
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


def _filtered(examples: pd.DataFrame, filters: dict | None) -> pd.DataFrame:
    """Apply the grid's filter model (only the filter types the columns offer)."""
    for column, spec in (filters or {}).items():
        if column not in examples.columns or not isinstance(spec, dict):
            continue
        kind, value = spec.get("type"), spec.get("filter")
        values = examples[column]
        if spec.get("filterType") == "number":
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            keep = {"equals": values == value, "greaterThan": values > value, "lessThan": values < value}.get(kind)
        else:
            text, needle = values.fillna("").str.lower(), str(value or "").lower()
            keep = {
                "contains": text.str.contains(needle, regex=False),
                "notContains": ~text.str.contains(needle, regex=False),
                "equals": text == needle,
                "startsWith": text.str.startswith(needle),
            }.get(kind)
        if keep is not None:
            examples = examples[keep]
    return examples


def example_rows(table: pd.DataFrame, request: dict, *, models: str, options: str, default_models: str) -> dict:
    """One block of the example table for the grid's ``getRowsRequest``: filtered, sorted, sliced."""
    rows = _filtered(table, request.get("filterModel"))
    for order in reversed(request.get("sortModel") or []):
        if order.get("colId") in rows.columns:
            rows = rows.sort_values(order["colId"], ascending=order.get("sort") != "desc", kind="stable")
    start, end = int(request.get("startRow", 0)), int(request.get("endRow", PAGE_ROWS))
    block = rows.iloc[start:end].copy()
    links = []
    for text, pair in zip(block["text"], block["text_pair"], strict=True):
        query = {"models": models} if models != default_models else {}
        query |= {"text": text} | ({"pair": pair} if pair else {})
        links.append(f"/?{urlencode(query)}{'&' + options if options else ''}")
    block["open"] = links
    block = block.astype(object).where(block.notna(), None)
    return {"rowData": block.to_dict("records"), "rowCount": len(rows)}


def _examples_table(folder: Path) -> pd.DataFrame:
    from attention.corpus import read_table

    columns = ["example_id", "text", "text_pair", "gold", "predicted_finetuned", "probabilities_finetuned",
               "mean_change", "n_tokens"]  # fmt: skip
    table = read_table(folder, "examples", [*columns, "correct_finetuned"])
    table["confidence"] = [max(p) if p is not None and len(p) else None for p in table.pop("probabilities_finetuned")]
    table["correct"] = table.pop("correct_finetuned").map({True: "yes", False: "no"})
    return table


def view_table(folder: Path, view: str) -> pd.DataFrame:
    """The examples of ``view``: ``all``, ``wrong`` (the fine-tuned model's class is not the gold label) or
    ``head-L-H`` (every example with that head's change, largest first)."""
    from attention.corpus import read_table

    table = _examples_table(folder)
    if view == "wrong":
        return table[table["correct"] == "no"]
    if view.startswith("head-"):
        import pyarrow.dataset as ds

        layer, head = (int(part) for part in view.split("-")[1:])
        where = (ds.field("layer") == layer) & (ds.field("head") == head)
        change = read_table(folder, "heads", ["example_id", "js_divergence"], where=where)
        table = table.merge(change.rename(columns={"js_divergence": "head_change"}), on="example_id")
        return table.sort_values("head_change", ascending=False, kind="stable", ignore_index=True)
    return table


def _register(app: Dash, default_models: str) -> None:
    from dash import MATCH

    from attention.corpus import head_map, head_ranking, layer_change, word_changes, word_query

    def entry_of(context: dict, corpus: str) -> CorpusEntry:
        entry = _catalog(app).check(context["models"], corpus)
        if entry is None:
            raise AttentionFlowsError("This pair has no corpus.", "Compute one with: attention-flows corpus run")
        return entry

    @app.callback(
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
    def draw(corpus, metric, context, clicked):
        try:
            entry = entry_of(context, corpus)
            if metric not in CHANGE_METRICS:
                raise AttentionFlowsError(f"Unknown change measure {metric!r}.", "Pick one of the listed ones.")
            catalog = _catalog(app)
            ranking = catalog.memo(entry, "ranking", lambda: head_ranking(entry.path, metric), metric)
            layers = catalog.memo(entry, "layers", lambda: layer_change(entry.path, metric), metric)
            mapped, stress, count = catalog.memo(entry, "map", lambda: head_map(entry.path))
        except AttentionFlowsError as error:
            blank = empty_figure(str(error))
            return blank, blank, blank, "", str(error)
        skipped = sum(chunk["rows"]["skipped"] for chunk in entry.manifest["chunks"].values())
        source = entry.manifest["source"]
        summary = (f"{entry.examples:,} examples of {source['rows']:,} rows ({skipped:,} skipped: empty or too long)"
                   f" · {source['description']}")  # fmt: skip
        heads = make_head_change_grid(ranking, metric, entry.examples)
        heads["layout"]["shapes"] = outline(clicked)
        return (
            heads,
            make_layer_change(layers, metric),
            make_corpus_head_map(mapped, stress, count),
            summary,
            "",
        )

    @app.callback(
        Output("corpus-grid", "children"),
        Output("corpus-selected-head", "children"),
        Input("corpus-select", "value"),
        Input("corpus-examples-kind", "value"),
        Input("corpus-heads", "clickData"),
        State("corpus-context", "data"),
    )
    def grid(corpus, kind, clicked, context):
        try:
            entry = entry_of(context, corpus)
        except AttentionFlowsError:
            return None, ""
        picked = picked_head(clicked)
        label = (
            f"selected head: L{picked[0]} H{picked[1]}" if picked else "selected head: click a cell of the head grid"
        )
        if kind == "head" and picked is None:
            return html.Div("Click a cell of the head grid above to pick the head.", className="muted"), label
        if kind == "wrong":
            examples = _catalog(app).memo(entry, "examples", lambda: view_table(entry.path, "all"), "all")
            if examples["correct"].isna().all():
                message = "This corpus has no gold labels: run it with --label-col to see where the model is wrong."
                return html.Div(message, className="muted"), label
        view = f"head-{picked[0]}-{picked[1]}" if kind == "head" else ("wrong" if kind == "wrong" else "all")
        examples = _catalog(app).memo(entry, "examples", lambda: view_table(entry.path, "all"), "all")
        pairs, labelled = bool(examples["text_pair"].notna().any()), bool(examples["gold"].notna().any())
        return examples_grid(entry.name, view, pairs=pairs, labelled=labelled), label

    @app.callback(
        Output("corpus-heads", "figure", allow_duplicate=True),
        Input("corpus-heads", "clickData"),
        prevent_initial_call=True,
    )
    def outline_selected_head(clicked):
        """A black outline on the head picked for the example table (only the outline is sent)."""
        from dash import Patch

        if picked_head(clicked) is None:
            return no_update
        patch = Patch()
        patch["layout"]["shapes"] = outline(clicked)
        return patch

    @app.callback(
        Output("corpus-words", "children"),
        Input("corpus-select", "value"),
        Input("corpus-word-measure", "value"),
        State("corpus-context", "data"),
    )
    def words(corpus, measure, context):
        try:
            entry = entry_of(context, corpus)
            frame = _catalog(app).memo(entry, "words", lambda: word_changes(entry.path, measure), measure)
        except AttentionFlowsError as error:
            return html.Div(str(error), className="muted")
        return words_grid(frame.head(WORDS_SHOWN), measure)

    @app.callback(
        Output("corpus-word-graph", "figure"),
        Input("corpus-word-button", "n_clicks"),
        Input("corpus-word", "value"),
        Input("corpus-select", "value"),
        State("corpus-context", "data"),
    )
    def query_word(_clicks, word, corpus, context):
        if not (word or "").strip():
            return empty_figure(
                "Type a word and press Enter: which heads attend to it from [CLS], and how that changed."
            )
        try:
            entry = entry_of(context, corpus)
            frame = _catalog(app).memo(entry, "word", lambda: word_query(entry.path, word), word.strip().lower())
        except AttentionFlowsError as error:
            return empty_figure(str(error))
        return make_word_difference(frame, word.strip())

    @app.callback(
        Output({"type": "corpus-examples", "corpus": MATCH, "view": MATCH}, "getRowsResponse"),
        Input({"type": "corpus-examples", "corpus": MATCH, "view": MATCH}, "getRowsRequest"),
        State("corpus-context", "data"),
        State({"type": "corpus-examples", "corpus": MATCH, "view": MATCH}, "id"),
        prevent_initial_call=True,
    )
    def rows(request, context, grid_id):
        if not request:
            return no_update
        entry = entry_of(context, grid_id["corpus"])
        view = grid_id["view"]
        table = _catalog(app).memo(entry, "examples", lambda: view_table(entry.path, view), view)
        return example_rows(table, request, models=context["models"], options=context["options"],
                            default_models=default_models)  # fmt: skip

    # a click on 'open ↗' opens the example's single-example page in a new tab (a plain value, never HTML: texts
    # are user data)
    app.clientside_callback(
        """function(clicked) {
            const url = clicked && clicked.colId === 'open' ? clicked.value : null;
            if (typeof url === 'string' && url.startsWith('/?')) { window.open(url, '_blank', 'noopener'); }
            return window.dash_clientside.no_update;
        }""",
        Output({"type": "corpus-examples", "corpus": MATCH, "view": MATCH}, "className"),
        Input({"type": "corpus-examples", "corpus": MATCH, "view": MATCH}, "cellClicked"),
        prevent_initial_call=True,
    )

    app.clientside_callback(
        """function(corpus, search) {
            const params = new URLSearchParams(search || '');
            if (!corpus || params.get('corpus') === corpus) { return window.dash_clientside.no_update; }
            params.set('corpus', corpus);
            return '?' + params.toString();
        }""",
        Output("corpus-url", "search"),
        Input("corpus-select", "value"),
        State("corpus-url", "search"),
    )
