"""Figure requests: one view of one analysis to PNG / SVG / PDF bytes or a file with its sidecar
(:func:`export_bytes`, :func:`make_one`), shared by the dashboard's Export button, its batch export and
``attention-flows export`` (:mod:`app.cli.exporting` reads the flags).

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

from app.core.analysis import Analysis
from app.core.options import FORMATS, ExportOptions, OptionError, ViewOptions, check_selected_head
from app.export.files import ExportError, check_target, render_bytes, write_atomically
from app.export.sidecar import Sidecar, make_sidecar
from app.figures.theme import Canvas, Figure
from app.service.analysis import AnalysisService
from app.views.render import render
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


def file_stem(view: str, options: ViewOptions, text: str, export: ExportOptions | None = None) -> str:
    """A file name that says what the figure is: view, mode, layers, the start of the text, the preset and format it
    was made for (a single-column PDF and a double-column PNG of one view never share a name, nor do their
    sidecars), and a short hash of every setting (different settings on the same sentence never share a name)."""
    made_for = () if export is None else (export.preset, export.fmt, export.width, export.height, export.scale)
    settings = repr((view, sorted(options.to_dict().items()), text, *made_for)).encode()
    layers = "all-layers" if options.layers is None else f"layers-{options.layers[0]}-{options.layers[1]}"
    words = re.sub(r"[^a-z0-9]+", "-", text.lower())[:32].strip("-") or "text"
    size = "" if export is None else f"-{export.preset}-{export.fmt}"
    return f"{view}-{options.mode}-{layers}-{words}{size}-{hashlib.sha1(settings).hexdigest()[:8]}"


def export_bytes(service: AnalysisService, request: FigureRequest) -> tuple[bytes, Sidecar]:
    """Analyse, render and export one request: the file's bytes and its sidecar (shared by the CLI and the
    dashboard's Export button)."""
    figure, analysis, options, selected = _figure(service, request)
    data = render_bytes(figure, request.export)
    side = make_sidecar(
        service.pair.config,
        text=analysis.text,
        text_pair=analysis.text_pair,
        view=request.view,
        options=options,
        selected=selected,
        export=request.export,
    )
    return data, side


def export_figure(service: AnalysisService, request: FigureRequest) -> Figure:
    """The figure one request exports, before it is sized for print (the figure standard reads its axes)."""
    return _figure(service, request)[0]


def _figure(service: AnalysisService, request: FigureRequest):
    analysis = service.analyse(request.analysis.text, request.analysis.text_pair)
    options = service.checked(analysis, request.options)  # "all layers" / "all heads" spelled one way
    selected = (
        None
        if request.selected is None
        else check_selected_head(
            {"layer": request.selected[0], "head": request.selected[1]}, service.num_layers, service.num_heads
        )
    )
    # The selection picks the matrix view's head and the head view's layer; elsewhere it is only the page's
    # highlight, kept out of the file.
    width, _, font_px = request.export.pixels()
    canvas = Canvas(width=width, font_px=font_px, static=True)
    drawn_selection = selected if request.view in ("matrix", "headview") else None
    figure = render(request.view, service, analysis, options, drawn_selection, canvas)
    return figure, analysis, options, selected


def make_one(service: AnalysisService, request: FigureRequest, *, with_sidecar: bool) -> Path:
    """Export one request to ``request.out`` (and its sidecar next to it), atomically; nothing is written on failure."""
    if request.out is None:
        raise ExportError("No output file given.", "Pass --out.")
    check_target(request.out)
    data, side = export_bytes(service, request)
    path = write_atomically(request.out, data)
    if with_sidecar:
        write_atomically(path.with_suffix(".json"), side.to_json().encode("utf-8"))
    return path


def check_shape(
    config: str, options: ViewOptions, selected: tuple[int, int] | None, *, selected_from: str = "--head"
) -> None:
    """Layers, heads and the selected head (named as the user gave it: ``selected_from``) against the pair's
    config.json, in milliseconds, before any model loads."""
    shape = pair_shape(config)
    options.checked(shape.num_layers, shape.num_heads, sys.maxsize)
    if selected is not None:
        layer, head = selected
        if not (1 <= layer <= shape.num_layers and 0 <= head < shape.num_heads):
            raise OptionError(
                f"{selected_from} {layer}:{head} names no head of this pair: it has layers 1 to {shape.num_layers} "
                f"and heads 0 to {shape.num_heads - 1}.",
                f"Give --head LAYER:HEAD within them, e.g. --head {shape.num_layers}:0.",
            )


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


def sidecar_export(recorded: ExportOptions, fmt: str) -> ExportOptions:
    """The sidecar's size and preset in ``fmt``; a figure redrawn in another format takes that format's PNG scale."""
    if fmt == recorded.fmt:
        return recorded
    return ExportOptions.create(fmt, preset=recorded.preset, width=recorded.width, height=recorded.height)
