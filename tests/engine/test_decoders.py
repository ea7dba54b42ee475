"""Decoder-only models in the engine: causal attention, the last token traced, the first token as the sink."""

from __future__ import annotations

import numpy as np
import pytest

from attention import relevance
from attention.config import load_config
from attention.errors import IncompatibleModelsError, InputTextError
from attention.extraction import extract
from attention.gradients import blank_out, class_relevance
from attention.models import check_comparable, load_model

TEXT = "a gorgeous, witty movie."
DECODERS = ("llama", "gemma3", "gpt2", "llama-classifier")


@pytest.fixture(scope="module")
def decoders(tiny_decoders):
    return {name: load_model(tiny_decoders[name]) for name in DECODERS}


@pytest.mark.parametrize("name", DECODERS)
def test_a_decoder_s_run_is_causal_traced_from_its_last_token_with_its_first_token_as_sink(decoders, name):
    model = decoders[name]
    run = extract(model, TEXT)
    n = run.num_tokens
    assert model.causal and run.causal
    assert run.weights.shape == (2, model.num_heads, n, n)
    assert np.triu(run.weights, 1).max() == 0.0, "a token attends to a later one"
    np.testing.assert_allclose(run.weights.sum(-1), 1.0, atol=1e-5)
    assert run.cls_index == n - 1 and run.sink_indices == (0,)
    assert run.sep_indices == ()


def test_an_encoder_is_not_causal(tiny_models):
    model = load_model(tiny_models["bert"])
    assert not model.causal
    assert not extract(model, TEXT).causal


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt2"])
@pytest.mark.parametrize("method", ["raw_attention", "rollout", "flow", "graph"])
def test_every_graph_method_reaches_only_earlier_tokens(decoders, method, name):
    run = extract(decoders[name], TEXT)
    for source in (3, run.num_tokens - 1):
        rows = relevance(run, method, sources=[source], tau=0.0)
        assert np.all(rows[:, source + 1 :] == 0), f"{method} from token {source} reached a later token"
        assert rows[-1, : source + 1].sum() > 0


def test_the_graph_absorbs_what_reaches_the_first_token(decoders):
    from attention.compare import graph_for

    run = extract(decoders["llama"], TEXT)
    nodes = graph_for(run, tau=0.0).nodes
    first = nodes[nodes["token_idx"] == 0]
    assert first["sink"].all() and first["absorbed"].sum() > 0
    assert nodes.loc[nodes["token_idx"] > 0, "absorbed"].sum() == 0, "only the sink absorbs"
    assert graph_for(run, tau=0.0, sinks=False).nodes["absorbed"].sum() == 0


def test_the_first_token_of_a_decoder_is_its_attention_sink_in_the_graph(decoders):
    from attention.methods import sink_tokens

    run = extract(decoders["gpt2"], TEXT)
    assert sink_tokens(run) == (0,)
    hidden = run.without_tokens(np.arange(run.num_tokens) == 0)
    assert hidden.sink_indices == () and hidden.cls_index == run.num_tokens - 2 and hidden.causal


def test_a_decoder_refuses_a_second_segment_with_the_fix(decoders):
    with pytest.raises(InputTextError, match=r"decoder: it reads one text.*Clear the second segment"):
        extract(decoders["llama"], TEXT, "a second text")


def test_a_decoder_and_an_encoder_are_not_a_pair(decoders, tiny_models):
    bert = load_model(tiny_models["bert"])
    with pytest.raises(IncompatibleModelsError, match=r"causal \(a decoder\) vs bidirectional"):
        check_comparable(decoders["llama"], bert)


def test_a_decoder_classifier_explains_the_class_its_last_token_decides(decoders):
    model = decoders["llama-classifier"]
    run = extract(model, TEXT)
    explained = class_relevance(model, TEXT)
    assert explained.scores.shape == (2, run.num_tokens)
    assert run.label in model.labels
    assert np.isfinite(explained.input_x_gradient).all()


def test_a_decoder_s_blank_out_deletes_the_token(decoders):
    import torch

    model = decoders["llama-classifier"]
    drops = blank_out(model, TEXT, target=0)
    ids = model.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert drops.shape == (ids.shape[1],) and np.isfinite(drops).all()
    with torch.inference_mode():
        base = torch.softmax(model.model(input_ids=ids).logits[0], -1)[0]
        for k in (0, 3, ids.shape[1] - 1):
            kept = torch.cat([ids[:, :k], ids[:, k + 1 :]], dim=1)
            alone = torch.softmax(model.model(input_ids=kept).logits[0], -1)[0]
            assert drops[k] == pytest.approx(float(base - alone), abs=1e-5)


def _reference_alti(model, text):
    """ALTI over the residual stream of a decoder, from the equations with the model's own modules, one token pair
    at a time: ``[layer, query, key]`` maps, and the largest gap between ``x_i + P(a_i)`` rebuilt from the parts
    and the model's own hidden state after the attention block."""
    import torch

    from attention.mixing.decoder import decoder_blocks

    encoding = model.tokenizer(text, return_tensors="pt")
    blocks = decoder_blocks(model)
    seen_h = []
    handles = [b.after.register_forward_pre_hook(lambda _m, a: seen_h.append(a[0][0])) for b in blocks]
    with torch.no_grad():
        out = model.model(**encoding, output_attentions=True, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    maps, gap = [], 0.0
    network = model.model.base_model
    layers = network.h if hasattr(network, "h") else network.layers
    with torch.no_grad():
        for index, (block, layer) in enumerate(zip(blocks, layers, strict=True)):
            x = out.hidden_states[index][0].double()
            alpha = out.attentions[index][0].double()
            normed = block.input_norm(out.hidden_states[index])[0]
            if hasattr(network, "h"):
                d = x.shape[1]
                value = layer.attn.c_attn(normed)[:, 2 * d :].double()
                bias = layer.attn.c_proj.bias.double()
            else:
                value = layer.self_attn.v_proj(normed).double()
                bias = torch.zeros(x.shape[1], dtype=torch.float64)
            heads, n = alpha.shape[0], x.shape[0]
            head_dim = block.out_weight.shape[1] // heads
            kv = value.reshape(n, block.kv_heads, head_dim)
            w_out = block.out_weight.double()
            parts = torch.zeros(n, n, x.shape[1], dtype=torch.float64)
            for h in range(heads):
                f = kv[:, h // (heads // block.kv_heads)] @ w_out[:, h * head_dim : (h + 1) * head_dim].T  # [n, d]
                parts += alpha[h][:, :, None] * f[None]
            a = parts.sum(1) + bias
            if block.post_norm is not None:
                rho = (a.pow(2).mean(-1) + block.post_norm.eps).sqrt()
                m = (1 + block.post_norm.weight.double()) if "Gemma" in type(block.post_norm).__name__ else None
                parts = parts * (m / rho[:, None])[:, None, :]
                resultant = x + a * m / rho[:, None]
            else:
                resultant = x + a
            parts[range(n), range(n)] += x
            gap = max(gap, float((resultant - seen_h[index].double()).abs().max()))
            c = (resultant.abs().sum(-1)[:, None] - (resultant[:, None] - parts).abs().sum(-1)).clamp_min(0)
            empty = c.sum(-1) <= 0  # a row with no positive part keeps its mass on itself
            c[empty, empty.nonzero()[:, 0]] = 1.0
            maps.append((c / c.sum(-1, keepdim=True)).numpy())
    return np.stack(maps), gap


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt2"])
def test_decoder_alti_equals_the_equations_over_the_residual_stream(decoders, name):
    from attention.mixing import contributions

    model = decoders[name]
    expected, gap = _reference_alti(model, TEXT)
    assert gap < 1e-4, "the parts do not add up to the model's residual stream"
    got = contributions(model, TEXT, measure="alti")
    np.testing.assert_allclose(got.maps, expected, atol=2e-5)
    assert np.triu(got.maps, 1).max() == 0.0 and got.includes_residual
    assert got.head_maps.shape == (2, model.num_heads, got.maps.shape[1], got.maps.shape[1])


def test_decoder_contributions_drive_every_graph_method_causally(decoders):
    from attention.mixing import contributions

    maps = contributions(decoders["gemma3"], TEXT, measure="alti")
    for method in ("rollout", "flow", "graph"):
        rows = relevance(maps, method, sources=[4], tau=0.0)
        assert np.all(rows[:, 5:] == 0), f"{method} over ALTI reached a later token"
        assert rows[-1, :5].sum() > 0
    rollout = relevance(maps, "rollout", sources=[4])
    np.testing.assert_allclose(rollout.sum(axis=1), 1.0, atol=1e-5)


def test_a_measure_defined_for_encoder_blocks_only_is_refused_for_a_decoder(decoders):
    from attention.mixing import contributions
    from attention.mixing.decoder import UnsupportedDecoderError

    with pytest.raises(UnsupportedDecoderError, match=r"decoder; the measure 'GlobEnc'.*For a decoder use"):
        contributions(decoders["llama"], TEXT, measure="globenc")


def test_a_decoder_twin_trains_its_top_layers_and_reports_the_base_s_zero_shot_accuracy(tiny_decoders, tmp_path):
    import torch
    from safetensors.torch import load_file

    from attention.config import load_config
    from attention.models import load_pair
    from attention.prepare import prepare_finetuned, read_card
    from attention.settings import load_settings

    config = tmp_path / "tiny-decoder.toml"
    config.write_text(
        f"""name = "tiny-decoder"
[pretrained]
path = "{tiny_decoders["llama"]}"
[finetuned]
prepared = "tiny-decoder-twin"
[task]
name = "sentence polarity"
labels = ["negative", "positive"]
[prepare]
seed = 13
held_out_size = 24
train_size = 32
batch_size = 8
train_layers = 1
mixed_precision = true
length_buckets = true
zero_shot_prompt = "Review: {{text}} Sentiment:"
zero_shot_answers = [" bad", " good"]
""",
        encoding="utf-8",
    )
    settings = load_settings().model_copy(update={"home": tmp_path / "home"})
    result = prepare_finetuned(config, settings=settings, progress=False)
    card = read_card(result.path)
    assert result.steps == 4 and 0.0 <= card["base_zero_shot_accuracy"] <= 1.0
    assert card["base_zero_shot_accuracy"] == result.base_zero_shot_accuracy
    assert (
        "zero-shot accuracy" in (result.path / "README.md").read_text()
        and "the top 1" in (result.path / "README.md").read_text()
    )
    base = load_file(tiny_decoders["llama"] / "model.safetensors")
    twin = load_file(result.path / "model.safetensors")
    assert torch.equal(twin["model.layers.0.self_attn.q_proj.weight"], base["layers.0.self_attn.q_proj.weight"])
    assert not torch.equal(twin["model.layers.1.self_attn.q_proj.weight"], base["layers.1.self_attn.q_proj.weight"])
    assert "score.weight" in twin
    pair = load_pair(load_config(config), settings=settings)
    assert (
        pair.finetuned.causal and pair.finetuned.is_classifier and pair.finetuned.model.config.pad_token_id is not None
    )
    again = prepare_finetuned(config, settings=settings, progress=False)
    assert again.skipped and again.base_zero_shot_accuracy == result.base_zero_shot_accuracy
    assert card["base_zero_shot_accuracy"] == _zero_shot_one_by_one(tiny_decoders["llama"], load_config(config).prepare)


def _zero_shot_one_by_one(base_dir, recipe) -> float:
    """The zero-shot accuracy from each prompt alone, unpadded, with the full next-token logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attention.data import held_out

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager").eval()
    answers = [tokenizer(answer, add_special_tokens=False)["input_ids"][0] for answer in recipe.zero_shot_answers]
    rows = held_out(recipe)
    with torch.inference_mode():
        chosen = [
            int(
                model(**tokenizer(recipe.zero_shot_prompt.format(text=text), return_tensors="pt"))
                .logits[0, -1][answers]
                .argmax()
            )
            for text in rows["text"]
        ]
    return float(np.mean(np.asarray(chosen) == rows["label"].to_numpy()))


def test_a_card_written_before_a_recipe_field_existed_still_matches(tmp_path):
    from attention.config import load_config
    from attention.prepare import same_recipe

    recipe = load_config("default").prepare
    old = {k: v for k, v in recipe.model_dump().items() if k not in ("train_layers", "mixed_precision")}
    assert same_recipe({"recipe": old}, recipe)
    assert not same_recipe({"recipe": {**old, "seed": 14}}, recipe)
    assert not same_recipe({"recipe": {**old, "unknown": 1}}, recipe)
    assert not same_recipe({}, recipe), "a card without a recipe is not this recipe"


def test_a_decoder_s_config_json_says_it_is_causal_before_it_loads(tiny_decoders, tiny_models):
    from attention.models import read_shape

    assert all(read_shape(tiny_decoders[name]).causal for name in DECODERS)
    assert not read_shape(tiny_models["bert"]).causal


def test_a_decoder_s_word_blank_out_pads_each_shortened_input_and_a_lone_word_has_none(decoders):
    import torch

    from attention.extraction import encode, token_facts

    model = decoders["llama-classifier"]
    text = "the plot is thin, the acting wooden."
    drops = blank_out(model, text, target=1, level="word")
    encoding = encode(model, text, None)
    groups = np.asarray(token_facts(model, encoding).groups)
    ids = encoding["input_ids"]
    with torch.inference_mode():
        base = torch.softmax(model.model(input_ids=ids).logits[0], -1)[1]
        for word in (0, 2, int(groups.max())):  # words of different lengths: rows of different lengths in a batch
            kept = ids[:, torch.as_tensor(groups != word)]
            alone = torch.softmax(model.model(input_ids=kept).logits[0], -1)[1]
            assert drops[word] == pytest.approx(float(base - alone), abs=1e-5)
    lone = blank_out(model, "a", target=1)
    assert lone.shape == (1,) and np.isnan(lone).all()


def test_a_decoder_whose_layers_the_measures_cannot_read_is_refused_by_name(tmp_path):
    from transformers import AutoModel, PhiConfig

    from attention.mixing import contributions
    from attention.mixing.decoder import UnsupportedDecoderError
    from tests.tiny import tiny_decoder_tokenizer

    tokenizer = tiny_decoder_tokenizer()
    config = PhiConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=64)  # fmt: skip
    AutoModel.from_config(config).save_pretrained(tmp_path / "phi")
    tokenizer.save_pretrained(tmp_path / "phi")
    model = load_model(tmp_path / "phi")
    assert model.causal and extract(model, TEXT).causal
    with pytest.raises(UnsupportedDecoderError, match=r"layers the context-mixing measures cannot read.*raw attention"):
        contributions(model, TEXT, measure="alti")


def test_zero_shot_answers_name_one_answer_per_label(tmp_path):
    from attention.errors import ConfigError

    path = tmp_path / "pair.toml"
    path.write_text(
        'name = "p"\n[pretrained]\npath = "."\n[finetuned]\nprepared = "t"\n[task]\nname = "t"\n'
        'labels = ["a", "b"]\n[prepare]\nzero_shot_prompt = "{text}:"\nzero_shot_answers = [" a"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="lists 1 answers for 2 labels"):
        load_config(path)


def test_a_sentencepiece_tokenizer_s_words_come_from_its_markers(decoders):
    """Gemma's tokenizer (no pre-tokenizer) puts the whole text in word 0; the engine groups pieces into words by
    their ``▁`` markers and punctuation instead, so word-level views and "##" follow the words."""
    model = decoders["gemma3"]
    encoding = model.tokenizer("the plot is thin, dull")
    assert set(encoding.word_ids(0)) - {None} == {0}  # the tokenizer's own word ids: one word
    run = extract(model, "the plot is thin, dull")
    words = {}
    for token, group, special in zip(run.tokens, run.groups, run.special, strict=True):
        if not special:
            words[group] = words.get(group, "") + token
    assert list(words.values()) == ["the", "plot", "is", "thin", ",", "dull"]
    assert run.special[0] and run.tokens[0] == "<bos>"


def test_a_twin_made_from_another_gguf_file_is_made_again(tmp_path):
    """The twin's card records the SHA-256 of the GGUF file its base was converted from; when the base is converted
    from another file, `prepare` fine-tunes again instead of keeping the old twin (a card without the field keeps)."""
    from attention.config import gguf_converted_dir
    from attention.gguf import CONVERSION_CARD
    from attention.prepare import base_changed, base_source_sha256
    from attention.settings import load_settings

    config = load_config("smollm-sentiment")
    settings = load_settings().model_copy(update={"home": tmp_path})
    assert base_source_sha256(config, settings) is None  # not converted here
    converted = gguf_converted_dir(config.pretrained, settings)
    converted.mkdir(parents=True)
    (converted / CONVERSION_CARD).write_text('{"source_sha256": "b"}', encoding="utf-8")
    assert base_source_sha256(config, settings) == "b"
    assert base_changed({"base_source_sha256": "a"}, config, settings)
    assert not base_changed({"base_source_sha256": "b"}, config, settings)
    assert not base_changed({}, config, settings)
    assert base_source_sha256(load_config("default"), settings) is None
