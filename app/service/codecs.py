"""Bytes for the shared caches (:mod:`app.service.stores`): runs, class relevance, tidy frames, graph comparisons
and the faithfulness check's costly part. No pickle: what comes back from Redis or disk is only ever parsed as data,
and floats come back bit-identical."""

from __future__ import annotations

import json
import struct
from dataclasses import fields

import numpy as np
import pandas as pd

from attention import AttentionRun, ClassRelevance, GraphComparison, PairRuns
from attention.extraction import FACT_FIELDS, TokenFacts

FORMAT = b"AFR3"  # magic + version of the encoding below (in every key: old entries are never read)


def encode_arrays(header: object, arrays: dict[str, np.ndarray]) -> bytes:
    """``header`` (anything JSON can hold) and named arrays as bytes: magic, a JSON part (the header and each
    array's dtype and shape), then the arrays' raw bytes in C order. No pickle: what comes back from Redis is only
    ever parsed as data, and floats come back bit-identical."""
    layout = [[name, array.dtype.str, list(array.shape)] for name, array in arrays.items()]
    head = json.dumps({"header": header, "arrays": layout}, separators=(",", ":")).encode()
    blobs = b"".join(np.ascontiguousarray(array).tobytes() for array in arrays.values())
    return FORMAT + struct.pack("<I", len(head)) + head + blobs


def decode_arrays(data: bytes) -> tuple[object, dict[str, np.ndarray]]:
    """The inverse of :func:`encode_arrays` (arrays read-only, sharing ``data``); ValueError for anything else."""
    if data[:4] != FORMAT:
        raise ValueError("not data this cache wrote")
    (length,) = struct.unpack("<I", data[4:8])
    meta = json.loads(data[8 : 8 + length])
    offset, arrays = 8 + length, {}
    for name, dtype, shape in meta["arrays"]:
        count = int(np.prod(shape))
        array = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
        offset += array.nbytes
        arrays[name] = array
    if offset != len(data):
        raise ValueError("trailing bytes after the arrays")
    return meta["header"], arrays


def _facts(record: object, skip: tuple[str, ...]) -> dict:
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in skip}


def _tuples(facts: dict) -> dict:
    return {name: tuple(value) if isinstance(value, list) else value for name, value in facts.items()}


def encode_runs(runs: PairRuns) -> bytes:
    """Both models' runs: their facts and float32 weights ``[layer, head, query, key]``."""
    header = [_facts(run, ("weights", "facts")) | _facts(run.facts, ()) for run in (runs.pretrained, runs.finetuned)]
    return encode_arrays(header, {"pretrained": runs.pretrained.weights, "finetuned": runs.finetuned.weights})


def decode_runs(data: bytes) -> PairRuns:
    header, arrays = decode_arrays(data)
    runs = []
    for values, role in zip(header, ("pretrained", "finetuned"), strict=True):
        values = _tuples(values)
        facts = TokenFacts(**{name: values.pop(name) for name in FACT_FIELDS})
        runs.append(AttentionRun(weights=arrays[role], facts=facts, **values))
    return PairRuns(*runs)


def encode_relevance(explained: ClassRelevance) -> bytes:
    """One model's class relevance: its facts, ``scores [layer, token]`` and ``input_x_gradient [token]``."""
    arrays = {"scores": explained.scores, "input_x_gradient": explained.input_x_gradient}
    return encode_arrays(_facts(explained, tuple(arrays)), arrays)


def decode_relevance(data: bytes) -> ClassRelevance:
    header, arrays = decode_arrays(data)
    return ClassRelevance(**_tuples(header), **arrays)


def encode_frames(frames: dict[str, pd.DataFrame]) -> bytes:
    """Named DataFrames with a RangeIndex: numeric and bool columns as raw arrays, categorical ones as codes plus
    their categories, strings (and tuples of numbers) in the JSON header; dtypes are kept so a decoded frame equals
    the original exactly (``pandas.testing.assert_frame_equal``)."""
    header: dict = {}
    arrays: dict[str, np.ndarray] = {}
    for name, frame in frames.items():
        if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
            raise ValueError(f"frame {name} has no plain RangeIndex")
        columns = []
        for number, (column, series) in enumerate(frame.items()):
            key = f"{name}/{number}"
            if isinstance(series.dtype, pd.CategoricalDtype):
                categories = series.dtype.categories
                columns.append([column, "category", categories.tolist(), str(categories.dtype), series.dtype.ordered])
                arrays[key] = series.cat.codes.to_numpy()
            elif series.dtype == object:
                values = series.tolist()  # one pass to Python objects, read twice below
                if all(isinstance(v, tuple) or _is_nan(v) for v in values):
                    columns.append([column, "tuples", [list(v) if isinstance(v, tuple) else None for v in values]])
                else:
                    columns.append([column, "object", values])
            elif pd.api.types.is_string_dtype(series.dtype):
                columns.append([column, "string", series.tolist(), str(series.dtype)])
            else:
                columns.append([column, "array"])
                arrays[key] = series.to_numpy()
        header[name] = {"rows": len(frame), "columns": columns}
    return encode_arrays(header, arrays)


def _is_nan(value) -> bool:
    return isinstance(value, float) and value != value


def decode_frames(data: bytes) -> dict[str, pd.DataFrame]:
    """The inverse of :func:`encode_frames`."""
    header, arrays = decode_arrays(data)
    frames = {}
    for name, meta in header.items():
        columns = {}
        for number, (column, kind, *rest) in enumerate(meta["columns"]):
            key = f"{name}/{number}"
            if kind == "category":
                categories, categories_dtype, ordered = rest
                dtype = pd.CategoricalDtype(pd.Index(categories, dtype=categories_dtype), ordered=ordered)
                columns[column] = pd.Categorical.from_codes(arrays[key], dtype=dtype)
            elif kind == "tuples":  # tuples of numbers, NaN where a row has none
                columns[column] = pd.Series([np.nan if v is None else tuple(v) for v in rest[0]], dtype=object)
            elif kind == "object":
                columns[column] = pd.Series(rest[0], dtype=object)
            elif kind == "string":
                columns[column] = pd.Series(rest[0], dtype=rest[1])
            else:
                columns[column] = arrays[key]
        frames[name] = pd.DataFrame(columns, index=pd.RangeIndex(meta["rows"]))
    return frames


def encode_graphs(graphs: GraphComparison) -> bytes:
    """A graph comparison (three tidy frames) for the shared cache."""
    return encode_frames({"edges": graphs.edges, "nodes": graphs.nodes, "layers": graphs.layers})


def decode_graphs(data: bytes) -> GraphComparison:
    return GraphComparison(**decode_frames(data))


def encode_faithfulness(fixed: tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]) -> bytes:
    """The faithfulness check's costly part (rows, references ``{name: [word]}``, ``words`` mask) as bytes."""
    rows, references, words = fixed
    header = {"measure": rows["measure"].tolist(), "method": rows["method"].tolist(),
              "reference": rows["reference"].tolist(), "index": rows.index.tolist()}  # fmt: skip
    arrays = {"layer": rows["layer"].to_numpy(), "spearman": rows["spearman"].to_numpy(), "words": np.asarray(words),
              **{f"reference:{name}": np.asarray(values) for name, values in references.items()}}  # fmt: skip
    return encode_arrays(header, arrays)


def decode_faithfulness(data: bytes) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
    header, arrays = decode_arrays(data)
    rows = pd.DataFrame(
        {"measure": header["measure"], "method": header["method"], "layer": arrays["layer"],
         "reference": header["reference"], "spearman": arrays["spearman"]},
        index=header["index"],
    )  # fmt: skip
    references = {name.split(":", 1)[1]: values for name, values in arrays.items() if name.startswith("reference:")}
    return rows, references, arrays["words"]
