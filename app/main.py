"""The Dash application factory."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from dash import Dash, html
from flask import has_request_context, request

from app.auth import AuthConfig, protect
from app.cache import release_freed_memory
from app.help import render_doc
from app.layout import build_layout
from app.loading import ServiceLoader
from app.metrics import install_metrics
from app.services import EXTENSION_KEY, AnalysisService, example_items
from app.urlstate import from_query
from attention.config import PairConfig, load_config
from attention.errors import AttentionFlowsError
from attention.models import pair_shape
from attention.settings import Settings

log = logging.getLogger("attention_flows.app")
_APP_DIR = Path(__file__).resolve().parent
FLOW_WARM_UP_DELAY = 8.0  # seconds after the models are ready


def assets_dir() -> Path:
    """``app/_assets`` in a wheel, else the checkout's ``assets/``."""
    packaged = _APP_DIR / "_assets"
    return packaged if packaged.is_dir() else _APP_DIR.parent / "assets"


def docs_dir() -> Path:
    """The checkout's docs/ folder (``app/_docs`` in a wheel)."""
    packaged = _APP_DIR / "_docs"
    return packaged if packaged.is_dir() else _APP_DIR.parent / "docs"


def create_app(
    config: str | PairConfig = "default",
    *,
    settings: Settings | None = None,
    service: AnalysisService | None = None,
    build_service: Callable[[], AnalysisService] | None = None,
    auth: AuthConfig | None = None,
) -> Dash:
    """Build the dashboard for a model pair and return at once; the models load in a background thread.

    The page needs only the pair's shape (config.json) and example sentences, so it is served while torch and
    transformers import; callbacks wait for the models (:mod:`app.loading`). Bad paths and pairs whose layers or
    heads differ are refused here. ``service`` skips loading; ``build_service`` replaces it (tests). ``auth``
    (default: from the environment, :class:`app.auth.AuthConfig`) puts every route but /healthz behind sign-in.
    """
    from app.callbacks.common import report_unexpected_error
    from app.callbacks.registry import register_all

    if service is not None:
        pair_config, shape = service.pair.config, service.pair.pretrained.shape
        examples, golds = service.examples, service.golds
        loader = ServiceLoader.loaded(service)
    else:
        pair_config = config if isinstance(config, PairConfig) else load_config(config)
        shape = pair_shape(pair_config, settings=settings)
        items = example_items(pair_config)
        examples, golds = [text for text, _ in items], {text: gold for text, gold in items if gold}
        build = build_service or (lambda: _load_and_warm(pair_config, settings, examples, golds))
        loader = ServiceLoader(build, after_ready=_warm_up_flow).start()
    dash_app = Dash(
        __name__,
        title="Attention Flows",
        assets_folder=str(assets_dir()),
        on_error=report_unexpected_error,
        update_title=None,
    )
    dash_app.server.extensions[EXTENSION_KEY] = loader
    protect(dash_app, auth or AuthConfig.from_environ())
    install_metrics(dash_app, loader)
    page = functools.partial(
        build_layout,
        pair_name=pair_config.name,
        pretrained_name=pair_config.pretrained.display_name,
        finetuned_name=pair_config.finetuned.display_name,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        examples=examples,
        golds=golds,
        first_text=examples[0] if examples else "",
        class_names=pair_config.task.labels if pair_config.task else (),
    )

    def layout() -> html.Div:
        """The page in the state its URL describes (:mod:`app.urlstate`), so a link or a reload opens exactly that
        view with no extra round trip. The layout request is the page's own fetch: its Referer is the page URL."""
        search = urlsplit(request.referrer or "").query if has_request_context() else ""
        try:
            state = from_query(search, num_layers=shape.num_layers, num_heads=shape.num_heads)
            choices = None
            if state.analysis is not None and (state.options.word is not None or state.options.sources):
                # a dropdown keeps only values among its options: list the tokens the link refers to
                from app.callbacks.analyse import token_options
                from app.services import current_service

                service = current_service()
                analysis = service.analyse(state.analysis.text, state.analysis.text_pair)
                choices = token_options(service.labels(analysis, service.checked(analysis, state.options).level))
            return page(state=state, token_choices=choices)
        except AttentionFlowsError as error:
            return page(error=f"This link could not be opened: {error}")

    dash_app.layout = layout
    register_all(dash_app)

    @dash_app.server.teardown_request
    def release_memory(_error: BaseException | None) -> None:
        """After each request, hand what it freed back to the OS (0.2 ms; see :func:`app.cache.release_freed_memory`):
        a worker's RSS then follows its byte-bounded cache instead of its largest past request."""
        release_freed_memory()

    @dash_app.server.route("/docs/<name>")
    def docs(name: str) -> tuple[str, int]:
        """docs/<name>.md as a page, one anchor per section (the "?" help links point here)."""
        path = docs_dir() / f"{name}.md"
        if not re.fullmatch(r"[a-z_-]+", name) or not path.is_file():
            return "No such document.", 404
        return render_doc(path), 200

    @dash_app.server.route("/healthz")
    def healthz() -> tuple[str, int]:
        """200 ``ok`` once the models are loaded; 503 while they load; 500 and the reason if loading failed."""
        status = loader.status
        if status == "failed":
            return f"failed: {loader.error}", 500
        return ("ok", 200) if status == "ready" else ("loading the models", 503)

    return dash_app


def _load_and_warm(
    config: PairConfig, settings: Settings | None, examples: list[str], golds: dict[str, str]
) -> AnalysisService:
    """Load the pair, then compute every view of the first example: the page opens on it, so its first draw
    is served from the cache."""
    from app.options import ViewOptions
    from app.render import RENDERERS, render
    from attention.models import load_pair
    from attention.settings import load_settings

    settings = settings or load_settings()
    service = AnalysisService(
        load_pair(config, settings=settings), examples=examples, golds=golds, cache_bytes=settings.cache_mb * 2**20
    )
    if examples:
        first = service.analyse(examples[0])
        for view in RENDERERS:
            render(view, service, first, ViewOptions())
    return service


def _warm_up_flow(_service: AnalysisService) -> None:
    """Compile or load the max-flow kernel (about 0.6 s of CPU) before anyone asks for "flow", but only after the
    first page's requests have been answered and drawn, so it does not compete with them for the CPU."""
    from attention.flow import warm_up

    time.sleep(FLOW_WARM_UP_DELAY)
    warm_up()
