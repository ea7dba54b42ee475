"""``attention-flows export``: write a view as PNG / SVG / PDF, headless (one text, a batch, or a sidecar again)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.arguments import checked, hide, number, sources, whole
from app.core.options import (
    AGGREGATIONS,
    ALPHA_RANGE,
    DEFAULT_METHOD,
    FORMATS,
    HEAD_METRICS,
    HIDE_KINDS,
    LEVELS,
    MEASURES,
    METHODS,
    MODES,
    PREDICTED,
    PRESETS,
    SCALE_RANGE,
    TAU_RANGE,
    VIEWS,
    WIDTH_RANGE,
    parse_head,
    parse_numbers,
    parse_range,
)


def add_parser(commands) -> None:
    """The ``export`` command: what to draw (:func:`_add_source`), then how (:func:`_add_view_options`)."""
    export = commands.add_parser("export", help="write a view as PNG / SVG / PDF, headless")
    _add_source(export)
    _add_view_options(export)


def _add_source(export: argparse.ArgumentParser) -> None:
    """The pair, the input (one text, a batch file, or a sidecar) and the files written."""
    export.add_argument(
        "--config",
        help="pair config: a name under configs/ or a .toml path (default: 'default'; with "
        "--from-sidecar, the installed pair the sidecar names)",
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the sentence to analyse")
    source.add_argument(
        "--texts",
        type=Path,
        help="batch: a .txt file (one text per line) or a .csv with a 'text' column (and optional 'text_pair')",
    )
    source.add_argument("--from-sidecar", type=Path, help="make the figure a JSON sidecar describes")
    export.add_argument("--text-pair", help="optional second segment")
    export.add_argument("--view", choices=tuple(VIEWS), default="sankey")
    export.add_argument("--format", dest="fmt", type=str.lower, choices=FORMATS, help="default: from --out")
    export.add_argument("--out", type=Path, help="output file (single text)")
    export.add_argument("--out-dir", type=Path, help="output folder (batch)")
    export.add_argument("--preset", choices=tuple(PRESETS), default="double")
    export.add_argument("--width", type=whole("width", *WIDTH_RANGE), help="pixels (overrides the preset)")
    export.add_argument("--height", type=whole("height", *WIDTH_RANGE), help="pixels (overrides the preset)")
    export.add_argument("--scale", type=number("scale", *SCALE_RANGE), help="PNG resolution multiplier (300 dpi)")
    export.add_argument("--sidecar", action="store_true", help="also write a JSON sidecar next to each figure")


def _add_view_options(export: argparse.ArgumentParser) -> None:
    """The dashboard's controls, one flag each (:class:`app.core.options.ViewOptions`)."""
    export.add_argument("--mode", choices=tuple(MODES), default="comparison")
    export.add_argument("--layers", type=checked(lambda t: parse_range("layers", t)), help="FIRST:LAST, 1-based")
    export.add_argument("--heads", type=checked(lambda t: parse_numbers("heads", t)), help="e.g. 0,3,7 (all)")
    export.add_argument("--head", type=checked(parse_head), help="LAYER:HEAD for the matrix view (head mean)")
    export.add_argument("--tau", type=number("tau", *TAU_RANGE), help="the attention graph's threshold τ")
    export.add_argument("--alpha", type=number("alpha", *ALPHA_RANGE), help="the attention graph's residual α")
    export.add_argument("--aggregation", choices=tuple(AGGREGATIONS), default="mean")
    export.add_argument("--level", choices=tuple(LEVELS), default="token")
    export.add_argument("--sources", type=checked(sources), help="positions to trace from, or 'all' ([CLS])")
    export.add_argument("--hide", type=checked(hide), help="comma-separated: " + ",".join(HIDE_KINDS))
    export.add_argument("--metric", choices=tuple(HEAD_METRICS), default="js_divergence", help="head-grid metric")
    export.add_argument("--method", choices=tuple(METHODS), default=DEFAULT_METHOD, help="relevance method")
    export.add_argument(
        "--measure", choices=tuple(MEASURES), default=None, help="what the graph views are drawn over (default ALTI)"
    )
    export.add_argument("--target", default=PREDICTED, help="class the class methods explain (a label or index)")
    export.add_argument("--no-sinks", action="store_true", help="the graph traces through [CLS] / [SEP] too")
    export.add_argument("--renormalize", action="store_true", help="renormalise matrix rows after --hide")


def run(args: argparse.Namespace) -> int:
    # lazy (torch, plotly, kaleido): loaded when the command runs, so building the parser stays instant
    from app.cli.exporting import run_export

    return run_export(args)
