"""Static export of any view as PNG, SVG or PDF through kaleido (Chromium), in a publication theme.

One kaleido browser is kept alive per process (:func:`start_export_server`), so every export after the first
costs well under a second. Files are written atomically: a temporary file next to the target, then a rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from app.figures.theme import Figure
from attention import __version__
from attention.config import PairConfig
from attention.errors import AttentionFlowsError

FORMATS = ("png", "svg", "pdf")
DPI = 96  # plotly sizes are CSS pixels


class ExportError(AttentionFlowsError):
    """A figure could not be exported (bad format, unwritable path, no Chromium)."""


@dataclass(frozen=True)
class SizePreset:
    """Target size in inches and the base font size in points."""

    width_in: float
    height_in: float
    font_pt: float


PRESETS = {
    "single": SizePreset(3.5, 2.8, 7.0),
    "double": SizePreset(7.16, 4.5, 8.0),
    "slide": SizePreset(13.33, 7.5, 14.0),
}


def pixel_size(preset: str | None, width: int | None, height: int | None) -> tuple[int, int, float]:
    """(width px, height px, font px) from a preset name and/or explicit pixel sizes."""
    if preset is not None and preset not in PRESETS:
        raise ExportError(f"Unknown size preset '{preset}'.", f"Use one of: {', '.join(PRESETS)}.")
    chosen = PRESETS[preset or "double"]
    font = chosen.font_pt * DPI / 72
    return (int(width or round(chosen.width_in * DPI)), int(height or round(chosen.height_in * DPI)), font)


def publication_figure(fig: Figure | go.Figure, *, width: int, height: int, font_px: float) -> go.Figure:
    """A validated copy of ``fig`` sized for print: fixed size, legible fonts, tight margins, no interactive
    chrome."""
    out = go.Figure(fig)
    top = max(40, out.layout.margin.t or 0)  # keep the room a view reserves above its plot (Sankey column titles)
    out.update_layout(
        width=width,
        height=height,
        autosize=False,
        font={"size": font_px, "family": "Helvetica, Arial, sans-serif", "color": "black"},
        title={"font": {"size": font_px * 1.15}},
        margin={"l": 50, "r": 15, "t": top, "b": 35},
        hovermode=False,
        dragmode=False,
    )
    return out


def _check_format(fmt: str) -> str:
    fmt = (fmt or "").lower().lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format '{fmt}'.", f"Use one of: {', '.join(FORMATS)}.")
    return fmt


def _chromium_missing() -> ExportError:
    return ExportError(
        "Static export needs Chromium, and none was found.",
        "Install it with: sudo apt-get install chromium  (or set BROWSER_PATH to a Chrome/Chromium binary).",
    )


def start_export_server() -> None:
    """Start (once per process) the kaleido browser that later exports reuse."""
    import kaleido

    if (
        shutil.which("chromium") is None
        and shutil.which("google-chrome") is None
        and not os.environ.get("BROWSER_PATH")
    ):
        raise _chromium_missing()
    kaleido.start_sync_server(silence_warnings=True)


def figure_bytes(fig: Figure | go.Figure, fmt: str, *, width: int, height: int, scale: float = 1.0) -> bytes:
    """Render ``fig`` to PNG / SVG / PDF bytes."""
    import kaleido

    fmt = _check_format(fmt)
    try:
        start_export_server()
        return kaleido.calc_fig_sync(fig, opts={"format": fmt, "width": width, "height": height, "scale": scale})
    except ExportError:
        raise
    except Exception as err:  # choreographer raises several types when the browser cannot start
        if "browser" in str(err).lower() or "chrom" in str(err).lower():
            raise _chromium_missing() from err
        raise ExportError(f"Export failed: {err}", "See the server log for details.") from err


def check_target(path: Path) -> Path:
    """Refuse a target whose folder does not exist or cannot be written."""
    path = Path(path).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"Folder {folder} does not exist.", "Create it first, or choose another --out path.")
    if not os.access(folder, os.W_OK):
        raise ExportError(f"Folder {folder} is not writable.", "Choose a folder you can write to.")
    if path.is_dir():
        raise ExportError(f"{path} is a folder.", "Give a file name, e.g. figure.pdf.")
    return path


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (never a half-written file)."""
    path = check_target(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # mkstemp makes 0600; a figure is as readable as any new file
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def render_bytes(
    fig: Figure | go.Figure,
    fmt: str,
    *,
    preset: str | None = None,
    width: int | None = None,
    height: int | None = None,
    scale: float = 1.0,
) -> tuple[bytes, int, int]:
    """``fig`` in the publication theme as PNG / SVG / PDF bytes, and the (width, height) used in pixels."""
    fmt = _check_format(fmt)
    w, h, font = pixel_size(preset, width, height)
    data = figure_bytes(publication_figure(fig, width=w, height=h, font_px=font), fmt, width=w, height=h, scale=scale)
    return data, w, h


def export_figure(
    fig: Figure | go.Figure,
    path: str | Path,
    *,
    fmt: str | None = None,
    preset: str | None = None,
    width: int | None = None,
    height: int | None = None,
    scale: float = 1.0,
) -> Path:
    """Export ``fig`` in the publication theme to ``path`` (format from ``fmt`` or the file suffix)."""
    path = check_target(Path(path))
    data, _, _ = render_bytes(fig, fmt or path.suffix, preset=preset, width=width, height=height, scale=scale)
    return write_atomically(path, data)


def sidecar(
    config: PairConfig,
    *,
    analysis: dict,
    view: str,
    options: dict,
    selected: dict | None,
    fmt: str,
    width: int,
    height: int,
    scale: float,
) -> dict:
    """Everything needed to make the same figure again (see ``attention-flows export --from-sidecar``)."""
    return {
        "attention_flows_version": __version__,
        "pair": {
            "name": config.name,
            "config": str(config.source_path),
            "pretrained": config.pretrained.display_name,
            "finetuned": config.finetuned.display_name,
        },
        "text": analysis["text"],
        "text_pair": analysis.get("text_pair"),
        "view": view,
        "options": options,
        "selected_head": selected,
        "format": fmt,
        "width": width,
        "height": height,
        "scale": scale,
    }


def sidecar_json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
