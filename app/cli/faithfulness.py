"""``attention-flows faithfulness``: correlate each relevance method with blank-out on held-out sentences."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.arguments import add_config, number, whole
from app.core.options import ALPHA_RANGE, FORMATS, MEASURES, TAU_RANGE, check_choice
from attention.defaults import DECODER_MEASURES
from attention.errors import AttentionFlowsError


def add_parser(commands) -> None:
    """The ``faithfulness`` command."""
    faithful = commands.add_parser(
        "faithfulness", help="correlate each relevance method with blank-out on held-out sentences"
    )
    add_config(faithful)
    faithful.add_argument("--n", type=whole("n", 1), default=200, help="held-out sentences to use (default 200)")
    faithful.add_argument("--target", default="predicted", help="class to explain: a label or 'predicted'")
    faithful.add_argument("--out", type=Path, help="write the table as CSV")
    faithful.add_argument("--plot", type=Path, help="also export the plot (.png, .svg or .pdf; needs chromium)")
    faithful.add_argument("--tau", type=number("tau", *TAU_RANGE), help="the attention graph's τ")
    faithful.add_argument("--alpha", type=number("alpha", *ALPHA_RANGE), help="the attention graph's residual α")
    faithful.add_argument(
        "--measures",
        default="all",
        help="what the graph methods run over: 'all' (default) or comma-separated, from " + ", ".join(MEASURES),
    )
    faithful.add_argument("--no-decompx", action="store_true", help="leave DecompX out (it costs ~7 forward passes)")


def run(args: argparse.Namespace) -> int:
    """Check every argument, load the pair, compute the table; write it (``--out``) and the plot (``--plot``)."""
    # lazy (torch, pandas, plotly, tqdm): loaded when the command runs, so building the parser stays instant
    from tqdm import tqdm

    from app.export import check_target, export_figure, write_atomically
    from app.figures import make_faithfulness
    from attention import load_config, load_pair
    from attention.data import held_out
    from attention.evaluation import faithfulness, top_layer
    from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU
    from attention.models import pair_shape

    # Everything the run needs is checked before the models load and the minutes of work start.
    if args.out is not None and args.out.suffix.lower() != ".csv":
        raise AttentionFlowsError(f"--out {args.out} does not end in .csv.", "The table is CSV: name it *.csv.")
    if args.plot is not None and args.plot.suffix.lower() not in tuple(f".{fmt}" for fmt in FORMATS):
        raise AttentionFlowsError(f"--plot {args.plot} has no .png, .svg or .pdf suffix.", "Name the plot file.")
    for path in (args.out, args.plot):
        if path is not None:
            check_target(path)
    measures = _measures(args.measures)
    config = load_config(args.config)
    if config.prepare is None:
        raise AttentionFlowsError(f"Config '{config.name}' has no held-out data.", "Use a config with [prepare].")
    held_out_rows = held_out(config.prepare)
    if args.n > len(held_out_rows):
        raise AttentionFlowsError(
            f"Option 'n' is {args.n:,}; pair '{config.name}' has {len(held_out_rows):,} held-out sentences.",
            f"Give --n {len(held_out_rows)} or fewer.",
        )
    texts = held_out_rows["text"].tolist()[: args.n]
    if pair_shape(config).causal:  # read from config.json, before the models load
        if args.measures.strip() == "all":
            measures = DECODER_MEASURES  # the measures a decoder's blocks define (the others refuse it)
        other = [m for m in measures if m not in DECODER_MEASURES]
        if other:
            raise AttentionFlowsError(
                f"Pair '{config.name}' is a pair of decoders; the measure '{other[0]}' decomposes encoder blocks only.",
                "Use --measures " + ",".join(DECODER_MEASURES) + " (or all).",
            )
    pair = load_pair(config)
    tau = DEFAULT_TAU if args.tau is None else args.tau
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    with tqdm(total=len(texts), desc="faithfulness", unit="sentence") as bar:
        table = faithfulness(pair.finetuned, texts, target=args.target, progress=bar.update, tau=tau, alpha=alpha,
                             measures=measures, decompx=not args.no_decompx)  # fmt: skip
    if args.out is not None:
        write_atomically(args.out, table.to_csv(index=False).encode("utf-8"))
    if args.plot is not None:
        export_figure(make_faithfulness(table, model=pair.finetuned.name), args.plot)
    summary = top_layer(table).pivot(index=["measure", "method"], columns="reference", values="spearman_mean")
    print(f"{pair.finetuned.name}, {len(texts)} held-out sentences, deepest layer (Spearman, mean over sentences):")
    print(summary.round(3).to_string())
    return 0


def _measures(text: str) -> tuple[str, ...]:
    """``--measures``: 'all' (for a decoder pair: those its blocks define), or comma-separated names of
    :data:`app.core.options.MEASURES`."""
    if text.strip() == "all":
        return tuple(MEASURES)
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    for measure in chosen or ("",):
        check_choice("measures", measure, MEASURES)
    return chosen
