"""``attention-flows bench WHICH``: a thin entry into ``benchmarks/`` (a source checkout's; not in the wheel)."""

from __future__ import annotations

# Lazy imports (benchmarks): not shipped in the wheel (checked before importing it); loads the app and torch.
import argparse
import importlib.util

from attention.errors import AttentionFlowsError

ENGINE = ("flow", "rollout", "extract", "compare", "changes", "load", "graph", "relevance", "faithfulness", "seeds",
          "mixing")  # fmt: skip
DASHBOARD = ("dashboard", "export", "memory")
CHOICES = (*ENGINE, *DASHBOARD, "team", "corpus", "corpus-memory", "decoder", "engine")


def add_parser(commands) -> None:
    """The ``bench`` command."""
    bench = commands.add_parser("bench", help="run a benchmark and print figures against their targets")
    bench.add_argument("which", choices=CHOICES)
    bench.add_argument(
        "--pair", default="smollm-sentiment", help="bench decoder only: the decoder pair (default: smollm-sentiment)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark ``args.which`` from ``benchmarks/``; exit status 2 where there is none (a wheel install)."""
    if importlib.util.find_spec("benchmarks") is None:
        raise AttentionFlowsError(
            "The benchmarks run from a source checkout; this installation has none.",
            "Clone the repository (git clone …), then run: make bench",
        )
    # Imported here, not at the top: benchmarks/ is not shipped in the wheel, and imports the app and torch.
    if args.which == "team":
        from benchmarks.team_load import bench_team_at_work

        bench_team_at_work()
    elif args.which == "corpus":
        from benchmarks.corpus import bench_corpus

        bench_corpus()
    elif args.which == "decoder":
        from benchmarks.decoder import bench_decoder

        bench_decoder(pair=args.pair)
    elif args.which == "corpus-memory":
        from benchmarks.corpus import bench_corpus_memory

        bench_corpus_memory()
    elif args.which in DASHBOARD:
        from benchmarks.dashboard import main

        main([args.which])
    else:
        from benchmarks.engine import main

        main(["all" if args.which == "engine" else args.which])
    return 0
