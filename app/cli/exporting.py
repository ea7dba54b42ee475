"""``attention-flows export``'s work (imported when the command runs: it loads the app's renderer and the engine):
the flags made into :class:`~app.export.requests.FigureRequest` s, for one text, a batch of texts or a sidecar."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from app.core.analysis import Analysis
from app.core.options import ExportOptions, ViewOptions
from app.export.browser import TABS
from app.export.files import ExportError, check_target, start_export_server, warm_export_browser
from app.export.requests import (
    FigureRequest,
    check_shape,
    file_stem,
    make_one,
    output_format,
    read_texts,
    sidecar_export,
)
from app.export.sidecar import read_sidecar, resolve_pair
from app.service.analysis import AnalysisService
from attention.errors import AttentionFlowsError


def options_from_args(args: argparse.Namespace) -> ViewOptions:
    """The view options of ``attention-flows export``'s flags (types and ranges checked)."""
    return ViewOptions.from_controls(
        mode=args.mode,
        layers=args.layers,
        heads=args.heads,
        tau=args.tau,
        alpha=args.alpha,
        aggregation=args.aggregation,
        level=args.level,
        sources=args.sources,
        hide=args.hide,
        metric=args.metric,
        method=args.method,
        measure=args.measure,
        target=args.target,
        sinks=not args.no_sinks,
        renormalize=args.renormalize,
    )


def run_export(args: argparse.Namespace) -> int:
    """Entry point of the ``export`` subcommand."""
    if args.from_sidecar:
        if not args.out:
            raise ExportError("--from-sidecar needs --out.", "Give the file to write.")
        check_target(args.out)
        sidecar = read_sidecar(args.from_sidecar)
        export = sidecar_export(sidecar.export, output_format(args.out, args.fmt, sidecar.export.fmt))
        pair = resolve_pair(sidecar, args.config)  # None: the installed pair the sidecar names
        request = FigureRequest(
            Analysis(sidecar.text, sidecar.text_pair),
            sidecar.view,
            sidecar.options,
            sidecar.selected,
            export,
            args.out,
        )
        check_shape(pair, request.options, request.selected, selected_from="the sidecar's head")
        warm_export_browser(delay=0, log_failure=False)  # Chromium starts while the models load
        service = AnalysisService.from_config(pair)
        print(make_one(service, request, with_sidecar=args.sidecar))
        return 0

    options = options_from_args(args)
    selected = tuple(args.head) if args.head else None
    config = args.config or "default"
    if args.text is not None:
        if not args.out:
            raise ExportError("--text needs --out.", "Give the file to write, e.g. --out figure.pdf.")
        export = _export_options(args, output_format(args.out, args.fmt, check=False))
        output_format(args.out, export.fmt)  # after the size checks: a bad size is named first
        check_target(args.out)
        check_shape(config, options, selected)
        warm_export_browser(delay=0, log_failure=False)  # Chromium starts while the models load
        service = AnalysisService.from_config(config)
        request = FigureRequest(Analysis(args.text, args.text_pair), args.view, options, selected, export, args.out)
        print(make_one(service, request, with_sidecar=args.sidecar))
        return 0

    if not args.out_dir or not args.fmt:
        raise ExportError("--texts needs --out-dir and --format.", "e.g. --out-dir figures --format pdf")
    if not args.out_dir.is_dir():
        raise ExportError(f"Folder {args.out_dir} does not exist.", "Create it first.")
    export = _export_options(args, args.fmt)
    check_target(args.out_dir / f"probe.{args.fmt}")
    analyses = read_texts(args.texts)
    check_shape(config, options, selected)
    warm_export_browser(delay=0, log_failure=False)  # Chromium starts while the models load
    service = AnalysisService.from_config(config)
    start_export_server()  # a browser that cannot start is one error, not one per line
    requests = [
        FigureRequest(analysis, args.view, options, selected, export,
                      args.out_dir / f"{number:03d}-{file_stem(args.view, options, analysis.text, export)}.{args.fmt}")
        for number, analysis in enumerate(analyses, start=1)
    ]  # fmt: skip
    failures = _export_all(service, requests, desc=f"exporting {args.view}", sidecars=args.sidecar)
    print(f"wrote {len(analyses) - failures} of {len(analyses)} figures to {args.out_dir}")
    return 1 if failures else 0


def _export_all(service: AnalysisService, requests: list[FigureRequest], *, desc: str, sidecars: bool) -> int:
    """Export every request, two at a time (:data:`~app.export.browser.TABS`): while Chromium draws one figure,
    this process analyses the next. Each failure is reported with its line number; returns how many failed."""
    failures = 0
    with ThreadPoolExecutor(TABS) as pool, tqdm(total=len(requests), desc=desc, unit="figure") as progress:
        futures = [pool.submit(make_one, service, request, with_sidecar=sidecars) for request in requests]
        for number, future in enumerate(futures, start=1):
            try:
                future.result()
            except AttentionFlowsError as error:
                failures += 1
                tqdm.write(f"line {number}: {error}", file=sys.stderr)
            progress.update()
    return failures


def _export_options(args: argparse.Namespace, fmt: str) -> ExportOptions:
    return ExportOptions.create(fmt, preset=args.preset, width=args.width, height=args.height, scale=args.scale)
