"""Corpus figures as PNG / SVG / PDF: a figure of the corpus page drawn from a corpus folder, in the publication
theme and the size presets of the single-example figures (:func:`app.export.files.render_bytes`), written
atomically with its sidecar (:mod:`app.export.corpus_sidecar`). The corpus page's Export buttons and ``attention-flows
corpus export`` both call :func:`corpus_export_bytes`, so a paper figure is the page's figure.

The page hands its memo to :func:`corpus_figure` (``read``), so an export reads nothing the page has already read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.options import ExportOptions
from app.export.corpus_figures import check_figure
from app.export.corpus_sidecar import CorpusIdentity, CorpusSidecar
from app.export.files import ExportError, check_target, render_bytes, write_atomically
from app.figures.corpus import make_corpus_head_map, make_head_change_grid, make_layer_change, make_word_difference
from app.figures.theme import Canvas, Figure
from attention.corpus.mixing import traced_token
from attention.corpus.query import corpus_manifest, head_map, head_ranking, layer_change, word_query
from attention.corpus.source import CorpusError
from attention.corpus.store import MANIFEST

Reader = Callable[..., Any]
"""``read(what, compute, *parts)``: ``compute()``, or a memo of it keyed by ``what`` and ``parts`` (the page's
:meth:`app.corpus.catalog.CorpusCatalog.memo` of one corpus)."""


def read_afresh(what: str, compute: Callable[[], Any], *parts: object) -> Any:
    """The :data:`Reader` of the command line: every query read from the folder."""
    return compute()


@dataclass(frozen=True)
class CorpusFigureRequest:
    """One corpus figure to make: ``figure`` of the corpus in ``folder`` with its ``options`` (checked by
    :func:`app.export.corpus_figures.figure_options`), as a file (``out``) or bytes. ``recorded_folder``: how
    the sidecar names the folder (default: its absolute path; the page gives the folder's name under
    ``<corpora>``)."""

    folder: Path
    figure: str
    options: dict[str, str]
    export: ExportOptions
    out: Path | None = None
    recorded_folder: str | None = None


def check_corpus(folder: Path) -> dict:
    """The manifest of the corpus in ``folder``: a folder that does not exist, or is no corpus (or one with no
    example, or of another format), is an error saying what to do."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"Folder {folder} does not exist.", "Give the folder of a corpus (corpus run's --out).")
    if not (folder / MANIFEST).is_file():
        raise CorpusError(
            f"{folder} is not a corpus folder (it has no {MANIFEST}).",
            f"Give the folder a corpus run wrote (--out), or compute one: attention-flows corpus run --out {folder}",
        )
    return corpus_manifest(folder)


def corpus_figure(
    folder: Path, figure: str, options: dict[str, str], *, canvas: Canvas | None = None, read: Reader = read_afresh
) -> Figure:
    """The corpus page's figure ``figure`` of the corpus in ``folder`` (``canvas``: the width it is drawn for)."""
    check_figure(figure)
    folder = Path(folder).expanduser()
    manifest = check_corpus(folder)
    examples = CorpusIdentity.of(manifest).examples
    metric, word = options.get("metric"), options.get("word")
    if figure == "heads":
        ranking = read("ranking", lambda: head_ranking(folder, metric), metric)
        return make_head_change_grid(ranking, metric, examples)
    if figure == "layers":
        return make_layer_change(read("layers", lambda: layer_change(folder, metric), metric), metric)
    if figure == "word":
        frame = read("word", lambda: word_query(folder, word), word.lower())
        return make_word_difference(frame, word, traced_token(manifest))
    mapped, stress, count = read("map", lambda: head_map(folder))
    return make_corpus_head_map(mapped, stress, count, canvas)


def corpus_export_bytes(request: CorpusFigureRequest, read: Reader = read_afresh) -> tuple[bytes, CorpusSidecar]:
    """Draw, size and render one corpus figure: the file's bytes and its sidecar."""
    width, _, font_px = request.export.pixels()
    folder = Path(request.folder).expanduser().resolve()
    manifest = check_corpus(folder)
    drawn = corpus_figure(folder, request.figure, request.options, canvas=Canvas(width=width, font_px=font_px),
                          read=read)  # fmt: skip
    data = render_bytes(drawn, request.export)
    side = CorpusSidecar(
        folder=request.recorded_folder or str(folder),
        corpus=CorpusIdentity.of(manifest),
        figure=request.figure,
        options=dict(request.options),
        export=request.export,
    )
    return data, side


def corpus_file_stem(figure: str, options: dict[str, str], corpus: str, export: ExportOptions) -> str:
    """A file name that says what the figure is: ``corpus-``, the figure, its measure or word, the corpus's folder
    name, the preset and format it was made for, and a short hash of every setting (two settings never share a
    name), e.g. ``corpus-heads-js-divergence-held-out-single-pdf-1a2b3c4d``."""
    settings = repr((figure, sorted(options.items()), corpus, export.preset, export.fmt, export.width,
                     export.height, export.scale)).encode()  # fmt: skip
    parts = [figure, *(options[key] for key in ("metric", "word") if key in options), corpus]
    words = "-".join(re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-")[:32] or "x" for part in parts)
    return f"corpus-{words}-{export.preset}-{export.fmt}-{hashlib.sha1(settings).hexdigest()[:8]}"


def make_corpus_file(request: CorpusFigureRequest, *, with_sidecar: bool, read: Reader = read_afresh) -> Path:
    """Export one corpus figure to ``request.out`` (and, ``with_sidecar``, its sidecar beside it: the same name
    ending in ``.json``), atomically: nothing is written on failure."""
    if request.out is None:
        raise ExportError("No output file given.", "Pass --out.")
    check_target(request.out)
    data, side = corpus_export_bytes(request, read)
    path = write_atomically(request.out, data)
    if with_sidecar:
        write_atomically(path.with_suffix(".json"), side.to_json().encode("utf-8"))
    return path
