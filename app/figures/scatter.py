"""View 5: the head similarity map (both models' heads in one 2-D embedding), a spot for every head.

The map is laid out in pixels, for the smallest square plot it is drawn in (:class:`MapFrame`: the page's card, or
an export's width), so that every head can be seen, named and clicked where it is drawn:

- **No head hides another.** Heads start at their MDS position (:func:`attention.head_embedding`) and are pushed
  apart (:func:`spread`) until at least :data:`GAP` px separate any two drawn markers (a diamond reaches 1.3 times
  its nominal radius). A head moves only as far as the crowding asks; its hover says how far. A plot drawn larger
  than its frame (a wide card, a taller export) only spreads the heads further.
- **A click selects the head drawn under the pointer.** Plotly's "closest" hit test scores a pointer inside a
  marker below 1 and one ``d`` px outside a marker ``d``; with :data:`GAP` px between markers the marker under
  the pointer always wins, and between markers the one whose edge is nearest. The lines, the labels and the ring
  around the selected head are never hit (``hoverinfo: skip``), so the page's click callback reads the head from
  the clicked marker's ``customdata`` as before.
- **Labels.** "L6 H3" (layer from 1, head from 0, as the page's selection) for both markers of the
  :data:`LABELLED` most-changed heads, in the page and in a file: each in the first place around its marker free
  of markers and other labels, with a thin line when set off (:func:`place_callouts`); a label with no free place
  is left out, but every one of those heads keeps at least one. In the page, the legend entry "labels: every
  head" names every other head once, beside its fine-tuned marker (:func:`place_labels`; zoom in where they
  crowd: the line from a head's pre-trained marker leads there).
- **Colours that read in both themes.** Layer colours are Viridis up to :data:`LAYER_SCALE_END` (its yellow end is
  1.3:1 on white and 1.6:1 on the dark theme's grey): each has at least 3:1 contrast (:func:`contrast_ratio`) on
  white and, through the page's dark filter (``assets/style.css``, :func:`dark_theme_colour`), on the dark plot.
"""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.figures.models import shown_models
from app.figures.theme import MODEL_COLOURS, MODEL_LABELS, SHARED, Canvas, Figure, colours_at, figure, layout

GAP = 2.0  # px between two drawn markers: more than Plotly's hit test needs (1 px)
DIAMOND_REACH = 1.3  # a Plotly diamond of size s reaches 1.3 · s/2 from its centre
OUTLINE = 1.5  # px: the model-coloured outline of every marker
LABELLED = 5  # the most-changed heads, labelled in the page and in a file
LAYER_SCALE_END = 0.55  # of Viridis: beyond, a layer's colour falls under 3:1 on white
LABEL_COLOUR = "#333333"
TITLE = "Head similarity (MDS of Hellinger distances)"
_SYMBOLS = {"pretrained": "circle", "finetuned": "diamond"}
_PLACES = ("middle right", "middle left", "top center", "bottom center", "top right", "bottom right", "top left",
           "bottom left")  # fmt: skip


@dataclass(frozen=True)
class MapFrame:
    """What the map is laid out for: ``side`` px of the square plot area (the smallest it is drawn at; a larger
    plot only spreads the heads further), the labels' ``font_px``, whether it goes to a file, the ``plot`` side
    it has when there is room (at least ``side``) and an export's canvas ``width``."""

    side: float
    font_px: float
    static: bool = False
    plot: float = 0.0
    width: float = 0.0

    @property
    def marker_px(self) -> tuple[float, float]:
        """Marker diameters in px: an unchanged head and the most-changed one."""
        return 0.022 * self.side, 0.045 * self.side


# The page's half-width card leaves a plot of 254 px at the narrowest two-column window (1101 px), 300 px from a
# 1240 px window on (tests/browser/test_similarity_browser.py measures it).
PAGE_FRAME = MapFrame(side=250.0, font_px=11.0, plot=300.0)
_PAGE_MARGIN = {"l": 34, "r": 6, "t": 66, "b": 78}
_COLORBAR_GAP = 12  # px between the plot and the colour bar in an export
_COVER = 1 / 3  # at most this share of the square under markers (with their gaps)


def frame_for(canvas: Canvas | None) -> MapFrame:
    """The page's frame, or an export's: a plot as wide as 40 % of the figure, within the room the colour bar
    leaves (the export's height follows, through ``layout.meta.min_height``)."""
    if canvas is None or not canvas.static:
        return PAGE_FRAME
    room = canvas.width - 65 - _COLORBAR_GAP - _colorbar_px(canvas.font_px)  # 50 + 15 px: the export's margins
    side = max(min(max(0.4 * canvas.width, 200.0), room), 120.0)
    return MapFrame(side=side, font_px=canvas.font_px, static=True, plot=side, width=canvas.width)


def _colorbar_px(font_px: float) -> float:
    """Width Plotly gives the layer colour bar: its pad, bar, ticks and title (title on top, ~5 characters)."""
    return 34 + 3.2 * font_px


@dataclass(frozen=True)
class DrawnMap:
    """The shown heads as drawn. ``heads``: the embedding's rows of the shown models, in trace order, with ``px``
    / ``py`` (px in the plot, y up), ``size`` (px diameter), ``x`` / ``y`` (drawn, in MDS units), ``moved`` (px
    from the MDS position). ``x_range`` / ``y_range``: the square's axis ranges."""

    heads: pd.DataFrame
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    frame: MapFrame


def draw_map(embedding: pd.DataFrame, mode: str, frame: MapFrame) -> DrawnMap:
    """Where every shown head of ``embedding`` (columns ``model, layer, head, x, y, js_divergence``) is drawn in
    ``frame``: MDS positions scaled into the square and :func:`spread` apart. Deterministic."""
    models = shown_models(mode)
    rows = embedding[embedding["model"].isin(models)]
    rows = rows.assign(order=rows["model"].map(models.index)).sort_values(["order", "layer", "head"], kind="stable")
    rows = rows.drop(columns="order").reset_index(drop=True)
    raw = rows[["x", "y"]].to_numpy(dtype=float)  # [heads, 2]
    change = rows["js_divergence"].to_numpy(dtype=float)
    diamond = rows["model"].eq("finetuned").to_numpy()
    start, placed, sizes, centre, scale = _layout(raw.tobytes(), change.tobytes(), diamond.tobytes(), frame)
    half = frame.side / 2 / scale
    drawn = (placed - frame.side / 2) / scale + centre
    heads = rows.assign(
        px=placed[:, 0], py=placed[:, 1], size=sizes, moved=np.hypot(*(placed - start).T), x=drawn[:, 0], y=drawn[:, 1]
    )
    ranges = [(float(c - half), float(c + half)) for c in centre]
    return DrawnMap(heads, ranges[0], ranges[1], frame)


@functools.lru_cache(maxsize=32)
def _layout(raw: bytes, change: bytes, diamond: bytes, frame: MapFrame) -> tuple:
    """Start and spread positions (px), marker sizes (px), centre (MDS units) and px per MDS unit of the heads
    whose MDS positions ``[n, 2]``, JS changes ``[n]`` and diamond flags ``[n]`` these bytes hold. Remembered (a
    pure function of its arguments): the page draws the map, then moves the selection ring over the same layout."""
    points = np.frombuffer(raw).reshape(-1, 2)
    reach = np.where(np.frombuffer(diamond, dtype=bool), DIAMOND_REACH, 1.0)
    sizes = _sizes(np.frombuffer(change), *frame.marker_px)
    # many heads (a 12- or 24-layer model) are drawn smaller: the discs may cover at most a third of the square
    crowd = float((np.pi * (sizes / 2 * reach + OUTLINE / 2 + GAP / 2) ** 2).sum()) / frame.side**2
    sizes = sizes * min(1.0, np.sqrt(_COVER / crowd))
    # A crowd the pushes do not part in their budget starts nearer to an even spread of its ranks on each axis
    # (the order along MDS 1 and MDS 2 is kept, distances less so), then with smaller markers: many heads only.
    for blend, shrink in ((0.0, 1.0), (0.5, 1.0), (0.8, 1.0), (1.0, 0.8)):
        radii = sizes * shrink / 2 * reach + OUTLINE / 2 + GAP / 2
        centre, scale = _fit(points, frame.side, float(radii.max()))
        start = (points - centre) * scale + frame.side / 2
        placed = spread((1 - blend) * start + blend * _rank_grid(points, frame.side, float(radii.max())), radii,
                        frame.side)  # fmt: skip
        if not overlapping(placed, radii):
            break
    sizes = sizes * shrink
    for array in (start, placed, sizes, centre):
        array.flags.writeable = False
    return start, placed, sizes, centre, scale


def _rank_grid(points: np.ndarray, side: float, pad: float) -> np.ndarray:
    """``[n, 2]`` px: each point's rank along each axis, spread evenly over the square (``pad`` px from its edges)."""
    ranks = np.argsort(np.argsort(points, axis=0, kind="stable"), axis=0, kind="stable") + 0.5  # [n, 2]
    return pad + ranks / len(points) * (side - 2 * pad)


def _sizes(change: np.ndarray, smallest: float, largest: float) -> np.ndarray:
    """Marker diameters (px): area grows with the head's JS change, from ``smallest`` to ``largest`` at the peak."""
    peak = float(change.max()) if len(change) else 0.0
    return (
        smallest + (largest - smallest) * np.sqrt(np.clip(change / peak, 0, 1))
        if peak > 0
        else np.full(len(change), smallest)
    )


def _fit(raw: np.ndarray, side: float, pad: float) -> tuple[np.ndarray, float]:
    """Centre (MDS units) and px per MDS unit that fit every point ``pad`` px inside a square of ``side`` px."""
    low, high = raw.min(axis=0), raw.max(axis=0)
    span = float(max((high - low).max(), 1e-9))
    return (low + high) / 2, max(side - 2 * pad, 1.0) / span


def spread(points: np.ndarray, radii: np.ndarray, side: float, *, steps: int = 600) -> np.ndarray:
    """``points`` ``[n, 2]`` (px) moved apart until no two discs of ``radii`` ``[n]`` px overlap, each disc inside
    the square ``[0, side]²``. Every step pushes each overlapping pair apart along the line between them, each by
    half their overlap (coincident points part along a fixed direction per pair). Every tenth step, and whenever
    the near pairs are apart, all pairs are measured: the near ones (within 8 px of touching) are the next steps'
    work, and the loop ends when no pair overlaps. Deterministic; a crowd that cannot part in ``steps`` is returned
    overlapping (:func:`overlapping` tells)."""
    placed = np.clip(points.astype(float), radii[:, None], side - radii[:, None])
    n = len(placed)
    i, j = np.triu_indices(n, 1)  # every pair once
    need = radii[i] + radii[j]
    angle = 2.399963 * np.arange(len(i))  # golden angle: a fixed, different direction for each coincident pair
    fallback = np.column_stack([np.cos(angle), np.sin(angle)])
    near, measured = np.arange(len(i)), True
    for step in range(steps):
        if step % 10 == 0 or not measured:
            dist = np.hypot(*(placed[i] - placed[j]).T)
            if (dist >= need).all():
                break
            near = np.flatnonzero(dist < need + 8.0)
        delta = placed[i[near]] - placed[j[near]]  # [near, 2]: from j to i
        dist = np.hypot(delta[:, 0], delta[:, 1])
        hit = dist < need[near] + 0.1  # push a hair past touching, so that the loop ends
        measured = bool(hit.any())
        pairs, delta, dist = near[hit], delta[hit], dist[hit]
        unit = np.where(dist[:, None] > 1e-6, delta / np.maximum(dist, 1e-6)[:, None], fallback[pairs])
        push = 0.5 * (need[pairs] + 0.1 - dist)[:, None] * unit  # [hits, 2]
        for axis in (0, 1):
            placed[:, axis] += np.bincount(i[pairs], push[:, axis], n) - np.bincount(j[pairs], push[:, axis], n)
        placed = np.clip(placed, radii[:, None], side - radii[:, None])
    return placed


def overlapping(points: np.ndarray, radii: np.ndarray) -> bool:
    """True when two discs (``points`` ``[n, 2]`` px, ``radii`` ``[n]``) overlap."""
    dist = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    need = radii[:, None] + radii[None, :]
    np.fill_diagonal(need, 0.0)
    return bool((dist < need - 1e-6).any())


def head_label(layer: int, head: int) -> str:
    """A head's short name, layer from 1 and head from 0 as the page's selection: ``L6 H3``."""
    return f"L{layer} H{head}"


def label_priority(heads: pd.DataFrame) -> np.ndarray:
    """Row positions of ``heads`` in labelling order: most-changed head first, its fine-tuned marker before its
    pre-trained one."""
    key = heads.assign(pos=np.arange(len(heads)), ft=heads["model"].ne("finetuned"))
    return key.sort_values(["js_divergence", "ft", "layer", "head"], ascending=[False, True, True, True])[
        "pos"
    ].to_numpy()


def _text_px(text: str, font_px: float) -> float:
    """A safe width of ``text`` (px): 0.64 em a character, 0.3 em a space (Inter and Helvetica are narrower)."""
    return font_px * sum(0.3 if c == " " else 0.64 for c in text)


def _label_boxes(centre: np.ndarray, size: float, width: float, font: float) -> np.ndarray:
    """``[8, 4]`` boxes (px, y up: left, bottom, right, top) of a label Plotly draws at each of :data:`_PLACES`
    of a marker of ``size`` at ``centre``: offset ``size / 2 / 0.8 + 1`` px (Plotly's text offset), one line of
    ``font`` px with room for descenders."""
    offset = size / 2 / 0.8 + 1
    boxes = []
    for place in _PLACES:
        horizontal = {"right": (offset, offset + width), "left": (-offset - width, -offset)}
        x0, x1 = next((v for k, v in horizontal.items() if k in place), (-width / 2, width / 2))
        baseline = (
            0.25 * font if "middle" in place else (-offset - 0.25 * font if "top" in place else offset + 0.75 * font)
        )
        boxes.append([x0, -(baseline + 0.3 * font), x1, -(baseline - 0.95 * font)])  # y up: Plotly's offsets go down
    return np.array(boxes) + np.tile(centre, 2)


def _overlap_area(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``[k]`` total overlap (px²) of each of ``boxes`` ``[k, 4]`` with ``others`` ``[m, 4]`` (left, bottom,
    right, top)."""
    if not len(others):
        return np.zeros(len(boxes))
    w = np.clip(
        np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(boxes[:, None, 0], others[None, :, 0]), 0, None
    )
    h = np.clip(
        np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(boxes[:, None, 1], others[None, :, 1]), 0, None
    )
    return (w * h).sum(axis=1)


def place_labels(drawn: DrawnMap, order: np.ndarray, taken: np.ndarray | None = None) -> dict[int, str]:
    """Row position → Plotly ``textposition`` for the labels of ``drawn.heads`` rows in ``order``: the first of
    eight places next to the marker, inside the plot, that overlaps no other marker, no label placed before and
    none of the ``taken`` boxes ``[k, 4]``; else its least-crowded place (zooming in parts them)."""
    heads, frame = drawn.heads, drawn.frame
    centres, sizes = heads[["px", "py"]].to_numpy(), heads["size"].to_numpy()
    names = [head_label(layer, head) for layer, head in zip(heads["layer"], heads["head"], strict=True)]
    markers = _marker_boxes(heads)
    placed: dict[int, str] = {}
    boxes = np.zeros((0, 4)) if taken is None else np.asarray(taken, dtype=float).reshape(-1, 4)
    for row in order:
        candidates = _label_boxes(centres[row], sizes[row], _text_px(names[row], frame.font_px), frame.font_px)
        outside = np.clip(np.maximum(-candidates[:, :2], candidates[:, 2:] - frame.side).max(axis=1), 0, None)
        others = markers[np.arange(len(markers)) != row]
        cost = _overlap_area(candidates, boxes) + _overlap_area(candidates, others) + 1e3 * outside
        pick = int(np.argmin(cost))  # ties keep the earlier place
        placed[int(row)] = _PLACES[pick]
        boxes = np.vstack([boxes, candidates[pick]])
    return placed


@dataclass(frozen=True)
class Callout:
    """A label set off its marker: ``row`` of :attr:`DrawnMap.heads`, the label box's centre ``dx, dy`` px from
    the marker (y up), and its ``box`` ``[left, bottom, right, top]`` px in the plot. A thin line joins them."""

    row: int
    dx: float
    dy: float
    box: tuple[float, float, float, float]


_DIRECTIONS = np.deg2rad([0, 180, 90, 270, 45, 135, 315, 225, 22.5, 157.5, 202.5, 337.5, 67.5, 112.5, 247.5, 292.5])
_REACHES = (0.0, 8.0, 18.0, 30.0, 44.0, 60.0)  # px past the marker's edge: next to it first, then further out
_FAR = (80.0, 100.0, 125.0)  # for a head that has no label yet


def _marker_boxes(heads: pd.DataFrame) -> np.ndarray:
    """``[n, 4]`` squares (px: left, bottom, right, top) around each drawn marker and its outline."""
    centres = heads[["px", "py"]].to_numpy()
    reach = heads["size"].to_numpy() / 2 * np.where(heads["model"].eq("finetuned"), DIAMOND_REACH, 1.0) + OUTLINE
    return np.column_stack([centres - reach[:, None], centres + reach[:, None]])


def place_callouts(drawn: DrawnMap, rows: np.ndarray) -> list[Callout]:
    """Labels for ``rows`` of ``drawn.heads`` (in that order), each in the first free place around its marker:
    next to it, else up to :data:`_REACHES` px further out along one of 16 directions (joined by a line). A place
    is free when its box is inside the plot and overlaps no marker and no label placed before it. A head none of
    whose markers found a place gets one label from :data:`_FAR` px out; any other label with no place is left out.
    """
    heads = drawn.heads
    callouts: list[Callout] = []
    labels = np.zeros((0, 4))
    for row in rows:
        labels = _try_callout(drawn, int(row), _REACHES, labels, callouts)
    named = {(heads["layer"].iat[c.row], heads["head"].iat[c.row]) for c in callouts}
    for row in rows:
        key = (heads["layer"].iat[row], heads["head"].iat[row])
        if key not in named:
            before = len(callouts)
            labels = _try_callout(drawn, int(row), _FAR, labels, callouts)
            named |= {key} if len(callouts) > before else set()
    return callouts


def _try_callout(drawn: DrawnMap, row: int, reaches, labels: np.ndarray, callouts: list[Callout]) -> np.ndarray:
    """Append the first free callout of ``row`` at one of ``reaches`` to ``callouts``; the label boxes after."""
    heads, frame = drawn.heads, drawn.frame
    markers = _marker_boxes(heads)
    centre = heads[["px", "py"]].to_numpy()[row]
    name = head_label(heads["layer"].iat[row], heads["head"].iat[row])
    half = np.array([(_text_px(name, frame.font_px) + 6) / 2, (1.25 * frame.font_px + 4) / 2])  # a line, padded
    unit = np.column_stack([np.cos(_DIRECTIONS), np.sin(_DIRECTIONS)])  # [16, 2]
    own = (markers[row, 2] - markers[row, 0]) / 2
    others = markers[np.arange(len(markers)) != row]
    for reach in reaches:
        # the box touches the square of half-side own + reach around the marker along each direction
        with np.errstate(divide="ignore"):
            offsets = unit * np.min((own + reach + half) / np.abs(unit), axis=1)[:, None]  # [16, 2]
        boxes = np.column_stack([centre + offsets - half, centre + offsets + half])  # [16, 4]
        inside = (boxes[:, :2] >= 1).all(axis=1) & (boxes[:, 2:] <= frame.side - 1).all(axis=1)
        free = inside & ~_any_overlap(boxes, others) & ~_any_overlap(boxes, labels)
        if free.any():
            pick = int(np.argmax(free))
            callouts.append(Callout(row, *offsets[pick], tuple(boxes[pick])))
            return np.vstack([labels, boxes[pick]])
    return labels


def _any_overlap(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``[k]`` bool: does each of ``boxes`` ``[k, 4]`` overlap any of ``others`` ``[m, 4]`` (left, bottom, right,
    top)."""
    if not len(others):
        return np.zeros(len(boxes), dtype=bool)
    apart_x = (boxes[:, None, 2] <= others[None, :, 0]) | (others[None, :, 2] <= boxes[:, None, 0])
    apart_y = (boxes[:, None, 3] <= others[None, :, 1]) | (others[None, :, 3] <= boxes[:, None, 1])
    return (~(apart_x | apart_y)).any(axis=1)


def _callout_annotations(drawn: DrawnMap, callouts: list[Callout]) -> list[dict]:
    """Plotly annotations for ``callouts``: the label centred ``dx, dy`` px off its marker in the plot the map is
    laid out for, a line to the marker's edge (none when the label sits next to it). The label's centre is given
    in MDS units, like the markers: a larger plot (or a zoom) moves labels and markers apart alike, so a label that
    was clear of every marker stays clear."""
    heads, font = drawn.heads, drawn.frame.font_px
    per_px = (drawn.x_range[1] - drawn.x_range[0]) / drawn.frame.side  # MDS units a px
    out = []
    for callout in callouts:
        row = heads.iloc[callout.row]
        edge = row["size"] / 2 * (DIAMOND_REACH if row["model"] == "finetuned" else 1.0) + OUTLINE
        out.append(
            {
                "x": float(row["x"]),
                "y": float(row["y"]),
                "text": head_label(int(row["layer"]), int(row["head"])),
                "showarrow": True,
                "ax": float(row["x"]) + callout.dx * per_px,
                "ay": float(row["y"]) + callout.dy * per_px,
                "axref": "x",
                "ayref": "y",
                "arrowhead": 0,
                "arrowwidth": 0.8,
                "arrowcolor": "#888888",
                "standoff": edge,
                "font": {"size": font, "color": LABEL_COLOUR},
                "bgcolor": "rgba(255, 255, 255, 0.85)",
                "borderpad": 1,
            }
        )
    return out


def layer_colours(layers: int) -> list[str]:
    """``rgb(…)`` colour of layers ``1 .. layers``: Viridis from 0 to :data:`LAYER_SCALE_END`."""
    return colours_at("Viridis", list(np.linspace(0.0, LAYER_SCALE_END, layers)) if layers > 1 else [0.0])


def _layer_scale(layers: int) -> list[list]:
    """A stepped colour scale over ``0.5 .. layers + 0.5``: one flat band per layer."""
    colours = layer_colours(layers)
    return [[edge / layers, colour] for i, colour in enumerate(colours) for edge in (i, i + 1)]


def dark_theme_colour(colour: str) -> str:
    """``colour`` (``#RRGGBB`` or ``rgb(…)``) as the page's dark theme shows it: ``invert(0.9) hue-rotate(180deg)``
    (``assets/style.css``), applied to sRGB values as Chromium does."""
    from plotly.colors import hex_to_rgb, unlabel_rgb  # lazy: figures are plain dicts; only colours need plotly

    rgb = np.array(hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour), dtype=float) / 255
    inverted = 0.9 - 0.8 * rgb  # invert(p): p + (1 - 2p) · c
    rotate = np.array([[-0.574, 1.43, 0.144], [0.426, 0.43, 0.144], [0.426, 1.43, -0.856]])  # hue-rotate(180deg)
    r, g, b = np.floor(np.round(np.clip(rotate @ inverted, 0, 1) * 255, 6) + 0.5).astype(int)  # half up
    return f"rgb({r}, {g}, {b})"


def contrast_ratio(first: str, second: str) -> float:
    """WCAG contrast ratio of two colours (``#RRGGBB`` or ``rgb(…)``), from 1 (same) to 21 (black on white)."""
    from plotly.colors import hex_to_rgb, unlabel_rgb  # lazy: figures are plain dicts; only colours need plotly

    def luminance(colour: str) -> float:
        c = np.array(hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour), dtype=float) / 255
        linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def make_similarity(
    embedding: pd.DataFrame,
    *,
    mode: str = "comparison",
    selected: tuple[int, int | None] | None = None,
    canvas: Canvas | None = None,
) -> Figure:
    """Map of :func:`attention.head_embedding` (columns ``model, layer, head, x, y, js_divergence``): colour =
    layer, size = the head's JS change between models, symbol and outline = model; in comparison mode a line joins
    a head's two positions. Laid out for ``canvas`` (the page when None) so that no head hides another (module
    docstring). Marker ``customdata`` = [layer, head, change, px moved]."""
    drawn = draw_map(embedding, mode, frame_for(canvas))
    heads, layers = drawn.heads, int(embedding["layer"].max())
    traces = [_pair_lines(heads)] if mode == "comparison" else []
    traces += [_model_trace(heads[heads["model"] == model], model) for model in shown_models(mode)]
    traces.append(selected_trace(drawn, selected))  # always present (maybe empty): see selected_trace_index
    order = label_priority(heads)
    called = _most_changed(heads, order, LABELLED)
    callouts = place_callouts(drawn, called)
    if not drawn.frame.static:  # every other head's label (at its first marker in `order`), shown from the legend
        named = {(heads["layer"].iat[c.row], heads["head"].iat[c.row]) for c in callouts}
        rest = _first_of_each_head(heads, order, named)
        places = place_labels(drawn, rest, taken=np.array([c.box for c in callouts]))
        traces.append(_label_trace(drawn, places, name="labels: every head", visible="legendonly"))
    fig = figure(traces, _similarity_layout(drawn, layers, mode))
    fig["layout"]["annotations"] = _callout_annotations(drawn, callouts)
    return fig


def _most_changed(heads: pd.DataFrame, order: np.ndarray, count: int) -> np.ndarray:
    """The rows of ``order`` whose head is one of the ``count`` most-changed heads (both its markers)."""
    keys = list(zip(heads["layer"].to_numpy()[order], heads["head"].to_numpy()[order], strict=True))
    first = list(dict.fromkeys(keys))[:count]
    return np.array([row for row, key in zip(order, keys, strict=True) if key in first], dtype=int)


def _first_of_each_head(heads: pd.DataFrame, order: np.ndarray, skip: set) -> np.ndarray:
    """The first row of ``order`` of each head (``(layer, head)``) not in ``skip``: one label a head."""
    seen, rows = set(skip), []
    for row in order:
        key = (heads["layer"].iat[row], heads["head"].iat[row])
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return np.array(rows, dtype=int)


def selected_trace_index(mode: str) -> int:
    """Position of the 'selected head' trace in :func:`make_similarity`'s figure (for ``dash.Patch``): after the
    comparison's linking lines and a trace per shown model."""
    return (1 if mode == "comparison" else 0) + len(shown_models(mode))


def selected_trace(drawn: DrawnMap, selected: tuple[int, int | None] | None) -> dict:
    """The ring around the selected head's markers in ``drawn`` (empty when no single head is selected)."""
    heads = drawn.heads
    if selected is not None and selected[1] is not None:
        heads = heads[(heads["layer"] == selected[0]) & (heads["head"] == selected[1])]
    else:
        heads = heads.iloc[:0]
    return {
        "type": "scatter",
        "x": heads["x"].tolist(),
        "y": heads["y"].tolist(),
        "mode": "markers",
        "name": "selected head",
        "showlegend": False,
        "hoverinfo": "skip",
        "marker": {"symbol": "circle-open", "size": (heads["size"] + 9).tolist(), "color": "#000000",
                   "line": {"width": 2}},
    }  # fmt: skip


def selected_ring(embedding: pd.DataFrame, mode: str, selected: tuple[int, int | None] | None) -> dict:
    """The page's 'selected head' trace for ``selected``: what a ``dash.Patch`` puts at
    :func:`selected_trace_index` when the selection moves."""
    return selected_trace(draw_map(embedding, mode, PAGE_FRAME), selected)


def _pair_lines(heads: pd.DataFrame) -> dict:
    """A grey line from each head's pre-trained marker to its fine-tuned one (NaN-separated segments)."""
    pre = heads[heads["model"] == "pretrained"].sort_values(["layer", "head"])
    ft = heads[heads["model"] == "finetuned"].sort_values(["layer", "head"])
    xs = np.column_stack([pre["x"], ft["x"], np.full(len(pre), np.nan)]).ravel()  # [3 · heads]
    ys = np.column_stack([pre["y"], ft["y"], np.full(len(pre), np.nan)]).ravel()
    return {
        "type": "scatter",
        "x": xs,
        "y": ys,
        "mode": "lines",
        "line": {"color": SHARED, "width": 0.8},
        "hoverinfo": "skip",
        "name": "same head",
        "opacity": 0.7,
    }


def _model_trace(rows: pd.DataFrame, model: str) -> dict:
    """One model's heads (``rows`` of :attr:`DrawnMap.heads`): coloured by layer, sized by JS change, outlined in
    the model's colour."""
    return {
        "type": "scatter",
        "x": rows["x"].to_numpy(),
        "y": rows["y"].to_numpy(),
        "mode": "markers",
        "name": MODEL_LABELS[model],
        "customdata": rows[["layer", "head", "js_divergence", "moved"]].to_numpy().tolist(),
        "marker": {
            "symbol": _SYMBOLS[model],
            "size": rows["size"].to_numpy(),
            "color": rows["layer"].to_numpy(),
            "coloraxis": "coloraxis",
            "line": {"color": MODEL_COLOURS[model], "width": OUTLINE},
            "opacity": 1.0,
        },
        "text": [_moved_note(px) for px in rows["moved"]],
        "hovertemplate": "L%{customdata[0]} H%{customdata[1]} (layer %{customdata[0]}, head %{customdata[1]})"
        "<br>JS change %{customdata[2]:.3f}<br>%{text}<extra>" + MODEL_LABELS[model] + "</extra>",
    }


def _moved_note(px: float) -> str:
    """What a head's hover says of its nudge off the MDS position."""
    return "at its MDS position" if px < 0.5 else f"moved {px:.0f} px to stay in view"


def _label_trace(drawn: DrawnMap, places: dict[int, str], *, name: str | None = None, visible=True) -> dict:
    """Labels ("L6 H3") of the rows of ``drawn.heads`` in ``places`` at their text positions. Invisible markers of
    each head's size make Plotly offset the text past the drawn marker, in px at any zoom."""
    rows = drawn.heads.iloc[list(places)]
    return {
        "type": "scatter",
        "x": rows["x"].to_numpy(),
        "y": rows["y"].to_numpy(),
        "mode": "markers+text",
        "text": [head_label(layer, head) for layer, head in zip(rows["layer"], rows["head"], strict=True)],
        "textposition": list(places.values()),
        "textfont": {"size": drawn.frame.font_px, "color": LABEL_COLOUR},
        "marker": {"size": rows["size"].to_numpy(), "color": "rgba(0, 0, 0, 0)", "line": {"width": 0}},
        "hoverinfo": "skip",
        "name": name or "labels",
        "showlegend": name is not None,
        "visible": visible,
    }


def _subtitle(mode: str) -> str:
    """What the size says, and that positions are nudged: the map's second title line."""
    size = "change between models" if mode == "comparison" else "change after fine-tuning"
    return f"size: {size} (JS) · heads nudged apart so that none is hidden"


def _similarity_layout(drawn: DrawnMap, layers: int, mode: str) -> dict:
    """The map's layout: a square plot (equal MDS scales) with the stepped layer colour bar beside it and the
    legend below. An export (whose width is known) puts the plot and its colour bar together in the middle."""
    frame = drawn.frame
    margin = _static_margin(frame, mode) if frame.static else _PAGE_MARGIN
    domain, bar_x = _static_columns(frame) if frame.static else ([0.0, 1.0], None)
    axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": "", "constrain": "domain",
            "showline": True, "mirror": True, "linecolor": "#BBBBBB"}  # fmt: skip
    height = round(frame.plot + margin["t"] + margin["b"])
    colorbar = {"title": {"text": "layer", "side": "top"}, "thickness": 12, "outlinewidth": 0, "x": bar_x,
                "xanchor": "left" if bar_x is not None else None,
                "tickvals": list(range(1, layers + 1, max(1, layers // 12)))}  # fmt: skip
    out = layout(
        TITLE,
        height=height,
        margin=margin,
        coloraxis={"colorscale": _layer_scale(layers), "cmin": 0.5, "cmax": layers + 0.5, "colorbar": colorbar},
        legend={
            "orientation": "h",
            "yref": "container",
            "yanchor": "bottom",
            "y": 0.0,
            "x": domain[0],
            "uirevision": "labels",
        },
        hovermode="closest",
        uirevision=f"{mode}:{drawn.x_range[0]:.6g}:{drawn.y_range[0]:.6g}",  # a new input resets zoom, not toggles
        xaxis={**axis, "title": {"text": "MDS 1", "standoff": 6}, "range": list(drawn.x_range), "domain": domain},
        yaxis={
            **axis,
            "title": {"text": "MDS 2", "standoff": 6},
            "range": list(drawn.y_range),
            "scaleanchor": "x",
            "scaleratio": 1,
        },
        meta={"min_height": height} if frame.static else None,
    )
    out["title"]["subtitle"] = {"text": _subtitle(mode), "font": {"size": frame.font_px, "color": "#555555"}}
    return out


def _static_columns(frame: MapFrame) -> tuple[list[float], float]:
    """An export's x domain of the plot and the colour bar's x (paper fractions of the width inside the export's
    50 + 15 px side margins): the square, a gap and the bar, centred together."""
    paper = frame.width - 65
    used = frame.side + _COLORBAR_GAP + _colorbar_px(frame.font_px)
    left = max(0.0, (paper - used) / 2) / paper
    return [round(left, 4), round(min(left + frame.side / paper, 1.0), 4)], round(
        left + (frame.side + _COLORBAR_GAP) / paper, 4
    )


def _static_margin(frame: MapFrame, mode: str) -> dict:
    """Margins an export ends up with (``app/export/files.py`` sets the sides and the top from the title's lines;
    the bottom is the legend's rows under the axis title), so that the plot keeps ``frame.side`` px."""
    width = frame.width
    title_px = frame.font_px * 1.15
    lines = len(textwrap.wrap(TITLE, width=max(int((width - 20) / (0.55 * title_px)), 10)))
    sub = len(textwrap.wrap(_subtitle(mode), width=max(int((width - 20) / (0.55 * frame.font_px)), 10)))
    top = 8 + lines * title_px * 1.3 + sub * frame.font_px * 1.3 + 26 + 1.5 * title_px
    names = [MODEL_LABELS[m] for m in shown_models(mode)] + (["same head"] if mode == "comparison" else [])
    start = 50 + _static_columns(frame)[0][0] * (width - 65)  # the legend starts under the plot's left edge
    rows = _legend_rows([40 + 0.55 * frame.font_px * len(name) for name in names], width - start - 5)
    bottom = frame.font_px * 1.3 + 10 + rows * (frame.font_px * 1.3 + 8) + 20  # axis title, legend, padding
    return {"l": 50, "r": 15, "t": top, "b": bottom}


def _legend_rows(items: list[float], width: float) -> int:
    """Rows a horizontal legend of items ``items`` px wide takes in ``width`` px."""
    rows, used = 1, 0.0
    for item in items:
        if used and used + item > width:
            rows, used = rows + 1, 0.0
        used += item
    return rows
