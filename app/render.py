"""Assemble each view's figure from the service's data and the user's options.

Used by the dashboard callbacks and by the command-line export, so both produce the same figure.
"""

from __future__ import annotations

from collections.abc import Callable

from app.figures import make_head_grid, make_influence, make_matrix, make_sankey, make_sentence, make_similarity
from app.figures.theme import Figure
from app.services import Analysis, AnalysisService
from app.state import ViewOptions

Selected = tuple[int, int | None]


def _tokens(service: AnalysisService, analysis: Analysis, options: ViewOptions) -> tuple[str, ...]:
    return service.view_runs(analysis, options).pretrained.tokens


def sankey(service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected) -> Figure:
    options = service.clamped(analysis, options)
    graphs = service.graphs(analysis, options)
    return make_sankey(
        graphs.edges,
        graphs.nodes,
        tokens=_tokens(service, analysis, options),
        sources=service.trace_sources(analysis, options),
        layers=options.layers or (1, service.num_layers),
        mode=options.mode,
        aggregation=options.aggregation,
        selected=selected,
        tau=options.tau,
    )


def heads(service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected) -> Figure:
    return make_head_grid(service.heads(analysis, options), metric=options.metric, mode=options.mode, selected=selected)


def matrix_caption(options: ViewOptions, selected: Selected, num_heads: int) -> str:
    layer, head = selected
    if head is not None:
        return f"layer {layer}, head {head}"
    chosen = "all heads" if options.heads is None or len(options.heads) == num_heads else f"heads {list(options.heads)}"
    return f"layer {layer}, {options.aggregation} of {chosen}"


def matrix(service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected) -> Figure:
    layer, head = selected
    frame = service.matrices(analysis, options, layer, head)
    return make_matrix(
        frame,
        tokens=_tokens(service, analysis, options),
        mode=options.mode,
        caption=matrix_caption(options, selected, service.num_heads),
    )


def _relevance_view(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """A renderer for a view of :meth:`AnalysisService.relevance` (token influence, sentence)."""

    def view(service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected) -> Figure:
        options = service.clamped(analysis, options)
        return make(
            service.relevance(analysis, options),
            tokens=_tokens(service, analysis, options),
            method=options.method,
            mode=options.mode,
            scale_without=service.trace_sources(analysis, options),
        )

    return view


influence = _relevance_view(make_influence)
sentence = _relevance_view(make_sentence)


def similarity(service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected) -> Figure:
    return make_similarity(service.embedding(analysis, options), mode=options.mode, selected=selected)


RENDERERS: dict[str, Callable[..., Figure]] = {
    "sankey": sankey,
    "heads": heads,
    "matrix": matrix,
    "influence": influence,
    "similarity": similarity,
    "sentence": sentence,
}


def render(
    view: str, service: AnalysisService, analysis: Analysis, options: ViewOptions, selected: Selected | None = None
) -> Figure:
    """The figure of ``view`` (a key of :data:`RENDERERS`) for one analysis."""
    if view not in RENDERERS:
        raise ValueError(f"view must be one of {', '.join(RENDERERS)}, got {view!r}")
    return RENDERERS[view](service, analysis, options, selected or (service.num_layers, None))
