"""Figure files: render through kaleido (Chromium) in a publication theme, check what came back, write atomically.

One Chromium is kept open per process (:mod:`app.export.browser`, :func:`start_export_server`), so every export
after the first costs well under a second; it closes (and kaleido removes its temporary folders) when the process
exits, and a forked child starts its own instead of waiting forever on its parent's. Files are written to a
temporary file next to the target and renamed, so a failed export never leaves a half-written file. Sizes and
formats are :class:`app.core.options.ExportOptions`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import plotly.graph_objects as go

from app.core.options import MAX_RENDER_SIDE, ExportOptions
from app.export.browser import PROCESS_BROWSER, WARM_UP_FIGURE
from app.figures.theme import Figure
from attention.errors import AttentionFlowsError

_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<svg"}
EXPORT_WARM_UP_DELAY = 10.0  # seconds after a server starts (its models load and its first page is drawn first)
_log = logging.getLogger(__name__)
_SMALLEST = 64  # bytes: no real figure is smaller (kaleido returned 3 bytes for a PNG Chromium could not draw)


class ExportError(AttentionFlowsError):
    """A figure could not be exported (unwritable path, no Chromium, nothing drawn)."""


def publication_figure(fig: Figure | go.Figure, *, width: int, height: int, font_px: float) -> go.Figure:
    """A validated copy of ``fig`` sized for print: fixed size, legible fonts, tight margins, no interactive
    chrome. A view that lays its text out itself (``layout.meta.natural_size``, drawn for this width and font)
    keeps its own height and margins."""
    out = go.Figure(fig)
    title_px = font_px * 1.15
    title, lines = wrapped_title(out.layout.title.text or "", width=width - 20, font_px=title_px)
    extra = (lines - 1) * title_px * 1.3  # room for the title's extra lines
    if isinstance(out.layout.meta, dict) and out.layout.meta.get("natural_size"):
        out.update_layout(
            width=width,
            height=(out.layout.height or height) + extra,
            autosize=False,
            font={"family": "Helvetica, Arial, sans-serif", "color": "black"},
            title={"text": title, "font": {"size": title_px}},
            margin={"t": (out.layout.margin.t or 46) + extra},
            hovermode=False,
            dragmode=False,
        )
        return out
    subtitle = out.layout.title.subtitle.text if out.layout.title.subtitle else None
    header = 8 + lines * title_px * 1.3  # px from the top: the title's lines, then any subtitle's
    if subtitle:  # a subtitle (e.g. "… has no classification head") is wrapped like the title
        subtitle, more = wrapped_title(subtitle, width=width - 20, font_px=font_px)
        header += more * font_px * 1.3
    top = header + 26 + 1.5 * title_px  # room for panel titles above the plot, and plotly's own title padding
    out.update_layout(
        width=width,
        height=height,
        autosize=False,
        font={"size": font_px, "family": "Helvetica, Arial, sans-serif", "color": "black"},
        title={
            "text": title,
            "font": {"size": title_px},
            "yref": "container",
            "y": 1 - (8 + lines * title_px * 1.3) / height,  # the bottom of the title's last line
            "yanchor": "bottom",
            **({"subtitle": {"text": subtitle}} if subtitle else {}),
        },
        margin={"l": 50, "r": 15, "t": top, "b": max(35, out.layout.margin.b or 0)},
        hovermode=False,
        dragmode=False,
    )
    return out


def wrapped_title(text: str, *, width: float, font_px: float) -> tuple[str, int]:
    """``text`` broken into lines (``<br>``) that fit ``width`` px at ``font_px`` (0.55 em per character, a
    safe average for Helvetica), and the number of lines: a long title is never cut at the figure's edge."""
    if not text:
        return text, 1
    lines = textwrap.wrap(text, width=max(int(width / (0.55 * font_px)), 10)) or [text]
    return "<br>".join(lines), len(lines)


def _chromium_missing() -> ExportError:
    return ExportError(
        "Static export needs Chromium, and none was found.",
        "Install it with: sudo apt-get install chromium  (or set BROWSER_PATH to a Chrome/Chromium binary).",
    )


def start_export_server() -> None:
    """Start (once per process) the Chromium that later exports reuse (:data:`~app.export.browser.PROCESS_BROWSER`)."""
    if (
        shutil.which("chromium") is None
        and shutil.which("google-chrome") is None
        and not os.environ.get("BROWSER_PATH")
    ):
        raise _chromium_missing()
    try:
        PROCESS_BROWSER.start()
    except Exception as err:  # choreographer raises several types when the browser cannot start
        if type(err).__name__ == "ChromeNotFoundError":  # e.g. BROWSER_PATH names no browser
            raise _chromium_missing() from err
        reason = err.args[0] if err.args else type(err).__name__  # choreographer's first line says what went wrong
        raise ExportError(
            f"The export browser (Chromium) did not start: {str(reason).rstrip('.')}.",
            "Check that `chromium --headless --dump-dom about:blank` runs for this user, then export again.",
        ) from err


def warm_export_browser(delay: float = EXPORT_WARM_UP_DELAY, *, log_failure: bool = True) -> threading.Thread:
    """Start this process's export browser in the background after ``delay`` seconds (once the page's first
    requests are served), so a running server's first export does not wait for Chromium to start. A browser that
    cannot start is logged (``log_failure``: a server's log; a command's own export says it in one line)."""

    def warm() -> None:
        time.sleep(delay)
        go.Figure(WARM_UP_FIGURE)  # plotly loads a trace type's validators on first use (~0.2 s)
        try:
            start_export_server()
        except ExportError as err:
            if log_failure:
                _log.warning("export browser not started: %s", err)

    thread = threading.Thread(target=warm, name="export-browser-warm-up", daemon=True)
    thread.start()
    return thread


def stop_export_server() -> None:
    """Close this process's export browser and remove its temporary folders, if it started one. An exit handler
    does this at a normal exit; a process that ends with ``os._exit`` (a multiprocessing child) must call it."""
    PROCESS_BROWSER.stop()


def check_drawn(data: bytes, fmt: str) -> bytes:
    """``data`` if it is a real file of ``fmt`` (its magic bytes, a plausible size); else an :class:`ExportError`."""
    head = data[:256].lstrip()
    if len(data) < _SMALLEST or not (head.startswith(_MAGIC[fmt]) or (fmt == "svg" and b"<svg" in head)):
        raise ExportError(
            f"The exporter returned {len(data)} bytes that are not a {fmt.upper()} file: nothing was drawn.",
            "Lower the size or the PNG scale, or export as SVG / PDF.",
        )
    return data


def figure_bytes(fig: Figure | go.Figure, export: ExportOptions) -> bytes:
    """Render ``fig`` (already sized) to PNG / SVG / PDF bytes, checked by :func:`check_drawn`."""
    layout = fig.layout if isinstance(fig, go.Figure) else go.Layout(fig.get("layout", {}))
    default_width, default_height, _ = export.pixels()
    width, height = layout.width or default_width, layout.height or default_height
    scale = export.scale if export.fmt == "png" else 1.0
    try:
        start_export_server()
        data = PROCESS_BROWSER.render(fig, {"format": export.fmt, "width": width, "height": height, "scale": scale})
    except ExportError:
        raise
    except Exception as err:  # choreographer raises several types when the browser cannot start
        if "browser" in str(err).lower() or "chrom" in str(err).lower():
            raise _chromium_missing() from err
        raise ExportError(f"Export failed: {err}", "See the server log for details.") from err
    return check_drawn(data, export.fmt)


def render_bytes(fig: Figure | go.Figure, export: ExportOptions) -> bytes:
    """``fig`` in the publication theme as PNG / SVG / PDF bytes. Without an explicit height, a view taller than
    the preset (``layout.meta.min_height``: a label's room per token) keeps its own height, never squeezed."""
    width, height, font = export.pixels()
    meta = fig.layout.meta if isinstance(fig, go.Figure) else fig.get("layout", {}).get("meta")
    if export.height is None and isinstance(meta, dict) and meta.get("min_height"):
        height = int(min(max(height, meta["min_height"]), MAX_RENDER_SIDE))
    return figure_bytes(publication_figure(fig, width=width, height=height, font_px=font), export)


def check_target(path: Path) -> Path:
    """Refuse a target that cannot be written, before any work: the folder must exist and accept a new file
    (probed by creating and removing one, which also catches /proc, read-only mounts and root-only checks)."""
    path = Path(path).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"Folder {folder} does not exist.", "Create it first, or choose another output path.")
    if path.is_dir():
        raise ExportError(f"{path} is a folder.", "Give a file name, e.g. figure.pdf.")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as err:
        raise ExportError(
            f"Folder {folder} is not writable ({err.strerror}).", "Choose a folder you can write to."
        ) from None
    os.close(handle)
    os.unlink(probe)
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


def export_figure(fig: Figure | go.Figure, path: str | Path, export: ExportOptions | None = None) -> Path:
    """Export ``fig`` in the publication theme to ``path`` (format from ``export`` or the file suffix)."""
    path = check_target(Path(path))
    export = export or ExportOptions.create(path.suffix)
    return write_atomically(path, render_bytes(fig, export))
