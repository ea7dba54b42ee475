"""``attention-flows corpus run | query | export``: corpus analysis from the command line (docs/corpus.md)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.arguments import number, whole
from app.cli.shutdown import exit_cleanly_on_terminate
from app.core.options import FORMATS, PRESETS, SCALE_RANGE, WIDTH_RANGE
from attention.errors import AttentionFlowsError

if TYPE_CHECKING:
    from attention.corpus.executors import ChunkExecutor

# Lazy imports (attention, app.team, app.export): the engine (pydantic, pandas, pyarrow; torch as models load), the
# Celery executor and the figure export (plotly, kaleido) load inside the commands, after the command line has
# checked its flags.

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
    """The ``corpus`` command and its ``run`` / ``query`` / ``export`` subcommands."""
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
    _add_export(actions)


def _add_export(actions) -> None:
    """``corpus export``: a figure of the corpus page as a file, from a corpus folder or a sidecar."""
    export = actions.add_parser("export", help="write a figure of the corpus page as PNG / SVG / PDF")
    export.add_argument(
        "folder", type=Path, nargs="?", help="the corpus folder (with --from-sidecar: by default the sidecar's)"
    )
    # the names are app.export.corpus_figures.CORPUS_FIGURES' (a test holds them equal): importing app.export here
    # would load plotly for every command's parser
    export.add_argument("--figure", help="which figure: heads, layers, word, head-map")
    export.add_argument(
        "--metric", help="heads / layers: js_divergence (default), cosine, tv_distance, contribution_share"
    )
    export.add_argument("--word", help="word: the word whose attention from [CLS] is drawn")
    export.add_argument("--format", dest="fmt", type=str.lower, choices=FORMATS, help="default: from --out")
    export.add_argument("--preset", choices=tuple(PRESETS), help="size: " + ", ".join(
        f"{key} ({preset.label})" for key, preset in PRESETS.items()) + "; default double")  # fmt: skip
    export.add_argument("--width", type=whole("width", *WIDTH_RANGE), help="pixels (overrides the preset)")
    export.add_argument("--height", type=whole("height", *WIDTH_RANGE), help="pixels (overrides the preset)")
    export.add_argument("--scale", type=number("scale", *SCALE_RANGE), help="PNG resolution multiplier (300 dpi)")
    export.add_argument("--out", type=Path, help="the file to write")
    export.add_argument("--out-dir", type=Path, help="or a folder: the file is named for figure, preset and format")
    export.add_argument("--sidecar", action="store_true", help="also write a JSON sidecar beside the figure")
    export.add_argument("--from-sidecar", type=Path, help="make the figure a corpus figure's JSON sidecar describes")


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
    """``corpus run``, ``corpus query`` or ``corpus export``."""
    if args.action == "export":
        with exit_cleanly_on_terminate():  # SIGTERM: exit handlers close the export browser
            return _export(args)
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


def _export(args) -> int:
    """``corpus export``: from the flags, or ``--from-sidecar``; every flag and the target checked before any
    table is read."""
    from app.core.options import ExportOptions  # lazy: with the export below
    from app.export.corpus import CorpusFigureRequest, check_corpus, corpus_file_stem, make_corpus_file
    from app.export.corpus_figures import CORPUS_FIGURES, CorpusExportError, check_figure, figure_options
    from app.export.files import check_target

    if args.from_sidecar is not None:
        return _export_from_sidecar(args)
    if args.folder is None or args.figure is None:
        raise CorpusExportError("corpus export needs a corpus folder and --figure.",
                                f"e.g. corpus export FOLDER --figure heads --out heads.pdf (figures: "
                                f"{', '.join(CORPUS_FIGURES)})")  # fmt: skip
    figure = check_figure(args.figure)
    options = figure_options(figure, metric=args.metric, word=args.word)
    fmt = _output_format(args)
    export = ExportOptions.create(fmt, preset=args.preset, width=args.width, height=args.height, scale=args.scale)
    if args.out is not None:
        _checked_format(args.out, fmt)
    manifest_folder = Path(args.folder).expanduser()
    out = args.out or args.out_dir / f"{corpus_file_stem(figure, options, manifest_folder.name, export)}.{fmt}"
    check_target(out)
    check_corpus(manifest_folder)
    request = CorpusFigureRequest(manifest_folder, figure, options, export, out)
    _print_made(make_corpus_file(request, with_sidecar=args.sidecar), args.sidecar)
    return 0


def _output_format(args) -> str:
    """The format asked: ``--format``, else ``--out``'s suffix; ``--out`` or ``--out-dir`` (with ``--format``)."""
    from app.export.corpus_figures import CorpusExportError  # lazy: with the export
    from app.export.requests import output_format

    if (args.out is None) == (args.out_dir is None):
        raise CorpusExportError("corpus export needs --out FILE or --out-dir DIR (one of them).",
                                "e.g. --out heads.pdf, or --out-dir figures --format pdf")  # fmt: skip
    if args.out_dir is not None:
        if not args.fmt:
            raise CorpusExportError("--out-dir needs --format.", "e.g. --out-dir figures --format pdf")
        return args.fmt
    return output_format(args.out, args.fmt, check=False)


def _checked_format(out: Path, fmt: str) -> None:
    from app.export.requests import output_format  # lazy: with the export

    output_format(out, fmt)  # after the size checks: a bad size is named first


def _export_from_sidecar(args) -> int:
    """``corpus export --from-sidecar F.json [FOLDER] --out FILE``: the figure the sidecar describes, from the very
    corpus it was drawn from (the sidecar's folder, or FOLDER)."""
    from app.export.corpus import CorpusFigureRequest, check_corpus, make_corpus_file
    from app.export.corpus_figures import CorpusExportError  # lazy: with the export
    from app.export.corpus_sidecar import check_same_corpus, read_corpus_sidecar
    from app.export.files import check_target
    from app.export.requests import output_format, sidecar_export
    from attention.settings import load_settings

    given = [flag for flag in ("figure", "metric", "word", "preset", "width", "height", "scale", "out_dir")
             if getattr(args, flag) is not None]  # fmt: skip
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise CorpusExportError(f"--from-sidecar takes the figure, its options and its size from the sidecar, not "
                                f"{flag}.", f"Drop {flag}, or export afresh without --from-sidecar.")  # fmt: skip
    if args.out is None:
        raise CorpusExportError("--from-sidecar needs --out.", "Give the file to write.")
    sidecar = read_corpus_sidecar(args.from_sidecar)
    export = sidecar_export(sidecar.export, output_format(args.out, args.fmt, sidecar.export.fmt))
    check_target(args.out)
    folder = Path(args.folder).expanduser() if args.folder else sidecar.folder_path(load_settings().corpora_dir)
    if not folder.is_dir():
        raise CorpusExportError(f"Folder {folder}, which the sidecar names, does not exist here.",
                                f"Pass the corpus folder: corpus export --from-sidecar {args.from_sidecar} FOLDER "
                                f"--out {args.out}")  # fmt: skip
    check_same_corpus(sidecar, folder, check_corpus(folder))
    recorded = None if args.folder else sidecar.folder
    request = CorpusFigureRequest(folder, sidecar.figure, sidecar.options, export, args.out, recorded)
    _print_made(make_corpus_file(request, with_sidecar=args.sidecar), args.sidecar)
    return 0


def _print_made(path: Path, sidecar: bool) -> None:
    print(path)
    if sidecar:
        print(path.with_suffix(".json"))
