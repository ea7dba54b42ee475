"""The dashboard on a Flask server: the Dash app, its page (built per pair, in the state of the page's URL) and its
callbacks. The server around it (sign-in, request checks, metrics, routes, the background-job manager) is composed
by :func:`app.team.site.create_app`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from dash import Dash, html
from flask import Flask, has_request_context, request

from app.core.urlstate import PageState, from_query
from app.dashboard.callbacks import register_callbacks
from app.dashboard.callbacks.common import report_unexpected_error
from app.dashboard.layout import build_layout
from app.dashboard.layout.controls import token_options
from app.service.analysis import AnalysisService
from app.service.examples import Examples
from app.service.registry import EXTENSION_KEY, PairRegistry, pair_service
from attention.config import PairConfig
from attention.errors import AttentionFlowsError
from attention.models import pair_shape
from attention.settings import Settings


def mount_dashboard(
    server: Flask,
    registry: PairRegistry,
    pairs: dict[str, PairConfig],
    *,
    assets_folder: str,
    background_callback_manager: object,
    settings: Settings | None = None,
    service: AnalysisService | None = None,
) -> Dash:
    """The dashboard at ``/`` on ``server``, serving the pairs of ``registry`` (configured as ``pairs``, in its
    order); its background callbacks run on ``background_callback_manager``. ``service``: the one pair, already
    loaded (tests, scripts)."""
    dash_app = Dash(
        __name__,
        server=server,
        title="Attention Flows",
        assets_folder=assets_folder,
        on_error=report_unexpected_error,
        update_title=None,
        background_callback_manager=background_callback_manager,
    )
    server.extensions[EXTENSION_KEY] = registry  # where pair_service finds the pairs
    pages = functools.lru_cache(maxsize=len(pairs))(functools.partial(page_for, pairs, settings, service))
    dash_app.layout = page_layout(registry, pages)
    register_callbacks(dash_app)
    return dash_app


def page_layout(registry: PairRegistry, pages: Callable[[str], functools.partial]) -> Callable[[], html.Div]:
    """The app's layout function: the page in the state its URL describes (:mod:`app.core.urlstate`), so a link or
    a reload opens exactly that view with no extra round trip, on the pair its ``?models=`` names (checked against
    ``registry``). ``pages`` maps a pair's name to its :func:`page_for`."""

    def layout() -> html.Div:
        # The layout request is the page's own fetch: its Referer is the page URL.
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
            state = from_query(search, num_layers=page.keywords["num_layers"], num_heads=page.keywords["num_heads"])
            return page(state=state, token_choices=linked_token_choices(state, name))
        except AttentionFlowsError as error:
            return page(error=f"This link could not be opened: {error}")

    return layout


def linked_token_choices(state: PageState, name: str) -> tuple[list[dict], list[dict]] | None:
    """The 'Trace from' and 'Word query' options of a link that chooses tokens (a dropdown keeps only values among
    its options: list the tokens the link refers to), analysing its text with pair ``name``; None otherwise."""
    if state.analysis is None or (state.options.word is None and not state.options.sources):
        return None
    service = pair_service(name)
    analysis = service.analyse(state.analysis.text, state.analysis.text_pair)
    level = service.checked(analysis, state.options).level
    return token_options(service.labels(analysis, level))


def models_in(search: str) -> str | None:
    """The ``models`` (model pair) part of a URL query, or None."""
    values = parse_qs(search.lstrip("?")).get("models")
    return values[0] if values else None


def page_for(
    pairs: dict[str, PairConfig], settings: Settings | None, service: AnalysisService | None, name: str
) -> functools.partial:
    """The layout function of pair ``name`` (its shape, labels and examples bound); raises for a missing pair."""
    pair_config = pairs[name]
    if service is not None:
        shape, examples, golds = service.pair.pretrained.shape, service.examples, service.golds
    else:
        shape = pair_shape(pair_config, settings=settings)
        offered = Examples.of(pair_config)
        examples, golds = offered.texts, offered.golds
    return functools.partial(
        build_layout,
        pair_name=name,
        pair_names=tuple(pairs),
        pretrained_name=pair_config.pretrained.display_name,
        finetuned_name=pair_config.finetuned.display_name,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        causal=shape.causal,
        examples=examples,
        golds=golds,
        first_text=examples[0] if examples else "",
        class_names=pair_config.task.labels if pair_config.task else (),
    )
