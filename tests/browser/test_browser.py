"""Real-browser tests: the dashboard served by ``attention-flows serve`` on the default pair, driven by Playwright
in Debian's Chromium. A full-page screenshot is saved to ``test-artifacts/dashboard.png``."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from app.dashboard import ids
from app.testing.texts import LONG_REVIEW
from benchmarks.dashboard import VIEW_DRAWN, draw_every_view, show_view
from benchmarks.gallery import analyse_in_page, wait_until_settled
from tests.servers import ARTIFACTS, serving

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(default_server):
    """``attention-flows serve`` on the default pair, exactly as a user starts it (one for every browser module)."""
    return default_server


# The page tests follow what every view shows: a window as tall as the page, so every view is seen (views are drawn
# when seen; test_views_are_computed_when_seen checks that, in a 1600 x 1000 window).
WHOLE_PAGE = {"width": 1600, "height": 6000}


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport=WHOLE_PAGE, accept_downloads=True)
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda m: tab.console_errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.console_errors.append(str(e)))
    tab.goto(server)
    tab.wait_for_selector("#sankey-graph .sankey", timeout=60_000)
    yield tab
    context.close()


def _title(page, graph_id: str) -> str:
    return page.locator(f"#{graph_id} .gtitle").first.text_content() or ""


def _wait_title(page, graph_id: str, pattern: str) -> str:
    page.wait_for_function(
        "([id, pattern]) => { const t = document.querySelector(`#${id} .gtitle`);"
        " return t && new RegExp(pattern).test(t.textContent); }",
        arg=[graph_id, pattern],
        timeout=30_000,
    )
    return _title(page, graph_id)


def _texts(page, graph_id: str) -> list[str]:
    return page.locator(f"#{graph_id} text").all_text_contents()


def test_dashboard_end_to_end(page):
    # 1. The page opens on a held-out example with a prediction and all six views.
    assert "fine-tuned prediction" in page.locator("#prediction-panel").text_content()
    page.wait_for_function(  # the first page is a held-out example: its gold label is shown
        "() => document.getElementById('prediction-panel').textContent.includes('held-out gold label')",
        timeout=30_000,
    )
    for graph in (
        "sankey-graph",
        "head-grid-graph",
        "matrix-graph",
        "influence-graph",
        "similarity-graph",
        "sentence-graph",
    ):
        page.wait_for_selector(f"#{graph} .main-svg", timeout=30_000)
    assert "layers 1–6" in _title(page, "sankey-graph")

    # 2. Analyse a new sentence.
    page.fill("#text-input", "the acting is wooden and the plot is a complete mess .")
    page.click("#analyse-button")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#sentence-graph text')].some(t => t.textContent === 'wooden')",
        timeout=30_000,
    )
    label = page.locator("#prediction-panel .label").text_content()
    assert label == "negative"
    # The sentence view opens on a method both models have, so it compares them: three rows per line of text.
    assert "rollout over ALTI" in _wait_title(page, "sentence-graph", "attention rollout")
    assert {"pre-trained", "fine-tuned", "difference"} <= set(_texts(page, "sentence-graph"))
    page.wait_for_function(  # a background job: this sentence's check arrives a moment after the view
        "() => { const p = document.getElementById('faithfulness-panel');"
        " return p.textContent.includes('Spearman') && !p.classList.contains('updating'); }",
        timeout=60_000,
    )

    # 3. Move the layer slider: the lower handle two steps right.
    page.focus("#layer-range-slider .dash-slider-thumb-1")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert "layers 3–6" in _wait_title(page, "sankey-graph", "layers 3–6")
    # each view redraws when its own callback answers: wait for the token scores' columns, not only the Sankey's
    page.wait_for_function(
        "() => ![...document.querySelectorAll('#influence-graph .xtick text')].some(t => t.textContent === 'after 1')",
        timeout=30_000,
    )
    influence_layers = set(page.locator("#influence-graph .xtick text").all_text_contents())
    assert influence_layers == {"after 3", "after 4", "after 5", "after 6"}

    # 4. Pick a head in the grid: layer 6 (top row), head 4.
    grid = page.locator("#head-grid-graph .nsewdrag").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()

    page.mouse.click(box["x"] + box["width"] * (4.5 / 12), box["y"] + box["height"] * (0.5 / 6))
    page.wait_for_function(
        "() => document.getElementById('selected-head-label').textContent === 'layer 6, head 4'", timeout=30_000
    )
    assert "layer 6, head 4" in _wait_title(page, "matrix-graph", "head 4")

    # 5. Switch to one model.
    page.click("#mode-radio label:has-text('Fine-tuned')")
    assert ", fine-tuned" in _wait_title(page, "sankey-graph", r", fine-tuned$")
    assert "pre-trained only" not in _texts(page, "sankey-graph")
    assert len(page.locator("#matrix-graph .hm").all()) >= 1
    page.click("#mode-radio label:has-text('Comparison')")
    _wait_title(page, "sankey-graph", r"layers 3–6 \(τ = 0.05, residual in the maps\)$")

    # 6. Word filters: trace from a chosen word, then hide special tokens from every view.
    page.click("#trace-from-dropdown")
    page.locator("[role=option]", has_text=re.compile(r"^wooden")).first.click()
    page.keyboard.press("Escape")
    assert "from wooden" in _wait_title(page, "sankey-graph", "from wooden")
    page.click("#hide-checklist label:has-text('special tokens')")
    # Each view redraws when its own callback answers: wait for both views this checks, in any order.
    for graph, token in (("sentence-graph", "[CLS]"), ("matrix-graph", "[SEP]")):
        page.wait_for_function(
            f"() => ![...document.querySelectorAll('#{graph} text')].some(t => t.textContent === '{token}')",
            timeout=30_000,
        )
    assert not {"[CLS]", "[SEP]"} & set(_texts(page, "matrix-graph"))
    assert "from wooden" in _title(page, "sankey-graph")  # the chosen word survives the filter

    # 7. Another relevance method: the attention graph's mass, traced from the chosen word.
    page.click("#relevance-method-dropdown")
    page.locator("[role=option]", has_text="attention graph").first.click()
    assert "of wooden" in _wait_title(page, "sentence-graph", "attention graph")

    assert not page.locator("#error-banner").text_content()
    assert page.console_errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-filters.png"), full_page=True)


def test_full_page_screenshot_and_no_console_errors(page):
    draw_every_view(page)
    time.sleep(1.0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 50_000
    assert page.console_errors == []


def test_bad_input_shows_a_message_in_the_page(page):
    page.fill("#text-input", "   ")
    page.click("#analyse-button")
    page.wait_for_function("() => document.getElementById('error-banner').textContent.length > 0")
    assert "The text is empty" in page.locator("#error-banner").text_content()
    assert "Traceback" not in page.content()


def test_export_button_downloads_the_figure_and_its_sidecar(page, tmp_path):
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    card = page.locator("#card-sankey")
    card.locator(".export-format").first.click()
    page.locator("[role=option]", has_text="SVG").first.click()
    card.locator("button.export-button").click()
    page.wait_for_function(  # feedback while the exporter works (its first run starts a browser)
        "() => document.getElementById('export-status').textContent.startsWith('Exporting')", timeout=10_000
    )
    deadline = time.time() + 60
    while len(downloads) < 2 and time.time() < deadline:
        page.wait_for_timeout(200)
    names = sorted(d.suggested_filename for d in downloads)
    assert len(names) == 2 and names[0].endswith(".json") and names[1].endswith(".svg"), names
    files = {}
    for download in downloads:
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        files[target.suffix] = target
    svg = files[".svg"].read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "[CLS]" in svg and "Contribution graph (ALTI) from" in svg
    sidecar = __import__("json").loads(files[".json"].read_text(encoding="utf-8"))
    assert sidecar["view"] == "sankey" and sidecar["export"]["format"] == "svg"
    assert sidecar["pair"]["name"] == "minilm-sentiment" and len(sidecar["pair"]["config_sha256"]) == 64
    assert names[1].startswith("attention-flows-sankey-comparison-all-layers-")  # view, mode, layers, hash
    assert sidecar["text"] == page.locator("#text-input").input_value()
    page.wait_for_function("() => document.getElementById('export-status').textContent === ''", timeout=10_000)
    assert page.console_errors == []


def _health(url: str) -> int:
    try:
        return urllib.request.urlopen(f"{url}/healthz", timeout=5).status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_page_opens_while_the_models_load_then_fills_in(browser, default_pair, tmp_path):
    """Opened the moment the server answers (importing torch and transformers alone takes seconds, so the models
    are still loading), the page shows its controls at once and draws every view when the models are ready."""
    with serving("--no-prepare", log=tmp_path / "server.log", wait_for_models=False) as url:
        context = browser.new_context(viewport={"width": 1600, "height": 1100})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(url)
        tab.wait_for_selector("#analyse-button")
        assert _health(url) == 503, "the models should still be loading when the page is up"
        tab.wait_for_selector(VIEW_DRAWN["sankey"], timeout=120_000)
        draw_every_view(tab)
        assert _health(url) == 200
        assert "%" in tab.locator("#prediction-panel").text_content()
        assert errors == []
        context.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_dropped_request_says_so_and_the_next_answer_clears_it(page):
    page.route("**/_dash-update-component*", lambda route: route.abort("connectionreset"))
    page.click("#mode-radio label:has-text('Fine-tuned')")
    page.wait_for_function(
        "() => (document.getElementById('connection-banner') || {}).textContent?.includes('try again')",
        timeout=30_000,
    )
    assert "restarted" in page.locator("#connection-banner").text_content()
    page.unroute("**/_dash-update-component*")
    page.click("#mode-radio label:has-text('Comparison')")
    page.wait_for_function("() => document.getElementById('connection-banner').textContent === ''", timeout=30_000)
    assert page.locator("#connection-banner").is_hidden()


def test_enter_in_the_text_box_analyses(page):
    page.fill("#text-input", "a tender , luminous film about grief")
    page.focus("#text-input")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#sentence-graph text')].some(t => t.textContent === 'luminous')",
        timeout=30_000,
    )
    assert page.locator("#text-input").input_value() == "a tender , luminous film about grief"  # no newline added


OVERLAP_JS = (Path(__file__).parent / "overlap.js").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "text", "pair"),
    [
        ("short", "the acting is wooden and the plot is a mess .", ""),
        ("long", LONG_REVIEW, ""),
        ("pair", "a man is playing a guitar .", "a person plays an instrument ."),
    ],
)
def test_no_two_labels_overlap_in_any_view(page, name, text, pair):
    """Measured from the SVG in the browser: no two visible text boxes of a view intersect, at normal length, at
    137 words (folded to its most relevant tokens) and for a sentence pair."""
    analyse_in_page(page, text, pair)
    for graph in ids.VIEWS.values():
        assert page.evaluate(OVERLAP_JS, graph) == [], graph
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
    if name == "long":  # folded: the matrix keeps the top 30 plus specials and "other"
        ticks = page.locator("#matrix-graph .ytick text").all_text_contents()
        assert ticks[-1].startswith("other (") and len(ticks) <= 30 + 2 + 1
    assert page.console_errors == []


def test_the_word_query_lists_heads_and_selects_one_everywhere(page):
    page.click("#word-query-dropdown")
    page.locator("[role=option]", has_text=re.compile(r"^\S+\s+\(#2\)$")).first.click()
    title = _wait_title(page, "head-grid-graph", "Word query: attention")
    word = re.search(r"attention '(.+)' receives", title).group(1)
    assert len(page.locator("#head-grid-graph .hm").all()) == 3  # pre-trained, fine-tuned, difference
    buttons = page.locator("#word-query-top-heads button")
    buttons.first.wait_for(timeout=30_000)
    assert buttons.count() == 5
    layer, head = re.match(r"L(\d+) H(\d+)", buttons.first.text_content()).groups()
    buttons.first.click()
    page.wait_for_function(
        "(t) => document.getElementById('selected-head-label').textContent === t",
        arg=f"layer {layer}, head {head}",
        timeout=30_000,
    )
    assert f"word={2}" in page.url and f"head={layer}%3A{head}" in page.url
    assert word in _texts(page, "sentence-graph")
    assert page.console_errors == []


def test_hovering_a_token_in_the_network_highlights_its_paths(page):
    page.wait_for_selector("#network-graph .scatterlayer .js-line", state="attached", timeout=30_000)
    page.locator("#card-network").scroll_into_view_if_needed()
    wait_until_settled(page)  # the page's last redraw is over: it would wipe the highlight
    where = """([id, depth]) => {  // the page position of token 0 ([CLS]) at a depth, from plotly's own axes
        const gd = document.getElementById(id).querySelector('.js-plotly-plot');
        const nodes = gd.data.find(t => t.name === 'tokens');
        const k = nodes.customdata.findIndex(c => c[0] === depth && c[1] === 0);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(nodes.x[k]), box.top + ya._offset + ya.l2p(nodes.y[k])];
    }"""
    x, y = page.evaluate(where, ["network-graph", 6])  # [CLS] after the last layer: every path ends there
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    page.wait_for_function(
        """() => { const gd = document.querySelector('#network-graph .js-plotly-plot');
                   const h = gd.data.find(t => t.name === 'highlight'); return h && h.x && h.x.length > 0; }""",
        timeout=30_000,
    )
    page.click("#network-arrangement-radio label:has-text('columns')")
    assert "columns" in _wait_title(page, "network-graph", r"\(columns;")
    assert page.console_errors == []


def test_a_link_reproduces_the_view_and_back_and_reload_keep_it(browser, server):
    context = browser.new_context(viewport={"width": 1600, "height": 1100})
    tab = context.new_page()
    query = "text=the+acting+is+wooden+.&mode=finetuned&tau=0.1&head=5%3A3&level=word"
    tab.goto(f"{server}/?{query}")
    assert ", fine-tuned" in _wait_title(tab, "sankey-graph", "τ = 0.1")
    assert tab.input_value("#text-input") == "the acting is wooden ."
    show_view(tab, "matrix")  # the label is the matrix card's: drawn when seen
    tab.wait_for_function("() => document.getElementById('selected-head-label').textContent === 'layer 5, head 3'")
    tab.evaluate("() => window.scrollTo(0, 0)")
    tab.click("#mode-radio label:has-text('Comparison')")
    tab.wait_for_function("() => !location.search.includes('mode=')", timeout=30_000)
    tab.reload()
    _wait_title(tab, "sankey-graph", r"τ = 0.1, residual in the maps\)$")  # comparison, τ kept
    assert tab.is_checked("#mode-radio input[value='comparison']") and tab.is_checked(
        "#level-radio input[value='word']"
    )
    tab.go_back()
    _wait_title(tab, "sankey-graph", ", fine-tuned$")
    assert tab.is_checked("#mode-radio input[value='finetuned']")
    tab.goto(f"{server}/?tau=abc")
    tab.wait_for_function(
        "() => (document.getElementById('error-banner') || {}).textContent?.includes('could not be opened')"
    )
    assert "'tau'" in tab.locator("#error-banner").text_content()
    context.close()


def test_clicking_a_thumbnail_selects_that_head_everywhere(page):
    show_view(page, "thumbnails")
    where = """() => {  // the page position of the middle of head 7's map in layer 5, from plotly's own axes
        const gd = document.querySelector('#thumbnails-graph .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        const x = xa.tickvals[7], y = ya.tickvals[4];  // y ticks are layers 1..6
        return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
    }"""
    x, y = page.evaluate(where)
    page.mouse.click(x, y)
    page.wait_for_function(
        "() => document.getElementById('selected-head-label').textContent === 'layer 5, head 7'", timeout=30_000
    )
    assert "head=5%3A7" in page.url
    page.go_back()  # to the page before the click: no head selected, not the one clicked
    page.wait_for_function("() => !location.search.includes('head=')", timeout=30_000)
    page.wait_for_function(
        "() => document.getElementById('selected-head-label').textContent !== 'layer 5, head 7'", timeout=30_000
    )
    assert page.console_errors == []


def test_every_sankey_colour_says_what_its_legend_says(page):
    """In the page: the legend names each colour and encoding (both models, only one, residual, sink, the traced
    token), the caption says what a link's width is, and every link's hover states what its colour shows — for an
    attention link where the default measure's contribution is ≥ τ (both models, or only one); for a residual or
    sink link's band the share both models send (grey) or the extra only one model sends (its colour)."""
    page.wait_for_selector("#sankey-graph .sankey", timeout=30_000)
    legend = set(page.locator("#sankey-graph .legendtext").all_text_contents())
    assert {"both models", "only pre-trained", "only fine-tuned", "residual (pale)", "sink", "traced token"} <= legend
    caption = page.evaluate(
        """() => document.querySelector('#sankey-graph .js-plotly-plot').layout.annotations
                   .map(a => a.text.replace(/<br>/g, ' ')).join(' ')"""
    )
    assert "Link width = mean of both models' shares" in caption
    links = page.evaluate(
        """() => { const gd = document.querySelector('#sankey-graph .js-plotly-plot');
                   const link = gd.data[0].link;
                   return link.color.map((c, i) => [c, link.customdata[i]]); }"""
    )
    said = {  # colour → what the hover of a link (attention) or of a band (residual, sink) of that colour says
        "127, 127, 127": ("in both models", "both models send"),
        "0, 114, 178": ("only in the pre-trained model", "only the pre-trained model sends"),
        "213, 94, 0": ("only in the fine-tuned model", "only the fine-tuned model sends"),
    }
    checked, bands = 0, 0
    for colour, hover in links:
        rgb = colour.split("(")[1].rsplit(",", 1)[0]
        assert rgb in said, (colour, hover)  # no colour without a legend entry
        assert any(phrase in hover for phrase in said[rgb]), (colour, hover)
        checked += 1
        bands += "band:" in hover
    assert checked >= 5 and bands >= 2


def test_the_faithfulness_check_never_shows_the_previous_sentence_as_current(page):
    page.wait_for_function(
        "() => document.getElementById('faithfulness-panel').textContent.includes('Spearman')", timeout=60_000
    )
    page.evaluate(  # record every class the panel takes, however briefly
        """() => { window.panelClasses = [];
                   new MutationObserver(() => window.panelClasses.push(
                       document.getElementById('faithfulness-panel').className))
                   .observe(document.getElementById('faithfulness-panel'), {attributes: true}); }"""
    )
    page.fill("#text-input", "a warm , funny and wise film that i would gladly watch again .")
    page.click("#analyse-button")
    page.wait_for_function(
        "() => document.getElementById('faithfulness-panel').textContent.includes(\"class 'positive'\")",
        timeout=90_000,
    )
    assert "faithfulness updating" in page.evaluate("() => window.panelClasses")  # marked while it was computed
    assert "updating" not in (page.get_attribute("#faithfulness-panel", "class") or "")
    # moving the layer slider redraws the views, not the check (it reads neither layers nor heads): no new job
    page.evaluate("() => { window.panelClasses = []; }")
    page.focus("#layer-range-slider .dash-slider-thumb-1")
    page.keyboard.press("ArrowRight")
    assert "layers 2–6" in _wait_title(page, "sankey-graph", "layers 2–6")
    page.wait_for_timeout(1500)
    assert "faithfulness updating" not in page.evaluate("() => window.panelClasses")
    assert "class 'positive'" in page.locator("#faithfulness-panel").text_content()
    assert page.console_errors == []


def test_graph_over_switches_the_graph_views_between_contributions_and_raw_attention(page):
    """The 'Graph over' control: the default is ALTI (α off, and the page says why); raw attention draws the
    paper's graph with α back on; every graph view's title and the URL name the measure."""
    assert "Contribution graph (ALTI)" in _title(page, "sankey-graph")
    assert "residual in the maps" in _title(page, "sankey-graph")
    assert "already holds the residual" in page.locator("#alpha-note").text_content()
    page.click("#measure-dropdown")
    page.locator("[role=option]", has_text="raw attention").first.click()
    assert "residual α = 0.5" in _wait_title(page, "sankey-graph", "^Attention graph from")
    _wait_title(page, "network-graph", "^Attention network from")
    page.wait_for_function("() => document.getElementById('alpha-note').textContent === ''", timeout=30_000)
    page.wait_for_function("() => location.search.includes('measure=raw_attention')", timeout=30_000)
    page.click("#measure-dropdown")
    page.locator("[role=option]", has_text="GlobEnc").first.click()
    _wait_title(page, "sankey-graph", r"^Contribution graph \(GlobEnc\)")
    assert "GlobEnc contributions" in _wait_title(page, "matrix-graph", "GlobEnc")
    assert not page.locator("#error-banner").text_content()
    assert page.console_errors == []


def test_every_control_is_reachable_on_a_1280_by_800_screen(page):
    """The control panel is taller than a laptop's window: it scrolls on its own (issue 27), so its last control can
    be brought into view and used, and a dropdown opened there shows its whole menu."""
    page.set_viewport_size({"width": 1280, "height": 800})
    panel = page.locator(".control-panel")
    box = panel.bounding_box()
    assert box["height"] <= 800 - 8, f"the panel is {box['height']:.0f} px tall in an 800 px window"
    last = page.locator(".control-panel > *").last
    last.scroll_into_view_if_needed()
    seen = last.bounding_box()
    assert seen["y"] >= 0 and seen["y"] + seen["height"] <= 800, seen
    page.locator("#relevance-method-dropdown").scroll_into_view_if_needed()
    page.click("#relevance-method-dropdown")
    option = page.locator("[role=option]", has_text="attention graph").first
    option.wait_for(state="visible", timeout=10_000)
    where = option.bounding_box()
    assert where["y"] >= 0 and where["y"] + where["height"] <= 800
    page.keyboard.press("Escape")
    assert page.console_errors == []


def test_the_views_of_a_refused_input_say_they_show_the_previous_text(page):
    shown = page.input_value("#text-input")
    page.fill("#text-input", "   ")
    page.click("#analyse-button")
    page.wait_for_function("() => document.getElementById('error-banner').textContent.trim() !== ''", timeout=30_000)
    note = page.locator("#stale-note")
    assert "previous text" in note.text_content() and shown[:40] in note.text_content()
    assert "stale" in page.get_attribute("#workspace", "class")
    page.fill("#text-input", shown)  # the text the views show: nothing to mark
    page.wait_for_function("() => document.getElementById('stale-note').textContent === ''", timeout=10_000)
    assert "stale" not in page.get_attribute("#workspace", "class")
    assert page.console_errors == []


def test_a_long_inputs_faithfulness_check_runs_only_when_asked(page):
    page.wait_for_function(
        "() => document.getElementById('faithfulness-panel').textContent.includes('Spearman')", timeout=60_000
    )
    page.fill("#text-input", LONG_REVIEW)
    page.click("#analyse-button")
    page.wait_for_selector("#faithfulness-offer:not([hidden])", timeout=60_000)
    assert "runs only when asked" in page.locator("#faithfulness-offer").text_content()
    assert "Spearman" not in page.locator("#faithfulness-panel").text_content()  # not the previous input's table
    page.click("#faithfulness-run-button")
    page.wait_for_function(
        "() => document.getElementById('faithfulness-panel').textContent.includes('Spearman')", timeout=120_000
    )
    assert page.is_hidden("#faithfulness-offer")
    assert page.console_errors == []


# A fix button's label → the URL parameter it changes and the value it gets (None: any value).
FIX_IN_URL = {"Lower τ": ("tau", None), "Trace from every token": ("sources", "all"), "Turn sinks off": ("sinks", "0")}


def test_a_one_sided_graph_offers_its_fixes_and_a_click_applies_one(browser, server):
    """The long review over raw attention: the Sankey keeps its traced mass in [CLS] / [SEP] and says so; under it
    one button per fix that helps, labelled with the words' share it gives. Clicking the first sets its control,
    the URL follows, and the redrawn Sankey shows at least that share of the words (or offers nothing more)."""
    context = browser.new_context(viewport={"width": 1600, "height": 1100})
    tab = context.new_page()
    tab.goto(f"{server}/?measure=raw_attention&text={urllib.parse.quote_plus(LONG_REVIEW)}")
    tab.wait_for_selector("#sankey-fixes .graph-fix", timeout=60_000)
    notes = " ".join(_texts(tab, "sankey-graph"))
    labels = tab.locator("#sankey-fixes .graph-fix").all_text_contents()
    assert "stays in [CLS] / [SEP]" in notes and labels, (notes, labels)
    first = labels[0]
    promised = int(re.search(r"\((\d+)\s% to the words\)", first).group(1))
    search = tab.evaluate("() => location.search")
    tab.locator("#sankey-fixes .graph-fix").first.click()
    tab.wait_for_function("s => location.search !== s", arg=search, timeout=30_000)
    changed = urllib.parse.parse_qs(tab.evaluate("() => location.search").lstrip("?"))
    if first.startswith("Draw"):  # back to the default measure (ALTI): the URL drops it
        assert "measure" not in changed, (first, changed)
    else:
        key, value = next(v for k, v in FIX_IN_URL.items() if first.startswith(k))
        assert key in changed and value in (None, *changed[key]), (first, changed)
    tab.wait_for_function(  # the redrawn figure no longer offers the fix just applied
        "label => ![...document.querySelectorAll('#sankey-fixes .graph-fix')].some(b => b.textContent === label)",
        arg=first,
        timeout=60_000,
    )
    said = " ".join(_texts(tab, "sankey-graph"))
    shares = [int(s) for s in re.findall(r"(\d+)\s% of the traced mass reaches the words", said)]
    assert all(share >= promised - 1 for share in shares), (promised, shares)
    tab.screenshot(path=str(ARTIFACTS / "sankey-fix-applied.png"), full_page=False)
    context.close()


def _figure_requests(tab) -> list[str]:
    """Collects the outputs of every callback request the page sends to the server."""
    asked: list[str] = []

    def record(request) -> None:
        if request.url.endswith("/_dash-update-component") or "/_dash-update-component?" in request.url:
            asked.append((request.post_data_json or {}).get("output", ""))

    tab.on("request", record)
    return asked


def test_views_are_computed_when_seen(browser, server):
    """At 1600 x 1000 the page opens on the sentence view and the Sankey: an analysis asks the server for those
    (and the network, half a screen below) and for no view further down; scrolling to a view draws it, with the
    options of that moment; a control change then redraws the views on screen only."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    tab = context.new_page()
    asked = _figure_requests(tab)
    tab.goto(server)
    tab.wait_for_selector(VIEW_DRAWN["sankey"], timeout=60_000)
    tab.wait_for_selector(VIEW_DRAWN["sentence"], timeout=60_000)
    wait_until_settled(tab)
    below = ("heads", "similarity", "matrix", "headview", "thumbnails", "influence")
    figures = {view: f"{ids.VIEWS[view]}.figure" for view in ids.VIEWS}
    assert any(figures["sankey"] in out for out in asked) and any(figures["sentence"] in out for out in asked)
    assert not [out for out in asked if any(f"..{figures[v]}" in out or out == figures[v] for v in below)], asked
    assert tab.locator(f"{VIEW_DRAWN['influence']}").count() == 0  # not drawn
    tab.click("#mode-radio label:has-text('Fine-tuned')")  # a control change while the lower views are unseen
    tab.wait_for_function("() => location.search.includes('mode=finetuned')", timeout=30_000)
    wait_until_settled(tab)
    assert not [out for out in asked if any(f"..{figures[v]}" in out or out == figures[v] for v in below)], asked
    show_view(tab, "influence")  # scrolled to: drawn now, for the fine-tuned model chosen meanwhile
    assert any(figures["influence"] in out for out in asked)
    assert _wait_title(tab, "influence-graph", "Token scores per layer")
    panels = tab.locator("#influence-graph .g-xtitle, #influence-graph .annotation-text").all_text_contents()
    assert "fine-tuned" in " ".join(panels) and "pre-trained" not in " ".join(panels), panels
    asked.clear()
    tab.evaluate("() => window.scrollTo(0, 0)")
    wait_until_settled(tab)
    assert not [out for out in asked if figures["influence"] in out], asked  # scrolled away and back: still current
    context.close()


def test_a_view_never_keeps_the_figure_of_a_request_the_page_dropped(page):
    """A change the sentence view reads (relevance method → flow) whose request is still unanswered when a change
    it does not read follows (sinks): Dash keeps only the newer request's answer, so that answer must draw flow —
    the gate counts what changed since the view last *answered*, not since it last asked."""
    held = []

    def hold_the_first_sentence_request(route) -> None:
        if not held and "sentence-graph.figure" in (route.request.post_data or ""):
            held.append(route)  # answered only at the end, after the newer request
            return
        route.continue_()

    _wait_title(page, "sentence-graph", "attention rollout")
    page.route("**/_dash-update-component*", hold_the_first_sentence_request)
    page.click("#relevance-method-dropdown")
    page.locator("[role=option]", has_text="attention flow").first.click()
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the sentence view was not asked to draw flow"
    page.click(f"#{ids.SINKS} input")  # sinks: not read by flow's token scores
    assert "attention flow" in _wait_title(page, "sentence-graph", "attention flow")
    held[0].continue_()
    page.unroute("**/_dash-update-component*")
    page.wait_for_timeout(500)
    assert "attention flow" in _title(page, "sentence-graph")
    assert page.console_errors == []
