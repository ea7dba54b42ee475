"""Screenshots of every view for docs/gallery.md, from a source checkout: ``make gallery``, or
``python -m benchmarks.gallery [--out docs/gallery] [--readme docs/screenshot.png]``.

Starts ``attention-flows serve`` on the default pair, opens the page in Debian's Chromium (1600 px wide) and saves
each view's card for three inputs: a held-out sentence, a 137-word review, and a sentence pair; plus the README's
full-page screenshot. Then exports every view at every size preset (single column, double column, slide) for the
30-token sentence of the figure standard (``app/testing/figure_standard.py``), as the Export button makes them
(PNG at 1.5× instead of 300 dpi, to keep the docs small): ``export-VIEW-PRESET.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from app.core.options import VIEWS
from app.dashboard import ids
from app.testing.servers import CHROMIUM, free_port, wait_until_ready
from app.testing.texts import INPUTS as TEXTS
from benchmarks.dashboard import draw_every_view

# Lazy imports (attention, app.core, app.export, app.service, app.testing): export_every_preset loads torch and the
# models; the page screenshots need only a browser.

INPUTS = {  # the gallery's names for the figure standard's texts
    "normal": (None, None),  # the page's first held-out example
    "long": TEXTS["review"],
    "pair": TEXTS["pair"],
}


def analyse_in_page(page, text: str | None, pair: str | None = None) -> None:
    """Analyse ``text`` (and ``pair``) in an open page (None: keep the current input), scroll through the page and
    wait until every view has drawn it (shared with the browser tests)."""
    if text is not None:
        before = page.evaluate("() => document.getElementById('sentence-graph').innerHTML.length")
        page.fill("#text-input", text)
        page.fill("#text-pair-input", pair or "")
        page.click("#analyse-button")
        page.wait_for_function(
            "(n) => document.getElementById('sentence-graph').innerHTML.length !== n", arg=before, timeout=120_000
        )
    page.wait_for_load_state("networkidle")
    draw_every_view(page)  # views are drawn when seen: scroll through them
    page.wait_for_function(  # this input's faithfulness check follows the views (10 s at 137 words)
        "() => !document.getElementById('faithfulness-panel').classList.contains('updating')", timeout=180_000
    )
    wait_until_settled(page)


SETTLED_JS = """(ids) => {  // every view's visible text and where it is, to the pixel; null while Dash is loading
    if (document.querySelector('[data-dash-is-loading="true"]')) return null;
    return ids.map(id => {
        const root = document.getElementById(id);
        if (!root) return 'missing ' + id;
        return [...root.querySelectorAll('svg text')].map(t => {
            const r = t.getBoundingClientRect();
            return t.textContent + '@' + Math.round(r.left) + ',' + Math.round(r.top);
        }).join('|');
    }).join('#');
}"""


def wait_until_settled(page, *, quiet: float = 1.2, timeout: float = 60.0) -> None:
    """Wait until no view's text has moved or changed for ``quiet`` seconds: a view drawn late (a busy server) and
    plotly's transitions (a Sankey fades its old nodes out over 0.5 s) are over before anything is measured."""
    views = list(ids.VIEWS.values())  # element ids of the view graphs
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = page.evaluate(SETTLED_JS, views)
        if now is None or now != last:  # a callback in flight, or a view drawn or moved since the last look
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the views were still changing after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gallery", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/gallery"), help="folder for the PNGs")
    parser.add_argument("--readme", type=Path, default=Path("docs/screenshot.png"), help="the README's screenshot")
    parser.add_argument("--markdown", type=Path, default=Path("docs/gallery.md"),
                        help="the page whose exports section is rewritten")  # fmt: skip
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright  # lazy: playwright, after the arguments are checked

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--no-prepare"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(f"{url}/healthz", timeout=180, process=process)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            for name, (text, pair) in INPUTS.items():
                analyse_in_page(page, text, pair)
                if name == "normal":
                    page.screenshot(path=str(args.readme), full_page=True)
                for view in VIEWS:
                    target = args.out / f"{name}-{view}.png"
                    page.locator(f"#card-{view}").screenshot(path=str(target))
                    print(target)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    export_every_preset(args.out)
    write_export_section(args.markdown, args.out)
    return 0


def export_every_preset(out: Path) -> None:
    """Every view at every size preset, exported for the figure standard's 30-token sentence."""
    from app.core.options import PRESETS, ExportOptions, ViewOptions
    from app.export.requests import FigureRequest, export_bytes
    from app.service.analysis import AnalysisService
    from app.testing.figure_standard import INPUTS
    from attention import load_pair
    from attention.settings import configure_torch, load_settings

    configure_torch(load_settings())
    service = AnalysisService(load_pair("default"))
    analysis = service.analyse(*INPUTS["sentence"])
    for view in VIEWS:
        for preset in PRESETS:
            export = ExportOptions.create("png", preset=preset, scale=1.5)
            target = out / f"export-{view}-{preset}.png"
            target.write_bytes(export_bytes(service, FigureRequest(analysis, view, ViewOptions(), None, export))[0])
            print(target)


EXPORTS_BEGIN = "<!-- exports: written by `make gallery` (benchmarks/gallery.py); edits here are replaced -->"
EXPORTS_END = "<!-- /exports -->"


def export_section(out: Path, relative_to: Path) -> str:
    """The Markdown of every view at every preset (the files :func:`export_every_preset` wrote to ``out``), view by
    view, linked relative to ``relative_to`` (the page's folder)."""
    from app.core.options import PRESETS

    lines = [EXPORTS_BEGIN, ""]
    for view, title in VIEWS.items():
        lines += [f"### {title}", ""]
        for preset, size in PRESETS.items():
            path = (out / f"export-{view}-{preset}.png").relative_to(relative_to).as_posix()
            lines += [f"**{size.label}**", "", f"![{title}, {size.label}]({path})", ""]
    return "\n".join([*lines, EXPORTS_END])


def write_export_section(markdown: Path, out: Path) -> None:
    """Replace the exports section of ``markdown`` (between :data:`EXPORTS_BEGIN` and :data:`EXPORTS_END`, or
    appended when it has none) by :func:`export_section`."""
    text = markdown.read_text(encoding="utf-8")
    section = export_section(out.resolve(), markdown.resolve().parent)
    if EXPORTS_BEGIN in text and EXPORTS_END in text:
        head, rest = text.split(EXPORTS_BEGIN, 1)
        text = head + section + rest.split(EXPORTS_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    markdown.write_text(text, encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    raise SystemExit(main())
