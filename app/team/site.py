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
from flask import Flask, has_request_context, request

from app.core.urlstate import from_query
from app.dashboard.help import render_doc
from app.dashboard.layout import build_layout
from app.service.analysis import AnalysisService
from app.service.examples import Examples
from app.service.registry import EXTENSION_KEY, PairRegistry
from app.service.stores import DiskCache, RedisCache
from app.team.auth import AuthConfig, protect
from app.team.config import ServerConfig
from app.team.prometheus import install_metrics
from app.team.request_checks import install_request_checks
from attention.config import PairConfig, load_config
from attention.errors import AttentionFlowsError
from attention.memory import release_freed_memory
from attention.models import pair_shape
from attention.settings import Settings

log = logging.getLogger("attention_flows.app")
_APP_DIR = Path(__file__).resolve().parents[1]  # app/
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
    from app.dashboard.callbacks.common import report_unexpected_error
    from app.dashboard.callbacks.registry import register_all
    from app.service.jobbook import JOBS_KEY, JobBook
    from app.team.jobs import make_manager

    if service is not None:
        server_config = ServerConfig(pairs={service.name: service.pair.config})
        registry = PairRegistry.loaded(service)
    else:
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
    pages = functools.lru_cache(maxsize=len(server_config.pairs))(
        functools.partial(_page_for, server_config, settings, service)
    )
    server = Flask(__name__)
    corpus_app = _mount_corpus_page(server, server_config, registry.default, settings)  # first: see mount_corpus_page
    dash_app = Dash(
        __name__,
        server=server,
        title="Attention Flows",
        assets_folder=str(assets_dir()),
        on_error=report_unexpected_error,
        update_title=None,
        background_callback_manager=make_manager(server_config, settings),
    )
    dash_app.server.extensions[EXTENSION_KEY] = registry
    dash_app.server.extensions[JOBS_KEY] = JobBook(server_config.jobs.broker)
    install_request_checks(server, (corpus_app, dash_app))
    protect(dash_app, auth or AuthConfig.from_environ())  # sign-in runs before every other check
    install_metrics(dash_app, registry)

    def layout() -> html.Div:
        """The page in the state its URL describes (:mod:`app.core.urlstate`), so a link or a reload opens exactly that
        view with no extra round trip. The layout request is the page's own fetch: its Referer is the page URL."""
        search = urlsplit(request.referrer or "").query if has_request_context() else ""
        try:
            name = registry.check(models_in(search) or registry.default)
        except AttentionFlowsError as error:
            return pages(registry.default)(error=f"This link could not be opened: {error}")
        try:
            page = pages(name)
        except AttentionFlowsError as error:  # a pair whose files are missing: say so on the default pair's page
            return pages(registry.default)(error=f"The model pair '{name}' cannot be opened: {error}")
        try:
            shape = page.keywords["num_layers"], page.keywords["num_heads"]
            state = from_query(search, num_layers=shape[0], num_heads=shape[1])
            choices = None
            if state.analysis is not None and (state.options.word is not None or state.options.sources):
                # a dropdown keeps only values among its options: list the tokens the link refers to
                from app.dashboard.callbacks.analyse import token_options
                from app.service.registry import pair_service

                service = pair_service(name)
                analysis = service.analyse(state.analysis.text, state.analysis.text_pair)
                level = service.checked(analysis, state.options).level
                choices = token_options(service.labels(analysis, level))
            return page(state=state, token_choices=choices)
        except AttentionFlowsError as error:
            return page(error=f"This link could not be opened: {error}")

    dash_app.layout = layout
    register_all(dash_app)

    @dash_app.server.teardown_request
    def release_memory(_error: BaseException | None) -> None:
        """After each request, hand what it freed back to the OS (0.2 ms; see
        :func:`attention.memory.release_freed_memory`): a worker's RSS then follows its byte-bounded cache instead of
        its largest past request."""
        release_freed_memory()

    @dash_app.server.route("/docs/<name>")
    def docs(name: str):
        """docs/<name>.md as a page, one anchor per section (the "?" help links point here); docs/<name>.png, the
        images those pages show."""
        if re.fullmatch(r"[a-z_-]+\.png", name) and (docs_dir() / name).is_file():
            from flask import send_file

            return send_file(docs_dir() / name, mimetype="image/png")
        path = docs_dir() / f"{name}.md"
        if not re.fullmatch(r"[a-z_-]+", name) or not path.is_file():
            return "No such document.", 404
        return render_doc(path), 200

    @dash_app.server.route("/healthz")
    def healthz() -> tuple[str, int, dict]:
        """This worker's readiness. First line: ``ok`` (200) once the default pair is loaded, ``loading the models``
        (503) while it loads, ``failed: …`` (500) if loading failed. Then, on a team server, one line per pair this
        worker has loaded and the shared cache's state (``unreachable`` means it serves from its own cache)."""
        loader = registry.loader(registry.default)
        status = loader.status
        first, code = {"ready": ("ok", 200), "loading": ("loading the models", 503)}.get(
            status, (f"failed: {loader.error}", 500)
        )
        lines = [first]
        if len(registry.names) > 1:
            lines += [f"pair {name}: {state}" for name, state in registry.status().items()]
        services = registry.ready_services()
        shared = next((s.shared for s in services if isinstance(s.shared, RedisCache)), None)
        if shared is not None:
            shared.ping()  # this worker's own view, now (0.5 s at most)
            lines.append(f"shared cache: {shared.state}")
        return "\n".join(lines), code, {"Content-Type": "text/plain; charset=utf-8"}

    return dash_app


def _mount_corpus_page(server: Flask, server_config: ServerConfig, default: str, settings: Settings | None) -> Dash:
    """The corpus page at /corpus/ (corpora under the ``corpora`` setting, default ``<data home>/corpora``)."""
    from app.corpus.page import mount_corpus_page
    from attention.settings import load_settings

    settings = settings or load_settings()
    names = {key: pair.name for key, pair in server_config.pairs.items()}
    files = {key: pair.source_path for key, pair in server_config.pairs.items() if pair.source_path}
    return mount_corpus_page(server, pair_config_names=names, default_models=default, root=settings.corpora_dir,
                             assets_folder=str(assets_dir()), pair_config_files=files)  # fmt: skip


def local_shared_cache(settings: Settings | None) -> DiskCache:
    """The one-machine shared cache (no Redis): ``<data home>/cache/shared``, bounded by ``cache_mb``."""
    from attention.settings import load_settings

    settings = settings or load_settings()
    return DiskCache(settings.cache_dir / "shared", budget=settings.cache_mb * 2**20)


def models_in(search: str) -> str | None:
    """The ``models`` (model pair) part of a URL query, or None."""
    from urllib.parse import parse_qs

    values = parse_qs(search.lstrip("?")).get("models")
    return values[0] if values else None


def _page_for(
    server_config: ServerConfig, settings: Settings | None, service: AnalysisService | None, name: str
) -> functools.partial:
    """The layout function of pair ``name`` (its shape, labels and examples bound); raises for a missing pair."""
    pair_config = server_config.pairs[name]
    if service is not None:
        shape, examples, golds = service.pair.pretrained.shape, service.examples, service.golds
    else:
        shape = pair_shape(pair_config, settings=settings)
        offered = Examples.of(pair_config)
        examples, golds = offered.texts, offered.golds
    return functools.partial(
        build_layout,
        pair_name=name,
        pair_names=tuple(server_config.pairs),
        pretrained_name=pair_config.pretrained.display_name,
        finetuned_name=pair_config.finetuned.display_name,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        examples=examples,
        golds=golds,
        first_text=examples[0] if examples else "",
        class_names=pair_config.task.labels if pair_config.task else (),
    )


def _load_and_warm(
    config: PairConfig, settings: Settings | None, shared: RedisCache | DiskCache | None = None
) -> AnalysisService:
    """Load the pair, then compute every view of the first example: the page opens on it, so its first draw
    is served from the cache."""
    from app.core.options import ViewOptions
    from app.views.render import RENDERERS, render
    from attention.models import load_pair
    from attention.settings import load_settings

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
    from attention.flow import warm_up

    time.sleep(FLOW_WARM_UP_DELAY)
    warm_up()
