"""The app factory: the team server (Flask) with the corpus page and the dashboard mounted on it, behind sign-in,
request checks and metrics, with its own routes (:mod:`app.team.routes`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from dash import Dash
from flask import Flask

from app.core.options import ViewOptions
from app.corpus.page import mount_corpus_page
from app.dashboard.factory import mount_dashboard
from app.service.analysis import AnalysisService
from app.service.examples import Examples
from app.service.jobbook import JOBS_KEY, JobBook
from app.service.registry import PairRegistry
from app.service.stores import DiskCache, RedisCache
from app.team.auth import AuthConfig, protect
from app.team.config import ServerConfig
from app.team.jobs import make_manager
from app.team.prometheus import install_metrics
from app.team.request_checks import install_request_checks
from app.team.routes import install_routes
from app.views.render import RENDERERS, render
from attention.config import PairConfig, load_config
from attention.models import load_pair, pair_shape
from attention.settings import Settings, load_settings

_APP_DIR = Path(__file__).resolve().parents[1]  # app/
FLOW_WARM_UP_DELAY = 8.0  # seconds after the models are ready


def assets_dir() -> Path:
    """``app/_assets`` in a wheel, else the checkout's ``assets/``."""
    packaged = _APP_DIR / "_assets"
    return packaged if packaged.is_dir() else _APP_DIR.parent / "assets"


def create_app(
    config: str | PairConfig | ServerConfig = "default",
    *,
    settings: Settings | None = None,
    service: AnalysisService | None = None,
    build_service: Callable[[], AnalysisService] | None = None,
    auth: AuthConfig | None = None,
) -> Dash:
    """Build the dashboard and return at once; the default pair's models load in a background thread.

    ``config`` is one pair (a name, a path or a :class:`PairConfig`) or a :class:`ServerConfig` listing several;
    the page picks one with ``?models=NAME`` (checked against the list) and each pair loads on first use (at most
    ``max_loaded_pairs`` stay loaded per process). The page needs only a pair's shape (config.json) and example
    sentences, so it is served while torch and transformers import; callbacks wait for the models
    (:mod:`app.service.registry`). Bad paths and pairs whose layers or heads differ are refused here for the default
    pair, and in the page for the others. ``service`` skips loading; ``build_service`` replaces it (tests). ``auth``
    (default: from the environment, :class:`app.team.auth.AuthConfig`) puts every route but /healthz behind sign-in.
    """
    server_config, registry = _pair_registry(config, settings, service, build_service)
    server = Flask(__name__)
    corpus_app = _mount_corpus_page(server, server_config, registry.default, settings)  # first: see mount_corpus_page
    dash_app = mount_dashboard(
        server,
        registry,
        server_config.pairs,
        assets_folder=str(assets_dir()),
        background_callback_manager=make_manager(server_config, settings),
        settings=settings,
        service=service,
    )
    server.extensions[JOBS_KEY] = JobBook(server_config.jobs.broker)
    install_request_checks(server, (corpus_app, dash_app))
    protect(dash_app, auth or AuthConfig.from_environ())  # sign-in runs before every other check
    install_metrics(dash_app, registry)
    install_routes(server, registry)
    return dash_app


def _pair_registry(
    config: str | PairConfig | ServerConfig,
    settings: Settings | None,
    service: AnalysisService | None,
    build_service: Callable[[], AnalysisService] | None,
) -> tuple[ServerConfig, PairRegistry]:
    """The server's configuration and its pairs (``service``: the one pair, loaded; else each pair loads on first
    use, by ``build_service`` or :func:`_load_and_warm`). The default pair starts loading now; a bad one is refused."""
    if service is not None:
        return ServerConfig(pairs={service.name: service.pair.config}), PairRegistry.loaded(service)
    if isinstance(config, ServerConfig):
        server_config = config
    else:
        server_config = ServerConfig.single(config if isinstance(config, PairConfig) else load_config(config))
    shared = RedisCache.connect(server_config.cache) or local_shared_cache(settings)
    builders = {
        name: build_service or functools.partial(_load_and_warm, pair_config, settings, shared=shared)
        for name, pair_config in server_config.pairs.items()
    }
    registry = PairRegistry(builders, max_loaded=server_config.max_loaded_pairs, after_ready=_warm_up_flow)
    pair_shape(server_config.pairs[registry.default], settings=settings)  # a bad default pair: refused now
    registry.loader(registry.default)
    return server_config, registry


def _mount_corpus_page(server: Flask, server_config: ServerConfig, default: str, settings: Settings | None) -> Dash:
    """The corpus page at /corpus/ (corpora under the ``corpora`` setting, default ``<data home>/corpora``)."""
    settings = settings or load_settings()
    names = {key: pair.name for key, pair in server_config.pairs.items()}
    files = {key: pair.source_path for key, pair in server_config.pairs.items() if pair.source_path}
    return mount_corpus_page(server, pair_config_names=names, default_models=default, root=settings.corpora_dir,
                             assets_folder=str(assets_dir()), pair_config_files=files)  # fmt: skip


def local_shared_cache(settings: Settings | None) -> DiskCache:
    """The one-machine shared cache (no Redis): ``<data home>/cache/shared``, bounded by ``cache_mb``."""
    settings = settings or load_settings()
    return DiskCache(settings.cache_dir / "shared", budget=settings.cache_mb * 2**20)


def _load_and_warm(
    config: PairConfig, settings: Settings | None, shared: RedisCache | DiskCache | None = None
) -> AnalysisService:
    """Load the pair, then compute every view of the first example: the page opens on it, so its first draw
    is served from the cache."""
    settings = settings or load_settings()
    examples = Examples.of(config)
    service = AnalysisService(
        load_pair(config, settings=settings),
        examples=examples.texts,
        golds=examples.golds,
        cache_bytes=settings.cache_mb * 2**20,
        shared=shared,
    )
    examples = service.examples
    if examples:
        first = service.analyse(examples[0])
        for view in RENDERERS:
            render(view, service, first, ViewOptions())
    return service


def _warm_up_flow(_service: AnalysisService) -> None:
    """Compile or load the max-flow kernel (about 0.6 s of CPU) before anyone asks for "flow", but only after the
    first page's requests have been answered and drawn, so it does not compete with them for the CPU."""
    from attention.flow import warm_up  # lazy: it imports numba, which the page's first requests need not wait for

    time.sleep(FLOW_WARM_UP_DELAY)
    warm_up()
