"""The input panel and the control panel."""

from __future__ import annotations

from collections.abc import Collection

from dash import dcc, html

from app.core.analysis import Analysis
from app.core.options import (
    AGGREGATIONS,
    ARRANGEMENTS,
    FOLD_ABOVE,
    HEAD_METRICS,
    HIDE_KINDS,
    LEVELS,
    MEASURES,
    METHODS,
    MODES,
    PREDICTED,
    TOP_K_CHOICES,
    ViewOptions,
)
from app.core.urlstate import control_values
from app.dashboard import ids
from app.dashboard.help import help_icon
from attention.defaults import DECODER_MEASURES, RESIDUAL_MEASURES


def _field(label: str, control, hint: str = "", *, help_key: str | None = None) -> html.Div:
    """A labelled control with a "?" (:mod:`app.dashboard.help`) and an optional one-line hint."""
    title = [label, help_icon(help_key)] if help_key else label
    return html.Div(
        [html.Label(title, className="field-label"), control, html.Small(hint, className="hint") if hint else None],
        className="field",
    )


def _choice(component_id: str, choices: dict[str, str], value: str) -> dcc.RadioItems:
    """Inline radio buttons."""
    return dcc.RadioItems(
        id=component_id,
        value=value,
        inline=True,
        options=[{"label": label, "value": value} for value, label in choices.items()],
    )


def _menu(
    component_id: str, choices: dict[str, str], value: str, unavailable: Collection[str] = (), why: str = ""
) -> dcc.Dropdown:
    """A dropdown of ``choices`` (value → label) that always holds one of them; ``unavailable`` ones are shown
    greyed out with ``why`` after their label."""
    return dcc.Dropdown(
        id=component_id,
        value=value,
        clearable=False,
        options=[
            {"label": f"{label} {why}" if key in unavailable else label, "value": key, "disabled": key in unavailable}
            for key, label in choices.items()
        ],
    )


def input_panel(
    examples: list[str],
    analysis: Analysis | None,
    pretrained_name: str,
    finetuned_name: str,
    golds: dict[str, str],
    *,
    error: str = "",
    one_text: bool = False,
) -> html.Div:
    """Text boxes (holding ``analysis``), the Analyse button, examples (with their gold label when held out), the
    prediction, the error banner (showing ``error``) and the note saying when the views show another text.
    ``one_text``: a decoder pair, whose models read one text: the second-segment box is not shown."""
    return html.Div(
        [
            html.Div(
                [
                    dcc.Textarea(
                        id=ids.TEXT,
                        value=analysis.text if analysis else "",
                        rows=2,
                        className="text-input",
                        placeholder="Type a sentence to analyse…",
                    ),
                    dcc.Input(
                        id=ids.TEXT_PAIR,
                        type="text",
                        value=(analysis.text_pair if analysis else None) or "",
                        className="text-pair-input",
                        debounce=True,
                        placeholder="Optional second segment (for sentence-pair models)",
                        style={"display": "none"} if one_text else None,
                    ),
                    html.Div(
                        [
                            html.Button("Analyse", id=ids.ANALYSE, n_clicks=0, className="analyse-button"),
                            dcc.Dropdown(
                                id=ids.EXAMPLES,
                                options=[
                                    {"label": f"{e}   · gold: {golds[e]}" if e in golds else e, "value": e}
                                    for e in examples
                                ],
                                placeholder="…or pick a held-out example sentence",
                                className="examples",
                                clearable=True,
                            ),
                        ],
                        className="input-actions",
                    ),
                ],
                className="input-boxes",
            ),
            html.Div(
                [
                    html.Div(id=ids.PREDICTION, className="prediction"),
                    html.Div(
                        [
                            html.Span("pre-trained: ", className="muted"),
                            html.B(pretrained_name),
                            html.Br(),
                            html.Span("fine-tuned: ", className="muted"),
                            html.B(finetuned_name),
                        ],
                        className="model-names",
                    ),
                ],
                className="prediction-box",
            ),
            html.Div(error, id=ids.ERROR, className="error-banner", role="alert"),
            html.Div(id=ids.STALE, className="stale-note", role="status"),
        ],
        className="panel input-panel",
    )


def layer_marks(num_layers: int) -> dict[int, str]:
    """The layer slider's labels: every layer up to 12, else the first, the last and every k-th (at most ~12
    labels: 30 labels on a 230 px slider run together)."""
    step = max(1, -(-num_layers // 12))
    shown = {1, num_layers, *range(step, num_layers + 1, step)}
    before_last = max(shown - {num_layers}, default=0)
    if num_layers - before_last < step:
        shown.discard(before_last)  # a label closer to the last one than the others are would touch it
    return {i: str(i) for i in sorted(shown)}


def control_panel(
    num_layers: int,
    num_heads: int,
    class_names: tuple[str, ...] = (),
    values: dict | None = None,
    source_options: list[dict] | None = None,
    causal: bool = False,
) -> html.Div:
    """Every control that shapes the views, set to ``values`` (:func:`app.core.urlstate.control_values`; default: the
    default options). A ``causal`` pair (decoders) greys out the measures and DecompX, which decompose encoder
    blocks only."""
    values = values or control_values(ViewOptions(), num_layers=num_layers, num_heads=num_heads)
    return html.Div(
        [
            *_what_fields(class_names, values, causal),
            *_graph_fields(num_layers, num_heads, values),
            *_token_fields(values, source_options),
        ],
        className="panel control-panel",
    )


def _what_fields(class_names: tuple[str, ...], values: dict, causal: bool = False) -> list[html.Div]:
    """What is drawn: the measure, the relevance method, the class it explains, which models."""
    encoders_only = "(encoders only)" if causal else ""
    no_measures = [m for m in MEASURES if m not in DECODER_MEASURES] if causal else []
    return [
        _field(
            "Graph over",
            _menu(ids.MEASURE, MEASURES, values["measure"], no_measures, encoders_only),
            help_key="measure",
        ),
        _field(
            "Relevance method",
            _menu(ids.METHOD, METHODS, values["method"], ["decompx"] if causal else [], encoders_only),
            help_key="method",
        ),
        _field(
            "Explain class",
            dcc.Dropdown(
                id=ids.TARGET,
                value=values["target"],
                clearable=False,
                options=[{"label": "the predicted class", "value": PREDICTED}]
                + [{"label": name, "value": name} for name in class_names],
            ),
            help_key="target",
        ),
        _field("Show", _choice(ids.MODE, MODES, values["mode"]), help_key="mode"),
    ]


def _graph_fields(num_layers: int, num_heads: int, values: dict) -> list[html.Div]:
    """How the attention graph is built: layers, heads, threshold τ, residual share α, sinks, head aggregation."""
    return [
        _field(
            "Layers",
            dcc.RangeSlider(
                id=ids.LAYERS,
                min=1,
                max=num_layers,
                step=1,
                value=values["layers"],
                marks=layer_marks(num_layers),
                allowCross=False,
            ),
            help_key="layers",
        ),
        _field(
            "Heads",
            dcc.Dropdown(
                id=ids.HEADS,
                multi=True,
                value=values["heads"],
                placeholder="all heads",
                options=[{"label": f"head {h}", "value": h} for h in range(num_heads)],
            ),
            "Empty = all.",
            help_key="heads",
        ),
        _field(
            "Threshold τ",
            dcc.Slider(
                id=ids.TAU,
                min=0.0,
                max=0.5,
                step=0.01,
                value=values["tau"],
                marks={0: "0", 0.05: "0.05", 0.1: "0.1", 0.25: "0.25", 0.5: "0.5"},
                tooltip={"placement": "bottom"},
            ),
            help_key="tau",
        ),
        _field("Residual share α", _alpha_slider(values["alpha"], values["measure"]), help_key="alpha"),
        _field(
            "Sinks",
            dcc.Checklist(
                id=ids.SINKS,
                value=values["sinks"],
                options=[
                    {"label": "[CLS] / [SEP] (a decoder: its first token) absorb what they receive", "value": "sinks"}
                ],
            ),
            help_key="sinks",
        ),
        _field(
            "Aggregate heads by",
            _choice(ids.AGGREGATION, AGGREGATIONS, values["aggregation"]),
            help_key="aggregation",
        ),
    ]


def _alpha_slider(alpha: float, measure: str) -> html.Div:
    """The residual share α, off (with a note saying why) for a measure that holds the residual already."""
    return html.Div(
        [
            dcc.Slider(
                id=ids.ALPHA,
                min=0.0,
                max=1.0,
                step=0.1,
                value=alpha,
                marks={0: "0", 0.5: "0.5", 1: "1"},
                tooltip={"placement": "bottom"},
                disabled=measure in RESIDUAL_MEASURES,
            ),
            html.Small(alpha_note(measure), id=ids.ALPHA_NOTE, className="hint"),
        ]
    )


def _token_fields(values: dict, source_options: list[dict] | None) -> list[html.Div]:
    """Which tokens: the level, where tracing starts, what is hidden, how long inputs fold, the matrix rows."""
    return [
        _field("Tokens", _choice(ids.LEVEL, LEVELS, values["level"]), help_key="level"),
        _field(
            "Trace from",
            dcc.Dropdown(id=ids.SOURCES, multi=True, value=values["sources"], placeholder="the classification token"),
            help_key="sources",
        ),
        _field(
            "Hide",
            dcc.Checklist(
                id=ids.HIDE,
                value=values["hide"],
                inline=True,
                options=[{"label": label, "value": kind} for kind, label in HIDE_KINDS.items()],
            ),
            help_key="hide",
        ),
        _field(
            "Long inputs",
            dcc.Dropdown(
                id=ids.TOP_K,
                value=values["top_k"],
                clearable=False,
                searchable=False,
                options=[{"label": label, "value": k} for k, label in TOP_K_CHOICES.items()],
            ),
            f"Folds inputs above {FOLD_ABOVE} tokens.",
            help_key="top_k",
        ),
        _field(
            "Matrix rows",
            dcc.Checklist(
                id=ids.RENORMALIZE,
                value=values["renormalize"],
                options=[{"label": "renormalise after hiding", "value": "renormalize"}],
            ),
            help_key="renormalize",
        ),
    ]


def head_metric_control(metric: str = "js_divergence") -> dcc.Dropdown:
    """The head grid's metric (replaced by the word query while a word is picked)."""
    return dcc.Dropdown(
        id=ids.METRIC,
        value=metric,
        clearable=False,
        className="inline-dropdown",
        options=[{"label": label, "value": key} for key, label in HEAD_METRICS.items()],
    )


def arrangement_control(value: str = "rings") -> html.Span:
    """The network view's layout: concentric token rings, or columns."""
    return html.Span([_choice(ids.ARRANGEMENT, ARRANGEMENTS, value), help_icon("arrangement")], className="inline")


def word_query_row(word: int | None = None, word_options: list[dict] | None = None) -> html.Div:
    """Below the head grid: the word query's word, and the heads it lists (filled by a callback)."""
    return html.Div(
        [
            html.Span(["Word query", help_icon("word")], className="field-label"),
            html.Div(
                dcc.Dropdown(
                    id=ids.WORD, value=word, options=word_options or [], clearable=True, placeholder="pick a word…"
                ),
                className="word-dropdown",
            ),
            html.Div(id=ids.TOP_HEADS, className="top-heads"),
        ],
        className="word-query",
    )


def alpha_note(measure: str) -> str:
    """Why the residual share α is off: the measure's maps already hold the residual connection."""
    if measure in RESIDUAL_MEASURES:
        return f"Not used: {MEASURES[measure]} already holds the residual (α = 0)."
    return ""


def token_options(labels: list[str]) -> tuple[list[dict], list[dict]]:
    """The 'Trace from' and 'Word query' choices for tokens (or words) ``labels`` (one per position); "#n" tells
    repeated words apart."""
    tokens = [{"label": f"{token}  (#{i})", "value": i} for i, token in enumerate(labels)]
    return [{"label": "all tokens (mean)", "value": "all"}, *tokens], tokens
