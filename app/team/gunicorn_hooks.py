"""gunicorn's settings and hooks for ``serve --workers N`` (``--config python:app.team.gunicorn_hooks``).

The master preloads the app (:mod:`app.team.wsgi`): the default pair's weights are in memory before the workers are
forked, and each worker shares them copy-on-write. After the fork a worker sets torch's threads again (a fork keeps
the setting but not the thread pool) and seeds its own random state; locks the services hold are renewed by
:func:`app.service.memo.fresh_locks_after_fork`.
"""

from __future__ import annotations

import os
import sys

PRELOAD_ENV = "ATTENTION_FLOWS_PRELOAD"  # "1": gunicorn's master imports the app to fork workers (set by serve)


def preloading() -> bool:
    """Whether this process is gunicorn's master importing the app to fork workers from it (``serve`` sets
    :data:`PRELOAD_ENV` before it starts gunicorn; each worker clears it after the fork)."""
    return os.environ.get(PRELOAD_ENV) == "1"


def post_fork(server, worker) -> None:
    """In each worker, right after the fork: torch's threads as configured, the app no longer preloading, and its
    own export browser started in the background (the master's threads do not survive the fork)."""
    os.environ.pop(PRELOAD_ENV, None)
    if "torch" in sys.modules:
        from attention.settings import configure_torch, load_settings  # lazy: only once torch is loaded

        configure_torch(load_settings())
    from app.export import warm_export_browser  # lazy: this file is read by gunicorn before the app is imported

    warm_export_browser()
