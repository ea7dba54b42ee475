"""The corpus page (``/corpus/``): what fine-tuning changed over a whole corpus, linked to single examples.

A second Dash app on the dashboard's Flask server, so sign-in, metrics and the pair list are the same. (Not Dash
pages: they render a page's content through an extra callback after load, and the single-example page renders
its URL's state in its first response.) Everything is read from a corpus folder under ``<data home>/corpora``
(``attention-flows corpus run``); the browser only ever names a pair and a corpus folder, checked against the
lists.

The page's parts: :mod:`app.corpus.catalog` (the corpora, a server's extension), :mod:`app.corpus.grid` (the
example table's requests and rows), :mod:`app.corpus.layout` (the components) and :mod:`app.corpus.callbacks`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from dash import Dash, set_props
from flask import Flask

from app.corpus.callbacks import register_callbacks
from app.corpus.catalog import CATALOG_KEY, CorpusCatalog
from app.corpus.layout import corpus_layout


def _report_unexpected_error(error: Exception) -> None:
    """``Dash(on_error=...)``: log the traceback, show one plain sentence in the page's banner."""
    reference = uuid.uuid4().hex[:8]
    logging.getLogger(__name__).exception("unexpected error on the corpus page (%s)", reference, exc_info=error)
    set_props("corpus-error", {"children": f"Something went wrong on the server (reference {reference}). Try again; "
                                           "the server log has the details under that reference.",
                               "className": "error-banner"})  # fmt: skip


def mount_corpus_page(
    server: Flask,
    *,
    pair_config_names: dict[str, str],
    default_models: str,
    root: Path,
    assets_folder: str,
    pair_config_files: dict[str, Path] | None = None,
) -> Dash:
    """Serve the corpus page at ``/corpus/`` on the Flask ``server``. Mount it before the dashboard's own Dash app
    is made: Dash takes the last app made in a process as ``dash.get_app()``, which background jobs use.
    ``pair_config_files`` (each pair's config file, when known) lets the page's hint name a config outside
    configs/ by its path."""
    corpus_app = Dash(
        __name__,
        server=server,
        url_base_pathname="/corpus/",
        title="Attention Flows · corpus",
        assets_folder=assets_folder,
        update_title=None,
        suppress_callback_exceptions=True,  # a pair without corpora gets a page without the views
        on_error=_report_unexpected_error,
    )
    catalog = CorpusCatalog(root, pair_config_names, pair_config_files=pair_config_files, default_models=default_models)
    server.extensions[CATALOG_KEY] = catalog
    corpus_app.layout = lambda: corpus_layout(catalog)
    register_callbacks(corpus_app)
    return corpus_app
