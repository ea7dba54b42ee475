"""Assemble each view's figure from the service's data and the user's options.

Used by the dashboard callbacks and by the command-line export, so both produce the same figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from app.core.analysis import Analysis
from app.core.fold import first_of_groups, fold_scores
from app.core.options import CLASS_METHODS, MEASURES, ViewOptions
from app.figures import make_head_grid, make_influence, make_matrix, make_sankey, make_sentence, make_similarity
from app.figures.graph_drawn import graph_view_parts
from app.figures.graph_notes import Shares, diagnose, fix_key
from app.figures.headview import make_headview
from app.figures.heatmaps import make_word_query
from app.figures.models import shown_models
from app.figures.network import make_network
from app.figures.sankey import sankey_layers_that_fit
from app.figures.theme import Canvas, Figure
from app.figures.thumbnails import make_thumbnails
from app.service.analysis import AnalysisService
from attention.defaults import RESIDUAL_MEASURES
from attention.tokens import word_all

Selected = tuple[int, int | None]


def _graph_inputs(service: AnalysisService, analysis: Analysis, options: ViewOptions) -> dict:
    """What the graph views (Sankey, network) draw: the graphs and the drawn positions (level, a long input
    folded) of the traced, hidden and special tokens, and the options that say why a view is one-sided. When the
    view shows (almost) none of the words, ``fix_shares`` says where each suggested option change would send the
    traced mass (:func:`~app.figures.graph_notes.weigh_fixes`); ``parts``: the drawn edges and notes both views
    share (:func:`~app.figures.graph_drawn.graph_view_parts`), computed once per options. A new dict each call."""
    inputs = service.view_memo("graph_inputs", analysis, (options,), lambda: _drawn_inputs(service, analysis, options))
    return dict(inputs)


def _drawn_inputs(service: AnalysisService, analysis: Analysis, options: ViewOptions) -> dict:
    """:func:`_graph_inputs`, computed."""
    graphs = service.graphs(analysis, options)
    sources = np.asarray(service.trace_sources(analysis, options))
    hidden = np.flatnonzero(service.hidden(analysis, options))
    special = np.flatnonzero(service.hidden(analysis, replace(options, hide=("special",))))
    tokens = service.labels(analysis, options.level)
    if options.level == "word":
        sources = np.asarray(service.runs(analysis).pretrained.groups)[sources]
    segments = np.asarray(service.segments(analysis, options.level))
    fold = service.fold(analysis, options)
    if fold is not None:  # drawn positions: a long input's folded tokens are one "other" node
        sources, hidden, tokens = fold.groups[sources], fold.groups[hidden], fold.labels
        special = fold.groups[special]  # special tokens are never folded: each keeps a position of its own
        segments = first_of_groups(segments, fold.groups, len(tokens))
        segments[fold.other] = 0  # "other" mixes segments: never marked
    drawn = {
        "segments": tuple(segments.tolist()),
        "edges": graphs.edges,
        "nodes": graphs.nodes,
        "tokens": tokens,
        "sources": tuple(sorted(set(sources.tolist()))),
        "layers": options.layers or (1, service.num_layers),
        "mode": options.mode,
        "tau": options.tau,
        "hidden": tuple(sorted(set(hidden.tolist()))),
        "special": tuple(sorted(set(special.tolist()))),
        "sinks": options.sinks,
        "trace_all": options.trace_all,
        "source_names": service.source_names(analysis, options),
        "measure": MEASURES[options.measure],
        "residual_in_maps": options.measure in RESIDUAL_MEASURES,
        "fix_shares": _fix_shares(service, analysis, options, graphs.nodes, special, sources),
    }
    return drawn | {"parts": graph_view_parts(**drawn)}


def _fix_shares(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, nodes, special, sources
) -> dict | None:
    """For a graph that shows (almost) none of the words (``special``, ``sources``: drawn positions): each
    suggested option change (its :func:`~app.figures.graph_notes.fix_key`) → where it sends each model's traced
    mass; None otherwise."""
    layers = options.layers or (1, service.num_layers)
    special, sources = special.tolist(), sources.tolist()
    note = diagnose(nodes, layers=layers, special=special, sources=sources, mode=options.mode, tau=options.tau,
                    sinks=options.sinks, measure=MEASURES[options.measure], trace_all=options.trace_all)  # fmt: skip
    if note is None:
        return None
    shares = {}
    for fix in note.fixes:  # where each fix sends the traced mass, without drawing its graph
        split = service.mass_splits(analysis, replace(options, **fix))
        shares[fix_key(fix)] = {model: Shares(*split[model]) for model in shown_models(options.mode)}
    return shares


def sankey(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected, canvas: Canvas
) -> Figure:
    """The Sankey view; a canvas too narrow to label every column of the chosen layers draws the last layers
    that fit (:func:`~app.figures.sankey.sankey_layers_that_fit`) and says so."""
    options = service.checked(analysis, options)
    first, last = options.layers or (1, service.num_layers)
    fit = sankey_layers_that_fit(canvas)
    notes = ()
    if last - first + 1 > fit:
        options = replace(options, layers=(last - fit + 1, last))
        notes = (
            f"Layers {last - fit + 1}–{last} of {first}–{last} shown: this width labels {fit} layer{'s' * (fit > 1)}. "
            "Choose fewer layers or a wider figure for the rest.",
        )
    drawn = _graph_inputs(service, analysis, options)
    return make_sankey(
        drawn.pop("edges"),
        drawn.pop("nodes"),
        selected=selected,
        alpha=options.graph_alpha,
        canvas=canvas,
        notes=notes,
        **drawn,
    )


def network(
    service: AnalysisService,
    analysis: Analysis,
    options: ViewOptions,
    selected: Selected,
    canvas: Canvas,
    highlight: tuple[int, int] | None = None,
) -> Figure:
    """The network view; ``highlight`` = (depth, drawn position) draws the paths through that token."""
    options = service.checked(analysis, options)
    drawn = _graph_inputs(service, analysis, options)
    return make_network(
        drawn.pop("edges"),
        drawn.pop("nodes"),
        arrangement=options.arrangement,
        highlight=highlight,
        canvas=canvas,
        **drawn,
    )


def heads(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected, canvas: Canvas
) -> Figure:
    options = service.checked(analysis, options)
    if options.word is not None:
        return make_word_query(
            service.received(analysis, options),
            word=service.labels(analysis, options.level)[options.word],
            mode=options.mode,
            selected=selected,
            shown_heads=options.heads,
            canvas=canvas,
        )
    return make_head_grid(
        service.heads(analysis, options),
        metric=options.metric,
        mode=options.mode,
        selected=selected,
        shown_heads=options.heads,
    )


def matrix_selection(options: ViewOptions, selected: Selected) -> tuple[Selected, str]:
    """The (layer, head) the matrix draws for ``selected`` (the page's selection; (last layer, None) when there is
    none), and why, when that is not simply the selection: a layer's head mean outside the chosen layer range
    becomes the range's last layer; a selected head is drawn where it is, said to lie outside the range."""
    layer, head = selected
    if options.layers is None or options.layers[0] <= layer <= options.layers[1]:
        return selected, ""
    first, last = options.layers
    if head is None:
        return (last, None), f"the last of layers {first}–{last}"
    return selected, f"outside the chosen layers {first}–{last}"


def matrix_caption(options: ViewOptions, selected: Selected, num_heads: int) -> str:
    """What the matrix shows for ``selected`` (:func:`matrix_selection`), in the figure's title and the page."""
    (layer, head), why = matrix_selection(options, selected)
    where = f"layer {layer}" + (f" ({why})" if why and head is None else "")
    if head is None and options.measure != "raw_attention":
        caption = f"{where}, {MEASURES[options.measure]} contributions (one map per layer, every head)"
    elif head is not None:
        caption = f"layer {layer}, head {head}" + (f" ({why})" if why else "")
    else:
        chosen = (
            "all heads" if options.heads is None or len(options.heads) == num_heads else f"heads {list(options.heads)}"
        )
        caption = f"{where}, {options.aggregation} of {chosen}"
    if options.hide and options.renormalize:
        caption += ", rows renormalised after hiding"
    return caption


def matrix(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected | None, canvas: Canvas
) -> Figure:
    options = service.checked(analysis, options)
    asked = selected or (service.num_layers, None)  # no selection: the top layer's head mean
    (layer, head), _ = matrix_selection(options, asked)  # a head mean follows the layer range
    frame = service.matrices(analysis, options, layer, head)
    tokens = service.matrix_tokens(analysis, options)
    folded = service.fold(analysis, options) is not None
    return make_matrix(
        frame,
        tokens=tokens,
        mode=options.mode,
        caption=matrix_caption(options, asked, service.num_heads),
        what="Attention" if head is not None or options.measure == "raw_attention" else "Contribution",
        other=len(tokens) - 1 if folded else None,
        canvas=canvas,
        segment_start=service.segment_start(analysis, options),
    )


def no_head_messages(service: AnalysisService, options: ViewOptions) -> dict[str, str]:
    """For the class methods: a sentence per model that has no classification head, or that DecompX cannot
    decompose (a decoder), shown instead of its row."""
    if options.method not in CLASS_METHODS:
        return {}
    messages = {}
    for role, model in service.models().items():
        if not model.is_classifier:
            messages[role] = f"{model.name} has no classification head: it has no classes to explain."
        elif model.causal and options.method == "decompx":
            messages[role] = (
                f"{model.name} is a decoder: DecompX decomposes encoder blocks only. Choose class relevance."
            )
    return messages


def _relevance_view(make: Callable[..., Figure], *, laid_out: bool = False) -> Callable[..., Figure]:
    """A renderer for a view of :meth:`AnalysisService.relevance` (token scores per layer, sentence);
    ``laid_out`` views place the text themselves (never folded) and get the canvas and the segments; the others
    fold a long input (:mod:`app.core.fold`): "other" is drawn uncoloured, its summed score in the hover."""

    def view(
        service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected, canvas: Canvas
    ) -> Figure:
        options = service.checked(analysis, options)
        run = service.runs(analysis).pretrained
        special = word_all(run.special, run.groups) if options.level == "word" else np.asarray(run.special)
        scale_without = set(np.flatnonzero(special).tolist())
        if options.method not in CLASS_METHODS and not options.trace_all and options.sources:
            scale_without |= set(options.sources)
        frame, tokens = service.relevance(analysis, options), service.labels(analysis, options.level)
        fold = None if laid_out else service.fold(analysis, options)
        if fold is not None:
            frame, tokens = fold_scores(frame, fold), fold.labels
            scale_without = {int(fold.groups[i]) for i in scale_without} | {fold.other}
        return make(
            frame,
            tokens=tokens,
            method=options.method,
            mode=options.mode,
            scale_without=sorted(scale_without),
            # only the class methods have a target: no backward pass for an attention method's view
            target=service.class_target(analysis, options) if options.method in CLASS_METHODS else None,
            source=service.source_names(analysis, options),
            measure=None if options.method in CLASS_METHODS else MEASURES[options.measure],
            missing=no_head_messages(service, options),
            **(
                {"segments": service.segments(analysis, options.level)}
                if laid_out
                else {"segment_start": service.segment_start(analysis, options)}
            ),
            canvas=canvas,
        )

    return view


influence = _relevance_view(make_influence)
sentence = _relevance_view(make_sentence, laid_out=True)


def similarity(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected, canvas: Canvas
) -> Figure:
    # laid out for the canvas: the page's card, or an export's width and text size (app/figures/scatter.py)
    return make_similarity(service.embedding(analysis, options), mode=options.mode, selected=selected, canvas=canvas)


def thumbnails(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected, canvas: Canvas
) -> Figure:
    pretrained, finetuned, _ = service.thumbnails(analysis, options)
    return make_thumbnails(
        pretrained, finetuned, mode=options.mode, selected=selected, width=canvas.width, static=canvas.static
    )


def headview(
    service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected | None, canvas: Canvas
) -> Figure:
    """bertviz's head view of one layer, drawn as the matrices draw it (level, hiding, a long input folded): the
    selected head's layer, else the last of the chosen layers (a selection of the layer alone keeps every head)."""
    options = service.checked(analysis, options)
    first, last = options.layers or (1, service.num_layers)
    if selected is not None and selected[1] is not None:
        layer, which = selected[0], f"the selected head L{selected[0]} H{selected[1]}'s layer"
    else:
        layer, which = last, f"the last of layers {first}–{last}"
    pretrained, finetuned, _ = service.thumbnails(analysis, options)  # [layer, head, query, key], cached
    return make_headview(
        {"pretrained": pretrained[layer - 1], "finetuned": finetuned[layer - 1]},
        tokens=service.matrix_tokens(analysis, options),
        layer=layer,
        which=which,
        mode=options.mode,
        heads=options.heads,
        folded=service.fold(analysis, options) is not None,
        renormalised=bool(options.hide) and options.renormalize,
        canvas=canvas,
    )


RENDERERS: dict[str, Callable[..., Figure]] = {
    "sankey": sankey,
    "network": network,
    "heads": heads,
    "matrix": matrix,
    "influence": influence,
    "similarity": similarity,
    "sentence": sentence,
    "thumbnails": thumbnails,
    "headview": headview,
}


def render(
    view: str,
    service: AnalysisService,
    analysis: Analysis,
    options: ViewOptions,
    selected: Selected | None = None,
    canvas: Canvas | None = None,
) -> Figure:
    """The figure of ``view`` (a key of :data:`RENDERERS`) for one analysis; ``selected`` None highlights nothing
    (the matrix then shows the top layer's head mean); ``canvas`` is the width and text size the views that lay
    out text are drawn for (default: a wide card in the page)."""
    if view not in RENDERERS:
        raise ValueError(f"view must be one of {', '.join(RENDERERS)}, got {view!r}")
    return RENDERERS[view](service, analysis, options, selected, canvas or Canvas())
