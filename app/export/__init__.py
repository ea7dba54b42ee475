"""Static export of any view as PNG / SVG / PDF: the files (:mod:`app.export.files`), the JSON sidecar that makes a
figure again (:mod:`app.export.sidecar`, its only owner) and export jobs for the command line and the dashboard
(:mod:`app.export.requests`)."""

from app.export.files import (
    ExportError,
    check_target,
    export_figure,
    render_bytes,
    start_export_server,
    stop_export_server,
    warm_export_browser,
    write_atomically,
)
from app.export.sidecar import Sidecar, SidecarError, read_sidecar, resolve_pair

__all__ = [
    "ExportError",
    "Sidecar",
    "SidecarError",
    "check_target",
    "export_figure",
    "read_sidecar",
    "render_bytes",
    "resolve_pair",
    "start_export_server",
    "stop_export_server",
    "warm_export_browser",
    "write_atomically",
]
