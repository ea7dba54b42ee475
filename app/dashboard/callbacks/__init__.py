"""Dash callbacks: thin, module-level functions (importing this package declares them; ``create_app`` registers
them on its app, see :mod:`app.dashboard.callbacks.registry`).

Each reads its inputs, asks :mod:`app.service.analysis` for data, calls a pure figure function and returns. Tests call
them directly inside ``app.server.app_context()``.
"""

from app.dashboard.callbacks import analyse, export, jobs, selection, url, views  # noqa: F401
