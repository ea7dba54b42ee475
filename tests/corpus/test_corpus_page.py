"""The corpus page (/corpus/): its layout, callbacks and example table over HTTP on the tiny pair, and the real
page in Chromium on the default pair."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.testing.dash_http import request_body
from attention.settings import Settings


class Prefixed:
    """A Flask test client whose paths are under ``/corpus``."""

    def __init__(self, client) -> None:
        self.client = client

    def get(self, path: str, **kwargs):
        return self.client.get("/corpus" + path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.client.post("/corpus" + path, **kwargs)


@pytest.fixture(scope="module")
def corpora(tiny_config, tmp_path_factory) -> Path:
    """A corpora folder with one corpus of the tiny pair (30 labelled rows)."""
    import pandas as pd

    from attention import load_pair
    from attention.corpus import corpus_source, run_corpus

    root = tmp_path_factory.mktemp("corpora")
    words = ["a", "fine", "moving", "film", "dull", "plot", "great", "acting", "bad", "music"]
    texts = [" ".join(words[(i * 3 + k) % len(words)] for k in range(4 + i % 5)) for i in range(30)]
    data = root.parent / "reviews.csv"
    pd.DataFrame({"text": texts, "label": [i % 2 for i in range(30)]}).to_csv(data, index=False)
    pair = load_pair(tiny_config)
    source = corpus_source(data, config=pair.config, label_col="label")
    run_corpus(pair, source, root / "tiny-reviews", chunk_size=8, progress=False)
    return root


@pytest.fixture(scope="module")
def client(tiny_config, corpora):
    from app.team.site import create_app

    app = create_app(tiny_config, settings=Settings(corpora=corpora))
    return app.server.test_client()


def _layout(client, search: str = "") -> str:
    return client.get("/corpus/_dash-layout", headers={"Referer": f"http://x/corpus/{search}"}).get_data(as_text=True)


def _call(client, output: str, values: dict, changed: str):
    from app.testing.dash_http import dependencies

    corpus = Prefixed(client)
    spec = next(s for s in dependencies(corpus) if output in s["output"])
    response = corpus.post("/_dash-update-component", json=request_body(spec, values, changed))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()["response"]


def test_the_page_lists_the_pairs_corpora_and_refuses_other_names(client):
    page = _layout(client)
    assert "tiny-reviews (30 examples)" in page
    assert "corpus-heads" in page
    assert "has no corpus called" in _layout(client, "?corpus=..%2F..%2Fetc")
    assert "There is no model pair called" in _layout(client, "?models=..%2Fsecret")


def test_the_corpus_docs_show_their_screenshot(client):
    page = client.get("/docs/corpus").get_data(as_text=True)
    assert 'src="corpus-page.png"' in page and 'id="the-corpus-page"' in page
    image = client.get("/docs/corpus-page.png")
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data[:4] == b"\x89PNG"
    for outside in ("/docs/..%2Fpyproject.png", "/docs/Screenshot.PNG", "/docs/nothing.png"):
        assert client.get(outside).mimetype != "image/png", outside  # only docs/<lowercase name>.png that exists


def test_a_pair_without_corpora_says_how_to_make_one(tiny_config, tmp_path):
    from app.team.site import create_app

    empty = create_app(tiny_config, settings=Settings(corpora=tmp_path)).server.test_client()
    assert "has no corpus yet. Compute one with: attention-flows corpus run" in _layout(empty)


def test_the_views_are_drawn_with_their_units(client):
    values = {"corpus-select.value": "tiny-reviews", "corpus-metric.value": "js_divergence",
              "corpus-context.data": {"models": "tiny", "options": "tau=0.1"}}  # fmt: skip
    drawn = _call(client, "corpus-heads.figure", values, "corpus-select.value")
    heads = drawn["corpus-heads"]["figure"]
    assert "mean over 30 examples" in heads["layout"]["title"]["text"]
    assert heads["data"][0]["colorbar"]["title"]["text"] == "mean JS divergence (bits)"
    assert len(heads["data"][0]["z"]) == 2 and len(heads["data"][0]["z"][0]) == 2  # tiny: 2 layers x 2 heads
    layers = drawn["corpus-layers"]["figure"]["data"][0]
    assert len(layers["error_y"]["array"]) == 2 and min(layers["error_y"]["arrayminus"]) >= 0
    assert "stress" in drawn["corpus-head-map"]["figure"]["layout"]["title"]["text"]
    assert "30 examples of 30 rows" in drawn["corpus-summary"]["children"]
    word = _call(client, "corpus-word-graph.figure", values | {"corpus-word.value": "Film"}, "corpus-word.value")
    title = word["corpus-word-graph"]["figure"]["layout"]["title"]["text"]
    assert "'Film'" in title and "occurrences" in title
    missing = _call(client, "corpus-word-graph.figure", values | {"corpus-word.value": "zebra"}, "corpus-word.value")
    assert "does not occur" in missing["corpus-word-graph"]["figure"]["layout"]["annotations"][0]["text"]
    bad = _call(client, "corpus-heads.figure", values | {"corpus-select.value": "nope"}, "corpus-select.value")
    assert "has no corpus called 'nope'" in bad["corpus-error"]["children"]


def test_the_head_grid_ranks_heads_by_contribution_change(client, corpora):
    """The change measure offers each head's contribution share (fine-tuned − pre-trained): the grid is its mean
    per head on a diverging scale, the layer view the share of mixing moved between heads; the words that gained
    can be ranked by the [CLS] contribution rollout, named by its measure."""
    import numpy as np

    from attention.corpus import head_ranking, layer_change, word_changes
    from attention.corpus.mixing import ROLLOUT_MEASURE
    from attention.defaults import MEASURE_LABELS

    page = _layout(client)
    assert '"value":"contribution_share"' in page and "contribution share (fine-tuned − pre-trained)" in page
    assert '"value":"mixing_rollout"' in page
    assert f"[CLS] contribution rollout ({MEASURE_LABELS[ROLLOUT_MEASURE]})" in page
    values = {"corpus-select.value": "tiny-reviews", "corpus-metric.value": "contribution_share",
              "corpus-context.data": {"models": "tiny", "options": ""}}  # fmt: skip
    drawn = _call(client, "corpus-heads.figure", values, "corpus-metric.value")
    assert drawn["corpus-error"]["children"] == ""
    heads = drawn["corpus-heads"]["figure"]
    trace = heads["data"][0]
    title = heads["layout"]["title"]["text"]
    assert "contribution share" in title and "(norm + residual + LayerNorm)" in title and "30 examples" in title
    assert trace["zmid"] == 0.0 and trace["zmin"] == -trace["zmax"]  # signed: a diverging scale
    assert "pre-trained" in trace["hovertemplate"] and "95 % interval" in trace["hovertemplate"]
    ranking = head_ranking(corpora / "tiny-reviews", "contribution_share")
    expected = np.full((2, 2), np.nan)
    expected[ranking["layer"] - 1, ranking["head"]] = ranking["mean"]
    np.testing.assert_allclose(trace["z"], expected, rtol=1e-12)
    assert np.abs(expected).max() > 0  # fine-tuning moved some share
    layers = drawn["corpus-layers"]["figure"]
    assert "share of mixing moved between heads" in layers["layout"]["yaxis"]["title"]["text"]
    moved = layer_change(corpora / "tiny-reviews", "contribution_share")
    np.testing.assert_allclose(layers["data"][0]["y"], moved["mean"])
    words = _call(client, "corpus-words.children", values | {"corpus-word-measure.value": "mixing_rollout"},
                  "corpus-word-measure.value")["corpus-words"]["children"]["props"]  # fmt: skip
    headers = [column.get("headerName") for column in words["columnDefs"]]
    assert f"fine-tuned [CLS] {MEASURE_LABELS[ROLLOUT_MEASURE]} rollout" in headers
    expected_words = word_changes(corpora / "tiny-reviews", "mixing_rollout")
    assert [row["word"] for row in words["rowData"]] == list(expected_words["word"][:50])


def test_a_corpus_of_the_older_format_says_to_compute_it_again(tiny_config, corpora, tmp_path):
    import json
    import shutil

    from app.team.site import create_app

    shutil.copytree(corpora / "tiny-reviews", tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    manifest.pop("mixing")
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest | {"format": 1}))
    old = create_app(tiny_config, settings=Settings(corpora=tmp_path)).server.test_client()
    values = {"corpus-select.value": "old", "corpus-metric.value": "contribution_share",
              "corpus-context.data": {"models": "tiny", "options": ""}}  # fmt: skip
    drawn = _call(old, "corpus-heads.figure", values, "corpus-select.value")
    assert "another format (1 there; this version reads format 2)" in drawn["corpus-error"]["children"]
    assert "delete the folder and rerun the corpus run command" in drawn["corpus-error"]["children"]


def test_example_views_and_words_that_gained(client, corpora):
    from app.corpus.grid import view_table
    from attention.corpus import read_table

    values = {"corpus-select.value": "tiny-reviews", "corpus-examples-kind.value": "all",
              "corpus-heads.clickData": None, "corpus-context.data": {"models": "tiny", "options": ""}}  # fmt: skip
    grid = _call(client, "corpus-grid.children", values, "corpus-select.value")
    assert grid["corpus-grid"]["children"]["props"]["id"]["view"] == "all"
    waiting = _call(client, "corpus-grid.children", values | {"corpus-examples-kind.value": "head"},
                    "corpus-examples-kind.value")  # fmt: skip
    assert "Click a cell of the head grid" in str(waiting["corpus-grid"]["children"])
    clicked = {"points": [{"x": 1, "y": 2, "z": 0.1}]}
    chosen = _call(client, "corpus-grid.children", values | {"corpus-examples-kind.value": "head",
                   "corpus-heads.clickData": clicked}, "corpus-heads.clickData")  # fmt: skip
    assert chosen["corpus-grid"]["children"]["props"]["id"]["view"] == "head-2-1"
    assert chosen["corpus-selected-head"]["children"] == "selected head: L2 H1"
    by_head = view_table(corpora / "tiny-reviews", "head-2-1")
    heads = read_table(corpora / "tiny-reviews", "heads")
    expected = heads[(heads["layer"] == 2) & (heads["head"] == 1)].set_index("example_id")["js_divergence"]
    assert list(by_head["head_change"]) == sorted(expected, reverse=True)
    assert (view_table(corpora / "tiny-reviews", "wrong")["correct"] == "no").all()
    words = _call(client, "corpus-words.children", values | {"corpus-word-measure.value": "rollout"},
                  "corpus-word-measure.value")["corpus-words"]["children"]["props"]  # fmt: skip
    changes = [row["change"] for row in words["rowData"]]
    assert changes == sorted(changes, reverse=True) and all(row["count"] >= 5 for row in words["rowData"])


def test_the_callbacks_are_plain_functions_that_find_the_catalog_in_the_server(client):
    """A callback is a module-level function: called in a request of a server the page is mounted on, it reads
    that server's corpus catalog; the head grid's measures are the pair metrics and the contribution share."""
    from app.core.options import PAIR_METRICS
    from app.corpus.callbacks import draw, outline_selected_head, query_word
    from app.corpus.catalog import corpus_catalog
    from app.corpus.layout import CHANGE_METRICS

    assert (*PAIR_METRICS, "contribution_share") == CHANGE_METRICS
    context = {"models": "tiny", "options": ""}
    with client.application.test_request_context("/corpus/"):
        assert corpus_catalog().default_models == "tiny"
        heads, layers, _, summary, error = draw("tiny-reviews", "tv_distance", context, None)
        assert error == "" and "30 examples of 30 rows" in summary
        assert "total-variation" in heads["data"][0]["colorbar"]["title"]["text"] and len(layers["data"][0]["y"]) == 2
        *_, refused = draw("tiny-reviews", "entropy", context, None)
        assert refused.startswith("Unknown change measure 'entropy'.")
        assert "'film'" in query_word(1, "film", "tiny-reviews", context)["layout"]["title"]["text"]
        patch = outline_selected_head({"points": [{"x": 0, "y": 1}]}).to_plotly_json()
        assert patch["operations"][0]["params"]["value"][0]["type"] == "rect"


def test_the_example_table_is_filtered_sorted_and_paged_on_the_server(client, corpora):
    from app.corpus.grid import example_rows
    from attention.corpus import read_table

    table = read_table(corpora / "tiny-reviews", "examples")
    table["confidence"] = [max(p) for p in table.pop("probabilities_finetuned")]
    request = {"startRow": 0, "endRow": 5, "sortModel": [{"colId": "mean_change", "sort": "desc"}],
               "filterModel": {"text": {"filterType": "text", "type": "contains", "filter": "FILM"}}}  # fmt: skip
    answer = example_rows(table, request, models="tiny", options="tau=0.1", default_models="tiny")
    containing = table[table["text"].str.contains("film")]
    assert answer["rowCount"] == len(containing) and len(answer["rowData"]) == min(5, len(containing))
    changes = [row["mean_change"] for row in answer["rowData"]]
    assert changes == sorted(containing["mean_change"], reverse=True)[:5]
    link = answer["rowData"][0]["open"]
    assert link.startswith("/?text=") and link.endswith("&tau=0.1")  # the page's options carried along
    second = example_rows(table, {"startRow": 5, "endRow": 10}, models="other", options="", default_models="tiny")
    assert [r["example_id"] for r in second["rowData"]] == list(table["example_id"][5:10])
    assert "models=other" in second["rowData"][0]["open"]
    numbers = {"confidence": {"filterType": "number", "type": "greaterThan", "filter": 0.9}}
    assert example_rows(table, {"filterModel": numbers}, models="tiny", options="", default_models="tiny")[
        "rowCount"
    ] == int((table["confidence"] > 0.9).sum())


@pytest.mark.slow
@pytest.mark.browser
def test_the_corpus_page_in_chromium(default_pair, tmp_path):
    """From the dashboard's Corpus link to the corpus page, a word query, and an example opened in the single-example
    page with the same options. Screenshot: test-artifacts/corpus.png."""
    from playwright.sync_api import sync_playwright

    from attention.corpus import corpus_source, run_corpus
    from tests.servers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serving

    run_corpus(default_pair, corpus_source(None, config=default_pair.config, limit=60), tmp_path / "held-out-60",
               chunk_size=30, progress=False)  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "corpus-server.log"
    environment = {"ATTENTION_FLOWS_CORPORA": str(tmp_path)}
    with serving("--no-prepare", log=log, env=environment) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/?tau=0.1")
        page.wait_for_selector("#sankey-graph .sankey", timeout=60_000)
        href = page.get_attribute("#corpus-link", "href")
        assert href.startswith("/corpus/?") and "tau=0.1" in href and "text=" not in href
        page.click("#corpus-link")
        page.wait_for_selector("#corpus-heads .heatmaplayer", timeout=60_000)
        assert "held-out-60 (60 examples)" in page.inner_text("#corpus-select")
        page.fill("#corpus-word", "film")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => (document.querySelector('#corpus-word-graph .gtitle')?.textContent || '').includes('film')",
            timeout=30_000,
        )
        page.wait_for_selector(".ag-row .corpus-open", timeout=30_000)
        box = page.locator("#corpus-heads .nsewdrag").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.95)  # head 0 or 1, layer 6
        page.wait_for_function("() => document.getElementById('corpus-selected-head').textContent.includes('L6')")
        page.click("text=where the selected head changed most")
        page.wait_for_selector(".ag-header-cell-text:has-text('L6H')", timeout=30_000)
        page.wait_for_selector(".ag-row .corpus-open", timeout=30_000)
        time.sleep(0.5)
        page.screenshot(path=str(ARTIFACTS / "corpus.png"), full_page=True)
        first_text = page.inner_text(".ag-row[row-index='0'] [col-id='text']").strip()
        with context.expect_page() as opened:
            page.click(".ag-row[row-index='0'] .corpus-open")
        single = opened.value
        single.wait_for_selector("#sankey-graph .sankey", timeout=60_000)
        assert "tau=0.1" in single.url
        assert single.input_value("#text-input").startswith(first_text.rstrip("…")[:40])
        assert not errors, errors
        browser.close()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
