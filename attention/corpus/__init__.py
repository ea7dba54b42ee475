"""Corpus analysis: both models over a whole dataset, stored as tidy Parquet tables, resumable, and queried.

``run_corpus`` computes (:mod:`attention.corpus.run`), the query functions answer (:mod:`attention.corpus.query`);
the tables and their units are described in docs/corpus.md. Needs the ``corpus`` extra (pyarrow, duckdb).
"""

from attention.corpus.query import (
    find_examples,
    head_map,
    head_ranking,
    layer_change,
    sql,
    word_changes,
    word_query,
)
from attention.corpus.run import RunSummary, run_corpus
from attention.corpus.source import CorpusError, CorpusSource, corpus_source
from attention.corpus.store import read_manifest, read_table

__all__ = [
    "CorpusError",
    "CorpusSource",
    "RunSummary",
    "corpus_source",
    "find_examples",
    "head_map",
    "head_ranking",
    "layer_change",
    "read_manifest",
    "read_table",
    "run_corpus",
    "sql",
    "word_changes",
    "word_query",
]
