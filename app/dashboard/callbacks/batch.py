"""The "Longer jobs" card: faithfulness over held-out sentences, and a batch export of many texts as one zip.

Each is a Dash background callback, run by the manager the server gave the app (in a child process of the web worker,
or on a Celery worker): it reports progress, and the Cancel button stops it. It reaches the model pair through
:func:`app.service.registry.pair_service` with :func:`~app.dashboard.callbacks.common.job_server` (a Celery worker
has no web request); it finds the pair by the name the page sent, checked against the server's list.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import pandas as pd
from dash import Input, Output, State, dcc, no_update
from dash.exceptions import PreventUpdate

from app.core.analysis import Analysis
from app.core.options import FORMATS, VIEWS, ExportOptions, OptionError
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, job_server, selected_head, view_options
from app.dashboard.callbacks.registry import declare
from app.dashboard.controls import RELEVANCE_CONTROLS, VIEW_CONTROLS, state_of, states
from app.dashboard.layout.batch import FAITHFULNESS_COUNTS, MAX_BATCH_TEXTS
from app.export.requests import FigureRequest, export_bytes, file_stem
from app.figures import make_faithfulness
from app.service.analysis import AnalysisService
from app.service.jobbook import record
from app.service.registry import pair_service
from attention.data import held_out
from attention.errors import AttentionFlowsError
from attention.evaluation import faithfulness

# The page's options a batch export draws every text with (not the word query's word: a position in this page's
# text, meaningless in another).
EXPORT_CONTROLS = states(*VIEW_CONTROLS, *RELEVANCE_CONTROLS, "metric", "arrangement", "renormalize")


def held_out_texts(service: AnalysisService, count: int) -> list[str]:
    """The first ``count`` held-out sentences of the pair's data (never trained on), or its configured examples."""
    recipe = service.pair.config.prepare
    if recipe is None:
        if not service.examples:
            raise OptionError(f"The pair '{service.name}' has no held-out sentences.", "Add [prepare] or examples.")
        return list(service.examples[:count])
    return held_out(recipe)["text"].tolist()[:count]


@declare(
    Output(ids.JOB_FAITH_RESULT, "data"),
    Input(ids.JOB_FAITH_RUN, "n_clicks"),
    State(ids.JOB_FAITH_COUNT, "value"),
    State(ids.ANALYSIS, "data"),
    state_of("target"),
    state_of("tau"),
    state_of("alpha"),
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
def run_faithfulness_batch(set_progress, clicks, count, analysis_data, target, tau, alpha):
    """Faithfulness of every method over ``count`` held-out sentences (:func:`attention.faithfulness`), one
    progress step per sentence: the table's records, or ``{"error": message}``."""
    if not clicks:
        raise PreventUpdate
    try:
        if count not in FAITHFULNESS_COUNTS:
            raise OptionError(f"{count!r} sentences is not offered.", "Pick a number from the list.")
        options = view_options(target=target, tau=tau, alpha=alpha)
        service = pair_service(Analysis.from_store(analysis_data), server=job_server())
        texts = held_out_texts(service, count)
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
def show_faithfulness_batch(result):
    """The finished check's plot (mean Spearman ρ per layer and method, 95 % intervals), or its error."""
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
def run_export_batch(set_progress, clicks, texts, view, fmt, analysis_data, selected, *controls):
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
        service = pair_service(Analysis.from_store(analysis_data), server=job_server())
        options = view_options(**dict(zip(EXPORT_CONTROLS, controls, strict=True)))
        # token choices point into the page's input, not into these texts: each text traces from [CLS]
        options = replace(options, sources=(), trace_all=False, word=None)
        head, export = selected_head(selected, service), ExportOptions.create(fmt)
        requests = [FigureRequest(analysis=Analysis(text), view=view, options=options, selected=head, export=export)
                    for text in lines]  # fmt: skip
        zipped = _zip_figures(service, requests, set_progress)
        set_progress((str(len(lines)), str(len(lines)), f"{len(lines)} of {len(lines)} exported"))
        name = f"attention-flows-{view}-{len(lines)}-texts.zip"
        return dcc.send_bytes(zipped, name), f"Done: {len(lines)} figures in {name}."
    except (AttentionFlowsError, ValueError) as error:  # nothing is sent: no zip with some figures missing
        return no_update, f"Failed: {error}"


def _zip_figures(service: AnalysisService, requests: list[FigureRequest], set_progress) -> bytes:
    """Each request's figure file and JSON sidecar, numbered in order, as one zip; a progress step per figure. An
    error names its line."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for number, request in enumerate(requests, start=1):
            set_progress((str(number - 1), str(len(requests)), f"{number - 1} of {len(requests)} exported"))
            try:
                data, side = export_bytes(service, request)
            except AttentionFlowsError as error:  # say which line: a batch of 100 is otherwise a hunt
                raise OptionError(f"Line {number}: {error.problem}", error.fix) from error
            stem = f"{number:03d}-{file_stem(request.view, side.options, request.analysis.text, request.export)}"
            archive.writestr(f"{stem}.{request.export.fmt}", data)
            archive.writestr(f"{stem}.json", side.to_json())
    return buffer.getvalue()


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
