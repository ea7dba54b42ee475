"""Helpers shared by the callbacks: readable errors instead of tracebacks, and option parsing."""

from __future__ import annotations

import functools
import logging

from dash import ctx, no_update, set_props
from dash.exceptions import PreventUpdate

from app import ids
from app.services import Analysis
from app.state import ViewOptions
from attention.errors import AttentionFlowsError

log = logging.getLogger("attention_flows.app")


def show_error(message: str) -> None:
    """Put a readable message in the page's error banner."""
    set_props(ids.ERROR, {"children": message})


def _no_update_for_every_output():
    outputs = ctx.outputs_list
    return [no_update] * len(outputs) if isinstance(outputs, list) else no_update


def guarded(callback):
    """Turn engine errors and invalid options into a message in the page and leave the outputs as they are,
    never a traceback. (Returning ``no_update`` rather than raising ``PreventUpdate`` keeps the message: Dash
    drops side updates of a prevented callback.)"""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (AttentionFlowsError, ValueError) as error:
            log.info("%s: %s", callback.__name__, error)
            show_error(str(error))
            return _no_update_for_every_output()

    return wrapper


def report_unexpected_error(error: Exception) -> None:
    """``Dash(on_error=...)``: log the traceback, show one line to the user."""
    log.exception("unexpected error in a callback", exc_info=error)
    show_error(f"Something went wrong ({type(error).__name__}: {error}). The details are in the server log.")


def require_analysis(data: dict | None) -> Analysis:
    analysis = Analysis.from_store(data)
    if analysis is None:
        raise PreventUpdate
    return analysis


def selected_head(data: dict | None, num_layers: int) -> tuple[int, int | None]:
    """(layer, head) from the selection store; head None means the mean over the selected heads."""
    if not data:
        return num_layers, None
    layer = min(max(int(data.get("layer") or num_layers), 1), num_layers)
    head = data.get("head")
    return layer, None if head is None else int(head)


def view_options(**controls) -> ViewOptions:
    return ViewOptions.from_controls(**controls)
