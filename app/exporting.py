"""``attention-flows export``: one text, a batch of texts, or a JSON sidecar, to PNG / SVG / PDF files."""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from app.export import ExportError, check_target, render_bytes, sidecar, sidecar_json, write_atomically
from app.render import render
from app.services import Analysis, AnalysisService
from app.state import ViewOptions
from attention.errors import AttentionFlowsError


@dataclass(frozen=True)
class Job:
    """One figure to make."""

    analysis: Analysis
    view: str
    options: ViewOptions
    selected: tuple[int, int | None] | None
    out: Path | None
    fmt: str
    preset: str | None
    width: int | None
    height: int | None
    scale: float


def options_from_args(args) -> ViewOptions:
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
        target=args.target,
        sinks=not args.no_sinks,
        renormalize=args.renormalize,
    )


def read_texts(path: Path) -> list[Analysis]:
    """Texts from a .txt file (one per non-empty line) or a .csv with a ``text`` (and optional ``text_pair``)
    column."""
    if not path.is_file():
        raise ExportError(f"Text file {path} does not exist.", "Check the --texts path.")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        if rows and "text" not in rows[0]:
            raise ExportError(
                f"{path} has no 'text' column (columns: {', '.join(rows[0])}).",
                "Name the column with the sentences 'text'.",
            )
        analyses = [
            Analysis(r["text"].strip(), (r.get("text_pair") or "").strip() or None)
            for r in rows
            if (r.get("text") or "").strip()
        ]
    else:
        analyses = [Analysis(line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not analyses:
        raise ExportError(f"{path} contains no texts.", "Put one sentence per line.")
    return analyses


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "text"


def export_bytes(service: AnalysisService, job: Job) -> tuple[bytes, dict]:
    """Analyse, render and export one job: the file's bytes and its sidecar (shared by the CLI and the
    dashboard's Export button)."""
    analysis = service.analyse(job.analysis.text, job.analysis.text_pair)
    figure = render(job.view, service, analysis, job.options, job.selected)
    data, width, height = render_bytes(
        figure, job.fmt, preset=job.preset, width=job.width, height=job.height, scale=job.scale
    )
    selected = None if job.selected is None else {"layer": job.selected[0], "head": job.selected[1]}
    side = sidecar(
        service.pair.config,
        analysis=analysis.to_store(),
        view=job.view,
        options=job.options.to_dict(),
        selected=selected,
        fmt=job.fmt,
        width=width,
        height=height,
        scale=job.scale,
    )
    return data, side


def make_one(service: AnalysisService, job: Job, *, with_sidecar: bool) -> Path:
    """Export one job to ``job.out`` (and its sidecar next to it), atomically."""
    if job.out is None:
        raise ExportError("No output file given.", "Pass --out.")
    check_target(job.out)
    data, side = export_bytes(service, job)
    path = write_atomically(job.out, data)
    if with_sidecar:
        write_atomically(path.with_suffix(".json"), sidecar_json(side).encode("utf-8"))
    return path


def job_from_sidecar(path: Path, out: Path) -> tuple[str, Job]:
    """The config and the job a sidecar describes (written to ``out``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        selected = data.get("selected_head")
        job = Job(
            analysis=Analysis(data["text"], data.get("text_pair")),
            view=data["view"],
            options=ViewOptions.from_dict(data["options"]),
            selected=None if not selected else (int(selected["layer"]), selected["head"]),
            out=out,
            fmt=data["format"],
            preset=None,
            width=int(data["width"]),
            height=int(data["height"]),
            scale=float(data["scale"]),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ExportError(f"Cannot read sidecar {path}: {err}", "Pass a JSON file written by an export.") from err
    return data["pair"]["config"], job


def run_export(args) -> int:
    """Entry point of the ``export`` subcommand."""
    from tqdm import tqdm

    scale = args.scale if args.scale is not None else (300 / 96 if (args.fmt or "") == "png" else 1.0)
    if args.from_sidecar:
        if not args.out:
            raise ExportError("--from-sidecar needs --out.", "Give the file to write.")
        config, job = job_from_sidecar(args.from_sidecar, args.out)
        service = AnalysisService.from_config(config)
        print(make_one(service, job, with_sidecar=args.sidecar))
        return 0

    options = options_from_args(args)
    selected = tuple(args.head) if args.head else None
    if args.text is not None:
        if not args.out:
            raise ExportError("--text needs --out.", "Give the file to write, e.g. --out figure.pdf.")
        fmt = args.fmt or args.out.suffix.lstrip(".")
        check_target(args.out)
        scale = args.scale if args.scale is not None else (300 / 96 if fmt == "png" else 1.0)
        service = AnalysisService.from_config(args.config)
        job = Job(
            Analysis(args.text, args.text_pair),
            args.view,
            options,
            selected,
            args.out,
            fmt,
            args.preset,
            args.width,
            args.height,
            scale,
        )
        print(make_one(service, job, with_sidecar=args.sidecar))
        return 0

    if not args.out_dir or not args.fmt:
        raise ExportError("--texts needs --out-dir and --format.", "e.g. --out-dir figures --format pdf")
    if not args.out_dir.is_dir():
        raise ExportError(f"Folder {args.out_dir} does not exist.", "Create it first.")
    analyses = read_texts(args.texts)
    service = AnalysisService.from_config(args.config)
    failures = 0
    for number, analysis in enumerate(tqdm(analyses, desc=f"exporting {args.view}", unit="figure"), start=1):
        out = args.out_dir / f"{number:03d}-{_slug(analysis.text)}.{args.fmt}"
        job = Job(analysis, args.view, options, selected, out, args.fmt, args.preset, args.width, args.height, scale)
        try:
            make_one(service, job, with_sidecar=args.sidecar)
        except AttentionFlowsError as error:
            failures += 1
            tqdm.write(f"line {number}: {error}", file=sys.stderr)
    print(f"wrote {len(analyses) - failures} of {len(analyses)} figures to {args.out_dir}")
    return 1 if failures else 0
