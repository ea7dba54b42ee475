"""Keep the page's state in its URL (:mod:`app.core.urlstate`), both ways, in one callback.

The page opens in its URL's state (the layout is built from it, :mod:`app.dashboard.factory`). After that, Dash
allows a callback to read and write the same properties (the URL and the controls) only within one callback, so
this one does both: when the URL changes (back / forward) it sets the text, the controls and the selected head;
when any of those changes it writes the URL (one history entry per change). A new input or a new token level also
clears the token choices (trace from, word query): their numbers refer to the old tokens.
"""

from __future__ import annotations

from dash import Input, Output, State, ctx, no_update

from app.core.analysis import Analysis
from app.core.options import OptionError, ViewOptions
from app.core.urlstate import PageState, control_values, from_query, to_query
from app.dashboard import ids
from app.dashboard.callbacks.common import show_error
from app.dashboard.callbacks.registry import declare, declare_clientside
from app.dashboard.controls import CONTROLS, inputs, outputs
from app.service.registry import pair_registry, pair_service
from attention.errors import AttentionFlowsError

URL = ids.URL
TOKEN_CHOICES = ("sources", "word")  # positions in the current input, at the current level


@declare(
    output={
        "search": Output(URL, "search"),
        "analysis": Output(ids.ANALYSIS, "data", allow_duplicate=True),
        "text": Output(ids.TEXT, "value", allow_duplicate=True),
        "text_pair": Output(ids.TEXT_PAIR, "value"),
        "selected": Output(ids.SELECTED_HEAD, "data", allow_duplicate=True),
        **outputs(*CONTROLS),
    },
    inputs={
        "search": Input(URL, "search"),
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": Input(ids.SELECTED_HEAD, "data"),
        **inputs(*CONTROLS),
    },
    prevent_initial_call=True,  # the layout opens in the URL's state (app/dashboard/factory.py): nothing to wait for
)
def sync_url(search, analysis_data, selected, **controls):
    """URL → page on load and back / forward; page → URL on every other change."""
    unchanged = {"search": no_update, "analysis": no_update, "text": no_update, "text_pair": no_update,
                 "selected": no_update, **{name: no_update for name in CONTROLS}}  # fmt: skip
    service = pair_service(Analysis.from_store(analysis_data))
    if ctx.triggered_id == URL:  # back / forward (the page opened in its URL's state already)
        restored = _restore(search, unchanged, service)
        current = {"analysis": analysis_data, "selected": selected, **controls}
        # only what differs: the Location also reports the URL the page opened with, which changes nothing
        return {
            key: no_update if key in current and value == current[key] else value for key, value in restored.items()
        }
    try:
        analysis = Analysis.from_store(analysis_data)
        if ctx.triggered_id in (ids.ANALYSIS, ids.LEVEL):  # new tokens: old positions mean nothing
            cleared = {name: ([] if name == "sources" else None) for name in TOKEN_CHOICES if controls[name]}
            unchanged |= cleared
            controls |= cleared
        options = ViewOptions.from_controls(**controls)
        if analysis is not None:
            options = service.checked(analysis, options)
        head = selected if isinstance(selected, dict) else None
        chosen = (head["layer"], head.get("head")) if head else None
        query = to_query(PageState(analysis, options, chosen), default_models=pair_registry().default)
    except (AttentionFlowsError, ValueError):
        return unchanged  # the views say what is wrong; the URL keeps the last good state
    wanted = f"?{query}" if query else ""
    if wanted != (search or ""):
        unchanged["search"] = wanted
    return unchanged


def _restore(search: str | None, unchanged: dict, service) -> dict:
    """The page's state from its URL (back to a bare URL: the page's defaults and first example); a bad link is
    one message in the page and changes nothing."""
    if not (search or "").lstrip("?"):
        if not service.examples:
            return unchanged
        first = Analysis(service.examples[0], models=service.name)
        search = "?" + to_query(PageState(first, ViewOptions()), default_models=pair_registry().default)
    try:
        state = from_query(search, num_layers=service.num_layers, num_heads=service.num_heads)
        options = state.options
        if state.analysis is not None:
            analysis = service.analyse(state.analysis.text, state.analysis.text_pair)
            options = service.checked(analysis, options)
    except (OptionError, AttentionFlowsError) as error:
        show_error(f"This link could not be opened: {error}")
        return unchanged
    restored = {**unchanged, **control_values(options, num_layers=service.num_layers, num_heads=service.num_heads)}
    if state.analysis is not None:
        restored |= {
            "analysis": analysis.to_store(),
            "text": analysis.text,
            "text_pair": analysis.text_pair or "",
        }
    # a URL without a head clears the selection (the page's default: the last layer, the head mean), so Back to a
    # page before a click shows no head selected
    layer, head = state.selected if state.selected is not None else (service.num_layers, None)
    restored["selected"] = {"layer": layer, "head": head}
    return restored


# Picking another model pair opens the page on it with the same text (its layers, heads and classes differ, so the
# options start afresh). The server checks the name against its list when it builds that page.
declare_clientside(
    """function (models, text, textPair) {
        if (!models) { return window.dash_clientside.no_update; }
        const query = new URLSearchParams();
        query.set("models", models);
        if (text) { query.set("text", text); }
        if (textPair) { query.set("pair", textPair); }
        window.location.assign("?" + query.toString());
        return window.dash_clientside.no_update;
    }""",
    Output(ids.MODELS, "className"),  # never changed: the page is left
    Input(ids.MODELS, "value"),
    State(ids.TEXT, "value"),
    State(ids.TEXT_PAIR, "value"),
    prevent_initial_call=True,
)


# The header's corpus link carries the page's pair and options (not its text): the corpus page's examples open
# with them.
declare_clientside(
    """function (search, href) {
        const query = new URLSearchParams(search || "");
        query.delete("text");
        query.delete("pair");
        const current = new URLSearchParams((href || "").split("?")[1] || "");
        if (!query.has("models") && current.has("models")) { query.set("models", current.get("models")); }
        return "/corpus/?" + query.toString();
    }""",
    Output(ids.CORPUS_LINK, "href"),
    Input(ids.URL, "search"),
    State(ids.CORPUS_LINK, "href"),
)
