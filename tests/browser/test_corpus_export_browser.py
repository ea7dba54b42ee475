"""The corpus page's Export buttons in Chromium against `attention-flows serve`: each card's format and size menus,
the figure and its sidecar downloaded with names that say figure, preset and format, and no console error.
Screenshot: test-artifacts/corpus-export.png."""

from __future__ import annotations

import json
import time

import pytest

from tests.corpus.test_corpus_export import corpora  # noqa: F401 (a fixture: the tiny pair's corpus)
from tests.servers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.browser


def _choose(card, menu: str, option: str) -> None:
    """Pick ``option`` in the card's ``menu`` (a Dash dropdown: its class, e.g. ``export-format``)."""
    card.locator(f".{menu}").first.click()
    card.page.locator("[role=option]", has_text=option).first.click()


def _downloads(page, action, count: int, timeout: float = 60) -> list:
    """The downloads ``action`` starts (``count`` of them)."""
    made = []

    def keep(download) -> None:
        made.append(download)

    page.on("download", keep)
    action()
    deadline = time.time() + timeout
    while len(made) < count and time.time() < deadline:
        page.wait_for_timeout(200)
    page.remove_listener("download", keep)
    return made


def test_each_card_of_the_corpus_page_exports_its_figure(corpora, tiny_config, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "corpus-export-server.log"
    environment = {"ATTENTION_FLOWS_CORPORA": str(corpora), "ATTENTION_FLOWS_HOME": str(tmp_path / "home")}
    with serving("--config", str(tiny_config), log=log, env=environment) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{url}/corpus/")
        page.wait_for_selector("#corpus-heads .heatmaplayer", timeout=60_000)
        page.wait_for_selector("#corpus-head-map .scatterlayer", timeout=30_000)

        heads = page.locator(".card", has=page.locator("#corpus-heads"))
        _choose(heads, "export-format", "SVG")
        _choose(heads, "export-size", "1 column")
        made = _downloads(page, lambda: heads.locator("button.export-button").click(), 2)
        names = sorted(d.suggested_filename for d in made)
        assert len(names) == 2, names
        assert names[0].startswith("corpus-heads-js-divergence-tiny-reviews-single-svg-") and names[0].endswith(".json")
        assert names[1] == names[0].removesuffix(".json") + ".svg"
        files = {d.suggested_filename.rsplit(".", 1)[1]: tmp_path / d.suggested_filename for d in made}
        for download in made:
            download.save_as(tmp_path / download.suggested_filename)
        assert files["svg"].read_text().startswith("<svg")
        sidecar = json.loads(files["json"].read_text())
        assert sidecar["figure"] == "heads" and sidecar["corpus"]["folder"] == "tiny-reviews"
        assert sidecar["export"] == {"format": "svg", "preset": "single", "width": None, "height": None, "scale": 1.0}

        page.fill("#corpus-word", "film")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => (document.querySelector('#corpus-word-graph .gtitle')?.textContent || '').includes('film')",
            timeout=30_000,
        )
        word = page.locator(".card", has=page.locator("#corpus-word-graph"))
        word.locator(".export-sidecar input").uncheck()  # the figure alone
        made = _downloads(page, lambda: word.locator("button.export-button").click(), 1)
        assert len(made) == 1 and made[0].suggested_filename.startswith("corpus-word-film-tiny-reviews-double-png-")
        made[0].save_as(tmp_path / "word.png")
        assert (tmp_path / "word.png").read_bytes().startswith(b"\x89PNG")
        page.wait_for_timeout(1000)
        assert len([f for f in tmp_path.iterdir() if f.suffix == ".json"]) == 1  # no sidecar for the word figure
        assert page.locator("#corpus-error").text_content() == ""
        page.screenshot(path=str(ARTIFACTS / "corpus-export.png"), full_page=True)
        assert not errors, errors
        browser.close()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
