"""Dash callbacks: thin, module-level functions (importing this package registers them).

Each reads its inputs, asks :mod:`app.services` for data, calls a pure figure function and returns. Tests call
them directly inside ``app.server.app_context()``.
"""

from app.callbacks import analyse, export, selection, views  # noqa: F401
