"""Help in place: two sentences per control and view, each linking to its section of docs/method.md.

The words match the docs: a column or row "after layer l" holds what leaves layer ``l`` (the inputs are "input"),
a "share" is a fraction of the one unit of mass traced from [CLS]. The page serves the docs at ``/docs/<name>``
(:func:`render_doc`), with an anchor per section (``#section-1`` for "## 1. …", ``#glossary``).
"""

from __future__ import annotations

import re
from pathlib import Path

from dash import html

HELP: dict[str, tuple[str, str]] = {
    # controls
    "measure": (
        "What the graph, rollout, flow, the matrices and the token scores are drawn over: raw attention weights "
        "(the paper's), or a context-mixing measure saying how much of a token's representation each token makes "
        "(ALTI and others: residual, LayerNorm and vector sizes included).",
        "section-6",
    ),
    "method": (
        "What the sentence view and the token scores show. Class relevance and DecompX explain a class; the "
        "graph methods follow the measure chosen in 'Graph over'.",
        "section-4",
    ),
    "target": (
        "The class the class methods explain. 'The predicted class' follows the fine-tuned model's decision.",
        "section-4",
    ),
    "mode": (
        "Compare both models, or show one. In comparison, colours say which model has the attention.",
        "section-1",
    ),
    "layers": ("Layers the graph, rollout and flow run through. Layer 1 is next to the input.", "section-1"),
    "heads": (
        "Heads averaged (or maxed) by the graph, rollout, flow and the head-mean matrix. Heads left out are veiled "
        "in the head grid.",
        "section-1",
    ),
    "tau": (
        "An edge carries mass when its head-mean (or max) attention is at least τ. τ = 0 is attention rollout.",
        "section-1",
    ),
    "alpha": (
        "The share of its mass a token keeps as itself one layer down (the residual). 0.5 is rollout's choice. "
        "Measures that hold the residual already (ALTI, GlobEnc, …) use none.",
        "section-1",
    ),
    "sinks": (
        "Attention into [CLS] and [SEP] is absorbed: drawn and counted, not traced further (Clark et al. 2019). "
        "Untick to trace through them.",
        "section-1",
    ),
    "aggregation": (
        "How heads combine in the matrices and for τ. Mass always moves by the head mean.",
        "section-1",
    ),
    "level": (
        "Sub-word pieces, or whole words. Numbers are always computed on pieces: a word sums its pieces.",
        "section-0",
    ),
    "sources": (
        "The tokens whose mass is traced. The default is the classification token, [CLS].",
        "section-1",
    ),
    "hide": (
        "Tokens left out of what is drawn. Every number is still computed on all tokens.",
        "section-0",
    ),
    "top_k": (
        "Long inputs keep their most relevant tokens (current method) and fold the rest into 'other'. "
        "'other' sums the attention to its tokens and averages the attention from them.",
        "glossary",
    ),
    "renormalize": (
        "After hiding, rescale each matrix row to sum to 1 again. The caption says so when it is on.",
        "section-0",
    ),
    "metric": (
        "What colours each head: how far the two models' maps are apart, or a statistic of one model.",
        "glossary",
    ),
    "word": (
        "The word query: how much attention a word receives in every head, averaged over all tokens. "
        "Click a listed head to select it everywhere.",
        "glossary",
    ),
    "arrangement": (
        "Token rings: one ring per depth, the input outside, every token at the same angle on every ring. "
        "Columns: one column per depth, as in the Sankey but with every token.",
        "glossary",
    ),
    # views
    "view:sentence": (
        "The input coloured by the current method, both models on one scale, and their difference. The top of the "
        "scale is the strongest word; special tokens are outlined, their value in the hover.",
        "section-0",
    ),
    "view:sankey": (
        "The attention graph from [CLS], right to left: each link as wide as the share of the traced mass it "
        "carries. Colours say where the attention is ≥ τ; when little reaches the words, the buttons under it "
        "apply the option changes that help.",
        "when-the-graph-shows-none-of-the-words",
    ),
    "view:network": (
        "The attention graph as a network: the Sankey's edges and colours, every token at every depth. Hover a "
        "token to draw every path through it in black.",
        "glossary",
    ),
    "view:thumbnails": (
        "Every head's attention map in miniature, as in the matrix view (rows: queries, columns: keys), for one "
        "model or the difference. Click one to select that head everywhere.",
        "glossary",
    ),
    "view:heads": (
        "One cell per layer and head. Click a head to select it in every view.",
        "glossary",
    ),
    "view:similarity": (
        "Heads placed so that heads with similar attention maps are close (classical MDS of Hellinger distances); "
        "a line joins one head's two models. Heads on one spot are pushed apart (the hover says how far).",
        "glossary",
    ),
    "view:matrix": (
        "Who attends to whom in one layer: rows are queries, columns the keys they attend to. Rows sum to 1.",
        "section-0",
    ),
    "models": (
        "The model pair this page shows: a pre-trained model and its fine-tuned twin. The server's config lists "
        "the pairs a team may open.",
        "deploy#several-model-pairs",
    ),
    "corpus": (
        "What fine-tuning changed over a whole corpus: each head's and layer's mean change with its spread, a word "
        "query, a head map, and every example, linked to its single-example page.",
        "corpus#the-corpus-page",
    ),
    "jobs": (
        "Work that takes longer than a view: it runs in the background, shows its progress and can be cancelled; "
        "the page stays usable meanwhile.",
        "deploy#background-jobs",
    ),
    "job:faithfulness": (
        "Spearman ρ of each method with blank-out over held-out sentences, per layer, mean and 95 % interval. "
        "Uses the current target class, τ and α; about a second per sentence.",
        "section-5",
    ),
    "job:export": (
        "Exports the chosen view of each text (one per line) with the current options, as one zip with a JSON "
        "sidecar per figure that records how it was made.",
        "deploy#background-jobs",
    ),
    "view:headview": (
        "bertviz's head view of one layer (the selected head's, else the last of the chosen layers): each query "
        "token on the left joined to the keys it attends to on the right, one colour per head, as opaque as the "
        "weight. Hover a token to see only its lines in both models; click a head in the legend to hide it.",
        "glossary",
    ),
    "view:influence": (
        "Each token's score after every layer for the current method. Read down a column to see where relevance "
        "builds up.",
        "section-0",
    ),
}


def help_icon(key: str) -> html.A:
    """A small "?" whose tooltip is the two sentences of ``key`` and whose link opens the docs section."""
    text, anchor = HELP[key]
    page = anchor if "#" in anchor else f"method#{anchor}"  # "deploy#…": another document
    return html.A("?", href=f"/docs/{page}", target="_blank", title=text, className="help", **{"aria-label": text})


def slug(heading: str) -> str:
    """The anchor of a heading: ``section-N`` for "N. …", else its words joined by hyphens."""
    numbered = re.match(r"(\d+)\.", heading.strip())
    if numbered:
        return f"section-{numbered.group(1)}"
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def render_doc(path: Path) -> str:
    """A Markdown file as a small standalone HTML page, with an ``id`` on every heading (:func:`slug`)."""
    from markdown_it import MarkdownIt  # lazy: only the /docs pages need it (60 ms to import)

    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(path.read_text(encoding="utf-8"))
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            token.attrSet("id", slug(tokens[index + 1].content))
    body = parser.renderer.render(tokens, parser.options, {})
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Attention Flows — "
        f"{path.stem}</title><link rel='stylesheet' href='/assets/style.css'></head>"
        f"<body class='doc'><main class='doc-body'>{body}</main></body></html>"
    )
