"""Helpers shared by the callbacks: readable errors instead of tracebacks, option parsing, and the app a background
job belongs to."""

from __future__ import annotations

import functools
import logging
import uuid

from dash import ctx, get_app, no_update, set_props
from dash.exceptions import PreventUpdate
from flask import Flask, has_app_context

from app.core.analysis import Analysis
from app.core.options import ViewOptions, check_selected_head
from app.dashboard import ids
from app.service.jobbook import LOST_MESSAGE, record
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
    """``Dash(on_error=...)``: log the traceback, show one plain sentence to the user (never Python's text)."""
    if LOST_MESSAGE in str(error):  # a background job whose process or worker died: say so, plainly
        reason = str(error).split(LOST_MESSAGE, 1)[1].split("\n", 1)[0]
        log.warning("background job lost: %s", reason)
        record("background", "lost")
        show_error(f"This job failed: {reason}")
        return
    reference = uuid.uuid4().hex[:8]
    log.exception("unexpected error in a callback (reference %s)", reference, exc_info=error)
    show_error(
        f"Something went wrong on the server while drawing this view (reference {reference}). "
        "Try again; if it persists, the server log has the details under that reference."
    )


def job_server() -> Flask | None:
    """The Flask app a background job reaches its pair through (:func:`app.service.registry.pair_service`'s
    ``server``): None, the request's app, when the job runs in a child of the web worker (it has the app context);
    the worker's own app on a Celery worker (:mod:`app.team.worker`), which has none."""
    return None if has_app_context() else get_app().server


def require_analysis(data: dict | None) -> Analysis:
    analysis = Analysis.from_store(data)
    if analysis is None:
        raise PreventUpdate
    return analysis


def selected_head(data: dict | None, service) -> tuple[int, int | None]:
    """(layer, head) from the selection store, checked against the model; head None means the mean over the
    selected heads."""
    return check_selected_head(data, service.num_layers, service.num_heads)


def view_options(**controls) -> ViewOptions:
    return ViewOptions.from_controls(**controls)
