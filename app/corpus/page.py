"""The corpus page (``/corpus/``): what fine-tuning changed over a whole corpus, linked to single examples.

A second Dash app on the dashboard's Flask server, so sign-in, metrics and the pair list are the same. (Not Dash
pages: they render a page's content through an extra callback after load, and the single-example page renders
its URL's state in its first response.) Everything is read from a corpus folder under ``<data home>/corpora``
(``attention-flows corpus run``); the browser only ever names a pair and a corpus folder, checked against the
lists.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import dash_ag_grid as dag  # a component library: Dash refuses one first imported inside a callback
import pandas as pd
from dash import Dash, Input, Output, State, dcc, html, no_update

from app.dashboard.help import help_icon
from app.figures.corpus import make_corpus_head_map, make_head_change_grid, make_layer_change, make_word_difference
from app.figures.theme import empty_figure
from app.service.memo import ByteLRU
from attention.errors import AttentionFlowsError

CATALOG_KEY = "attention_flows_corpora"
CHANGE_METRICS = ("js_divergence", "tv_distance", "cosine", "contribution_share")  # the head grid's choices
PAGE_ROWS = 100  # rows per block the grid asks for
WORDS_SHOWN = 50  # words in the "gained most" table
TEXT_FILTERS = ["contains", "notContains", "equals", "startsWith"]
NUMBER_FILTERS = ["equals", "greaterThan", "lessThan"]
FILTER_TYPES = {"text": TEXT_FILTERS, "number": NUMBER_FILTERS}
# the example table's columns, each with its filter's kind: the grid's column definitions and the checks of the
# grid's requests both read this (every column but "open" sorts and filters)
COLUMN_FILTERS = {
    "example_id": "number", "text": "text", "text_pair": "text", "gold": "text", "predicted_finetuned": "text",
    "confidence": "number", "mean_change": "number", "correct": "text", "head_change": "number", "n_tokens": "number",
}  # fmt: skip
MAX_GRID_ROWS = 1000  # rows one grid request may ask for (the grid asks PAGE_ROWS at a time)
MAX_FILTER_CHARS = 1000  # a text filter's length
RELOAD = "Reload the page; if it happens again, tell the server's admin."


class GridRequestError(AttentionFlowsError):
    """A request of the example table (its ``getRowsRequest``, its id, the page's context) that is malformed."""


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

    def __init__(
        self,
        root: Path,
        pair_config_names: dict[str, str],
        budget: int = 256 * 2**20,
        pair_config_files: dict[str, Path] | None = None,
    ) -> None:
        from attention.corpus.source import shipped_configs

        self.root = Path(root)
        self.pair_config_names = pair_config_names
        self.pair_config_files = pair_config_files or {}
        self.cache = ByteLRU(budget)
        self.shipped = shipped_configs()  # config name -> its file name under configs/
        self.aliases = {
            stem: key
            for key, name in pair_config_names.items()
            if (stem := self.shipped.get(name)) is not None and stem not in pair_config_names
        }

    def resolve(self, models: object) -> str | None:
        """The pair a URL's ``models`` names: a pair's name, or the file name of its config under configs/
        (``default``, as ``--config`` takes it); None for anything else."""
        if not isinstance(models, str):
            return None
        return models if models in self.pair_config_names else self.aliases.get(models)

    def run_command(self, models: str) -> str:
        """A ``corpus run`` command that computes a corpus of pair ``models``: its config by file name when it is
        one of configs/ (no ``--config`` for ``default``), else by path."""
        from attention.resources import configs_dir

        path = self.pair_config_files.get(models)
        if path is not None and Path(path).parent.resolve() != configs_dir().resolve():
            config = str(path)
        else:
            config = Path(path).stem if path is not None else self.shipped.get(self.pair_config_names[models], models)
        return "attention-flows corpus run" + ("" if config == "default" else f" --config {shlex.quote(config)}")

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
    server,
    *,
    pair_config_names: dict[str, str],
    default_models: str,
    root: Path,
    assets_folder: str,
    pair_config_files: dict[str, Path] | None = None,
) -> Dash:
    """Serve the corpus page at ``/corpus/`` on the Flask ``server``. Mount it before the dashboard's own Dash app
    is made: Dash takes the last app made in a process as ``dash.get_app()``, which background jobs use.
    ``pair_config_files`` (each pair's config file, when known) lets the page's hint name a config outside
    configs/ by its path."""
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
    server.extensions[CATALOG_KEY] = CorpusCatalog(root, pair_config_names, pair_config_files=pair_config_files)
    corpus_app.layout = lambda: corpus_layout(corpus_app, default_models)
    _register(corpus_app, default_models)
    return corpus_app


def _query_of_page() -> dict[str, str]:
    from flask import has_request_context, request

    search = urlsplit(request.referrer or "").query if has_request_context() else ""
    return {key: values[0] for key, values in parse_qs(search).items()}


def corpus_layout(app: Dash, default_models: str) -> html.Div:
    """The page for the pair and corpus its URL names (``?models=NAME&corpus=FOLDER``; NAME is a pair's name or
    its config's file name); other URL parts are the single-example page's options, carried to the examples it
    links to."""
    query = _query_of_page()
    catalog = _catalog(app)
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
        message = f"Pair '{models}' has no corpus yet. Compute one with: {catalog.run_command(models)}"
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
                        ("contribution_share", "contribution share (fine-tuned − pre-trained)"),
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
                            "mixing_rollout": f"[CLS] contribution rollout ({_rollout_measure(chosen)})",
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


def _rollout_measure(entry: CorpusEntry) -> str:
    """The name of the measure of a corpus's [CLS] contribution rows, as its manifest records it."""
    from attention.defaults import MEASURE_LABELS

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


def examples_grid(corpus: str, view: str, *, pairs: bool = False, labelled: bool = True) -> html.Div:
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
    """The words whose ``measure`` grew most (a small table, sorted in the browser); the [CLS] contribution
    rollout's headers name its measure (the frame's ``measure`` column)."""
    from attention.defaults import MEASURE_LABELS

    number = {"valueFormatter": {"function": "d3.format('.4f')(params.value)"}, "width": 140}
    what = {"rollout": "[CLS] rollout", "cls_attention": "attention from [CLS]", "relevance": "class relevance"}
    if measure == "mixing_rollout":
        named = str(frame["measure"].iloc[0]) if "measure" in frame and len(frame) else None
        what[measure] = f"[CLS] {MEASURE_LABELS.get(named, 'contribution')} rollout"
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


def _condition(values: pd.Series, kind: str, column: str, condition: object) -> pd.Series:
    """Where one filter condition of the grid (``{filterType, type, filter}``) holds, checked: it comes from the
    browser."""
    if not isinstance(condition, dict) or condition.get("filterType") != kind:
        raise GridRequestError(f"The filter of column '{column}' is not a {kind} filter.", RELOAD)
    operation, value = condition.get("type"), condition.get("filter")
    if operation not in FILTER_TYPES[kind]:
        raise GridRequestError(
            f"The filter of column '{column}' asks for {operation!r}.", f"Use one of: {', '.join(FILTER_TYPES[kind])}."
        )
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GridRequestError(f"The filter of column '{column}' is {value!r}, not a number.", "Type a number.")
        numbers = pd.to_numeric(values, errors="coerce")  # a missing value (None) matches no number
        return {"equals": numbers == value, "greaterThan": numbers > value, "lessThan": numbers < value}[operation]
    if not isinstance(value, str) or len(value) > MAX_FILTER_CHARS:
        shown = f"{len(value):,} characters long" if isinstance(value, str) else f"{value!r}, not text"
        raise GridRequestError(
            f"The filter of column '{column}' is {shown}.", f"Type a text of at most {MAX_FILTER_CHARS:,} characters."
        )
    text, needle = values.fillna("").astype(str).str.lower(), value.lower()
    return {
        "contains": text.str.contains(needle, regex=False),
        "notContains": ~text.str.contains(needle, regex=False),
        "equals": text == needle,
        "startsWith": text.str.startswith(needle),
    }[operation]


def _filtered(examples: pd.DataFrame, filters: object) -> pd.DataFrame:
    """Apply the grid's filter model: per column, one condition or two joined by ``AND`` / ``OR`` (the filters the
    column offers, :data:`COLUMN_FILTERS`); anything else is a :class:`GridRequestError`."""
    if filters is None:
        return examples
    if not isinstance(filters, dict):
        raise GridRequestError("The example table's filters are not an object of columns.", RELOAD)
    for column, spec in filters.items():
        kind = COLUMN_FILTERS.get(column)
        if kind is None or column not in examples.columns:
            raise GridRequestError(f"The example table has no column {column!r} to filter.", RELOAD)
        values = examples[column]
        if isinstance(spec, dict) and "conditions" in spec:
            conditions, operator = spec.get("conditions"), spec.get("operator")
            if not isinstance(conditions, list) or not 1 <= len(conditions) <= 2 or operator not in ("AND", "OR"):
                raise GridRequestError(
                    f"The filter of column '{column}' must join one or two conditions with AND or OR.", RELOAD
                )
            masks = [_condition(values, kind, column, condition) for condition in conditions]
            keep = masks[0] if len(masks) == 1 else (masks[0] & masks[1] if operator == "AND" else masks[0] | masks[1])
        else:
            keep = _condition(values, kind, column, spec)
        examples = examples[keep]
    return examples


def _row_range(request: dict) -> tuple[int, int]:
    """``(startRow, endRow)`` of a grid request: whole numbers, ``0 ≤ start ≤ end``, at most
    :data:`MAX_GRID_ROWS` rows."""
    start, end = request.get("startRow", 0), request.get("endRow", PAGE_ROWS)
    for name, value in (("startRow", start), ("endRow", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise GridRequestError(f"The example table asked for rows with {name} {value!r}, not a whole number.",
                                   RELOAD)  # fmt: skip
    if not 0 <= start <= end:
        raise GridRequestError(f"The example table asked for rows {start} to {end}.",
                               "The first row must be from 0 and at most the last. " + RELOAD)  # fmt: skip
    if end - start > MAX_GRID_ROWS:
        raise GridRequestError(f"The example table asked for {end - start:,} rows at once; at most "
                               f"{MAX_GRID_ROWS:,} are sent.", "Scroll through the table instead.")  # fmt: skip
    return start, end


def _sort_order(sort_model: object, columns) -> list[tuple[str, bool]]:
    """``(column, ascending)`` pairs of the grid's sort model, checked."""
    if sort_model is None:
        return []
    if not isinstance(sort_model, list):
        raise GridRequestError("The example table's sort order is not a list.", RELOAD)
    order = []
    for item in sort_model:
        column = item.get("colId") if isinstance(item, dict) else None
        if column not in COLUMN_FILTERS or column not in columns:
            raise GridRequestError(f"The example table cannot be sorted by {column!r}.", "Sort by one of its columns.")
        if item.get("sort") not in ("asc", "desc"):
            raise GridRequestError(f"The sort of column '{column}' is {item.get('sort')!r}.", "Use 'asc' or 'desc'.")
        order.append((column, item["sort"] == "asc"))
    return order


def example_rows(table: pd.DataFrame, request: object, *, models: str, options: str, default_models: str) -> dict:
    """One block of the example table for the grid's ``getRowsRequest``: filtered, sorted, sliced; a malformed
    request is a :class:`GridRequestError` saying which part."""
    if not isinstance(request, dict):
        raise GridRequestError("The example table's request is not an object.", RELOAD)
    start, end = _row_range(request)
    rows = _filtered(table, request.get("filterModel"))
    for column, ascending in reversed(_sort_order(request.get("sortModel"), rows.columns)):
        rows = rows.sort_values(column, ascending=ascending, kind="stable")
    block = rows.iloc[start:end].copy()
    links = []
    for text, pair in zip(block["text"], block["text_pair"], strict=True):
        query = {"models": models} if models != default_models else {}
        query |= {"text": text} | ({"pair": pair} if isinstance(pair, str) and pair else {})
        links.append(f"/?{urlencode(query)}{'&' + options if options else ''}")
    block["open"] = links
    block = block.astype(object).where(block.notna(), None)
    return {"rowData": block.to_dict("records"), "rowCount": len(rows)}


def check_view(view: object, num_layers: int, num_heads: int) -> str:
    """``view`` of the example table when it names one of a corpus of that shape: ``all``, ``wrong`` or
    ``head-L-H`` (layer 1-based, head 0-based; returned in that spelling); else a :class:`GridRequestError`."""
    if view in ("all", "wrong"):
        return view
    match = re.fullmatch(r"head-(\d{1,4})-(\d{1,4})", view) if isinstance(view, str) else None
    if match and 1 <= int(match[1]) <= num_layers and 0 <= int(match[2]) < num_heads:
        return f"head-{int(match[1])}-{int(match[2])}"
    raise GridRequestError(
        f"The example table has no view {view!r}.",
        f"Views: all, wrong, head-L-H (layer L from 1 to {num_layers}, head H from 0 to {num_heads - 1}).",
    )


def corpus_entry(catalog: CorpusCatalog, context: object, corpus: object) -> tuple[CorpusEntry, str, str]:
    """The corpus a callback names (``corpus``, of the pair in the page's ``context`` store) with the pair and the
    page's options: ``(entry, models, options)``; anything the browser made up is an error with a message."""
    models = catalog.resolve(context.get("models")) if isinstance(context, dict) else None
    options = context.get("options", "") if isinstance(context, dict) else None
    if models is None or not isinstance(options, str):
        raise GridRequestError("The page's pair and options are missing or unknown to this server.", RELOAD)
    if not isinstance(corpus, str):
        raise GridRequestError(f"The page names no corpus ({corpus!r}).", "Pick a corpus from the list.")
    entry = catalog.check(models, corpus)
    if entry is None:
        raise AttentionFlowsError("This pair has no corpus.", f"Compute one with: {catalog.run_command(models)}")
    return entry, models, options


def grid_rows(catalog: CorpusCatalog, request: object, context: object, grid_id: object, default_models: str) -> dict:
    """The block of examples a grid (id ``{type, corpus, view}``) asks for with ``request``, every part checked
    (:func:`corpus_entry`, :func:`check_view`, :func:`example_rows`)."""
    if not isinstance(grid_id, dict):
        raise GridRequestError("The example table's id is not an object.", RELOAD)
    entry, models, options = corpus_entry(catalog, context, grid_id.get("corpus"))
    pair = entry.manifest["pair"]
    view = check_view(grid_id.get("view"), pair["num_layers"], pair["num_heads"])
    table = catalog.memo(entry, "examples", lambda: view_table(entry.path, view), view)
    return example_rows(table, request, models=models, options=options, default_models=default_models)


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
    from dash import MATCH, set_props

    from attention.corpus import head_map, head_ranking, layer_change, word_changes, word_query
    from attention.corpus.query import label_counts

    def entry_of(context: dict, corpus: str) -> CorpusEntry:
        return corpus_entry(_catalog(app), context, corpus)[0]

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
            labels = catalog.memo(entry, "labels", lambda: label_counts(entry.path))
        except AttentionFlowsError as error:
            blank = empty_figure(str(error))
            return blank, blank, blank, "", str(error)
        skipped = sum(chunk["rows"]["skipped"] for chunk in entry.manifest["chunks"].values())
        source = entry.manifest["source"]
        unknown = int(labels.loc[labels["gold"].isna(), "examples"].sum())
        summary = (f"{entry.examples:,} examples of {source['rows']:,} rows ({skipped:,} skipped: empty, too long or "
                   f"not text)"
                   + (f" · {unknown:,} with a label that names no class (no gold label)" if unknown else "")
                   + f" · {source['description']}")  # fmt: skip
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
        if kind == "head":
            try:
                check_view(f"head-{picked[0]}-{picked[1]}", entry.manifest["pair"]["num_layers"],
                           entry.manifest["pair"]["num_heads"])  # fmt: skip
            except GridRequestError as error:
                return html.Div(str(error), className="muted"), label
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
        """A block of the example table; a malformed request gets an empty block and says why in the banner."""
        if request is None:
            return no_update
        try:
            return grid_rows(_catalog(app), request, context, grid_id, default_models)
        except AttentionFlowsError as error:
            set_props("corpus-error", {"children": str(error), "className": "error-banner"})
            return {"rowData": [], "rowCount": 0}

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
