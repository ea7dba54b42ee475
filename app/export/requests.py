"""Export jobs: one text, a batch of texts, or a sidecar, to PNG / SVG / PDF files (``attention-flows export``), and
the one path the dashboard's Export button shares with it (:func:`export_bytes`).

Every option is checked before the models load (types and ranges by :mod:`app.core.options`, layers and heads against
the pair's config.json), the output folder before any work, and the input's tokens before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from app.core.analysis import Analysis
from app.core.options import FORMATS, ExportOptions, ViewOptions, check_selected_head
from app.export.files import ExportError, check_target, render_bytes, write_atomically
from app.export.sidecar import Sidecar, make_sidecar, read_sidecar, resolve_pair
from app.figures.theme import Canvas
from app.service.analysis import AnalysisService
from app.views.render import render
from attention.errors import AttentionFlowsError
from attention.models import pair_shape


@dataclass(frozen=True)
class FigureRequest:
    """One figure to make: a view of an analysis with its options, as a file (``out``) or bytes."""

    analysis: Analysis
    view: str
    options: ViewOptions
    selected: tuple[int, int | None] | None
    export: ExportOptions
    out: Path | None = None


def options_from_args(args) -> ViewOptions:
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


def read_texts(path: Path) -> list[Analysis]:
    """Texts from a .txt file (one per non-empty line) or a .csv with a ``text`` (and optional ``text_pair``)
    column."""
    if not path.is_file():
        raise ExportError(f"Text file {path} does not exist.", "Check the --texts path.")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ExportError(
            f"{path} is not UTF-8 text (byte {err.start} cannot be decoded).", "Save the file as UTF-8."
        ) from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(content, newline="")))
        if rows and "text" not in rows[0]:
            raise ExportError(
                f"{path} has no 'text' column (columns: {', '.join(str(c) for c in rows[0])}).",
                "Name the column with the sentences 'text'.",
            )
        analyses = [
            Analysis(r["text"].strip(), (r.get("text_pair") or "").strip() or None)
            for r in rows
            if (r.get("text") or "").strip()
        ]
    else:
        analyses = [Analysis(line.strip()) for line in content.splitlines() if line.strip()]
    if not analyses:
        raise ExportError(f"{path} contains no texts.", "Put one sentence per line.")
    return analyses


def file_stem(view: str, options: ViewOptions, text: str) -> str:
    """A file name that says what the figure is: view, mode, layers, the start of the text, and a short hash of
    every setting (different settings on the same sentence never share a name)."""
    settings = repr((view, sorted(options.to_dict().items()), text)).encode()
    layers = "all-layers" if options.layers is None else f"layers-{options.layers[0]}-{options.layers[1]}"
    words = re.sub(r"[^a-z0-9]+", "-", text.lower())[:32].strip("-") or "text"
    return f"{view}-{options.mode}-{layers}-{words}-{hashlib.sha1(settings).hexdigest()[:8]}"


def export_bytes(service: AnalysisService, job: FigureRequest) -> tuple[bytes, Sidecar]:
    """Analyse, render and export one job: the file's bytes and its sidecar (shared by the CLI and the
    dashboard's Export button)."""
    analysis = service.analyse(job.analysis.text, job.analysis.text_pair)
    options = service.checked(analysis, job.options)  # "all layers" / "all heads" spelled one way
    selected = (
        None
        if job.selected is None
        else check_selected_head(
            {"layer": job.selected[0], "head": job.selected[1]}, service.num_layers, service.num_heads
        )
    )
    # The selection picks the matrix view's head; elsewhere it is only the page's highlight, kept out of the file.
    width, _, font_px = job.export.pixels()
    canvas = Canvas(width=width, font_px=font_px)
    figure = render(job.view, service, analysis, options, selected if job.view == "matrix" else None, canvas)
    data = render_bytes(figure, job.export)
    side = make_sidecar(
        service.pair.config,
        text=analysis.text,
        text_pair=analysis.text_pair,
        view=job.view,
        options=options,
        selected=selected,
        export=job.export,
    )
    return data, side


def make_one(service: AnalysisService, job: FigureRequest, *, with_sidecar: bool) -> Path:
    """Export one job to ``job.out`` (and its sidecar next to it), atomically; nothing is written on failure."""
    if job.out is None:
        raise ExportError("No output file given.", "Pass --out.")
    check_target(job.out)
    data, side = export_bytes(service, job)
    path = write_atomically(job.out, data)
    if with_sidecar:
        write_atomically(path.with_suffix(".json"), side.to_json().encode("utf-8"))
    return path


def _check_shape(config: str, options: ViewOptions, selected: tuple[int, int] | None) -> None:
    """Layers, heads and ``--head`` against the pair's config.json, in milliseconds, before any model loads."""
    shape = pair_shape(config)
    options.checked(shape.num_layers, shape.num_heads, sys.maxsize)
    if selected is not None:
        check_selected_head({"layer": selected[0], "head": selected[1]}, shape.num_layers, shape.num_heads)


def run_export(args) -> int:
    """Entry point of the ``export`` subcommand."""
    if args.from_sidecar:
        if not args.out:
            raise ExportError("--from-sidecar needs --out.", "Give the file to write.")
        check_target(args.out)
        sidecar = read_sidecar(args.from_sidecar)
        export = _sidecar_export(sidecar.export, output_format(args.out, args.fmt, sidecar.export.fmt))
        pair = resolve_pair(sidecar, args.config)  # None: the installed pair the sidecar names
        job = FigureRequest(
            Analysis(sidecar.text, sidecar.text_pair),
            sidecar.view,
            sidecar.options,
            sidecar.selected,
            export,
            args.out,
        )
        _check_shape(pair, job.options, job.selected)
        service = AnalysisService.from_config(pair)
        print(make_one(service, job, with_sidecar=args.sidecar))
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
        _check_shape(config, options, selected)
        service = AnalysisService.from_config(config)
        job = FigureRequest(Analysis(args.text, args.text_pair), args.view, options, selected, export, args.out)
        print(make_one(service, job, with_sidecar=args.sidecar))
        return 0

    if not args.out_dir or not args.fmt:
        raise ExportError("--texts needs --out-dir and --format.", "e.g. --out-dir figures --format pdf")
    if not args.out_dir.is_dir():
        raise ExportError(f"Folder {args.out_dir} does not exist.", "Create it first.")
    export = _export_options(args, args.fmt)
    check_target(args.out_dir / f"probe.{args.fmt}")
    analyses = read_texts(args.texts)
    _check_shape(config, options, selected)
    service = AnalysisService.from_config(config)
    failures = 0
    for number, analysis in enumerate(tqdm(analyses, desc=f"exporting {args.view}", unit="figure"), start=1):
        out = args.out_dir / f"{number:03d}-{file_stem(args.view, options, analysis.text)}.{args.fmt}"
        job = FigureRequest(analysis, args.view, options, selected, export, out)
        try:
            make_one(service, job, with_sidecar=args.sidecar)
        except AttentionFlowsError as error:
            failures += 1
            tqdm.write(f"line {number}: {error}", file=sys.stderr)
    print(f"wrote {len(analyses) - failures} of {len(analyses)} figures to {args.out_dir}")
    return 1 if failures else 0


def output_format(out: Path, fmt: str | None, default: str | None = None, *, check: bool = True) -> str:
    """The format written to ``out``: ``fmt`` (``--format``), else the file's suffix, else ``default`` (a
    sidecar's). A suffix that names another format than the one written is refused (SVG bytes in ``o.png``);
    ``check=False`` leaves that check for later."""
    suffix = out.suffix.lower().lstrip(".")
    if not fmt and suffix and suffix not in FORMATS:
        raise ExportError(
            f"--out {out} ends in .{suffix}, which is not a format the exporter writes.",
            "End the file name in .png, .svg or .pdf.",
        )
    chosen = fmt or suffix or default
    if not chosen:
        raise ExportError(f"--out {out} has no suffix to tell the format.", "End it in .png, .svg or .pdf.")
    if check and suffix and suffix != chosen:
        raise ExportError(
            f"--out {out} ends in .{suffix}, but the figure would be {chosen.upper()}.",
            f"Name the file {out.with_suffix('.' + chosen).name}, or leave out --format.",
        )
    return chosen


def _sidecar_export(recorded: ExportOptions, fmt: str) -> ExportOptions:
    """The sidecar's size and preset in ``fmt``; a figure redrawn in another format takes that format's PNG scale."""
    if fmt == recorded.fmt:
        return recorded
    return ExportOptions.create(fmt, preset=recorded.preset, width=recorded.width, height=recorded.height)


def _export_options(args, fmt: str) -> ExportOptions:
    return ExportOptions.create(fmt, preset=args.preset, width=args.width, height=args.height, scale=args.scale)
