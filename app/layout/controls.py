"""The input panel and the control panel."""

from __future__ import annotations

from dash import dcc, html

from app import ids
from app.options import (
    AGGREGATIONS,
    FOLD_ABOVE,
    HEAD_METRICS,
    HIDE_KINDS,
    LEVELS,
    METHODS,
    MODES,
    PREDICTED,
    TOP_K_CHOICES,
)
from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU


def _field(label: str, control, hint: str = "") -> html.Div:
    return html.Div(
        [html.Label(label, className="field-label"), control, html.Small(hint, className="hint") if hint else None],
        className="field",
    )


def _choice(component_id: str, choices: dict[str, str]) -> dcc.RadioItems:
    """Inline radio buttons; the first choice is selected."""
    return dcc.RadioItems(
        id=component_id,
        value=next(iter(choices)),
        inline=True,
        options=[{"label": label, "value": value} for value, label in choices.items()],
    )


def input_panel(
    examples: list[str], first_text: str, pretrained_name: str, finetuned_name: str, golds: dict[str, str]
) -> html.Div:
    """Text boxes, the Analyse button, examples (with their gold label when held out) and the prediction."""
    return html.Div(
        [
            html.Div(
                [
                    dcc.Textarea(
                        id=ids.TEXT,
                        value=first_text,
                        rows=2,
                        className="text-input",
                        placeholder="Type a sentence to analyse…",
                    ),
                    dcc.Input(
                        id=ids.TEXT_PAIR,
                        type="text",
                        className="text-pair-input",
                        debounce=True,
                        placeholder="Optional second segment (for sentence-pair models)",
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
            html.Div(id=ids.ERROR, className="error-banner", role="alert"),
        ],
        className="panel input-panel",
    )


def control_panel(num_layers: int, num_heads: int, class_names: tuple[str, ...] = ()) -> html.Div:
    """Every control that shapes the views."""
    return html.Div(
        [
            _field(
                "Relevance method",
                dcc.Dropdown(
                    id=ids.METHOD,
                    value="class_relevance",
                    clearable=False,
                    options=[{"label": label, "value": key} for key, label in METHODS.items()],
                ),
                "What the sentence and per-layer views show (docs/method.md).",
            ),
            _field(
                "Explain class",
                dcc.Dropdown(
                    id=ids.TARGET,
                    value=PREDICTED,
                    clearable=False,
                    options=[{"label": "the predicted class", "value": PREDICTED}]
                    + [{"label": name, "value": name} for name in class_names],
                ),
                "For class relevance and input × gradient.",
            ),
            _field(
                "Show",
                _choice(ids.MODE, MODES),
            ),
            _field(
                "Layers",
                dcc.RangeSlider(
                    id=ids.LAYERS,
                    min=1,
                    max=num_layers,
                    step=1,
                    value=[1, num_layers],
                    marks={i: str(i) for i in range(1, num_layers + 1)},
                    allowCross=False,
                ),
            ),
            _field(
                "Heads",
                dcc.Dropdown(
                    id=ids.HEADS,
                    multi=True,
                    value=list(range(num_heads)),
                    placeholder="all heads",
                    options=[{"label": f"head {h}", "value": h} for h in range(num_heads)],
                ),
                "Heads used by the graph, rollout, flow and head-mean matrix. Empty = all.",
            ),
            _field(
                "Threshold τ",
                dcc.Slider(
                    id=ids.TAU,
                    min=0.0,
                    max=0.5,
                    step=0.01,
                    value=DEFAULT_TAU,
                    marks={0: "0", 0.05: "0.05", 0.1: "0.1", 0.25: "0.25", 0.5: "0.5"},
                    tooltip={"placement": "bottom"},
                ),
                "An edge carries mass when its head-mean (or max, below) attention is at least τ; τ = 0 is rollout.",
            ),
            _field(
                "Residual share α",
                dcc.Slider(
                    id=ids.ALPHA,
                    min=0.0,
                    max=1.0,
                    step=0.1,
                    value=DEFAULT_ALPHA,
                    marks={0: "0", 0.5: "0.5", 1: "1"},
                    tooltip={"placement": "bottom"},
                ),
                "Share of its mass a token keeps as itself one layer down; 0.5 = rollout's residual.",
            ),
            _field(
                "Sinks",
                dcc.Checklist(
                    id=ids.SINKS,
                    value=["sinks"],
                    options=[{"label": "[CLS] / [SEP] absorb the attention they receive", "value": "sinks"}],
                ),
                "The graph draws that share but does not trace through it (Clark et al. 2019).",
            ),
            _field(
                "Aggregate heads by",
                _choice(ids.AGGREGATION, AGGREGATIONS),
                "In the matrices, and for the graph's τ (mass always moves by the head mean).",
            ),
            _field(
                "Tokens",
                _choice(ids.LEVEL, LEVELS),
            ),
            _field(
                "Trace from",
                dcc.Dropdown(id=ids.SOURCES, multi=True, value=[], placeholder="the classification token"),
                "Pick words (or 'all tokens') to trace instead of [CLS].",
            ),
            _field(
                "Hide",
                dcc.Checklist(
                    id=ids.HIDE,
                    value=[],
                    inline=True,
                    options=[{"label": label, "value": kind} for kind, label in HIDE_KINDS.items()],
                ),
                "Left out of what is drawn; every number is still computed on all tokens.",
            ),
            _field(
                "Long inputs",
                dcc.Dropdown(
                    id=ids.TOP_K,
                    value=30,
                    clearable=False,
                    searchable=False,
                    options=[{"label": label, "value": k} for k, label in TOP_K_CHOICES.items()],
                ),
                f"Above {FOLD_ABOVE} tokens, the Sankey, matrices and token scores keep the most relevant ones "
                "(current method) and fold the rest into 'other'.",
            ),
            dcc.Checklist(
                id=ids.RENORMALIZE,
                value=[],
                options=[{"label": "renormalise matrix rows after hiding", "value": "renormalize"}],
            ),
        ],
        className="panel control-panel",
    )


def head_metric_control() -> dcc.Dropdown:
    return dcc.Dropdown(
        id=ids.METRIC,
        value="js_divergence",
        clearable=False,
        className="inline-dropdown",
        options=[{"label": label, "value": key} for key, label in HEAD_METRICS.items()],
    )
