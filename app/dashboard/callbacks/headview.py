"""The head view (bertviz's): drawn by the server for the selected layer; hovering a token shows only that token's
lines, in the browser (no request: the figure's line traces carry each segment's query, key and panel)."""

from __future__ import annotations

from dash import Input, Output, no_update

from app.core.analysis import Analysis
from app.dashboard import ids
from app.dashboard.callbacks.common import guarded, require_analysis, selected_head, view_options
from app.dashboard.callbacks.lazy import declare_view
from app.dashboard.callbacks.registry import declare_clientside
from app.dashboard.callbacks.views import RELEVANCE_INPUTS, VIEW_INPUTS, canvas_of, unchanged_view
from app.dashboard.controls import inputs
from app.service.registry import pair_service
from app.views.render import render


@declare_view(
    "headview",
    Output(ids.HEADVIEW, "figure"),
    inputs={
        "analysis_data": Input(ids.ANALYSIS, "data"),
        "selected": Input(ids.SELECTED_HEAD, "data"),  # a selected head picks the layer
        "canvas": Input(ids.CANVAS, "data"),  # the labels are laid out for the card's width
        **VIEW_INPUTS,
        **RELEVANCE_INPUTS,  # a long input keeps its most relevant tokens
        **inputs("renormalize"),
    },
)
@guarded
def update_headview(analysis_data, selected, canvas, **controls):
    if unchanged_view("headview", analysis_data, controls):
        return no_update
    service = pair_service(Analysis.from_store(analysis_data))
    return render(
        "headview",
        service,
        require_analysis(analysis_data),
        view_options(**controls),
        selected_head(selected, service),
        canvas_of(canvas),
    )


# Hovering a token (its hover target's customdata is [side, position]: 0 a query, 1 a key) draws only that token's
# lines, in every panel, as bertviz does with d3: an SVG group over the plot (never catching the pointer) holding a
# white veil over each panel's lines, a grey mark on the token in each panel, and that token's segments of every
# head the legend shows, each in its trace's colour and opacity. Leaving the token (the graph clears its hoverData)
# removes the group. Plotly redraws nothing (redrawing or restyling the ~50 line traces costs hundreds of ms; adding
# this group, a millisecond), and Dash's copy of the figure is left as the server drew it.
FOCUS_JS = """
function (hover) {
    const gd = document.querySelector('#GRAPH .js-plotly-plot');
    const full = gd && gd._fullLayout, meta = gd && gd.layout && gd.layout.meta;
    const svg = gd && gd.querySelector('.main-svg');
    if (!svg || !full || !meta || !Array.isArray(meta.columns)) { return; }
    const drawn = svg.querySelector('g.headview-focus');
    if (drawn) { drawn.remove(); }
    const point = hover && Array.isArray(hover.points) ? hover.points[0] : null;
    const at = point && Array.isArray(point.customdata) && point.customdata.length === 2 ? point.customdata : null;
    if (!at) { return; }
    const xa = full.xaxis, ya = full.yaxis, ns = 'http://www.w3.org/2000/svg';
    const X = function (x) { return xa._offset + xa.l2p(x); }, Y = function (y) { return ya._offset + ya.l2p(y); };
    const group = document.createElementNS(ns, 'g');
    group.setAttribute('class', 'headview-focus');
    group.setAttribute('pointer-events', 'none');
    const add = function (tag, attributes) {
        const element = document.createElementNS(ns, tag);
        Object.keys(attributes).forEach(function (name) { element.setAttribute(name, attributes[name]); });
        group.appendChild(element);
    };
    const top = Y(ya.range[1]), bottom = Y(ya.range[0]), row = Math.abs(Y(1) - Y(0));
    const label = Math.abs(X(meta.label) - X(0));
    meta.columns.forEach(function (column) {
        add('rect', {x: X(column[0]) + 3, y: top, width: X(column[1]) - X(column[0]) - 6, height: bottom - top,
                     fill: 'white', 'fill-opacity': 0.9});
        const dot = X(column[at[0]]);
        add('rect', {x: at[0] === 0 ? dot - label : dot, y: Y(at[1]) - row / 2, width: label, height: row,
                     fill: '#888888', 'fill-opacity': 0.25});
    });
    gd.data.forEach(function (trace, index) {
        const ends = trace.meta;
        if (!ends || !Array.isArray(ends.q) || !gd._fullData[index] || gd._fullData[index].visible !== true) { return; }
        for (let i = 0; i < ends.q.length; i++) {
            if ((at[0] === 0 ? ends.q[i] : ends.k[i]) !== at[1]) { continue; }
            const column = meta.columns[ends.p[i]];
            add('line', {x1: X(column[0]), y1: Y(ends.q[i]), x2: X(column[1]), y2: Y(ends.k[i]),
                         stroke: trace.line.color, 'stroke-width': trace.line.width, 'stroke-opacity': ends.o,
                         'data-query': ends.q[i], 'data-key': ends.k[i], 'data-panel': ends.p[i],
                         'data-group': trace.legendgroup});
        }
    });
    svg.appendChild(group);
}
""".replace("GRAPH", ids.HEADVIEW)

declare_clientside(FOCUS_JS, Input(ids.HEADVIEW, "hoverData"), prevent_initial_call=True)
