"""Background jobs in the page: faithfulness over held-out sentences, and a batch export as one zip.

Each is a Dash background callback (:mod:`app.team.jobs`): it runs in a child process (diskcache) or on a Celery worker,
reports progress, and the Cancel button stops it. A job reaches the model pair through :func:`job_registry`, since
it has no web request; it finds the pair by the name the page sent, checked against the server's list.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

from dash import Input, Output, State, dcc, no_update
from dash.exceptions import PreventUpdate

from app.core.analysis import Analysis
from app.core.options import FORMATS, VIEWS, OptionError
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, view_options
from app.dashboard.callbacks.registry import declare
from app.dashboard.callbacks.views import CONTROLS, RELEVANCE
from app.dashboard.layout.jobs import FAITHFULNESS_COUNTS, MAX_BATCH_TEXTS
from app.service.jobbook import record
from attention.errors import AttentionFlowsError

EXPORT_CONTROLS = {
    **{name: State(dep.component_id, dep.component_property) for name, dep in {**CONTROLS, **RELEVANCE}.items()},
    "metric": State(ids.METRIC, "value"),
    "arrangement": State(ids.ARRANGEMENT, "value"),
    "renormalize": State(ids.RENORMALIZE, "value"),
}


def job_registry():
    """The :class:`app.service.registry.PairRegistry` of the app this job belongs to: the request's app when the
    job runs in a child of the web worker, the worker's own app on a Celery worker (:mod:`app.team.worker`)."""
    from dash import get_app
    from flask import current_app, has_app_context

    from app.service.registry import EXTENSION_KEY

    server = current_app if has_app_context() else get_app().server
    return server.extensions[EXTENSION_KEY]


def held_out_texts(service, count: int) -> list[str]:
    """The first ``count`` held-out sentences of the pair's data (never trained on), or its configured examples."""
    recipe = service.pair.config.prepare
    if recipe is None:
        if not service.examples:
            raise OptionError(f"The pair '{service.name}' has no held-out sentences.", "Add [prepare] or examples.")
        return list(service.examples[:count])
    from attention.data import held_out

    return held_out(recipe)["text"].tolist()[:count]


@declare(
    Output(ids.JOB_FAITH_RESULT, "data"),
    Input(ids.JOB_FAITH_RUN, "n_clicks"),
    State(ids.JOB_FAITH_COUNT, "value"),
    State(ids.ANALYSIS, "data"),
    State(ids.TARGET, "value"),
    State(ids.TAU, "value"),
    State(ids.ALPHA, "value"),
    background=True,
    progress=[
        Output(ids.JOB_FAITH_PROGRESS, "value"),
        Output(ids.JOB_FAITH_PROGRESS, "max"),
        Output(ids.JOB_FAITH_STATUS, "children"),
    ],
    running=[
        (Output(ids.JOB_FAITH_RUN, "disabled"), True, False),
        (Output(ids.JOB_FAITH_CANCEL, "disabled"), False, True),
        (Output(ids.JOB_FAITH_STATUS, "children"), "Waiting for a worker…", ""),
    ],
    cancel=[Input(ids.JOB_FAITH_CANCEL, "n_clicks")],
    prevent_initial_call=True,
)
def faithfulness_job(set_progress, clicks, count, analysis_data, target, tau, alpha):
    """Faithfulness of every method over ``count`` held-out sentences (:func:`attention.faithfulness`), one
    progress step per sentence: the table's records, or ``{"error": message}``."""
    if not clicks:
        raise PreventUpdate
    try:
        if count not in FAITHFULNESS_COUNTS:
            raise OptionError(f"{count!r} sentences is not offered.", "Pick a number from the list.")
        options = view_options(target=target, tau=tau, alpha=alpha)
        analysis = Analysis.from_store(analysis_data)
        service = job_registry().get(analysis.models if analysis else None)
        texts = held_out_texts(service, count)
        from attention.evaluation import faithfulness

        done = [0]

        def step(_one: int) -> None:
            done[0] += 1
            set_progress((str(done[0]), str(len(texts)), f"{done[0]} of {len(texts)} sentences"))

        set_progress(("0", str(len(texts)), f"0 of {len(texts)} sentences"))
        table = faithfulness(service.pair.finetuned, texts, target=options.target, progress=step,
                             tau=options.tau, alpha=options.alpha)  # fmt: skip
        return {"records": table.to_dict("records"), "model": service.pair.finetuned.name, "pair": service.name}
    except AttentionFlowsError as error:
        return {"error": str(error)}


@declare(
    Output(ids.JOB_FAITH_FIGURE, "figure"),
    Output(ids.JOB_FAITH_FIGURE, "style"),
    Output(ids.JOB_FAITH_STATUS, "children", allow_duplicate=True),
    Input(ids.JOB_FAITH_RESULT, "data"),
    prevent_initial_call=True,
)
@guarded
def show_faithfulness_job(result):
    """The finished job's plot (mean Spearman ρ per layer and method, 95 % intervals), or its error."""
    import pandas as pd

    from app.figures import make_faithfulness

    if not isinstance(result, dict):
        raise PreventUpdate
    if "error" in result:
        record("faithfulness", "failed")
        return no_update, {"display": "none"}, f"Failed: {result['error']}"
    table = pd.DataFrame(result.get("records") or [])
    if table.empty:
        record("faithfulness", "failed")
        return no_update, {"display": "none"}, "Failed: no sentence gave a correlation."
    record("faithfulness", "done")
    sentences = int(table["n"].max())
    # the model in the status line, not the title: the card is half the page wide
    return make_faithfulness(table), {}, f"Done: {sentences} sentences, {result.get('model', 'fine-tuned model')}."


@declare(
    Output(ids.JOB_EXPORT_DOWNLOAD, "data"),
    Output(ids.JOB_EXPORT_STATUS, "children", allow_duplicate=True),
    Input(ids.JOB_EXPORT_RUN, "n_clicks"),
    State(ids.JOB_EXPORT_TEXTS, "value"),
    State(ids.JOB_EXPORT_VIEW, "value"),
    State(ids.JOB_EXPORT_FORMAT, "value"),
    State(ids.ANALYSIS, "data"),
    State(ids.SELECTED_HEAD, "data"),
    *EXPORT_CONTROLS.values(),
    background=True,
    progress=[
        Output(ids.JOB_EXPORT_PROGRESS, "value"),
        Output(ids.JOB_EXPORT_PROGRESS, "max"),
        Output(ids.JOB_EXPORT_STATUS, "children"),
    ],
    running=[
        (Output(ids.JOB_EXPORT_RUN, "disabled"), True, False),
        (Output(ids.JOB_EXPORT_CANCEL, "disabled"), False, True),
    ],
    cancel=[Input(ids.JOB_EXPORT_CANCEL, "n_clicks")],
    prevent_initial_call=True,
)
def export_job(set_progress, clicks, texts, view, fmt, analysis_data, selected, *controls):
    """Each line of ``texts`` exported as ``view`` in ``fmt`` with the page's options, plus a JSON sidecar, in one
    zip (file names numbered in input order). Returns the download and a status line."""
    if not clicks:
        raise PreventUpdate
    try:
        lines = [line.strip() for line in (texts or "").splitlines() if line.strip()]
        if not lines:
            raise OptionError("There is no text to export.", "Type one text per line in the box.")
        if len(lines) > MAX_BATCH_TEXTS:
            raise OptionError(f"{len(lines)} texts are more than {MAX_BATCH_TEXTS}.", "Split them into batches.")
        if view not in VIEWS or fmt not in FORMATS:
            raise OptionError("Unknown view or format.", "Pick them from the lists.")
        from app.core.options import ExportOptions
        from app.dashboard.callbacks.common import selected_head
        from app.export.requests import FigureRequest, export_bytes, file_stem

        analysis = Analysis.from_store(analysis_data)
        service = job_registry().get(analysis.models if analysis else None)
        options = view_options(**dict(zip(EXPORT_CONTROLS, controls, strict=True)))
        # token choices point into the page's input, not into these texts: each text traces from [CLS]
        options = replace(options, sources=(), trace_all=False, word=None)
        head = selected_head(selected, service)
        export = ExportOptions.create(fmt)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for number, text in enumerate(lines, start=1):
                set_progress((str(number - 1), str(len(lines)), f"{number - 1} of {len(lines)} exported"))
                job = FigureRequest(analysis=Analysis(text), view=view, options=options, selected=head, export=export)
                try:
                    data, side = export_bytes(service, job)
                except AttentionFlowsError as error:  # say which line: a batch of 100 is otherwise a hunt
                    raise OptionError(f"Line {number}: {error.problem}", error.fix) from error
                stem = f"{number:03d}-{file_stem(view, side.options, text)}"
                archive.writestr(f"{stem}.{fmt}", data)
                archive.writestr(f"{stem}.json", side.to_json())
        set_progress((str(len(lines)), str(len(lines)), f"{len(lines)} of {len(lines)} exported"))
        name = f"attention-flows-{view}-{len(lines)}-texts.zip"
        return dcc.send_bytes(buffer.getvalue(), name), f"Done: {len(lines)} figures in {name}."
    except (AttentionFlowsError, ValueError) as error:  # nothing is sent: no zip with some figures missing
        return no_update, f"Failed: {error}"


@declare(
    Output(ids.JOB_FAITH_STATUS, "children", allow_duplicate=True),
    Input(ids.JOB_FAITH_CANCEL, "n_clicks"),
    prevent_initial_call=True,
)
def faithfulness_cancelled(clicks):
    if not clicks:
        raise PreventUpdate
    record("faithfulness", "cancelled")
    return "Cancelled."


@declare(
    Output(ids.JOB_EXPORT_STATUS, "children", allow_duplicate=True),
    Input(ids.JOB_EXPORT_CANCEL, "n_clicks"),
    prevent_initial_call=True,
)
def export_cancelled(clicks):
    if not clicks:
        raise PreventUpdate
    record("export", "cancelled")
    return "Cancelled."
