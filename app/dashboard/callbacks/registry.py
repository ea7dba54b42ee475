"""Callbacks are declared once, at import, and registered on every dashboard
:func:`app.dashboard.factory.mount_dashboard` builds.

(Dash's own module-level ``@callback`` list is consumed by the first app that serves a request, so a second app
in the same process would silently have no callbacks.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dash import Dash

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class _Declared:
    args: tuple
    kwargs: dict
    function: Callable


_DECLARED: list[_Declared] = []  # appended to only while the callback modules are imported (app.dashboard.callbacks)
_CLIENTSIDE: list[tuple[str, tuple, dict]] = []  # (JavaScript function, args, kwargs), likewise


def declare(*args, **kwargs) -> Callable[[F], F]:
    """Like ``dash.callback``, but recorded for :func:`register_all`; the function itself is returned as is, so
    tests can call it directly."""

    def decorator(function: F) -> F:
        _DECLARED.append(_Declared(args, kwargs, function))
        return function

    return decorator


def declare_clientside(function: str, *args, **kwargs) -> None:
    """Like ``dash.clientside_callback`` (a JavaScript ``function``, run in the browser), recorded likewise."""
    _CLIENTSIDE.append((function, args, kwargs))


def register_all(dash_app: Dash) -> None:
    """Register every declared callback on ``dash_app`` (use :func:`app.dashboard.callbacks.register_callbacks`,
    which imports, and so declares, them all first)."""
    for declared in _DECLARED:
        dash_app.callback(*declared.args, **declared.kwargs)(declared.function)
    for function, args, kwargs in _CLIENTSIDE:
        dash_app.clientside_callback(function, *args, **kwargs)
