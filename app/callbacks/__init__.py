"""Dash callbacks: thin, module-level functions (importing this package declares them; ``create_app`` registers
them on its app, see :mod:`app.callbacks.registry`).

Each reads its inputs, asks :mod:`app.services` for data, calls a pure figure function and returns. Tests call
them directly inside ``app.server.app_context()``.
"""

from app.callbacks import analyse, export, jobs, selection, url, views  # noqa: F401
