"""A corpus on disk: ``manifest.json`` and one Parquet file per table and chunk (``<table>/chunk-00007.parquet``).

A chunk counts as done only once the manifest records it, with each file's row count and sha256; files are
written under a temporary name and renamed, and the manifest is replaced atomically, so an interrupted run
loses at most the chunks in flight and a rerun never duplicates a row. A recorded chunk whose file is missing
or does not match its checksum is recomputed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attention.corpus.mixing import MIXING
from attention.corpus.schema import SCHEMAS
from attention.corpus.source import CorpusError
from attention.corpus.tables import TABLES, ChunkTables
from attention.files import file_sha256

MANIFEST = "manifest.json"
FORMAT = 2  # bump when a table's schema or meaning changes: older corpora are then refused, not misread
# 2: per-head contribution shares and per-token [CLS] contribution rows, their measures in the manifest's "mixing"
IDENTITY = ("format", "code_version", "pair", "source", "chunk_size", "mixing")


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}.parquet"


def _replace_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_chunk(folder: Path, index: int, tables: ChunkTables) -> dict:
    """Write a chunk's tables (temporary name, then rename); its manifest record: rows and sha256 per table (an
    empty table writes no file)."""
    record: dict = {"rows": {}, "sha256": {}}
    for name, frame in tables.items():
        record["rows"][name] = len(frame)
        if frame.empty:
            continue
        target = folder / name / chunk_name(index)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        table = pa.Table.from_pandas(frame, schema=SCHEMAS[name], preserve_index=False)
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, target)
        record["sha256"][name] = file_sha256(target)
    return record


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path} is not valid JSON ({error}).", "Delete the folder and run again.") from error


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest`` (atomically). A new one is stamped with the measures of its mixing columns
    (``"mixing"``: :func:`attention.corpus.mixing.mixing_record`; an encoder's :data:`~attention.corpus.mixing.MIXING`
    when the caller gave none), so a query can say which measure they are."""
    manifest.setdefault("mixing", dict(MIXING))
    _replace_atomically(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())


def check_identity(folder: Path, existing: dict, wanted: dict) -> None:
    """Refuse to mix two corpora in one folder: another format, pair, code version, data, chunk size or
    context-mixing measure (``wanted`` without ``"mixing"`` means this version's, :data:`MIXING`)."""
    wanted = {"mixing": dict(MIXING), **wanted}
    for key in IDENTITY:
        if existing.get(key) != wanted.get(key):
            what = {"pair": "model pair", "source": "data", "code_version": "code version", "format": "format",
                    "mixing": "context-mixing measure"}  # fmt: skip
            raise CorpusError(
                f"{folder} holds a corpus of another {what.get(key, key.replace('_', ' '))} "
                f"({_short(existing.get(key))} there, {_short(wanted.get(key))} now).",
                "Give another --out folder, or delete this one to start over.",
            )


def _short(value) -> str:
    if isinstance(value, dict) and "mixing_rollout" in value:
        return f"rows of {value['mixing_rollout']}, shares of {value.get('contribution_share')}"
    if isinstance(value, dict):
        return str(value.get("name") or value.get("description") or value)[:80]
    return str(value)[:80]


def verify_chunks(folder: Path, manifest: dict) -> list[int]:
    """Recorded chunks whose files are missing, truncated or changed (row count, sha256): forgotten by the
    manifest (the caller recomputes them). Returns their indices."""
    bad = []
    for key, record in list(manifest["chunks"].items()):
        index = int(key)
        for name in TABLES:
            path = folder / name / chunk_name(index)
            expected = record["sha256"].get(name)
            if expected is None:
                continue
            try:
                rows = pq.read_metadata(path).num_rows if path.is_file() else -1
                ok = rows == record["rows"][name] and file_sha256(path) == expected
            except (OSError, pa.ArrowException):
                ok = False
            if not ok:
                bad.append(index)
                del manifest["chunks"][key]
                break
    return bad


def check_format(folder: Path, manifest: dict) -> None:
    """Refuse to read a corpus written in another format than this version's (:data:`FORMAT`): its tables have
    other columns or meanings, and would be misread."""
    if manifest.get("format") != FORMAT:
        raise CorpusError(
            f"{folder} holds a corpus of another format ({manifest.get('format')} there; this version reads "
            f"format {FORMAT}).",
            "Compute it again: delete the folder and rerun the corpus run command that made it.",
        )


def chunk_files(folder: Path, name: str, manifest: dict | None = None) -> list[Path]:
    """The files of table ``name`` of every recorded chunk, in chunk order (a corpus of another format is a
    :class:`CorpusError`, :func:`check_format`)."""
    manifest = manifest or read_manifest(folder)
    if manifest is None:
        raise CorpusError(f"{folder} is not a corpus (no {MANIFEST}).", "Run: attention-flows corpus run --out DIR")
    check_format(folder, manifest)
    return [
        Path(folder) / name / chunk_name(int(key))
        for key in sorted(manifest["chunks"], key=int)
        if manifest["chunks"][key]["sha256"].get(name)
    ]


def to_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame whose nulls stay None: a string or boolean column with nulls is an object column
    (pandas would read a null string back as NaN, which counts as true)."""
    frame = table.to_pandas()
    for name in table.column_names:
        column = table.column(name)
        if column.null_count and (pa.types.is_string(column.type) or pa.types.is_boolean(column.type)):
            frame[name] = pd.Series(column.to_pylist(), dtype=object, index=frame.index)
    return frame


def read_table(folder: Path, name: str, columns: list[str] | None = None, where=None) -> pd.DataFrame:
    """Table ``name`` of the corpus in ``folder`` (only ``columns`` when given; only rows matching the pyarrow
    expression ``where``), over every recorded chunk; nulls are None (:func:`to_frame`)."""
    if name not in SCHEMAS:
        raise CorpusError(f"A corpus has no table '{name}'.", f"Tables: {', '.join(SCHEMAS)}.")
    files = chunk_files(Path(folder), name)
    schema = SCHEMAS[name]
    if not files:
        return to_frame(schema.empty_table().select(columns) if columns else schema.empty_table())
    import pyarrow.dataset as ds  # heavy: pyarrow's dataset library loads on first use

    try:
        dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
        return to_frame(dataset.to_table(columns=columns, filter=where))
    except (OSError, pa.ArrowException) as error:  # a file changed or truncated since it was recorded
        raise CorpusError(
            f"A {name} file of the corpus in {folder} cannot be read ({str(error).splitlines()[0][:120]}).",
            "Rerun the same corpus run command: it checks every chunk and recomputes the damaged ones.",
        ) from error


def list_corpora(root: Path, pair_name: str | None = None) -> list[tuple[str, dict]]:
    """``(folder name, manifest)`` of every corpus directly under ``root`` (of pair ``pair_name`` when given),
    by name; unreadable manifests are left out."""
    found = []
    for folder in sorted(Path(root).glob("*/")) if Path(root).is_dir() else []:
        try:
            manifest = read_manifest(folder)
        except CorpusError:
            continue
        if manifest is not None and (pair_name is None or manifest.get("pair", {}).get("name") == pair_name):
            found.append((folder.name, manifest))
    return found
