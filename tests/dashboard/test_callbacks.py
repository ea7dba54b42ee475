"""Callbacks called as functions, and over HTTP as the browser calls them (tiny random pair)."""

import itertools
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import no_update

from app.dashboard import ids
from app.dashboard.callbacks import analyse, selection, views
from app.testing.dash_http import call
from tests.conftest import plotly_figure

TEXT = {"text": "a fine , moving film", "text_pair": None}
CONTROLS = {
    "mode": "comparison",
    "layers": [1, 2],
    "heads": [0, 1],
    "tau": 0.05,
    "alpha": 0.5,
    "aggregation": "mean",
    "level": "token",
    "sources": [],
    "hide": [],
    "sinks": ["sinks"],
    "top_k": 30,
}
RELEVANCE = {"method": "class_relevance", "target": "predicted"}


@pytest.fixture
def context(tiny_app):
    with tiny_app.server.app_context():
        yield tiny_app


def test_sankey_callback_draws_the_comparison(context):
    drawn, _ = views.update_sankey(analysis_data=TEXT, selected=None, **CONTROLS, **RELEVANCE)
    fig = plotly_figure(drawn)
    assert isinstance(fig.data[0], go.Sankey) and "[CLS]" in fig.layout.title.text


@pytest.mark.parametrize("view", ["sankey", "network"])
def test_a_one_sided_graph_offers_each_fix_that_helps_as_a_button(context, view):
    """Over raw attention with a high τ the tiny pair's graph keeps (almost) nothing of the words: the figure's
    note names the fixes that help and the card shows one button per fix, labelled as the note says it."""
    one_sided = {**CONTROLS, "tau": 0.45, "measure": "raw_attention"}
    update = views.update_sankey if view == "sankey" else views.update_network
    extra = {"selected": None} if view == "sankey" else {"arrangement": "rings"}
    drawn, buttons = update(analysis_data=TEXT, **extra, **one_sided, **RELEVANCE)
    offered = drawn["layout"]["meta"]["fixes"]
    assert offered, "the note offers no fix"
    notes = " ".join(a.get("text", "") for a in drawn["layout"]["annotations"]).replace("<br>", " ")
    labels = [button.children for button in buttons[1:]]
    assert labels == [fix["label"] for fix in offered]
    for fix, button in zip(offered, buttons[1:], strict=True):
        assert button.id == ids.graph_fix(view, json.dumps(fix["change"], sort_keys=True))
        assert fix["label"].split(" (")[0].lower() in notes.lower()  # the button does what the note says


def test_view_callbacks_follow_the_mode_and_level(context):
    words = {**CONTROLS, "mode": "finetuned", "level": "word", "hide": ["special"]}
    matrix, label = views.update_matrix(
        analysis_data=TEXT,
        selected={"layer": 2, "head": 1},
        **words,
        **RELEVANCE,
        renormalize=[],
    )
    matrix = plotly_figure(matrix)
    assert len(matrix.data) == 1 and label == "layer 2, head 1"
    assert "[CLS]" not in matrix.layout.xaxis.ticktext and "moving" in matrix.layout.xaxis.ticktext
    influence = plotly_figure(views.update_influence(analysis_data=TEXT, method="flow", target="predicted", **words))
    sentence, answered = views.update_sentence(
        analysis_data=TEXT, canvas={"width": 700}, method="flow", target="predicted", **words
    )
    sentence = plotly_figure(sentence)
    assert isinstance(answered, int)
    assert "attention flow" in influence.layout.title.text
    assert [t.mode for t in sentence.data] == ["text", "markers"] and sentence.layout.width == 700  # one model
    grid, _ = views.update_head_grid(
        analysis_data=TEXT, selected=None, metric="to_cls", word=None, mode="comparison", heads=None, level="token"
    )
    grid = plotly_figure(grid)
    assert grid.data[0].zmid == 0
    similarity = plotly_figure(
        views.update_similarity(analysis_data=TEXT, selected={"layer": 1, "head": 0}, mode="comparison")
    )
    assert len(similarity.data[3].x) == 2


def test_class_relevance_callbacks_name_the_class_and_the_model_without_head(context):
    influence = views.update_influence(analysis_data=TEXT, method="class_relevance", target="good", **CONTROLS)
    sentence, _ = views.update_sentence(
        analysis_data=TEXT, canvas=None, method="class_relevance", target="good", **CONTROLS
    )
    assert "class 'good'" in plotly_figure(sentence).layout.title.text
    assert any("no classification head" in a.text for a in plotly_figure(influence).layout.annotations)
    controls = {"target": "predicted", "tau": 0.05, "alpha": 0.5, "aggregation": "mean", "sinks": ["sinks"]}
    asked, mark, *_ = views.ask_faithfulness(None, 0, analysis_data=TEXT, previous=None, **controls)
    assert asked == {"analysis_data": TEXT, **controls} and mark is no_update
    table, mark = views.update_faithfulness(asked)
    assert "Spearman" in str(table) and mark == "faithfulness"  # the answer clears "updating"
    # the views redrawn for a control the check does not read (layers, heads, level…): no new job, and
    # "updating" cleared; a control it reads: a new job
    assert views.ask_faithfulness(None, 0, analysis_data=TEXT, previous=asked, **controls)[:2] == (
        no_update,
        "faithfulness",
    )
    changed = views.ask_faithfulness(None, 0, analysis_data=TEXT, previous=asked, **controls | {"tau": 0.1})
    assert changed[0]["tau"] == 0.1


def test_unknown_target_class_is_one_sentence_in_the_page(tiny_app):
    client = tiny_app.server.test_client()
    values = {
        f"{ids.ANALYSIS}.data": TEXT,
        f"{ids.METHOD}.value": "class_relevance",
        f"{ids.TARGET}.value": "neutral",
        f"{ids.LAYERS}.value": [1, 2],
    }
    response = call(client, f"{ids.SENTENCE}.figure", values, f"{ids.TARGET}.value")
    assert response.status_code == 200
    payload = response.get_json()
    shown = payload["sideUpdate"][ids.ERROR]["children"]
    assert "no class 'neutral'" in shown and "0 = bad, 1 = good" in shown and "Traceback" not in shown


def test_token_choices_list_tokens_at_the_current_level(context):
    options, words = analyse.token_choices(TEXT, "word")
    assert words == options[1:]
    assert options[0] == {"label": "all tokens (mean)", "value": "all"}
    assert [o["label"].split()[0] for o in options[1:]] == ["[CLS]", "a", "fine", ",", "moving", "film", "[SEP]"]


def test_the_first_views_do_not_wait_for_the_token_choice(tiny_app):
    """On page load every view on screen is requested at once: no view may depend on an output the server computes
    on load (Dash would then wait for that callback before asking for the view). A view's gate runs in the browser
    (app/dashboard/callbacks/lazy.py), so waiting for it costs no round trip."""
    from app.testing.dash_http import dependencies

    specs = dependencies(tiny_app.server.test_client())
    on_load = [spec for spec in specs if not spec["prevent_initial_call"] and not spec.get("clientside_function")]
    computed_on_load = {out.split("@")[0] for spec in on_load for out in spec["output"].strip(".").split("...")}
    gates = [spec for spec in specs if spec.get("clientside_function") and spec["output"].startswith("want-")]
    assert {spec["output"] for spec in gates} == {f"{ids.want(view)}.data" for view in ids.VIEWS}
    for spec in on_load + gates:  # a view is asked for by its gate, as soon as it is seen
        inputs = {f"{i['id']}.{i['property']}" for i in spec["inputs"]}
        assert not inputs & computed_on_load, spec["output"]
    # the faithfulness check is asked for after the sentence view is drawn (or by its button), never before it
    (ask,) = [spec for spec in specs if spec["output"].startswith(f"..{ids.FAITHFULNESS_INPUTS}.data")]
    triggers = [f"{i['id']}.{i['property']}" for i in ask["inputs"]]
    assert triggers == [f"{ids.SENTENCE_DRAWN}.data", f"{ids.FAITHFULNESS_RUN}.n_clicks"]


def test_prediction_panel_names_the_label(context):
    panel = analyse.show_prediction(TEXT)
    assert panel[0].children[1].children in ("bad", "good")


def test_select_head_from_a_grid_click_and_back_to_the_mean(context, monkeypatch):
    from dash._callback_context import context_value
    from dash._utils import AttributeDict

    click = {"points": [{"x": 1, "y": 2}]}
    token = context_value.set(AttributeDict(triggered_inputs=[{"prop_id": f"{ids.HEAD_GRID}.clickData"}]))
    try:
        assert selection.select_head(click, None, 0, [], None, None) == {"layer": 2, "head": 1}
    finally:
        context_value.reset(token)


def test_analyse_over_http_returns_a_small_key_not_tensors(tiny_app):
    client = tiny_app.server.test_client()
    response = call(
        client,
        f"{ids.ANALYSIS}.data",
        {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": "a dull film"},
        f"{ids.ANALYSE}.n_clicks",
    )
    assert response.status_code == 200
    body = response.get_json()["response"]
    assert body[ids.ANALYSIS]["data"] == {"text": "a dull film", "text_pair": None, "models": "tiny"}
    assert len(response.data) < 500


@pytest.mark.parametrize(
    ("text", "message"),
    [("   ", "The text is empty"), ("film " * 80, "accepts at most 64")],
)
def test_bad_input_over_http_shows_a_readable_message_not_a_traceback(tiny_app, text, message):
    client = tiny_app.server.test_client()
    response = call(
        client,
        f"{ids.ANALYSIS}.data",
        {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": text},
        f"{ids.ANALYSE}.n_clicks",
    )
    assert response.status_code == 200
    payload = response.get_json()
    shown = payload["sideUpdate"][ids.ERROR]["children"]
    assert message in shown and "Traceback" not in shown
    assert ids.ANALYSIS not in payload.get("response", {})


def test_figure_callback_over_http(tiny_app):
    client = tiny_app.server.test_client()
    values = {
        f"{ids.ANALYSIS}.data": TEXT,
        f"{ids.MODE}.value": "comparison",
        f"{ids.LAYERS}.value": [1, 2],
        f"{ids.TAU}.value": 0.05,
        f"{ids.ALPHA}.value": 0.5,
        f"{ids.LEVEL}.value": "token",
        f"{ids.HIDE}.value": [],
        f"{ids.SOURCES}.value": [],
        f"{ids.AGGREGATION}.value": "mean",
    }
    response = call(client, f"{ids.SANKEY}.figure", values)
    figure = response.get_json()["response"][ids.SANKEY]["figure"]
    assert figure["data"][0]["type"] == "sankey"


def test_selection_patch_only_moves_the_outline(tiny_app):
    """Once the head grid is drawn a selection moves its outline (a Patch); before, there is nothing to patch and
    the grid draws the selection when it is seen."""
    client = tiny_app.server.test_client()
    selected = {f"{ids.SELECTED_HEAD}.data": {"layer": 1, "head": 0}}
    before = call(client, f"{ids.HEAD_GRID}.figure", selected, f"{ids.SELECTED_HEAD}.data")
    assert before.status_code == 204  # not drawn yet: nothing sent
    drawn = {**selected, f"{ids.want('heads')}.data": {"key": "drawn", "changed": []}}
    response = call(client, f"{ids.HEAD_GRID}.figure", drawn, f"{ids.SELECTED_HEAD}.data")
    patch = response.get_json()["response"][ids.HEAD_GRID]["figure"]
    assert patch["__dash_patch_update"] == "__dash_patch_update"
    assert patch["operations"][0]["location"] == ["layout", "shapes"]


def test_healthz(tiny_app):
    assert tiny_app.server.test_client().get("/healthz").data == b"ok"


def test_sentence_pair_input_is_analysed_with_both_segments(tiny_app):
    client = tiny_app.server.test_client()
    response = call(
        client,
        f"{ids.ANALYSIS}.data",
        {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": "a fine film", f"{ids.TEXT_PAIR}.value": "it is good"},
        f"{ids.ANALYSE}.n_clicks",
    )
    stored = response.get_json()["response"][ids.ANALYSIS]["data"]
    assert stored == {"text": "a fine film", "text_pair": "it is good", "models": "tiny"}
    with tiny_app.server.app_context():
        options, _ = analyse.token_choices(stored, "token")
    labels = [o["label"].split()[0] for o in options]
    assert labels.count("[SEP]") == 2 and labels[-2:] == ["good", "[SEP]"]


FOLD_ONLY_CHANGES = {
    "method": "rollout", "target": "good", "top_k": 20, "tau": 0.2, "alpha": 0.9, "sinks": False,
    "sources": (1,), "layers": (1, 1), "heads": (0,), "aggregation": "max", "measure": "globenc",
}  # fmt: skip


@pytest.mark.parametrize("view", sorted(views.FOLD_ONLY))
def test_a_view_left_as_is_after_a_fold_only_change_would_be_drawn_the_same(tiny_app, view):
    """What makes skipping those redraws safe: for an input that never folds, each control the view reads only
    through the fold changes nothing in its figure."""
    import json
    from dataclasses import replace

    from app.core.options import ViewOptions
    from app.figures.theme import Canvas
    from app.service.registry import pair_service
    from app.views.render import render

    service = pair_service(server=tiny_app.server)
    analysis = service.analyse("a fine , moving film", "with a second part")
    assert service.never_folds(analysis, ViewOptions())
    selected = (2, None)

    def drawn(options: ViewOptions) -> str:
        return json.dumps(render(view, service, analysis, options, selected, Canvas()), sort_keys=True, default=str)

    before = drawn(ViewOptions())
    for name in views.FOLD_ONLY[view]:
        changed = replace(ViewOptions(), **{name: FOLD_ONLY_CHANGES[name]})
        assert drawn(changed) == before, f"{view} changes with {name}: it must not be in FOLD_ONLY"


UNREAD_VIEWS = ("sentence", "influence", "sankey", "network")


@pytest.mark.parametrize("view", UNREAD_VIEWS)
def test_a_control_a_view_does_not_read_at_its_method_changes_nothing_in_it(tiny_app, view):
    """What makes skipping those redraws safe (:func:`views.unread`): at every relevance method and two measures
    (ALTI holds the residual; raw attention has heads), for a short pair
    and a long input that folds, each control the view does not read leaves its figure as it was."""
    from dataclasses import replace

    from app.core.options import GRAPH_METHODS, ViewOptions
    from app.figures.theme import Canvas
    from app.service.registry import pair_service
    from app.views.render import render

    service = pair_service(server=tiny_app.server)
    inputs = (service.analyse("a fine , moving film", "with a second part"), service.analyse(" ".join(["film"] * 50)))
    assert not service.never_folds(inputs[1], ViewOptions())
    checked = 0
    for method, measure in itertools.product((*views.CLASS_METHODS, *GRAPH_METHODS), ("alti", "raw_attention")):
        options = ViewOptions(method=method, target="good", measure=measure)
        for analysis in inputs:

            def drawn(options: ViewOptions, analysis=analysis) -> str:
                figure = render(view, service, analysis, options, (2, None), Canvas())
                return json.dumps(figure, sort_keys=True, default=str)

            before = drawn(options)
            for name in views.unread(view, options):
                changed = replace(options, **{name: UNREAD_CHANGES[name]})
                assert drawn(changed) == before, f"{view} at {method}, {measure} changes with {name}: it reads it"
                checked += 1
    assert checked >= (20 if view in ("sankey", "network") else 60)


UNREAD_CHANGES = FOLD_ONLY_CHANGES | {"target": "bad", "top_k": 20}


def test_a_change_the_sentence_does_not_read_sends_nothing_and_one_it_reads_redraws_it(tiny_app):
    from app.service.registry import pair_service

    service = pair_service(server=tiny_app.server)
    client = tiny_app.server.test_client()
    analysis = service.analyse("a fine , moving film").to_store()
    for method, redrawn in (("rollout", False), ("graph", True), ("class_relevance", False)):
        values = {f"{ids.ANALYSIS}.data": analysis, f"{ids.METHOD}.value": method, f"{ids.TAU}.value": 0.2,
                  f"{ids.TARGET}.value": "predicted"}  # fmt: skip
        response = call(client, f"{ids.SENTENCE}.figure", values, f"{ids.TAU}.value")
        sent = (response.get_json() or {}).get("response", {}) if response.status_code == 200 else {}
        assert (ids.SENTENCE in sent) is redrawn, (method, response.data[:300])
        assert ids.SENTENCE_DRAWN in sent  # answered either way: the faithfulness check is asked after it


def test_the_faithfulness_check_follows_a_change_the_sentence_view_leaves_as_it_is(tiny_app):
    """τ is not read by the rollout's sentence view, which is then not redrawn, but the faithfulness check reads it:
    the change still reaches the check (through the sentence view's answer), with the new τ."""
    from app.service.registry import pair_service
    from app.testing.dash_http import cascade, dependencies
    from benchmarks.common import FIRST_SCREEN
    from benchmarks.dashboard import initial_values

    service = pair_service(server=tiny_app.server)
    client = tiny_app.server.test_client()
    values = initial_values(service.num_layers, service.num_heads) | {f"{ids.METHOD}.value": "rollout"}
    values[f"{ids.ANALYSIS}.data"] = service.analyse("a fine , moving film").to_store()
    list(cascade(client, dependencies(client), values, f"{ids.ANALYSIS}.data", FIRST_SCREEN))
    drawn = values[f"{ids.SENTENCE}.figure"]
    assert values[f"{ids.FAITHFULNESS_INPUTS}.data"]["tau"] == 0.05
    values[f"{ids.TAU}.value"] = 0.2
    ran = [
        spec["output"] for spec, *_ in cascade(client, dependencies(client), values, f"{ids.TAU}.value", FIRST_SCREEN)
    ]
    assert any(ids.FAITHFULNESS_INPUTS in output for output in ran)
    assert values[f"{ids.FAITHFULNESS_INPUTS}.data"]["tau"] == 0.2
    assert values[f"{ids.SENTENCE}.figure"] is drawn  # the sentence view itself was left as it was


def test_a_fold_only_change_sends_nothing_for_a_short_input_and_redraws_a_long_one(tiny_app):
    from app.service.registry import pair_service

    service = pair_service(server=tiny_app.server)
    short = service.analyse("a fine , moving film").to_store()
    long = service.analyse(" ".join(["film"] * 50)).to_store()  # 52 tokens: folds above 40
    client = tiny_app.server.test_client()
    for analysis, redrawn in ((short, False), (long, True)):
        values = {f"{ids.ANALYSIS}.data": analysis, f"{ids.METHOD}.value": "rollout", f"{ids.TOP_K}.value": 30,
                  f"{ids.TARGET}.value": "predicted", f"{ids.TAU}.value": 0.05}  # fmt: skip
        response = call(client, f"{ids.SANKEY}.figure", values, f"{ids.METHOD}.value")
        sent = (response.get_json() or {}).get("response", {}) if response.status_code == 200 else {}
        assert (ids.SANKEY in sent) is redrawn, response.data[:300]


def test_the_http_driver_runs_callbacks_as_the_renderer_does(tiny_app):
    """The benches and tests drive callbacks over HTTP as Dash's renderer does: a callback triggered twice in one
    round runs once, and the URL callback is not run again by the URL it wrote (the renderer prunes a callback
    from a chain it started)."""
    from app.service.registry import pair_service
    from app.testing.dash_http import cascade, dependencies
    from benchmarks.dashboard import initial_values

    service = pair_service(server=tiny_app.server)
    client = tiny_app.server.test_client()
    values = initial_values(service.num_layers, service.num_heads)
    values[f"{ids.ANALYSIS}.data"] = service.analyse("a fine , moving film").to_store()
    values[f"{ids.TAU}.value"] = 0.1
    ran = [spec["output"] for spec, _, response, _ in cascade(client, dependencies(client), values, f"{ids.TAU}.value")]
    assert len(ran) == len(set(ran)) and any(ids.SANKEY in output for output in ran)
    assert sum(f"{ids.URL}.search" in output for output in ran) == 1
    assert values[f"{ids.URL}.search"].count("tau=0.1") == 1


def test_alpha_is_off_and_says_why_for_a_measure_that_holds_the_residual():
    disabled, note = views.note_alpha("alti")
    assert disabled is True and "ALTI already holds the residual" in note
    assert views.note_alpha("raw_attention") == (False, "")
    assert views.note_alpha("attention_norm") == (False, "")  # the norm of αf(x) has no residual: α applies


def test_the_graph_views_name_the_measure_they_are_drawn_over(tiny_app):
    from app.core.options import ViewOptions
    from app.service.registry import pair_service
    from app.views.render import render

    service = pair_service(server=tiny_app.server)
    analysis = service.analyse("a fine , moving film")
    for measure, title in (("alti", "Contribution graph (ALTI)"), ("raw_attention", "Attention graph")):
        options = ViewOptions(measure=measure, tau=0.0)
        sankey = plotly_figure(render("sankey", service, analysis, options))
        assert sankey.layout.title.text.startswith(title)
        hovers = " ".join(sankey.data[0].link.customdata)
        assert ("ALTI share" in hovers) is (measure == "alti") and ("heads ≥ τ" in hovers) is (measure != "alti")
        network = plotly_figure(render("network", service, analysis, options))
        assert network.layout.title.text.startswith(title.replace("graph", "network"))
        caption = " ".join(a.text for a in sankey.layout.annotations)
        assert ("ALTI contribution" in caption) is (measure == "alti")
    matrix = plotly_figure(render("matrix", service, analysis, ViewOptions(measure="globenc")))
    assert matrix.layout.title.text.startswith("Contribution matrix layer 2, GlobEnc contributions")
    selected = plotly_figure(render("matrix", service, analysis, ViewOptions(measure="globenc"), (2, 1)))
    assert selected.layout.title.text.startswith("Attention matrix layer 2, head 1")  # a head is attention


def test_the_token_scores_follow_the_measure_and_decompx_is_a_class_method(tiny_app):
    from app.core.options import ViewOptions
    from app.service.registry import pair_service

    service = pair_service(server=tiny_app.server)
    analysis = service.analyse("a fine , moving film")
    raw = service.relevance(analysis, ViewOptions(method="rollout", measure="raw_attention"))
    alti = service.relevance(analysis, ViewOptions(method="rollout", measure="alti"))
    assert raw.shape == alti.shape and not np.allclose(raw["finetuned"], alti["finetuned"])
    decomposed = service.relevance(analysis, ViewOptions(method="decompx"))
    assert decomposed["pretrained"].isna().all()  # the bare encoder has no class logit to decompose
    assert decomposed["finetuned"].notna().all()
    parts = service.decomposed(analysis, "finetuned", "predicted")
    deepest = decomposed[decomposed["layer"] == decomposed["layer"].max()]["finetuned"].to_numpy()
    np.testing.assert_allclose(deepest, parts.scores[-1], rtol=1e-6)  # the view shows DecompX's own numbers
    shares = service.heads(analysis, ViewOptions(metric="contribution_share"))
    np.testing.assert_allclose(shares.groupby("layer")["contribution_share_finetuned"].sum(), 1.0, atol=1e-9)


def test_a_signed_method_is_drawn_on_a_scale_around_zero(tiny_app):
    """DecompX is signed: the token scores' model panels are coloured on a scale symmetric around 0 (a negative
    part is never clipped to white), and the titles name the measure a graph method ran over."""
    from app.core.options import ViewOptions
    from app.service.registry import pair_service
    from app.views.render import render

    service = pair_service(server=tiny_app.server)
    analysis = service.analyse("a fine , moving film")
    influence = plotly_figure(render("influence", service, analysis, ViewOptions(method="decompx")))
    model = next(t for t in influence.data if t.zmin is not None and t.colorscale[0][1] != t.colorscale[-1][1])
    assert model.zmin == -model.zmax < 0
    assert "DecompX" in influence.layout.title.text
    sentence = plotly_figure(render("sentence", service, analysis, ViewOptions(method="decompx")))
    assert any("pushes it down" in (a.text or "") for a in sentence.layout.annotations)  # the bar says the sign
    rollout = plotly_figure(render("influence", service, analysis, ViewOptions(method="rollout", measure="alti")))
    assert "attention rollout over ALTI of [CLS]" in rollout.layout.title.text
