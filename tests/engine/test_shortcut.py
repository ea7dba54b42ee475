"""The last layer at position 0 only (attention.shortcut): same attention, logits and gradients; installed only where
a probe shows that; one thread's passes never cut another's."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from attention.shortcut import first_position_only, install_first_position_hook


@contextlib.contextmanager
def _ffn_widths(network) -> Iterator[list[int]]:
    """Positions the last layer's feed-forward block sees, per pass (recorded by a hook, removed afterwards)."""
    seen: list[int] = []
    block = network.base_model.encoder.layer[-1].intermediate
    handle = block.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[1]))
    try:
        yield seen
    finally:
        handle.remove()


def test_cut_passes_give_the_same_attention_logits_and_gradients(default_pair, monkeypatch):
    model = default_pair.finetuned
    assert model.first_position_hook and default_pair.pretrained.first_position_hook
    with _ffn_widths(model.model) as widths:
        _compare_cut_and_full(model, widths, monkeypatch)


def _compare_cut_and_full(model, widths: list[int], monkeypatch) -> None:
    from attention import gradients

    text, second = "a tender , funny and sad film", "with a second sentence"
    encoding = model.tokenizer(text, second, return_tensors="pt")
    with torch.inference_mode():
        full = model.model(**encoding, output_attentions=True)
        with first_position_only():
            cut = model.model(**encoding, output_attentions=True)
    assert widths == [encoding["input_ids"].shape[1], 1]  # the cut pass skipped every other position
    for a, b in zip(full.attentions, cut.attentions, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(full.logits, cut.logits, rtol=0, atol=1e-5)
    widths.clear()
    cut_explained = gradients.class_relevance(model, text, second)
    monkeypatch.setattr(gradients, "first_position_only", contextlib.nullcontext)  # the same call, uncut
    full_explained = gradients.class_relevance(model, text, second)
    assert widths == [1, encoding["input_ids"].shape[1]]
    np.testing.assert_allclose(cut_explained.scores, full_explained.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cut_explained.input_x_gradient, full_explained.input_x_gradient, rtol=1e-4, atol=1e-6)


def test_another_thread_is_never_cut(tiny_models):
    from attention.models import load_model

    model = load_model(tiny_models["bert-classifier"])
    assert model.first_position_hook
    with _ffn_widths(model.model) as widths:
        _pass_in_another_thread(model)
        assert widths == [model.tokenizer("a fine , moving film", return_tensors="pt")["input_ids"].shape[1]]


def _pass_in_another_thread(model) -> None:
    encoding = model.tokenizer("a fine , moving film", return_tensors="pt")
    started, release = threading.Event(), threading.Event()

    def other() -> None:
        started.wait()
        with torch.inference_mode():
            model.model(**encoding)
        release.set()

    thread = threading.Thread(target=other)
    thread.start()
    with first_position_only():
        started.set()  # the other thread runs its pass while this one is inside the context
        release.wait(timeout=30)
    thread.join()


@pytest.mark.parametrize("kind", ["distilbert", "token-classifier"])
def test_models_the_cut_does_not_fit_keep_full_passes(tiny_models, kind):
    """No BERT-style last layer (DistilBERT), or a head that reads every position (token classification): the
    probe refuses and no hook is left."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertForTokenClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    if kind == "distilbert":
        network = AutoModel.from_pretrained(tiny_models["distilbert"], attn_implementation="eager").eval()
    else:
        config = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            vocab_size=30522, max_position_embeddings=64, attn_implementation="eager")  # fmt: skip
        network = BertForTokenClassification(config).eval()
    assert not install_first_position_hook(network, tokenizer)
    last = getattr(getattr(network, "base_model", network), "encoder", None)
    if last is not None:
        assert not last.layer[-1].attention.output._forward_pre_hooks
