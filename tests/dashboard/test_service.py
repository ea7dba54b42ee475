"""The dashboard's bridge to the engine: token choices across filters, caching, validation."""

import numpy as np
import pytest

from app.core.analysis import Analysis
from app.core.options import ViewOptions
from attention.errors import InputTextError

TEXT = Analysis("a fine , moving film")


@pytest.fixture
def service(tiny_app):
    from app.service.registry import pair_service

    return pair_service(server=tiny_app.server)


def test_trace_sources_are_token_positions_that_hiding_never_changes(service):
    # tokens: [CLS] a fine , moving film [SEP]
    assert service.trace_sources(TEXT, ViewOptions(sources=(2,))) == (2,)
    assert service.trace_sources(TEXT, ViewOptions(sources=(2,), hide=("special",))) == (2,)
    assert service.trace_sources(TEXT, ViewOptions()) == (0,)
    assert service.trace_sources(TEXT, ViewOptions(hide=("special",))) == (0,)  # never switched silently
    assert service.trace_sources(TEXT, ViewOptions(trace_all=True)) == tuple(range(7))
    assert service.trace_sources(TEXT, ViewOptions(level="word", sources=(4,))) == (4,)


def test_hiding_the_traced_token_is_said_in_the_sankey(service):
    from app.views.render import render

    figure = render("sankey", service, TEXT, ViewOptions(hide=("special",)))
    assert "traced token ([CLS]) is hidden" in figure["layout"]["annotations"][0]["text"]


def test_hiding_leaves_the_numbers_unchanged(service):
    everything = service.relevance(TEXT, ViewOptions(method="rollout"))
    shown = service.relevance(TEXT, ViewOptions(method="rollout", hide=("special",)))
    assert set(shown["token"]) == {"a", "fine", ",", "moving", "film"}
    merged = everything.merge(shown, on=["layer", "token_idx"], suffixes=("", "_shown"))
    np.testing.assert_allclose(merged["finetuned"], merged["finetuned_shown"])  # not renormalised


def test_class_methods_leave_a_model_without_head_empty_and_name_the_target(service):
    frame = service.relevance(TEXT, ViewOptions(method="class_relevance", target="good"))
    assert frame["pretrained"].isna().all() and frame["finetuned"].notna().all()
    assert service.class_target(TEXT, ViewOptions(target="good")) == "good"
    assert set(service.relevance(TEXT, ViewOptions(method="input_x_gradient"))["layer"]) == {0}


def test_every_token_hidden_is_one_clear_sentence(service):
    with pytest.raises(InputTextError, match="Every token of this input is hidden"):
        service.relevance(Analysis(","), ViewOptions(method="rollout", hide=("special", "punctuation")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ViewOptions(sources=(40,)), "Option 'sources' is 40; it must be from 0 to 6"),
        (ViewOptions(layers=(1, 9)), "Option 'layers' is 9; it must be from 1 to 2"),
        (ViewOptions(heads=(0, 7)), "Option 'heads' is 7; it must be from 0 to 1"),
    ],
)
def test_choices_that_do_not_exist_are_refused_never_dropped(service, options, message):
    from app.core.options import OptionError

    with pytest.raises(OptionError, match=message):
        service.checked(TEXT, options)


def test_all_layers_and_all_heads_share_the_default_cache_entries(service):
    everything = ViewOptions(layers=(1, service.num_layers), heads=tuple(range(service.num_heads)))
    assert service.checked(TEXT, everything) == service.checked(TEXT, ViewOptions())
    assert service.graphs(TEXT, everything) is service.graphs(TEXT, ViewOptions())
    assert service.checked(TEXT, ViewOptions(layers=(1, 1))).layers == (1, 1)


def test_runs_are_computed_once_per_input(service, monkeypatch):
    from app.service import analysis as services

    calls = []
    real = services.extract
    monkeypatch.setattr(services, "extract", lambda *a: calls.append(a) or real(*a))
    fresh = Analysis("a new sentence for the cache")
    service.runs(fresh)
    service.graphs(fresh, ViewOptions())
    service.relevance(fresh, ViewOptions(method="flow"))
    assert len(calls) == 2  # once per model


def test_the_default_view_s_class_relevance_comes_from_the_analysis_pass(service, monkeypatch):
    """Analysing for class relevance of the predicted class runs the classifier once (forward and backward) and
    caches both its run and its relevance, equal to separate calls; the view then runs no model."""
    from app.service import analysis as services
    from app.views.render import render
    from attention import class_relevance, extract

    analysis = service.analyse("a quiet , tender and funny film", explain=True)
    calls = []
    monkeypatch.setattr(services, "class_relevance", lambda *a, **k: calls.append(a))
    render("sentence", service, analysis, ViewOptions())
    assert calls == []
    finetuned = service.pair.finetuned
    explained = service.explained(analysis, "finetuned", "predicted")
    np.testing.assert_array_equal(explained.scores, class_relevance(finetuned, analysis.text).scores)
    np.testing.assert_array_equal(service.runs(analysis).finetuned.weights, extract(finetuned, analysis.text).weights)


def test_a_new_analysis_runs_each_model_once_for_its_run_and_the_graph_s_measure(service):
    """The default first screen (the graph over ALTI, rollout over ALTI) from one forward pass per model: its run
    equals ``extract``'s and its maps equal ``contributions``'; a second measure runs a pass of its own."""
    from attention import extract
    from attention.mixing import contributions

    passes = []
    handles = [m.model.register_forward_pre_hook(lambda *_, name=m.name: passes.append(name))
               for m in service.models().values()]  # fmt: skip
    try:
        analysis = service.analyse("a new sentence , sad and slow", measure="alti")
        maps = service.measure_runs(analysis, "alti")
        service.graphs(analysis, ViewOptions(measure="alti"))
        assert len(passes) == 2, passes  # once per model: the run and ALTI from the same pass
        service.measure_runs(analysis, "norm_residual")
        assert len(passes) == 4
    finally:
        for handle in handles:
            handle.remove()
    for name, loaded in service.models().items():
        run, expected = getattr(service.runs(analysis), name), extract(loaded, analysis.text)
        np.testing.assert_array_equal(run.weights, expected.weights)
        assert run.label == expected.label
        np.testing.assert_allclose(run.probabilities or (), expected.probabilities or (), rtol=1e-5)
        alone = contributions(loaded, analysis.text, measure="alti")
        np.testing.assert_array_equal(getattr(maps, name).weights[:, 0], alone.maps)


def test_overlong_paste_is_refused_before_tokenizing(service):
    with pytest.raises(InputTextError, match="characters long"):
        service.analyse("word " * 2000)


def test_cache_evicts_the_least_recently_used_by_bytes():
    import numpy as np

    from app.service.memo import ByteLRU

    cache = ByteLRU(2500)
    cache.get_or_compute("a", lambda: np.zeros(100))  # 800 bytes
    cache.get_or_compute("b", lambda: np.zeros(100))
    cache.get_or_compute("a", lambda: None)  # touch a
    cache.get_or_compute("c", lambda: np.zeros(150))  # 1200 bytes: over budget, evicts b (least recently used)
    assert cache.held <= 2500 and len(cache) == 2
    assert isinstance(cache.get_or_compute("a", lambda: "recomputed"), np.ndarray)  # kept: not recomputed
    assert cache.get_or_compute("c", lambda: "recomputed").shape == (150,)
    assert cache.get_or_compute("b", lambda: "recomputed") == "recomputed"  # evicted: computed again


def test_a_value_larger_than_the_budget_is_returned_but_not_stored():
    import numpy as np

    from app.service.memo import ByteLRU

    cache = ByteLRU(1000)
    big = cache.get_or_compute("big", lambda: np.zeros(1000))
    assert big.shape == (1000,) and len(cache) == 0 and cache.held == 0


def test_size_of_counts_tensors_frames_and_shared_objects_once():
    import numpy as np
    import pandas as pd

    from app.service.memo import size_of

    array = np.zeros((10, 10), dtype=np.float32)
    assert size_of(array) == 400 and size_of(array[:5]) == 400  # a view is its base's buffer
    assert size_of((array, array)) < 2 * 400  # counted once
    frame = pd.DataFrame({"x": np.zeros(1000)})
    assert size_of(frame) >= 8000
    mixed = pd.DataFrame({"layer": np.arange(50), "flow": np.ones(50), "more": np.ones(50), "token": ["tok"] * 50,
                          "status": pd.Categorical(["shared", "pretrained_only"] * 25), "heads": [(1, 2)] * 50,
                          "seen": np.ones(50, dtype=bool)})  # fmt: skip
    assert size_of(mixed) == int(mixed.memory_usage(deep=False).sum())  # the manager's arrays, each column once


def test_the_service_cache_counts_what_an_analysis_holds(service):
    fresh = Analysis("a counted sentence for the byte budget")
    before = service.cache.held
    service.runs(fresh)
    weights = service.runs(fresh).pretrained.weights.nbytes * 2
    assert service.cache.held - before >= weights


def test_view_options_validation_names_the_problem():
    from app.core.options import OptionError

    with pytest.raises(OptionError, match=r"Option 'tau' is 2; it must lie in \[0, 1\]"):
        ViewOptions(tau=2.0)
    with pytest.raises(OptionError, match=r"Option 'hide' is 'numbers'\. Use one of: special, punctuation"):
        ViewOptions.from_controls(hide=["numbers"])
    with pytest.raises(OptionError, match="Unknown option"):
        ViewOptions.from_dict({"colour": "red"})
    options = ViewOptions(layers=(2, 5), heads=(1, 3), sources=(4,), hide=("special",), method="flow")
    assert ViewOptions.from_dict(options.to_dict()) == options


def test_attention_method_views_never_run_the_backward_pass(service, monkeypatch):
    from app.service import analysis as services
    from app.views.render import render

    calls = []
    monkeypatch.setattr(services, "class_relevance", lambda *a, **k: calls.append(a))
    fresh = Analysis("a sentence whose views use rollout only")
    for view in ("sentence", "influence"):
        render(view, service, fresh, ViewOptions(method="rollout"))
    assert calls == []


def test_a_sentence_pair_is_marked_in_the_matrix_and_the_token_scores(service):
    from app.views.render import render
    from tests.conftest import plotly_figure

    pair = Analysis("a fine film", "it is good")  # [CLS] a fine film [SEP] | it is good [SEP]
    assert service.segment_start(pair, ViewOptions()) == 5
    assert service.segment_start(pair, ViewOptions(hide=("special",))) == 3  # [CLS] and the first [SEP] hidden
    assert service.segment_start(TEXT, ViewOptions()) is None
    matrix = plotly_figure(render("matrix", service, pair, ViewOptions()))
    lines = [s for s in matrix.layout.shapes if s.type == "line"]
    assert len(lines) == 6 and {s.y0 for s in lines if s.yref in ("y", "y2", "y3")} == {4.5}
    influence = plotly_figure(render("influence", service, pair, ViewOptions(method="rollout")))
    assert [s.y0 for s in influence.layout.shapes] == [4.5] * 3
    everything = ViewOptions(tau=0.0)  # the tiny model's attention is flat
    sankey = plotly_figure(render("sankey", service, pair, everything))
    assert any("segment B" in h for h in sankey.data[0].node.customdata)
    assert not any(
        "segment B" in h for h in plotly_figure(render("sankey", service, TEXT, everything)).data[0].node.customdata
    )
    network = plotly_figure(render("network", service, pair, everything))
    assert len([s for s in network.layout.shapes if s.line.dash == "dash"]) == 2  # where segment B begins and ends


def test_the_word_query_is_the_attention_a_word_receives_per_head(service):
    from app.figures.heatmaps import top_heads
    from app.views.render import render
    from tests.conftest import plotly_figure

    runs = service.runs(TEXT)
    # words: [CLS] a fine , moving film [SEP]; "fine" is token 2
    received = service.received(TEXT, ViewOptions(level="word", word=2))
    expected = np.asarray(runs.finetuned.weights)[:, :, :, 2].mean(axis=-1)  # [layer, head]
    np.testing.assert_allclose(received.pivot(index="layer", columns="head", values="finetuned"), expected, rtol=1e-6)
    np.testing.assert_allclose(received["difference"], received["finetuned"] - received["pretrained"])
    grid = plotly_figure(render("heads", service, TEXT, ViewOptions(word=2), (2, 1)))
    assert "attention 'fine' receives" in grid.layout.title.text and len(grid.data) == 3
    assert sum(1 for s in grid.layout.shapes if s.line.width == 3) == 3  # the selection outlined in each panel
    ranked = top_heads(received, "comparison", count=3)
    assert list(ranked["value"].abs()) == sorted(received["difference"].abs(), reverse=True)[:3]
    with pytest.raises(Exception, match="word"):
        service.received(TEXT, ViewOptions(word=99))


@pytest.mark.parametrize(
    "options",
    [
        ViewOptions(),
        ViewOptions(measure="raw_attention", tau=0.2),
        ViewOptions(measure="raw_attention", sinks=False, level="word", mode="finetuned"),
        ViewOptions(trace_all=True, layers=(2, 2)),
        ViewOptions(measure="attention_norm", tau=0.0, aggregation="max", heads=(1,)),
        ViewOptions(top_k=3, level="word"),  # folded: the input is long
    ],
)
def test_mass_splits_say_where_the_drawn_graph_s_mass_ends(service, options):
    """The cheap split the graph notes weigh their fixes with equals what the drawn graph's nodes say (any level,
    fold, sinks, measure), at a fraction of the cost."""
    from dataclasses import replace

    from app.figures.graph_notes import mass_shares
    from app.figures.models import shown_models

    words = "a fine , moving film that never lets up ; a dull , tedious plot without a single idea , and yet"
    analysis = Analysis(f"{words} {words}")  # over 40 words: folds at top_k
    nodes = service.graphs(analysis, options).nodes
    special = np.flatnonzero(service.hidden(analysis, replace(options, hide=("special",))))
    fold = service.fold(analysis, options)
    if options.top_k == 3:
        assert fold is not None, "this input must fold at top_k=3"
        special = fold.groups[special]
    first = (options.layers or (1, service.num_layers))[0]
    drawn = mass_shares(nodes, first_layer=first, special=special.tolist(), mode=options.mode)
    split = service.mass_splits(analysis, options)
    for model in shown_models(options.mode):
        shares = drawn[model]
        np.testing.assert_allclose(split[model], (shares.words, shares.specials, shares.pruned), atol=1e-9)
        assert abs(sum(split[model]) - 1.0) < 1e-6  # float32 rows sum to 1 within ~1e-7
