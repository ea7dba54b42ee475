"""Read a corpus's inputs: a data file (.csv, .jsonl, .parquet) or a pair's held-out sentences, as one frame
``example_id, text, text_pair, label`` (``example_id`` = the row's position in the file, 0-based)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attention.config import PairConfig
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
    """The whole file as a frame; a missing file or an unknown format is a :class:`CorpusError`."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"The data file {path} does not exist.", "Check --data (a .csv, .jsonl or .parquet file).")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path} could not be read as {suffix[1:]}: {error}", "Check the file's format.") from error
    raise CorpusError(f"{path} is a {suffix or 'file without suffix'}.", f"Use one of {', '.join(FORMATS)}.")


def select_columns(
    frame: pd.DataFrame,
    *,
    text_col: str,
    pair_col: str | None = None,
    label_col: str | None = None,
    limit: int | None = None,
    where: str = "the data",
) -> pd.DataFrame:
    """``example_id, text, text_pair, label`` from ``frame``'s named columns (``limit`` first rows). A missing
    column is a :class:`CorpusError` listing the columns that exist."""
    for flag, column in (("--text-col", text_col), ("--pair-col", pair_col), ("--label-col", label_col)):
        if column is not None and column not in frame.columns:
            existing = ", ".join(map(str, frame.columns))
            raise CorpusError(f"{where} has no column '{column}' ({flag}).", f"Its columns are: {existing}.")
    if limit is not None:
        frame = frame.iloc[:limit]

    def text(column: str | None) -> pd.Series:
        if column is None:
            return pd.Series([None] * len(frame), dtype=object)
        values = frame[column].astype(object)
        return values.where(values.notna(), None).map(lambda v: None if v is None else str(v)).reset_index(drop=True)

    return pd.DataFrame(
        {
            "example_id": range(len(frame)),
            "text": text(text_col).fillna(""),
            "text_pair": text(pair_col),
            "label": text(label_col),
        }
    )


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the selected rows (text, pair, label), in order."""
    digest = hashlib.sha256()
    for row in frame[["text", "text_pair", "label"]].itertuples(index=False):
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


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
    trained on) with their gold labels."""
    if data is None:
        from attention.data import load_labelled, split_labelled

        if config.prepare is None:
            raise CorpusError(
                f"Pair '{config.name}' has no [prepare] recipe, so it has no held-out sentences.",
                "Give a data file with --data and --text-col.",
            )
        held_out = split_labelled(load_labelled(config.prepare), config.prepare).held_out
        frame = select_columns(held_out, text_col="text", label_col="label", limit=limit, where="the held-out set")
        description = f"held-out sentences of pair '{config.name}' ({config.prepare.data_package})"
    else:
        frame = select_columns(
            read_data_file(Path(data)), text_col=text_col, pair_col=pair_col, label_col=label_col, limit=limit,
            where=str(data),
        )  # fmt: skip
        columns = [f"text: {text_col}", *([f"second sentence: {pair_col}"] if pair_col else [])]
        columns.append(f"label: {label_col}" if label_col else "no labels")
        description = f"{Path(data).resolve()} ({', '.join(columns)})"
    return CorpusSource(description=description, frame=frame, fingerprint=fingerprint(frame))
