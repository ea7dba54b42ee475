"""A decoder pair (tiny random Llama and its classifier twin) through the page: every view is drawn, the page
reads one text, and the sentence view opens on a method a decoder has."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.core.options import ViewOptions
from app.dashboard import ids
from app.service.analysis import AnalysisService
from app.testing.dash_http import call
from app.views.render import RENDERERS, render

TEXT = "a gorgeous, witty movie."


@pytest.fixture(scope="module")
def decoder_config(tiny_decoders, tmp_path_factory):
    path = tmp_path_factory.mktemp("decoder-pair") / "tiny-decoders.toml"
    path.write_text(
        f"""name = "tiny-decoders"
examples = ["{TEXT}"]
[pretrained]
path = "{tiny_decoders["llama"]}"
[finetuned]
path = "{tiny_decoders["llama-classifier"]}"
[task]
name = "tiny task"
labels = ["bad", "good"]
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def service(decoder_config):
    return AnalysisService.from_config(str(decoder_config))


@pytest.mark.parametrize("view", sorted(RENDERERS))
@pytest.mark.parametrize(
    "options",
    [
        ViewOptions(method="class_relevance"),
        ViewOptions(method="decompx"),
        ViewOptions(method="graph", measure="raw_attention"),
        ViewOptions(method="flow", measure="attention_norm", mode="finetuned"),
    ],
    ids=["class relevance over ALTI", "DecompX", "graph over attention", "flow over attention norm"],
)
def test_every_view_draws_a_decoder_pair(service, view, options):
    analysis = service.analyse(TEXT, measure=options.measure)
    figure = render(view, service, analysis, options)
    said = json.dumps(figure["layout"])
    if view in ("sentence", "influence") and options.method == "decompx":  # neither model has DecompX rows
        assert "is a decoder: DecompX decomposes encoder blocks only. Choose class relevance." in said
    else:
        assert figure["data"], f"{view} drew nothing"


def test_a_decoder_pair_s_faithfulness_check_leaves_decompx_out(service):
    table = service.faithfulness(service.analyse(TEXT), ViewOptions())
    assert len(table) and "decompx" not in set(table["method"]) and "class_relevance" in set(table["method"])


def test_a_decoder_pair_s_page_reads_one_text(decoder_config):
    from app.team.site import create_app

    app = create_app(str(decoder_config))
    client = app.server.test_client()
    layout = client.get("/_dash-layout").get_json()
    assert _find(layout, ids.TEXT_PAIR)["props"]["style"] == {"display": "none"}, "the second-segment box is shown"
    measures = {o["value"]: o for o in _find(layout, ids.MEASURE)["props"]["options"]}
    assert [m for m, o in measures.items() if not o["disabled"]] == ["raw_attention", "attention_norm", "alti"]
    assert measures["globenc"]["label"].endswith("(encoders only)")
    methods = {o["value"]: o for o in _find(layout, ids.METHOD)["props"]["options"]}
    assert methods["decompx"]["disabled"] and not methods["class_relevance"]["disabled"]
    clicked = f"{ids.ANALYSE}.n_clicks"
    response = call(client, f"{ids.ANALYSIS}.data", {clicked: 1, f"{ids.TEXT}.value": TEXT}, clicked)
    assert response.status_code == 200 and response.get_json()["response"][ids.ANALYSIS]["data"]["text"] == TEXT
    values = {clicked: 2, f"{ids.TEXT}.value": TEXT, f"{ids.TEXT_PAIR}.value": "another text"}
    refused = call(client, f"{ids.ANALYSIS}.data", values, clicked).get_json()
    assert "is a decoder: it reads one text" in json.dumps(refused)


def _find(node, component_id):
    if isinstance(node, dict):
        if node.get("props", {}).get("id") == component_id:
            return node
        children = [*node.values()]
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find(child, component_id)
        if found is not None:
            return found
    return None


MARKS = [(6, [1, 2, 3, 4, 5, 6]), (30, [1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]),
         (32, [1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 32])]  # fmt: skip


@pytest.mark.parametrize(("layers", "expected"), MARKS)
def test_the_layer_slider_labels_a_deep_model_sparsely_and_always_its_ends(layers, expected):
    from app.dashboard.layout.controls import layer_marks

    assert list(layer_marks(layers)) == expected


def test_a_decoder_pair_exports_from_the_command_line(decoder_config, tmp_path, capsys):
    """`attention-flows export` on a decoder pair (run in process): an SVG of the Sankey traced from the last token,
    and a refused second segment names the fix."""
    from app.cli.main import main

    out = tmp_path / "sankey.svg"
    assert main(["export", "--config", str(decoder_config), "--text", TEXT, "--view", "sankey", "--out", str(out)]) == 0
    assert "from the last token" in out.read_text(encoding="utf-8")
    refused = main(
        ["export", "--config", str(decoder_config), "--text", TEXT, "--text-pair", "more", "--out", str(out)]
    )
    assert refused == 2 and "one text" in capsys.readouterr().err


# 57 pieces of the tiny tokenizer (it may read 64): over 40 tokens, so the token level folds at top_k
LONG = "unbelievably dull, tedious and overlong: the plot is thin and the acting is wooden. a dull film."


@pytest.mark.parametrize(
    "options",
    [
        ViewOptions(measure="raw_attention", level="word"),
        ViewOptions(measure="raw_attention", trace_all=True, level="word"),
        ViewOptions(top_k=3, trace_all=True),
        ViewOptions(top_k=3, measure="raw_attention", tau=0.2),
        ViewOptions(sinks=False, level="word", mode="finetuned"),
    ],
)
def test_a_decoder_s_mass_split_is_what_its_drawn_graph_says(service, options):
    """A decoder without a start token: its sink is the first piece of a longer first word ("unbelievably"), which
    a word-level view draws as a word; folds keep it; the cheap split the graph notes use still equals the drawn
    nodes, and the note names the sink word."""
    from dataclasses import replace

    from app.figures.graph_drawn import special_names
    from app.figures.graph_notes import mass_shares
    from app.figures.models import shown_models

    analysis = service.analyse(LONG)
    run = service.runs(analysis).pretrained
    assert run.sink_indices == (0,) and not run.special[0] and run.groups[0] == run.groups[1]  # a multi-piece sink
    nodes = service.graphs(analysis, options).nodes
    special = np.flatnonzero(service.hidden(analysis, replace(options, hide=("special",))))
    fold = service.fold(analysis, options)
    if options.top_k == 3:
        assert fold is not None and fold.groups[0] != fold.other  # the sink is never folded away
        special = fold.groups[special]
    drawn = mass_shares(nodes, first_layer=1, special=special.tolist(), mode=options.mode)
    split = service.mass_splits(analysis, options)
    for model in shown_models(options.mode):
        shares = drawn[model]
        np.testing.assert_allclose(split[model], (shares.words, shares.specials, shares.pruned), atol=1e-9)
    if options.level == "token" and options.sinks:  # a note on this graph names the sink word, quoted
        tokens = fold.labels if fold is not None else service.labels(analysis, "token")
        sink = int(fold.groups[0]) if fold is not None else 0
        assert special_names(nodes, tokens, special.tolist()) == f"“{tokens[sink]}”"
