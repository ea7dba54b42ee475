"""The page's state in its URL: round trips, short links, bad links refused with the option's message; the page
opens in the state of the URL it is loaded from; the docs behind the "?" help links."""

import urllib.parse
from dataclasses import replace

import pytest

from app.core.analysis import Analysis
from app.core.options import OptionError, ViewOptions
from app.core.urlstate import PageState, changed_controls, control_values, from_query, to_query
from app.dashboard import ids


def test_a_state_survives_the_url_and_defaults_are_left_out():
    options = ViewOptions(
        mode="finetuned",
        layers=(2, 5),
        heads=(0, 3),
        tau=0.1,
        hide=("punctuation", "special"),
        sinks=False,
        method="rollout",
        top_k=0,
        word=4,
        level="word",
    )
    state = PageState(Analysis("a fine film", "it is good"), options, (5, 3))
    query = to_query(state)
    assert "alpha" not in query and "aggregation" not in query  # defaults stay out of the link
    assert "layers=2%3A5" in query and "head=5%3A3" in query
    assert from_query("?" + query, num_layers=6, num_heads=12) == state
    assert to_query(PageState(None, ViewOptions())) == ""
    everything = PageState(Analysis("x"), ViewOptions(trace_all=True))
    assert from_query(to_query(everything), num_layers=6, num_heads=12) == everything


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tau=abc", "'tau'"),
        ("tau=2", "'tau'"),
        ("mode=both", "'mode'"),
        ("head=7:0", "selected layer"),
        ("head=x", "'head'"),
        ("layers=5:2", "'layers'"),
        ("sinks=maybe", "'sinks'"),
        ("colour=red", "unknown part"),
    ],
)
def test_a_bad_link_is_refused_with_what_is_wrong(query, message):
    with pytest.raises(OptionError, match=message):
        from_query(query, num_layers=6, num_heads=12)


@pytest.mark.parametrize(
    "change",
    [{"tau": 0.01}, {"sinks": False}, {"trace_all": True}, {"measure": "alti"}, {"hide": ()}, {"tau": 0.0}],
)
def test_a_graph_fix_sets_the_controls_that_hold_its_options(change):
    """A fix button's option change, applied to the controls, reads back as exactly that change of the options."""
    before = ViewOptions(
        tau=0.05, sinks=True, measure="raw_attention", hide=("special",), sources=(0,), layers=(1, 6),
        heads=tuple(range(12)),
    )  # fmt: skip
    controls = control_values(before, num_layers=6, num_heads=12) | changed_controls(change)
    expected = replace(before, **change, **({"sources": ()} if "trace_all" in change else {}))
    assert ViewOptions.from_controls(**controls) == expected


def test_a_fix_of_an_option_no_control_holds_is_refused():
    with pytest.raises(ValueError, match="No control holds the option 'layers'"):
        changed_controls({"layers": (1, 2)})


def test_control_values_are_what_the_controls_hold():
    values = control_values(ViewOptions(sinks=False, trace_all=True), num_layers=6, num_heads=12)
    assert values["layers"] == [1, 6] and values["heads"] == list(range(12))
    assert values["sinks"] == [] and values["sources"] == ["all"]
    assert ViewOptions.from_controls(**values) == ViewOptions(
        sinks=False, trace_all=True, layers=(1, 6), heads=tuple(range(12))
    )


def _layout(client, query: str) -> str:
    return client.get("/_dash-layout", headers={"Referer": f"http://localhost/?{query}"}).get_data(as_text=True)


def test_the_page_opens_in_the_state_of_its_url(tiny_app):
    import json

    client = tiny_app.server.test_client()
    query = urllib.parse.urlencode({"text": "a dull film", "mode": "finetuned", "word": "2", "head": "2:1"})
    layout = json.loads(_layout(client, query))

    def find(node, wanted):
        if isinstance(node, dict):
            if node.get("props", {}).get("id") == wanted:
                return node["props"]
            for value in node.get("props", {}).values():
                if (found := find(value, wanted)) is not None:
                    return found
        if isinstance(node, list):
            for item in node:
                if (found := find(item, wanted)) is not None:
                    return found
        return None

    assert find(layout, ids.ANALYSIS)["data"] == {"text": "a dull film", "text_pair": None, "models": "tiny"}
    assert find(layout, ids.TEXT)["value"] == "a dull film"
    assert find(layout, ids.MODE)["value"] == "finetuned"
    assert find(layout, ids.SELECTED_HEAD)["data"] == {"layer": 2, "head": 1}
    word = find(layout, ids.WORD)
    assert word["value"] == 2 and any(o["value"] == 2 for o in word["options"])  # kept: it is among the options
    bad = json.loads(_layout(client, "tau=abc"))
    assert "could not be opened" in str(find(bad, ids.ERROR)["children"])
    assert find(json.loads(_layout(client, "")), ids.MODE)["value"] == "comparison"


def test_the_help_links_open_the_docs_at_their_section(tiny_app):
    from app.dashboard.help import HELP

    client = tiny_app.server.test_client()
    for _, anchor in HELP.values():
        document, section = anchor.split("#") if "#" in anchor else ("method", anchor)
        page = client.get(f"/docs/{document}").get_data(as_text=True)
        assert f'id="{section}"' in page, anchor
    for traversal in ("/docs/..%2Fpyproject", "/docs/../pyproject", "/docs/%2E%2E%2Fpyproject"):
        assert "[project]" not in client.get(traversal).get_data(as_text=True)  # never a file outside docs/
    assert client.get("/docs/nothing").status_code == 404
