"""The Dash application factory."""

from __future__ import annotations

import logging
from pathlib import Path

from dash import Dash

from app.layout import build_layout
from app.services import EXTENSION_KEY, AnalysisService
from attention.config import PairConfig
from attention.settings import Settings

log = logging.getLogger("attention_flows.app")
_APP_DIR = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """``app/_assets`` in a wheel, else the checkout's ``assets/``."""
    packaged = _APP_DIR / "_assets"
    return packaged if packaged.is_dir() else _APP_DIR.parent / "assets"


def create_app(
    config: str | PairConfig = "default",
    *,
    settings: Settings | None = None,
    service: AnalysisService | None = None,
) -> Dash:
    """Build the dashboard for a model pair. Models load here, once per process; the first example is analysed
    on page load."""
    from app.callbacks.common import report_unexpected_error
    from app.render import RENDERERS, render
    from app.state import ViewOptions
    from attention.flow import warm_up

    service = service or AnalysisService.from_config(config, settings)
    dash_app = Dash(
        __name__,
        title="Attention Flows",
        assets_folder=str(assets_dir()),
        on_error=report_unexpected_error,
        update_title=None,
    )
    dash_app.server.extensions[EXTENSION_KEY] = service
    config_obj = service.pair.config
    dash_app.layout = build_layout(
        pair_name=config_obj.name,
        pretrained_name=service.pair.pretrained.name,
        finetuned_name=service.pair.finetuned.name,
        num_layers=service.num_layers,
        num_heads=service.num_heads,
        examples=service.examples,
        first_text=service.examples[0] if service.examples else "",
    )
    import app.callbacks  # noqa: F401  (registers the module-level callbacks)

    @dash_app.server.route("/healthz")
    def healthz() -> tuple[str, int]:
        return "ok", 200

    warm_up()  # compile or load the max-flow kernel now, not on the first click
    if service.examples:  # the page opens on this example: have every view's data ready for its first draw
        first = service.analyse(service.examples[0])
        for view in RENDERERS:
            render(view, service, first, ViewOptions())
    return dash_app
