"""``attention-flows corpus run | query``: corpus analysis from the command line (docs/corpus.md)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.arguments import whole
from attention.errors import AttentionFlowsError

if TYPE_CHECKING:
    from attention.corpus.executors import ChunkExecutor

# Lazy imports (attention, app.team): the engine (pydantic, pandas, pyarrow; torch as models load) and the Celery
# executor load inside the commands, after the command line has checked its flags.

QUERIES = ("heads", "layers", "word", "words", "examples", "sql", "skipped", "labels")
NO_ARGUMENT = {  # questions that take no argument, and the fix when one is given
    "heads": "Choose the measure with --metric (js_divergence, cosine, tv_distance, contribution_share).",
    "layers": "Choose the measure with --metric (js_divergence, cosine, tv_distance, contribution_share).",
    "words": "Choose the measure with --measure (rollout, cls_attention, relevance, mixing_rollout).",
    "skipped": "Drop it: the question lists every skipped row.",
    "labels": "Drop it: the question lists every label.",
}
LISTED = 5  # rows skipped, or labels that name no class, listed before a run


def add_parser(commands) -> None:
    """The ``corpus`` command and its ``run`` / ``query`` subcommands."""
    corpus = commands.add_parser("corpus", help="analyse a whole dataset: run both models over it, then query")
    actions = corpus.add_subparsers(dest="action", required=True)

    run = actions.add_parser("run", help="compute a corpus (resumable: rerun the same command to go on)")
    run.add_argument(
        "--config", default="default", help="pair config: a file name under configs/, its pair's name, or a .toml path"
    )
    run.add_argument("--data", type=Path, help=".csv, .jsonl or .parquet (default: the pair's held-out sentences)")
    run.add_argument("--text-col", default="text", help="column with the text (default: text)")
    run.add_argument("--pair-col", help="column with the second text of a sentence pair")
    run.add_argument("--label-col", help="column with the gold label (a class name or index)")
    run.add_argument(
        "--out", type=Path, help="folder of the corpus (default: <corpora>/<pair>-<data>, where the page looks)"
    )
    run.add_argument("--limit", type=whole("limit", 1), help="only the first N rows")
    run.add_argument("--batch-size", type=whole("batch-size", 1, 256), default=16, help="inputs per forward pass")
    run.add_argument("--chunk-size", type=whole("chunk-size", 1, 100_000), default=256, help="rows per chunk file")
    run.add_argument(
        "--workers", type=whole("workers", 0, 64), default=0, help="processes in parallel (default 0: this one)"
    )
    run.add_argument("--broker", help="send the chunks to the team server's Celery workers (redis://…) instead")

    query = actions.add_parser("query", help="ask a computed corpus a question (prints a table)")
    query.add_argument("folder", type=Path, help="the corpus folder (--out of corpus run)")
    query.add_argument("question", choices=QUERIES, help="what to ask")
    query.add_argument("argument", nargs="?", help="the word (word), the kind (examples) or the SQL (sql); no other")
    query.add_argument(
        "--metric",
        default="js_divergence",
        help="heads / layers: js_divergence, cosine, tv_distance, contribution_share",
    )
    query.add_argument(
        "--measure", default="rollout", help="words: rollout, cls_attention, relevance or mixing_rollout"
    )
    query.add_argument("--min-count", type=whole("min-count", 1), default=5, help="words: fewest occurrences")
    query.add_argument("--layer", type=whole("layer", 1), help="examples head: the head's layer (1-based)")
    query.add_argument("--head", type=whole("head", 0), help="examples head: the head (0-based)")
    query.add_argument("--top", type=whole("top", 1), default=20, help="rows to print (default 20)")
    query.add_argument("--csv", type=Path, help="write the whole answer as CSV")


def default_folder(pair_name: str, data: Path | None) -> Path:
    from attention.settings import load_settings  # lazy: pydantic

    what = "held-out" if data is None else re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem)
    return load_settings().corpora_dir / f"{pair_name}-{what}"


def check_corpus_folder(folder: Path) -> Path:
    """Refuse an output folder a run could not use, before the models load: a file, a folder with other things in
    it than a corpus, or a place that cannot be written (probed with a file, as exports are)."""
    from attention.corpus.source import CorpusError  # lazy: pandas, pyarrow
    from attention.corpus.store import MANIFEST

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CorpusError(f"--out {folder} is a file, not a folder.", "Give a folder for the corpus tables.")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise CorpusError(
            f"--out {folder} already holds files that are not a corpus.", "Give an empty or a new folder."
        )
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        handle, probe = tempfile.mkstemp(prefix=".probe.", dir=existing)
    except OSError as error:
        problem = f"{existing} is not writable ({error.strerror})."
        raise CorpusError(problem, "Choose a folder you can write to.") from None
    os.close(handle)
    os.unlink(probe)
    return folder


def run(args: argparse.Namespace) -> int:
    """``corpus run`` or ``corpus query``."""
    return _run_corpus(args) if args.action == "run" else _query(args)


def _run_corpus(args) -> int:
    from attention import load_pair  # lazy: the engine (pandas, pyarrow; torch as the models load)
    from attention.corpus import corpus_source, run_corpus
    from attention.corpus.source import load_pair_config
    from attention.settings import configure_torch, load_settings

    config = load_pair_config(args.config)
    source = corpus_source(
        args.data, config=config, text_col=args.text_col, pair_col=args.pair_col, label_col=args.label_col,
        limit=args.limit,
    )  # fmt: skip
    folder = check_corpus_folder(args.out or default_folder(config.name, args.data))
    settings = load_settings()
    configure_torch(settings)
    pair = load_pair(config, settings=settings)
    print(f"corpus of {len(source.frame)} rows from {source.description} -> {folder}", file=sys.stderr)
    _warn_refused(source.frame, pair.finetuned.labels, folder)
    try:
        summary = run_corpus(
            pair, source, folder, chunk_size=args.chunk_size, batch_size=args.batch_size, workers=args.workers,
            settings=settings, executor=_executor(args.broker),
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: the chunks written so far are kept; rerun the same command to go on ({folder})",
              file=sys.stderr)  # fmt: skip
        return 130
    for index in summary.recomputed:
        print(f"chunk {index} failed its check (missing or changed file): computed again", file=sys.stderr)
    why = f": corpus query {folder} skipped says why" if summary.skipped else ""
    print(
        f"done: {summary.examples} examples ({summary.skipped} skipped{why}), "
        f"{summary.computed} chunks computed, {summary.reused} already done, in {summary.seconds:.1f} s"
    )
    print(f"ask it: attention-flows corpus query {folder} heads")
    return 0


def _executor(broker: str | None) -> ChunkExecutor | None:
    """How the run's chunks are computed: with ``--broker``, on the team server's Celery workers
    (:class:`app.team.corpus_tasks.CeleryExecutor`, queue :data:`app.service.jobbook.QUEUE`); else None, the
    engine's own (this process, or ``--workers`` processes)."""
    if not broker:
        return None
    from app.team.corpus_tasks import CeleryExecutor  # lazy: dash and celery, only with --broker

    return CeleryExecutor(broker)


def _warn_refused(frame, labels: tuple[str, ...], folder: Path) -> None:
    """Warn, before any work, of the rows that will be skipped rather than converted (cells that are not text) and
    of the labels that name no class (those rows run without a gold label), the first few of each."""
    from attention.corpus.source import refused_rows  # lazy: pandas, pyarrow
    from attention.corpus.tables import unknown_labels

    refused = refused_rows(frame)
    if not refused.empty:
        print(f"warning: {len(refused)} of {len(frame)} rows will be skipped, not converted:", file=sys.stderr)
        for row in refused.head(LISTED).itertuples(index=False):
            print(f"  row {row.example_id}: {row.reason}", file=sys.stderr)
        if len(refused) > LISTED:
            print(f"  … and {len(refused) - LISTED} more: corpus query {folder} skipped", file=sys.stderr)
    unknown = unknown_labels(frame[~frame["example_id"].isin(refused["example_id"])], labels)
    if not unknown.empty:
        classes = f"classes: {', '.join(labels)}; or an index 0–{len(labels) - 1}"
        print(f"warning: {len(unknown)} of {len(frame)} rows have a label that names no class of the fine-tuned model "
              f"({classes}); they run without a gold label:", file=sys.stderr)  # fmt: skip
        rows = unknown.groupby("label", sort=False)["example_id"].agg(list)
        for label, ids in rows.head(LISTED).items():
            listed = ", ".join(map(str, ids[:LISTED])) + (", …" if len(ids) > LISTED else "")
            print(f"  {label!r}: {len(ids)} row{'s' if len(ids) > 1 else ''} ({listed})", file=sys.stderr)
        if len(rows) > LISTED:
            print(f"  … and {len(rows) - LISTED} more labels: corpus query {folder} labels", file=sys.stderr)


def _query(args) -> int:
    import pandas as pd  # lazy: pandas, pyarrow

    from attention.corpus import find_examples, head_ranking, layer_change, sql, word_changes, word_query
    from attention.corpus.query import label_counts, skipped_rows

    question, argument = args.question, args.argument
    if question in ("word", "sql") and not argument:
        raise AttentionFlowsError(f"'{question}' needs an argument.", f"e.g. corpus query DIR {question} "
                                  + ("film" if question == "word" else "'select count(*) from examples'"))  # fmt: skip
    if question in NO_ARGUMENT and argument is not None:
        raise AttentionFlowsError(f"'{question}' takes no argument (got {argument!r}).", NO_ARGUMENT[question])
    if question == "skipped":
        answer = skipped_rows(args.folder)
    elif question == "labels":
        answer = label_counts(args.folder)
    elif question == "heads":
        answer = head_ranking(args.folder, args.metric)
    elif question == "layers":
        answer = layer_change(args.folder, args.metric)
    elif question == "word":
        answer = word_query(args.folder, argument)
    elif question == "words":
        answer = word_changes(args.folder, args.measure, min_count=args.min_count)
    elif question == "examples":
        answer = find_examples(args.folder, argument or "most_changed", layer=args.layer, head=args.head, top=args.top)
    else:
        answer = sql(args.folder, argument)
    if args.csv is not None:
        answer.to_csv(args.csv, index=False)
    if question in ("skipped", "labels") and answer.empty:
        print("nothing skipped: every row of the data was run" if question == "skipped" else "no labels")
        return 0
    shown = answer.drop(columns=[c for c in answer.columns if c.startswith("probabilities_")], errors="ignore")
    if question == "examples":  # the text last and cut, so a row fits a terminal line
        columns = ["example_id", "score", "gold", "predicted_finetuned", "mean_change", "n_tokens"]
        shown = shown[columns].assign(text=[t if len(t) <= 70 else t[:69] + "…" for t in answer["text"]])
    cut = 200 if question == "skipped" else 60  # a reason is a sentence: shown whole
    with pd.option_context("display.max_columns", 20, "display.width", 160, "display.max_colwidth", cut):
        print(shown.head(args.top).to_string(index=False))
    if len(answer) > args.top:
        print(f"({len(answer)} rows; --top N shows more, --csv FILE writes all)")
    return 0
