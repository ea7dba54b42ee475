"""The figure standard: what every exported figure must satisfy, measured on its SVG as Chromium draws it.

For one SVG (``check_svg``) the rules are:

- **legible**: no text under 7 pt (at the export's 96 px per inch);
- **inside**: no text, colour bar or legend cut at the canvas edge;
- **apart**: no two texts overlap; no colour bar or legend overlaps a plot area, another colour bar, a legend or a
  text that is not its own; no two plot areas overlap; no axis tick label lies on another panel's plot area;
- **compact legend**: a legend takes at most 15 % of the figure's height;
- **static**: no interaction words ("hover", "click") in a file that cannot be hovered;
- **labelled**: every node of a Sankey carries its label; a token axis shows every token's label, or says
  "1 label in N" when they cannot fit;
- **the same in PDF**: every text of the SVG is on the PDF's page (:func:`missing_from_pdf`).

``python -m app.testing.figure_standard [--views …] [--presets …] [--inputs …] [--out DIR]`` exports every view
of the default pair for the standard inputs (a 30-token sentence, a 137-word review, a sentence pair) and prints
each violation; ``tests/browser/test_figure_standard.py`` asserts there are none.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.core.options import DPI, PRESETS, VIEWS, ExportOptions, ViewOptions
from app.export.requests import FigureRequest, export_bytes, export_figure
from app.service.analysis import AnalysisService
from app.testing.servers import CHROMIUM
from app.testing.texts import INPUTS

SMALLEST_PT = 7.0
LEGEND_SHARE = 0.15  # of the figure's height
INTERACTION_WORDS = ("hover", "click")
# Every element of one drawn SVG, with its box in px and who owns it; the rules are applied in Python.
MEASURE_JS = """() => {
  const svg = document.querySelector('svg');
  const box = (el) => { const r = el.getBoundingClientRect();
                        return [r.left, r.top, r.right, r.bottom]; };
  const visible = (el) => { const s = getComputedStyle(el);
    return s.display !== 'none' && s.visibility !== 'hidden' && s.opacity !== '0'; };
  const owner = (el) => { const c = el.closest('.colorbar'); if (c) return 'colorbar:' + c.getAttribute('class');
    const l = el.closest('.legend'); if (l) return 'legend';
    if (el.closest('.xaxislayer-above, .yaxislayer-above')) {
      const s = el.closest('.subplot'); return 'tick:' + (s ? s.getAttribute('class').replace('subplot ', '') : ''); }
    if (el.closest('.sankey-node')) return 'sankey-node';
    return 'free'; };
  const texts = [...svg.querySelectorAll('text')]
    .filter(t => t.textContent.trim() && !t.closest('.hoverlayer') && visible(t))
    .map(t => ({text: t.textContent.trim(), box: box(t), size: parseFloat(getComputedStyle(t).fontSize),
                owner: owner(t)}))
    .filter(t => t.box[2] - t.box[0] >= 1 && t.box[3] - t.box[1] >= 1);
  const frame = svg.getBoundingClientRect();
  const plots = [...svg.querySelectorAll('.cartesianlayer .overplot > g[clip-path]')].map(plot => {
    // each panel's plot group is translated to its plot area and clipped to its size
    const id = (plot.getAttribute('clip-path') || '').match(/#([^)'"]+)/);
    const clip = id && document.getElementById(id[1]);
    const rect = clip && clip.querySelector('rect');
    if (!rect) return null;
    const m = plot.transform.baseVal.consolidate();
    const x = frame.left + (m ? m.matrix.e : 0), y = frame.top + (m ? m.matrix.f : 0);
    return {name: plot.getAttribute('class'), box: [x, y, x + rect.width.baseVal.value, y + rect.height.baseVal.value]};
  }).filter(p => p && p.box[2] - p.box[0] > 1 && p.box[3] - p.box[1] > 1);
  const colorbars = [...svg.querySelectorAll('g.colorbar')].filter(visible)
    .map(c => ({name: 'colorbar:' + c.getAttribute('class'), box: box(c)}));
  const legends = [...svg.querySelectorAll('g.legend')].filter(visible).map(l => {
    const bg = l.querySelector('rect.bg'); return {name: 'legend', box: box(bg || l)}; });
  const ticks = {};  // tick labels shown per axis (class xtick, x2tick, ytick …)
  for (const g of svg.querySelectorAll('.xaxislayer-above > g, .yaxislayer-above > g')) {
    const t = g.querySelector('text');
    if (t && t.textContent.trim() && visible(t)) { const k = g.getAttribute('class'); ticks[k] = (ticks[k] || 0) + 1; }
  }
  const nodes = [...svg.querySelectorAll('.sankey-node')].map(n => {
    const t = n.querySelector('.node-label'); return t ? t.textContent.trim() : ''; });
  return {canvas: box(svg), texts, plots, colorbars, legends, nodes, ticks};
}"""


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float

    def overlaps(self, other: Box, tolerance: float = 1.0) -> bool:
        """True when the two boxes share more than ``tolerance`` px in both directions."""
        return (
            self.left + tolerance < other.right - tolerance
            and other.left + tolerance < self.right - tolerance
            and self.top + tolerance < other.bottom - tolerance
            and other.top + tolerance < self.bottom - tolerance
        )

    def inside(self, frame: Box, tolerance: float = 1.0) -> bool:
        return (
            self.left >= frame.left - tolerance
            and self.right <= frame.right + tolerance
            and self.top >= frame.top - tolerance
            and self.bottom <= frame.bottom + tolerance
        )

    @property
    def height(self) -> float:
        return self.bottom - self.top


def violations(measured: dict) -> list[str]:
    """Every broken rule of the module docstring, one line each, for the elements ``MEASURE_JS`` returned."""
    canvas = Box(*measured["canvas"])
    texts = [(t["text"], t["owner"], Box(*t["box"]), t["size"]) for t in measured["texts"]]
    plots = [(p["name"], Box(*p["box"])) for p in measured["plots"]]
    boxes = [(b["name"], Box(*b["box"])) for b in measured["colorbars"] + measured["legends"]]
    out: list[str] = []
    smallest = SMALLEST_PT * DPI / 72 - 0.05
    out += [f"text under {SMALLEST_PT:g} pt: {text!r} ({size * 72 / DPI:.1f} pt)" for text, _, _, size in texts
            if size < smallest]  # fmt: skip
    out += [f"text cut at the edge: {text!r}" for text, _, box, _ in texts if not box.inside(canvas)]
    out += [f"{name.split(' ')[-1]} cut at the edge" for name, box in boxes if not box.inside(canvas)]
    for i, (text, _, box, _) in enumerate(texts):
        out += [f"texts overlap: {text!r} × {other!r}" for other, _, box2, _ in texts[i + 1 :] if box.overlaps(box2)]
    for i, (name, box) in enumerate(boxes):
        kind = name.split(":")[0]
        out += [f"{kind} over plot area {plot}" for plot, area in plots if box.overlaps(area)]
        out += [f"{kind} over {other.split(':')[0]}" for other, box2 in boxes[i + 1 :] if box.overlaps(box2)]
        out += [f"{kind} over text {text!r}" for text, owner, tbox, _ in texts
                if owner != name and not owner.startswith("colorbar") and box.overlaps(tbox)]  # fmt: skip
        if kind == "legend" and box.height > LEGEND_SHARE * canvas.height:
            out.append(f"legend takes {box.height / canvas.height:.0%} of the height (at most {LEGEND_SHARE:.0%})")
    for i, (name, area) in enumerate(plots):
        out += [f"plot areas overlap: {name} × {other}" for other, area2 in plots[i + 1 :] if area.overlaps(area2)]
    for text, owner, box, _ in texts:
        if owner.startswith(("tick:", "colorbar")):
            home = owner.removeprefix("tick:")
            out += [f"label {text!r} lies on plot area {name}" for name, area in plots
                    if name != home and box.overlaps(area)]  # fmt: skip
    words = [text for text, *_ in texts if any(word in text.lower() for word in INTERACTION_WORDS)]
    out += [f"interaction word in a static figure: {text!r}" for text in words]
    unlabelled = sum(1 for label in measured["nodes"] if not label)
    if unlabelled:
        out.append(f"{unlabelled} of {len(measured['nodes'])} Sankey nodes carry no label")
    return out


def category_axes(figure) -> dict[str, int]:
    """Tick-group class (``xtick``, ``y2tick`` …) → how many token categories a heatmap puts on that axis."""
    counts: dict[str, int] = {}
    data = figure["data"] if isinstance(figure, dict) else figure.to_plotly_json()["data"]
    for trace in data:
        if trace.get("type") != "heatmap":
            continue
        for letter in ("x", "y"):
            values = trace.get(letter)
            if values is not None and len(values) and all(isinstance(v, str) for v in values):
                axis = trace.get(f"{letter}axis") or letter
                counts[f"{axis}tick"] = max(counts.get(f"{axis}tick", 0), len(set(values)))
    return counts


def thinned_labels(measured: dict, figure) -> list[str]:
    """Token axes that show fewer labels than they have tokens without saying so ("1 label in N")."""
    said = "label in" in " ".join(t["text"] for t in measured["texts"])
    shown = measured["ticks"]
    return [f"{axis[:-4]} axis shows {shown.get(axis, 0)} of {count} token labels and does not say so"
            for axis, count in category_axes(figure).items() if shown.get(axis, 0) < count and not said]  # fmt: skip


def normalised_svg(svg: bytes) -> str:
    """An SVG with plotly's random ids (each drawing names its clip paths, gradients and traces afresh) replaced by
    their order of appearance: two drawings of one figure compare equal."""
    text = re.sub(r"(trace|legend|cb)[0-9a-f]{6}", r"\1", svg.decode())
    for number, name in enumerate(dict.fromkeys(re.findall(r'id="([^"]+)"', text))):
        text = text.replace(name, f"id{number}")
    return text


def undated_pdf(pdf: bytes) -> bytes:
    """A PDF without its creation and modification dates (Chromium stamps each print)."""
    return re.sub(rb"/(CreationDate|ModDate) \(D:[^)]*\)", b"", pdf)


def pdf_text(pdf: bytes) -> str:
    """The text a PDF viewer shows on the first page (what lies outside the page is clipped by Chromium's print
    and absent here)."""
    import pypdfium2  # lazy: a dev dependency, only the figure standard reads PDFs

    document = pypdfium2.PdfDocument(pdf)
    try:
        page = document[0]
        return page.get_textpage().get_text_range()
    finally:
        document.close()


def missing_from_pdf(svg_texts: Iterable[str], pdf: bytes) -> list[str]:
    """The texts of a figure's SVG that its PDF does not show (cut at the page's edge), whitespace ignored."""
    shown = "".join(pdf_text(pdf).split())
    return [text for text in svg_texts if "".join(text.split()) not in shown]


def svg_texts(tab, svg: bytes) -> list[str]:
    """Every visible text of an SVG, as Chromium draws it."""
    tab.set_content(f"<html><body style='margin:0'>{svg.decode()}</body></html>")
    return [t["text"] for t in tab.evaluate(MEASURE_JS)["texts"]]


def check_svg(tab, svg: bytes, figure=None) -> list[str]:
    """The broken rules of one exported SVG, drawn in the Playwright page ``tab`` (``figure``: the figure it was
    made from, to check that token axes show every label or say that they do not)."""
    tab.set_content(f"<html><body style='margin:0'>{svg.decode()}</body></html>")
    measured = tab.evaluate(MEASURE_JS)
    return violations(measured) + (thinned_labels(measured, figure) if figure is not None else [])


def exports(
    service: AnalysisService, views: Iterable[str], presets: Iterable[str], inputs: Iterable[str], fmt: str = "svg"
) -> Iterator[tuple[str, str, str, bytes, object]]:
    """(input, view, preset, file bytes, figure) for each combination, analysing each input once."""
    for name in inputs:
        text, pair = INPUTS[name]
        analysis = service.analyse(text, pair)
        for view in views:
            for variant, options in variants(view):
                for preset in presets:
                    export = ExportOptions.create(fmt, preset=preset)
                    request = FigureRequest(analysis, view, options, None, export)
                    yield (
                        name + variant,
                        view,
                        preset,
                        export_bytes(service, request)[0],
                        export_figure(service, request),
                    )


def variants(view: str) -> list[tuple[str, ViewOptions]]:
    """The options each view is checked with: the defaults, and for the token-score views a class method too
    (only the fine-tuned model has one: a note replaces the pre-trained rows)."""
    default = [("", ViewOptions())]
    return [*default, ("+decompx", ViewOptions(method="decompx"))] if view in ("sentence", "influence") else default


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright  # lazy: a dev dependency, only this command needs it

    from attention import load_pair
    from attention.settings import configure_torch, load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", nargs="+", default=list(VIEWS), choices=list(VIEWS))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    parser.add_argument("--out", type=Path, help="also save each SVG here")
    args = parser.parse_args(argv)
    configure_torch(load_settings())
    service = AnalysisService(load_pair("default"))
    broken = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1400})
        for name, view, preset, svg, figure in exports(service, args.views, args.presets, args.inputs):
            found = check_svg(tab, svg, figure)
            broken += bool(found)
            print(f"{view:11} {preset:7} {name:9} {'ok' if not found else f'{len(found)} problems'}")
            for line in found[:12]:
                print(f"    {line}")
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{name}-{view}-{preset}.svg").write_bytes(svg)
        browser.close()
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
