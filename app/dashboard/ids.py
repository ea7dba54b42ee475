"""Every component id of the dashboard, in one place."""

# Input panel
TEXT = "text-input"
TEXT_PAIR = "text-pair-input"
EXAMPLES = "examples-dropdown"
ANALYSE = "analyse-button"
PREDICTION = "prediction-panel"
ERROR = "error-banner"
STALE = "stale-note"  # says when the views show another text than the text box holds
WORKSPACE = "workspace"  # the controls and the views
ANALYSIS = "analysis-store"  # small key: text, text pair, pair name; never tensors
SELECTED_HEAD = "selected-head-store"  # {"layer": int, "head": int | None}
CORPUS_LINK = "corpus-link"  # the header's link to the corpus page (same pair and options)
URL = "url"  # dcc.Location: the page's state lives in its query string (app/core/urlstate.py)
CANVAS = "canvas-store"  # {"width": px of the wide cards}, measured by assets/canvas.js

# Controls
MODE = "mode-radio"
LAYERS = "layer-range-slider"
HEADS = "heads-dropdown"
TAU = "tau-slider"
ALPHA = "alpha-slider"
AGGREGATION = "aggregation-radio"
LEVEL = "level-radio"
SOURCES = "trace-from-dropdown"
HIDE = "hide-checklist"
METRIC = "head-metric-dropdown"
WORD = "word-query-dropdown"
TOP_HEADS = "word-query-top-heads"
METHOD = "relevance-method-dropdown"
MEASURE = "measure-dropdown"  # what the graph views and graph methods are drawn over
ALPHA_NOTE = "alpha-note"  # why α is off for a measure that holds the residual
TARGET = "target-class-dropdown"
SINKS = "sinks-checklist"
RENORMALIZE = "renormalize-checklist"
TOP_K = "top-k-dropdown"
FAITHFULNESS = "faithfulness-panel"
FAITHFULNESS_OFFER = "faithfulness-offer"  # a long input: the check runs when asked
FAITHFULNESS_RUN = "faithfulness-run-button"
FAITHFULNESS_OFFER_TEXT = "faithfulness-offer-text"
SENTENCE_DRAWN = "sentence-drawn-store"  # a new value each time the sentence view answers (drawn, or still current)
FAITHFULNESS_INPUTS = "faithfulness-inputs-store"  # what the check was last asked for: rerun only on a change
SELECTION_LABEL = "selected-head-label"

# Views
SANKEY = "sankey-graph"
NETWORK = "network-graph"
ARRANGEMENT = "network-arrangement-radio"
HEAD_GRID = "head-grid-graph"
MATRIX = "matrix-graph"
INFLUENCE = "influence-graph"
SIMILARITY = "similarity-graph"
SENTENCE = "sentence-graph"
THUMBNAILS = "thumbnails-graph"
HEADVIEW = "headview-graph"

VIEWS = {
    "sankey": SANKEY,
    "network": NETWORK,
    "heads": HEAD_GRID,
    "matrix": MATRIX,
    "influence": INFLUENCE,
    "similarity": SIMILARITY,
    "sentence": SENTENCE,
    "thumbnails": THUMBNAILS,
    "headview": HEADVIEW,
}


EXPORT_PARTS = ("button", "format", "size", "sidecar", "width", "height", "scale")  # each card's export controls


def export_control(part: str, view: object) -> dict:
    """Pattern-matching id of one of a view's export controls (:data:`EXPORT_PARTS`), e.g.
    ``{"type": "export-format", "view": "sankey"}``; ``view`` may be a wildcard (``ALL``)."""
    return {"type": f"export-{part}", "view": view}


TOP_HEAD = "top-head"  # the type of a word-query head button's pattern-matching id


def top_head(layer: int, head: int) -> dict:
    """Pattern-matching id of a head listed by the word query."""
    return {"type": TOP_HEAD, "index": f"{layer}:{head}"}


GRAPH_FIX = "graph-fix"  # the type of a graph view's fix button's pattern-matching id


def graph_fixes(view: str) -> str:
    """Id of the row of buttons under a graph view (Sankey, network) that apply the option changes its note
    suggests."""
    return f"{view}-fixes"


def graph_fix(view: object, change: object) -> dict:
    """Pattern-matching id of one fix button: ``change`` is the option change as sorted JSON
    (``'{"tau": 0.01}'``); ``view`` and ``change`` may be wildcards (``ALL``)."""
    return {"type": GRAPH_FIX, "view": view, "change": change}


def seen(view: str) -> str:
    """Id of the store saying whether a view's card is on screen (``assets/seen.js``)."""
    return f"seen-{view}"


def want(view: str) -> str:
    """Id of the store holding the inputs a view was last asked to draw (``app/dashboard/callbacks/lazy.py``)."""
    return f"want-{view}"


def answered(view: str) -> str:
    """Id of the store holding the inputs a view last answered for, drawn or left as it was
    (``app/dashboard/callbacks/lazy.py``)."""
    return f"answered-{view}"


def card(view: str) -> str:
    """Id of the card holding a view."""
    return f"card-{view}"


DOWNLOAD = "export-download"
EXPORT_STATUS = "export-status"  # "Exporting…" while an export runs
DOWNLOAD_SIDECAR = "export-download-sidecar"
CLEAR_HEAD = "clear-head-button"

# Model pair picker (a team server with several pairs)
MODELS = "model-pair-dropdown"

# The 'Longer jobs' card (app/dashboard/callbacks/batch.py): faithfulness over held-out sentences, batch export
JOB_FAITH_COUNT = "job-faithfulness-count"
JOB_FAITH_RUN = "job-faithfulness-run"
JOB_FAITH_CANCEL = "job-faithfulness-cancel"
JOB_FAITH_PROGRESS = "job-faithfulness-progress"
JOB_FAITH_STATUS = "job-faithfulness-status"
JOB_FAITH_RESULT = "job-faithfulness-result"  # dcc.Store: the table as records, or {"error": …}
JOB_FAITH_FIGURE = "job-faithfulness-figure"
JOB_EXPORT_TEXTS = "job-export-texts"
JOB_EXPORT_VIEW = "job-export-view"
JOB_EXPORT_FORMAT = "job-export-format"
JOB_EXPORT_RUN = "job-export-run"
JOB_EXPORT_CANCEL = "job-export-cancel"
JOB_EXPORT_PROGRESS = "job-export-progress"
JOB_EXPORT_STATUS = "job-export-status"
JOB_EXPORT_DOWNLOAD = "job-export-download"
