"""Class relevance (Chefer et al. 2021), input x gradient and blank-out against straightforward re-implementations
on a tiny classifier."""

import numpy as np
import pytest
import torch

from attention import blank_out, class_relevance, load_model
from attention.errors import NotAClassifierError, TargetClassError

TEXT = "a gorgeous , unbelievably witty film"


@pytest.fixture(scope="module")
def classifier(tiny_models):
    return load_model(tiny_models["bert-classifier"], name="tiny classifier", labels=("bad", "good"))


def _reference(model, text: str, target: int):
    """Chefer's rule and input x gradient with retain_grad hooks and per-head loops (no shared code)."""
    network = model.model
    encoding = model.tokenizer(text, return_tensors="pt")
    captured = {}

    def keep_embeddings(_module, _inputs, output):
        output.retain_grad()
        captured["embeddings"] = output

    handle = network.get_input_embeddings().register_forward_hook(keep_embeddings)
    network.requires_grad_(True)  # loaded frozen; the weights' grad makes the embeddings' output require grad
    try:
        with torch.enable_grad():
            output = network(**encoding, output_attentions=True)
            for attn in output.attentions:
                attn.retain_grad()
            output.logits[0, target].backward()
    finally:
        handle.remove()
        network.requires_grad_(False)
    n = encoding["input_ids"].shape[1]
    relevance = np.eye(n)
    rows = []
    for attn in output.attentions:
        heads = attn.shape[1]
        layer_map = np.zeros((n, n))
        for head in range(heads):
            a = attn[0, head].detach().double().numpy()
            g = attn.grad[0, head].double().numpy()
            layer_map += np.maximum(a * g, 0.0) / heads
        relevance = relevance + layer_map @ relevance
        rows.append(relevance[0].copy())
    emb = captured["embeddings"]
    saliency = np.sqrt(((emb.detach()[0] * emb.grad[0]).double().numpy() ** 2).sum(axis=-1))
    return np.array(rows), saliency


@pytest.mark.parametrize("target", [0, 1])
def test_class_relevance_matches_a_straightforward_reimplementation(classifier, target):
    result = class_relevance(classifier, TEXT, target=target)
    scores, saliency = _reference(classifier, TEXT, target)
    assert result.target == ("bad", "good")[target] and result.target_index == target
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(result.input_x_gradient, saliency, rtol=1e-5, atol=1e-12)
    assert result.scores.shape == (2, len(result.tokens))
    assert (result.scores[-1][1:] > 0).any()  # not just the identity: relevance reaches other tokens


def test_class_relevance_defaults_to_the_predicted_class_and_accepts_names(classifier):
    result = class_relevance(classifier, TEXT)
    assert result.target_index == int(np.argmax(result.probabilities))
    by_name = class_relevance(classifier, TEXT, target="good")
    assert by_name.target_index == 1
    assert class_relevance(classifier, TEXT, target="0").target == "bad"  # an index as text (CLI, URL)


def test_word_level_sums_pieces(classifier):
    result = class_relevance(classifier, TEXT)
    scores, saliency = result.at_word_level()
    groups = np.asarray(result.groups)
    assert scores.shape == (2, groups.max() + 1)
    word = groups[result.tokens.index("un")]
    pieces = np.flatnonzero(groups == word)
    assert len(pieces) > 1
    assert scores[-1, word] == pytest.approx(result.scores[-1, pieces].sum())
    assert saliency[word] == pytest.approx(result.input_x_gradient[pieces].sum())


def test_bad_targets_and_bare_encoders_are_refused_with_the_fix(classifier, tiny_models):
    with pytest.raises(TargetClassError, match=r"no class 'neutral'.*0 = bad, 1 = good"):
        class_relevance(classifier, TEXT, target="neutral")
    with pytest.raises(TargetClassError, match="out of range"):
        class_relevance(classifier, TEXT, target=2)
    with pytest.raises(TargetClassError, match="out of range"):
        class_relevance(classifier, TEXT, target="7")
    with pytest.raises(TargetClassError, match="out of range"):
        blank_out(classifier, TEXT, target=-1)
    bare = load_model(tiny_models["bert"], name="tiny bert")
    with pytest.raises(NotAClassifierError, match="no classification head"):
        class_relevance(bare, TEXT)
    with pytest.raises(NotAClassifierError, match="no classification head"):
        blank_out(bare, TEXT)


def _probability(model, ids: torch.Tensor, target: int) -> float:
    with torch.inference_mode():
        return float(torch.softmax(model.model(input_ids=ids[None]).logits[0], dim=-1)[target])


def test_blank_out_matches_a_per_token_loop(classifier):
    drops = blank_out(classifier, TEXT, target=1)
    ids = classifier.tokenizer(TEXT, return_tensors="pt")["input_ids"][0]
    base = _probability(classifier, ids, 1)
    special = set(classifier.tokenizer.all_special_ids)
    for position, token_id in enumerate(ids.tolist()):
        if token_id in special:
            assert np.isnan(drops[position])
            continue
        blanked = ids.clone()
        blanked[position] = classifier.tokenizer.mask_token_id
        assert drops[position] == pytest.approx(base - _probability(classifier, blanked, 1), abs=1e-6)
    assert np.nanmax(np.abs(drops)) > 0


def test_blank_out_of_a_word_masks_all_its_pieces(classifier):
    words = blank_out(classifier, TEXT, target=0, level="word")
    encoding = classifier.tokenizer(TEXT, return_tensors="pt")
    word_ids = encoding.word_ids(0)
    ids = encoding["input_ids"][0]
    pieces = [i for i, w in enumerate(word_ids) if w == 3]  # "unbelievably"
    assert len(pieces) > 1
    blanked = ids.clone()
    blanked[pieces] = classifier.tokenizer.mask_token_id
    expected = _probability(classifier, ids, 0) - _probability(classifier, blanked, 0)
    assert words[4] == pytest.approx(expected, abs=1e-6)  # word 4: [CLS] is word 0
    assert np.isnan(words[0]) and np.isnan(words[-1])


def test_gradient_rollout_of_a_padded_batch_equals_each_inputs_own():
    """Batched class relevance on a padded batch: each input's rows equal the rule on its own block alone, even when
    the padded entries of the attention and of its gradient are not zero (the mask drops them), and are 0 on
    padding."""
    from attention.gradients import gradient_rollout

    generator = torch.Generator().manual_seed(0)
    lengths, positions, layers = [4, 7, 6], 7, 3
    mask = (np.arange(positions)[None] < np.array(lengths)[:, None]).astype(np.int64)
    attentions = [torch.rand(3, 2, positions, positions, generator=generator) for _ in range(layers)]
    gradients = [torch.randn(3, 2, positions, positions, generator=generator) for _ in range(layers)]
    sources = [0, 2, 5]
    batched = gradient_rollout(attentions, gradients, sources, mask)
    for i, (n, source) in enumerate(zip(lengths, sources, strict=True)):
        own = [a[i : i + 1, :, :n, :n] for a in attentions]
        own_gradients = [g[i : i + 1, :, :n, :n] for g in gradients]
        np.testing.assert_allclose(batched[i, :, :n], gradient_rollout(own, own_gradients, source)[0], rtol=1e-12)
        assert np.all(batched[i, :, n:] == 0.0)


def test_blank_out_batches_fewer_copies_of_a_long_input():
    """The batch of blanked copies shrinks with the input so one layer's attention scores stay bounded."""
    from attention.gradients import BLANK_OUT_ATTENTION_BYTES, BLANK_OUT_BATCH, blank_out_batch

    assert blank_out_batch(12, 40) == BLANK_OUT_BATCH
    long = blank_out_batch(12, 484)
    assert long < BLANK_OUT_BATCH and 4 * 12 * 484 * 484 * long <= BLANK_OUT_ATTENTION_BYTES
    assert blank_out_batch(12, 10_000) == 1
