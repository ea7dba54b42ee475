"""The "Longer jobs" card: faithfulness over held-out sentences and a batch export, each run in the background with
a progress bar and a cancel button (:mod:`app.dashboard.callbacks.batch`)."""

from __future__ import annotations

from dash import dcc, html

from app.core.options import FORMATS, VIEWS
from app.dashboard import ids
from app.dashboard.help import help_icon

FAITHFULNESS_COUNTS = (20, 50, 100, 200)
MAX_BATCH_TEXTS = 100


def _progress(bar_id: str, status_id: str) -> html.Div:
    return html.Div(
        [html.Progress(id=bar_id, value="0", max="1", className="job-progress"),
         html.Span(id=status_id, className="job-status", role="status")],
        className="job-progress-row",
    )  # fmt: skip


def _buttons(run_id: str, cancel_id: str, label: str) -> html.Span:
    return html.Span(
        [html.Button(label, id=run_id, n_clicks=0, className="small-button"),
         html.Button("Cancel", id=cancel_id, n_clicks=0, disabled=True, className="small-button")],
        className="job-buttons",
    )  # fmt: skip


def batch_card() -> html.Div:
    """Faithfulness over held-out sentences, and a batch export of many texts as one zip."""
    return html.Div(
        [html.Div(html.H3(["Longer jobs", help_icon("jobs")]), className="card-header"),
         html.Div([_faithfulness_batch(), _export_batch()], className="jobs")],
        className="panel view-card wide",
        id=ids.card("jobs"),
    )  # fmt: skip


def _faithfulness_batch() -> html.Div:
    """How many held-out sentences, Run / Cancel, the progress, and the finished check's plot."""
    return html.Div(
        [
            html.H4(["Faithfulness over held-out sentences", help_icon("job:faithfulness")]),
            html.Div(
                [
                    dcc.Dropdown(
                        id=ids.JOB_FAITH_COUNT,
                        options=[{"label": f"{n} sentences", "value": n} for n in FAITHFULNESS_COUNTS],
                        value=FAITHFULNESS_COUNTS[0],
                        clearable=False,
                        className="job-count",
                    ),
                    _buttons(ids.JOB_FAITH_RUN, ids.JOB_FAITH_CANCEL, "Run"),
                ],
                className="job-row",
            ),
            _progress(ids.JOB_FAITH_PROGRESS, ids.JOB_FAITH_STATUS),
            dcc.Store(id=ids.JOB_FAITH_RESULT),
            html.Div(
                dcc.Graph(id=ids.JOB_FAITH_FIGURE, config={"displaylogo": False}, style={"display": "none"}),
                className="job-figure",
            ),
        ],
        className="job",
    )  # fmt: skip


def _export_batch() -> html.Div:
    """The texts (one per line), the view and format, Export / Cancel, the progress, and the zip's download."""
    return html.Div(
        [
            html.H4(["Batch export", help_icon("job:export")]),
            dcc.Textarea(
                id=ids.JOB_EXPORT_TEXTS,
                rows=3,
                className="text-input",
                placeholder=f"One text per line (at most {MAX_BATCH_TEXTS}); each is exported with the current options",
            ),
            html.Div(
                [
                    dcc.Dropdown(
                        id=ids.JOB_EXPORT_VIEW,
                        options=[{"label": t, "value": v} for v, t in VIEWS.items()],
                        value="sankey",
                        clearable=False,
                        className="job-view",
                    ),
                    dcc.Dropdown(
                        id=ids.JOB_EXPORT_FORMAT,
                        options=[{"label": f.upper(), "value": f} for f in FORMATS],
                        value="svg",
                        clearable=False,
                        className="job-format",
                    ),
                    _buttons(ids.JOB_EXPORT_RUN, ids.JOB_EXPORT_CANCEL, "Export as zip"),
                ],
                className="job-row",
            ),
            _progress(ids.JOB_EXPORT_PROGRESS, ids.JOB_EXPORT_STATUS),
            dcc.Download(id=ids.JOB_EXPORT_DOWNLOAD),
        ],
        className="job",
    )
