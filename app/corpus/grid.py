"""The corpus page's example table, on the server: the checks of every request the grid sends (its
``getRowsRequest``, its id, the page's context: all from the browser) and the block of examples each asks for,
filtered, sorted and sliced here (:func:`grid_rows`). A malformed request is a :class:`GridRequestError` saying
which part."""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd

from app.corpus.catalog import CorpusCatalog, CorpusEntry
from attention.corpus.store import read_table
from attention.errors import AttentionFlowsError

PAGE_ROWS = 100  # rows per block the grid asks for
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
    columns = ["example_id", "text", "text_pair", "gold", "predicted_finetuned", "probabilities_finetuned",
               "mean_change", "n_tokens"]  # fmt: skip
    table = read_table(folder, "examples", [*columns, "correct_finetuned"])
    table["confidence"] = [max(p) if p is not None and len(p) else None for p in table.pop("probabilities_finetuned")]
    table["correct"] = table.pop("correct_finetuned").map({True: "yes", False: "no"})
    return table


def view_table(folder: Path, view: str) -> pd.DataFrame:
    """The examples of ``view``: ``all``, ``wrong`` (the fine-tuned model's class is not the gold label) or
    ``head-L-H`` (every example with that head's change, largest first)."""
    table = _examples_table(folder)
    if view == "wrong":
        return table[table["correct"] == "no"]
    if view.startswith("head-"):
        import pyarrow.dataset as ds  # heavy: pyarrow's dataset library loads on first use

        layer, head = (int(part) for part in view.split("-")[1:])
        where = (ds.field("layer") == layer) & (ds.field("head") == head)
        change = read_table(folder, "heads", ["example_id", "js_divergence"], where=where)
        table = table.merge(change.rename(columns={"js_divergence": "head_change"}), on="example_id")
        return table.sort_values("head_change", ascending=False, kind="stable", ignore_index=True)
    return table
