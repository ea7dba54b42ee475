"""Read a corpus's inputs: a data file (.csv, .jsonl, .parquet) or a pair's held-out sentences, as one frame
``example_id, text, text_pair, label`` (``example_id`` = the row's position in the file, 0-based).

Values are kept exactly as given, never guessed at: a CSV is read as text (``NA``, ``null`` and ``123`` stay those
strings; an empty cell is an empty text, and no second sentence or no label in those columns), JSONL and Parquet
cells keep their JSON / Arrow values. A cell that is not what its column needs (a text that is a number, a list, an
object, a boolean or bytes) is not converted: :func:`cell_problem` names it, and the run lists the row in its
``skipped`` table with that reason. Labels may be class names or indices (a JSON or Parquet integer is read as its
digits); a label that names no class is kept, runs with no gold label, and is listed
(:func:`attention.corpus.tables.unknown_labels`, ``corpus query DIR labels``)."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attention.config import PairConfig, available_configs, load_config
from attention.data import held_out
from attention.errors import AttentionFlowsError

FORMATS = (".csv", ".jsonl", ".parquet")


class CorpusError(AttentionFlowsError):
    """A corpus run or query that cannot go on: bad data file, wrong column, a folder of another pair."""


@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus's inputs come from, and the inputs. ``fingerprint`` (sha256 of the rows read) tells a rerun
    on changed data from a resume."""

    description: str
    frame: pd.DataFrame
    fingerprint: str


def read_data_file(path: Path) -> pd.DataFrame:
    """The whole file as a frame, values as given (module docstring); a missing file, an unknown format or a file
    that is not what its suffix says is a :class:`CorpusError`."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"The data file {path} does not exist.", "Check --data (a .csv, .jsonl or .parquet file).")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".parquet":
            return pq.read_table(path).to_pandas(types_mapper=pd.ArrowDtype)  # Arrow values, converted per column
    except (ValueError, OSError, UnicodeDecodeError, pa.ArrowException) as error:
        said = " ".join(str(error).split())  # one line, whatever the reader's message
        raise CorpusError(f"{path} could not be read as {suffix[1:]}: {said}.", "Check the file's format.") from error
    raise CorpusError(f"{path} is a {suffix or 'file without suffix'}.", f"Use one of {', '.join(FORMATS)}.")


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell a string: no NA guessing, no numbers, and no first column taken for an index when a row has more
    fields than the header (pandas would shift that row's values into other columns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, index_col=False)
        except pd.errors.ParserWarning:
            raise CorpusError(
                f"A row of {path} has more fields than its header.",
                'Quote the texts that hold a comma ("a fine, moving film"), or fix the header.',
            ) from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per line (blank lines left out); anything else is a :class:`CorpusError` naming the line."""
    example = 'Write one JSON object per line, e.g. {"text": "a fine film", "label": 1}.'
    records = []
    with path.open(encoding="utf-8-sig") as handle:  # a byte-order mark is not part of line 1
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"Line {number} of {path} is not valid JSON ({error.msg}).", example) from None
            except RecursionError:
                raise CorpusError(f"Line {number} of {path} is nested too deeply to read.", example) from None
            if not isinstance(record, dict):
                raise CorpusError(f"Line {number} of {path} is {describe(record)}, not a JSON object.", example)
            records.append(record)
    columns = list(dict.fromkeys(key for record in records for key in record))
    return pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object) for c in columns}, dtype=object)


def describe(value: object) -> str:
    """What a cell holds, for a message: ``a number (123)``, ``a list ([1, 2])``, ``a boolean (true)``…"""

    def shown(text: str) -> str:
        return text if len(text) <= 40 else text[:39] + "…"

    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({shown(json.dumps(value, ensure_ascii=False))})"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({shown(repr(value))})"
    if isinstance(value, list | tuple):
        return f"a list ({shown(json.dumps(value, default=str))})"
    if isinstance(value, dict):
        return f"an object ({shown(json.dumps(value, default=str))})"
    if isinstance(value, bytes | bytearray):
        return f"binary data ({len(value)} bytes)"
    return f"a {type(value).__name__} ({shown(str(value))})"


def cell_problem(text: object, text_pair: object, label: object) -> str | None:
    """Why a row's cells cannot be run as given, or None: a missing text, a text or second sentence that is not a
    string, a label that is neither a string nor absent (:func:`select_columns` reads integer labels as strings)."""
    if text is None:
        return "The text is missing (null or no such key)."
    if not isinstance(text, str):
        return f"The text is {describe(text)}, not a string."
    if text_pair is not None and not isinstance(text_pair, str):
        return f"The second sentence is {describe(text_pair)}, not a string."
    if label is not None and not isinstance(label, str):
        return f"The label is {describe(label)}, not a class name or index."
    return None


def refused_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """``example_id, reason`` of the rows of ``rows`` (``example_id, text, text_pair, label``) that are not run as
    given (:func:`cell_problem`): a run lists them in its ``skipped`` table, never converted."""
    found = [
        {"example_id": int(row.example_id), "reason": problem}
        for row in rows.itertuples(index=False)
        if (problem := cell_problem(row.text, row.text_pair, row.label)) is not None
    ]
    return pd.DataFrame(found, columns=["example_id", "reason"])


def _python(value: object) -> object:
    """A cell as a plain Python value (numpy scalars and arrays from a pandas frame; None for pandas' missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy scalars and arrays
        return value.tolist()
    return value


def _cells(series: pd.Series) -> list:
    """A column's values as plain Python values, as the file holds them (Arrow columns through Arrow itself)."""
    if isinstance(series.dtype, pd.ArrowDtype):
        return pa.array(series).to_pylist()
    if isinstance(series.dtype, pd.StringDtype):
        return [None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v for v in series]
    return [_python(v) for v in series.astype(object)]


def _label(value: object) -> object:
    """A label cell as the run reads it: a string as given (blank: no label), an integer or a float as its digits
    (``1`` → ``"1"``; NaN, a float column's missing value: no label); anything else as is (refused per row)."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return None if math.isnan(value) else repr(value)
    return value


def _pair(value: object) -> object:
    """A second-sentence cell as the run reads it: blank is no second sentence; anything else as given."""
    return None if isinstance(value, str) and not value.strip() else value


def select_columns(
    frame: pd.DataFrame,
    *,
    text_col: str,
    pair_col: str | None = None,
    label_col: str | None = None,
    limit: int | None = None,
    where: str = "the data",
) -> pd.DataFrame:
    """``example_id, text, text_pair, label`` from ``frame``'s named columns (``limit`` first rows), values as given
    (module docstring; second sentences through :func:`_pair`, labels through :func:`_label`). A missing column is
    a :class:`CorpusError` listing the columns that exist."""
    for flag, column in (("--text-col", text_col), ("--pair-col", pair_col), ("--label-col", label_col)):
        if column is not None and column not in frame.columns:
            existing = ", ".join(map(str, frame.columns))
            raise CorpusError(f"{where} has no column '{column}' ({flag}).", f"Its columns are: {existing}.")
    if limit is not None:
        frame = frame.iloc[:limit]
    rows = len(frame)

    def column(name: str | None, read=lambda v: v) -> pd.Series:
        values = [None] * rows if name is None else [read(v) for v in _cells(frame[name])]
        return pd.Series(values, dtype=object)

    return pd.DataFrame(
        {
            "example_id": range(rows),
            "text": column(text_col),
            "text_pair": column(pair_col, _pair),
            "label": column(label_col, _label),
        }
    )


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the selected rows (text, pair, label), in order."""
    digest = hashlib.sha256()
    for row in frame[["text", "text_pair", "label"]].itertuples(index=False):
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def shipped_configs() -> dict[str, str]:
    """The pair configs under ``configs/`` by the ``name`` inside each: ``{"minilm-sentiment": "default", …}`` (a
    config that does not load is left out)."""
    found: dict[str, str] = {}
    for stem in available_configs():
        try:
            found.setdefault(load_config(stem).name, stem)
        except AttentionFlowsError:
            continue
    return found


def load_pair_config(config: str | Path) -> PairConfig:
    """A pair config by its file name under ``configs/`` (``default``), its path, or the ``name`` inside a shipped
    one (``minilm-sentiment``: the name the corpus page, the manifest and the default corpus folders show)."""
    try:
        return load_config(config)
    except AttentionFlowsError:
        stem = shipped_configs().get(str(config))
        if stem is None:
            raise
        return load_config(stem)


def corpus_source(
    data: Path | None,
    *,
    config: PairConfig,
    text_col: str = "text",
    pair_col: str | None = None,
    label_col: str | None = None,
    limit: int | None = None,
) -> CorpusSource:
    """The inputs of a corpus run: ``data``'s columns, or with no ``data`` the pair's held-out sentences (never
    trained on) with their gold labels. Data without a row is a :class:`CorpusError`."""
    if data is None:
        if config.prepare is None:
            raise CorpusError(
                f"Pair '{config.name}' has no [prepare] recipe, so it has no held-out sentences.",
                "Give a data file with --data and --text-col.",
            )
        held_out_rows = held_out(config.prepare)
        frame = select_columns(held_out_rows, text_col="text", label_col="label", limit=limit, where="the held-out set")
        description = f"held-out sentences of pair '{config.name}' ({config.prepare.data_package})"
    else:
        frame = select_columns(
            read_data_file(Path(data)), text_col=text_col, pair_col=pair_col, label_col=label_col, limit=limit,
            where=str(data),
        )  # fmt: skip
        if frame.empty:
            raise CorpusError(f"{data} has no rows.", "Give a data file with at least one row under its header.")
        columns = [f"text: {text_col}", *([f"second sentence: {pair_col}"] if pair_col else [])]
        columns.append(f"label: {label_col}" if label_col else "no labels")
        description = f"{Path(data).resolve()} ({', '.join(columns)})"
    return CorpusSource(description=description, frame=frame, fingerprint=fingerprint(frame))
