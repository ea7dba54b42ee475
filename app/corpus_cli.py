"""``attention-flows corpus run | query``: corpus analysis from the command line (docs/corpus.md)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

QUERIES = ("heads", "layers", "word", "words", "examples", "sql")


def add_corpus_parser(commands, whole) -> None:
    """The ``corpus`` command and its ``run`` / ``query`` subcommands (``whole``: the CLI's integer checker)."""
    corpus = commands.add_parser("corpus", help="analyse a whole dataset: run both models over it, then query")
    actions = corpus.add_subparsers(dest="action", required=True)

    run = actions.add_parser("run", help="compute a corpus (resumable: rerun the same command to go on)")
    run.add_argument("--config", default="default", help="pair config: a name under configs/ or a .toml path")
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
    query.add_argument("argument", nargs="?", help="the word (word), the kind (examples) or the SQL (sql)")
    query.add_argument("--metric", default="js_divergence", help="heads / layers: js_divergence, cosine, tv_distance")
    query.add_argument("--measure", default="rollout", help="words: rollout, cls_attention or relevance")
    query.add_argument("--min-count", type=whole("min-count", 1), default=5, help="words: fewest occurrences")
    query.add_argument("--layer", type=whole("layer", 1), help="examples head: the head's layer (1-based)")
    query.add_argument("--head", type=whole("head", 0), help="examples head: the head (0-based)")
    query.add_argument("--top", type=whole("top", 1), default=20, help="rows to print (default 20)")
    query.add_argument("--csv", type=Path, help="write the whole answer as CSV")


def default_folder(pair_name: str, data: Path | None) -> Path:
    from attention.settings import load_settings

    what = "held-out" if data is None else re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(data).stem)
    return load_settings().corpora_dir / f"{pair_name}-{what}"


def cmd_corpus(args: argparse.Namespace) -> int:
    return _run(args) if args.action == "run" else _query(args)


def _run(args) -> int:
    from app.jobs import QUEUE
    from attention import load_config, load_pair
    from attention.corpus import corpus_source, run_corpus
    from attention.settings import configure_torch, load_settings

    config = load_config(args.config)
    source = corpus_source(
        args.data, config=config, text_col=args.text_col, pair_col=args.pair_col, label_col=args.label_col,
        limit=args.limit,
    )  # fmt: skip
    folder = args.out or default_folder(config.name, args.data)
    settings = load_settings()
    configure_torch(settings)
    pair = load_pair(config, settings=settings)
    print(f"corpus of {len(source.frame)} rows from {source.description} -> {folder}", file=sys.stderr)
    try:
        summary = run_corpus(
            pair, source, folder, chunk_size=args.chunk_size, batch_size=args.batch_size, workers=args.workers,
            settings=settings, celery=(args.broker, QUEUE) if args.broker else None,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: the chunks written so far are kept; rerun the same command to go on ({folder})",
              file=sys.stderr)  # fmt: skip
        return 130
    for index in summary.recomputed:
        print(f"chunk {index} failed its check (missing or changed file): computed again", file=sys.stderr)
    print(
        f"done: {summary.examples} examples ({summary.skipped} skipped: see the 'skipped' table), "
        f"{summary.computed} chunks computed, {summary.reused} already done, in {summary.seconds:.1f} s"
    )
    print(f"ask it: attention-flows corpus query {folder} heads")
    return 0


def _query(args) -> int:
    import pandas as pd

    from attention.corpus import find_examples, head_ranking, layer_change, sql, word_changes, word_query
    from attention.errors import AttentionFlowsError

    question, argument = args.question, args.argument
    if question in ("word", "sql") and not argument:
        raise AttentionFlowsError(f"'{question}' needs an argument.", f"e.g. corpus query DIR {question} "
                                  + ("film" if question == "word" else "'select count(*) from examples'"))  # fmt: skip
    if question == "heads":
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
    shown = answer.drop(columns=[c for c in answer.columns if c.startswith("probabilities_")], errors="ignore")
    if question == "examples":  # the text last and cut, so a row fits a terminal line
        columns = ["example_id", "score", "gold", "predicted_finetuned", "mean_change", "n_tokens"]
        shown = shown[columns].assign(text=[t if len(t) <= 70 else t[:69] + "…" for t in answer["text"]])
    with pd.option_context("display.max_columns", 20, "display.width", 160, "display.max_colwidth", 60):
        print(shown.head(args.top).to_string(index=False))
    if len(answer) > args.top:
        print(f"({len(answer)} rows; --top N shows more, --csv FILE writes all)")
    return 0
