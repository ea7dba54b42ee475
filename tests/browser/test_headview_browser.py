"""The head view in a real browser: hovering a token draws only its lines (in both models) and marks it, leaving it
brings every line back, a legend click hides a head in both models (and its lines stay out of a hover), a selected
head picks the layer. Screenshots of the card (short, 137-word and pair inputs; light and dark) go to
``test-artifacts/``."""

from __future__ import annotations

import time

import pytest

from app.testing.texts import LONG_REVIEW
from benchmarks.dashboard import show_view
from benchmarks.gallery import analyse_in_page, wait_until_settled
from tests.browser import test_browser
from tests.servers import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.browser]
server, page = test_browser.server, test_browser.page  # the page tests' fixtures (browser: tests/conftest.py)

GRAPH = "#headview-graph"

# The page position of token ``row``'s hover target on ``side`` (0 query, 1 key) in the first panel.
TARGET_JS = """([side, row]) => {
    const gd = document.querySelector('#headview-graph .js-plotly-plot');
    const t = gd.data.find(t => t.customdata && t.customdata[0][0] === side);
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
    return [box.left + xa._offset + xa.l2p(t.x[row]), box.top + ya._offset + ya.l2p(t.y[row])];
}"""

# The lines drawn for a hovered token: [query, key, panel, legend group] each.
FOCUS_JS = """() => [...document.querySelectorAll('#headview-graph g.headview-focus line')].map(l =>
    [+l.dataset.query, +l.dataset.key, +l.dataset.panel, l.dataset.group])"""


def _show_card(page) -> None:
    show_view(page, "headview")
    wait_until_settled(page)  # every view drawn: the page is idle


def _hover(page, side: int, row: int) -> float:
    """Move the pointer onto a token's label; seconds until its lines are drawn."""
    x, y = page.evaluate(TARGET_JS, [side, row])
    started = time.perf_counter()
    page.mouse.move(x, y, steps=2)
    page.wait_for_function(
        "([side, row]) => { const l = [...document.querySelectorAll('#headview-graph g.headview-focus line')];"
        " return l.length > 0 && l.every(e => +(side ? e.dataset.key : e.dataset.query) === row); }",
        arg=[side, row],
        timeout=10_000,
    )
    return time.perf_counter() - started


def _every_weight(page, side: int, row: int) -> set[tuple[int, int, int, str]]:
    """What the figure's line traces hold for one token (every visible head, both panels)."""
    return {
        tuple(item)
        for item in page.evaluate(
            """([side, row]) => { const gd = document.querySelector('#headview-graph .js-plotly-plot'); const out = [];
                gd.data.forEach((t, i) => { if (!t.meta || !t.meta.q || gd._fullData[i].visible !== true) return;
                  t.meta.q.forEach((q, j) => { if ((side ? t.meta.k[j] : q) === row)
                    out.push([q, t.meta.k[j], t.meta.p[j], t.legendgroup]); }); });
                return out; }""",
            [side, row],
        )
    }


def test_hovering_a_token_draws_only_its_lines_in_both_models_and_leaving_brings_them_back(page):
    _show_card(page)
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "_dash-update-component" in r.url else None)
    assert _hover(page, 0, 1) < 2.0  # a query: its lines to every key it attends to
    drawn = {tuple(line) for line in page.evaluate(FOCUS_JS)}
    assert drawn == _every_weight(page, 0, 1) and {line[2] for line in drawn} == {0, 1}  # both models
    assert page.locator(f"{GRAPH} g.headview-focus rect").count() == 4  # a veil and the token's mark per panel
    page.mouse.move(5, 5)  # off the figure: every line again
    page.wait_for_function("() => !document.querySelector('#headview-graph g.headview-focus')", timeout=10_000)
    assert _hover(page, 1, 0) < 2.0  # a key ([CLS]): the lines of every query into it
    assert {tuple(line) for line in page.evaluate(FOCUS_JS)} == _every_weight(page, 1, 0)
    assert asked == []  # all in the browser: no request to the server
    assert page.console_errors == []


def test_a_legend_click_hides_a_head_in_both_models_and_its_lines_stay_out_of_a_hover(page):
    _show_card(page)
    page.locator(f"{GRAPH} .legend .traces", has_text="H0").first.locator(".legendtoggle").click()
    page.wait_for_function(
        "() => { const gd = document.querySelector('#headview-graph .js-plotly-plot');"
        " const g = gd._fullData.filter(t => t.legendgroup === 'head 0');"
        " return g.length > 1 && g.every(t => t.visible === 'legendonly'); }",
        timeout=10_000,
    )
    _hover(page, 1, 0)
    groups = {line[3] for line in page.evaluate(FOCUS_JS)}
    assert groups and "head 0" not in groups
    assert page.console_errors == []


def test_a_selected_head_draws_its_layer(page, server):
    page.goto(f"{server}/?head=3%3A5")
    page.wait_for_function(
        "() => { const t = document.querySelector('#headview-graph .gtitle');"
        ' return t && t.textContent.includes("layer 3, the selected head L3 H5\'s layer"); }',
        timeout=60_000,
    )
    assert page.console_errors == []


@pytest.mark.parametrize(
    ("name", "text", "pair"),
    [
        ("long", LONG_REVIEW, ""),  # (a short sentence's card: every other page test draws one)
        ("pair", "a man is playing a guitar .", "a person plays an instrument ."),
    ],
)
def test_the_card_in_light_and_dark(page, name, text, pair):
    """Screenshots of the card for a reader to look at (one with a token hovered); the long review is folded to its
    most relevant tokens, and the figure's answer stays small."""
    sizes = []

    def record(response) -> None:
        if "_dash-update-component" in response.url and response.ok:
            body = response.body()
            if b"headview-graph" in body:
                sizes.append(len(body))

    page.on("response", record)
    analyse_in_page(page, text, pair)
    _show_card(page)
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.locator("#card-headview").screenshot(path=str(ARTIFACTS / f"headview-{name}-{scheme}.png"))
    _hover(page, 0, 2)
    page.locator("#card-headview").screenshot(path=str(ARTIFACTS / f"headview-{name}-hover.png"))
    labels = page.evaluate(
        "() => document.querySelector('#headview-graph .js-plotly-plot').data.find(t => t.mode === 'markers+text').text"
    )
    if name == "long":
        assert labels[-1].startswith("other (") and len(labels) <= 2 * (30 + 3)  # two panels' query columns
    assert sizes and max(sizes) < 400_000, sizes  # bytes of the figure's answer
    assert page.console_errors == []
