"""Views are drawn when seen (issue 28): a view the window does not show is not computed until it scrolls into view.

Per view, three parts:

- ``assets/seen.js`` watches every view card with an ``IntersectionObserver`` and writes whether it is on screen
  (or within a margin of it) to the view's ``seen`` store (:func:`app.dashboard.ids.seen`);
- a **gate**, run in the browser, reads the view's inputs and its ``seen`` store: when the view is seen and its
  inputs differ from those it was last asked to draw, it writes ``{"key": the inputs, "changed": what changed}`` to
  the view's ``want`` store (:func:`app.dashboard.ids.want`); otherwise nothing, so no request leaves the browser.
  ``changed`` is counted from the inputs of the view's last *answer* (its ``answered`` store): a request the page
  dropped for a newer one still counts;
- the server callback runs on ``want`` alone, reads the inputs as states, and writes the key it answered for to
  the ``answered`` store (:func:`app.dashboard.ids.answered`) — unless it failed, so the next change draws again.

A control change therefore redraws only the seen views that read it; a view scrolled to later is drawn with the
controls of that moment (its inputs differ from the last ones it drew), and one that is still current is not drawn
again. Exports and the URL do not go through this (they render on the server from the options).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

from dash import Input, Output, State, ctx, no_update
from dash.exceptions import MissingCallbackContextException

from app.dashboard import ids
from app.dashboard.callbacks.registry import declare, declare_clientside

# The gate: ``count`` inputs of the view, then its ``seen`` store, then its states, its ``want`` store and its
# ``answered`` store (last). ``changed`` lists the inputs that differ from those of the view's last *answer* (not its
# last request): a request the page dropped because a newer one followed (Dash keeps only the newest answer of a
# callback) still counts as a change, so the server never skips a redraw the figure on screen is missing.
GATE_JS = """function () {
    const args = Array.prototype.slice.call(arguments);
    const clientside = window.dash_clientside;
    const seen = args[COUNT];
    const want = args[args.length - 2];
    const answered = args[args.length - 1];
    if (!seen) { return clientside.no_update; }
    const current = args.slice(0, COUNT);
    const key = JSON.stringify(current);
    if (want && want.key === key) { return clientside.no_update; }
    let changed = null;
    let before = null;
    try { before = typeof answered === "string" ? JSON.parse(answered) : null; } catch (error) { before = null; }
    if (Array.isArray(before) && before.length === COUNT) {
        changed = PROPS.filter(function (prop, i) {
            return JSON.stringify(before[i]) !== JSON.stringify(current[i]);
        });
    }
    return {key: key, changed: changed};
}"""

MISSING = object()  # the server callback called directly (tests, scripts): draw, as before


def declare_view(view: str, *outputs: Output, inputs: dict, **kwargs) -> Callable:
    """Declare ``view``'s callback (``outputs`` from ``inputs``, a name → ``Input``/``State`` dict, as
    :func:`~app.dashboard.callbacks.registry.declare` takes them) so that it runs only when the view is seen and
    its inputs changed (module docstring). The function keeps its signature; called directly it always draws."""
    triggers = {name: dep for name, dep in inputs.items() if isinstance(dep, Input)}
    kept = {name: dep for name, dep in inputs.items() if not isinstance(dep, Input)}
    props = json.dumps([f"{dep.component_id}.{dep.component_property}" for dep in triggers.values()])
    declare_clientside(
        GATE_JS.replace("COUNT", str(len(triggers))).replace("PROPS", props),
        Output(ids.want(view), "data"),
        *triggers.values(),
        Input(ids.seen(view), "data"),
        *kept.values(),
        State(ids.want(view), "data"),
        State(ids.answered(view), "data"),
    )
    states = {name: State(dep.component_id, dep.component_property) for name, dep in inputs.items()}

    def decorator(function: Callable) -> Callable:
        @functools.wraps(function)
        def when_wanted(*args, want=MISSING, **values):
            if want is MISSING:  # called directly (tests, scripts): the view's own outputs
                return function(*args, **values)
            if not want:
                return [no_update] * (len(outputs) + 1)  # not seen yet
            drawn = function(*args, **values)
            if _failed(drawn, len(outputs) + 1):  # nothing answered: the next change redraws
                return drawn
            key = _wanted(want).get("key")
            return [*(drawn if len(outputs) > 1 else [drawn]), key if isinstance(key, str) else None]

        # only the gate asks (never Dash's call of every callback when the page loads: nothing is seen yet)
        declare(*outputs, Output(ids.answered(view), "data"), inputs={"want": Input(ids.want(view), "data"),
                **states}, prevent_initial_call=True, **kwargs)(when_wanted)  # fmt: skip
        return when_wanted

    return decorator


def _wanted(want) -> dict:
    """The gate's ``want`` value as the gate writes it (a dict); anything else a page could send counts as none:
    the view draws, and no ``answered`` key is kept."""
    return want if isinstance(want, dict) else {}


def _failed(drawn, count: int) -> bool:
    """Whether a view callback's result is :func:`~app.dashboard.callbacks.common.guarded`'s answer to an error:
    ``no_update`` for each of the ``count`` outputs Dash declared (the answered store's included)."""
    return isinstance(drawn, list) and len(drawn) == count and all(item is no_update for item in drawn)


def changed_props() -> set[str] | None:
    """The component ids whose change made the running view callback draw (the gate's ``changed``), or those that
    triggered any other callback; None outside a callback."""
    try:
        triggered = [item["prop_id"] for item in ctx.triggered or []]
    except MissingCallbackContextException:  # called directly (tests, scripts)
        return None
    if len(triggered) == 1 and triggered[0].startswith(ids.want("")):
        want = next(iter(ctx.inputs.values()), None) if ctx.inputs else None
        changed = _wanted(want).get("changed")
        triggered = [item for item in changed if isinstance(item, str)] if isinstance(changed, list) else []
    return {prop.rsplit(".", 1)[0] for prop in triggered}


def drawn_state(view: str) -> State:
    """The ``want`` store of ``view`` as a state: falsy until the view has been asked to draw (a callback that
    patches the view's figure has nothing to patch before)."""
    return State(ids.want(view), "data")
