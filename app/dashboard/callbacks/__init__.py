"""Dash callbacks: thin, module-level functions (importing this package declares them all;
:func:`register_callbacks` registers them on an app, see :mod:`app.dashboard.callbacks.registry`).

Each reads its inputs (:mod:`app.dashboard.controls`), finds the pair's service (:func:`app.service.registry
.pair_service`), asks the view assembly for a figure (:func:`app.views.render.render`) and returns it. Tests call
them directly inside ``app.server.app_context()``.
"""

from dash import Dash

from app.dashboard.callbacks.registry import register_all

# isort: off
# Imported in the order the page lists its callbacks (/_dash-dependencies), not alphabetically.
from app.dashboard.callbacks import analyse, views, headview, export, batch, selection, url
# isort: on

__all__ = ["analyse", "batch", "export", "headview", "register_callbacks", "selection", "url", "views"]


def register_callbacks(dash_app: Dash) -> None:
    """Register every callback of the page (each module's, declared when this package was imported) on
    ``dash_app``."""
    register_all(dash_app)
