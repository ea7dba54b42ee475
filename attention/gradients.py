"""Class-specific relevance (Chefer, Gur & Wolf, ICCV 2021), input × gradient, and blank-out importance: which
input tokens drive a classifier's decision for one class.
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from attention.errors import NotAClassifierError, TargetClassError
from attention.extraction import AttentionRun, check_attentions, clean_texts, encode, run_of, token_facts
from attention.methods import merge_scores
from attention.models import LoadedModel
from attention.shortcut import first_position_only

BLANK_OUT_BATCH = 64  # blanked copies per forward pass at most
BLANK_OUT_ATTENTION_BYTES = 96 * 2**20  # ... and fewer for long inputs: one layer's attention scores of a batch


def blank_out_batch(num_heads: int, num_tokens: int) -> int:
    """Blanked copies per forward pass: :data:`BLANK_OUT_BATCH`, or fewer so that one layer's float32 attention
    scores ``[batch, head, n, n]`` stay within :data:`BLANK_OUT_ATTENTION_BYTES` (a 484-token input: 8 copies,
    ~90 MB, instead of 64 copies, ~720 MB per tensor and a 2.6 GB peak)."""
    return max(1, min(BLANK_OUT_BATCH, BLANK_OUT_ATTENTION_BYTES // (4 * num_heads * num_tokens * num_tokens)))


@dataclass(frozen=True, eq=False)
class ClassRelevance:
    """Result of :func:`class_relevance` for one model, input and target class.

    ``scores``: ``[layer, token]`` float64, the classification token's row of ``R`` after each layer
    (``R_0 = I``, ``R_l = R_{l-1} + Ā_l · R_{l-1}``, ``Ā_l = mean_h (∂y_t/∂A_l ⊙ A_l)⁺``);
    ``input_x_gradient``: ``[token]``, ``‖e ⊙ ∂y_t/∂e‖₂`` over the hidden size of the word embeddings ``e``.
    """

    tokens: tuple[str, ...]
    special: tuple[bool, ...]
    groups: tuple[int, ...]
    target: str
    target_index: int
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    scores: np.ndarray
    input_x_gradient: np.ndarray

    def at_word_level(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [layer, word], input_x_gradient [word])``: each word's pieces summed."""
        return merge_scores(self.scores, self.groups), merge_scores(self.input_x_gradient, self.groups)


def require_classifier(model: LoadedModel) -> None:
    if not model.is_classifier:
        raise NotAClassifierError(
            f"Model '{model.name}' has no classification head, so it has no classes to explain.",
            "Use the fine-tuned model of the pair (or any *ForSequenceClassification checkpoint).",
        )


def target_index(model: LoadedModel, target: str | int | None, probabilities: np.ndarray) -> int:
    """The class index of ``target`` (a label, an index, or None / "predicted" for the predicted class)."""
    require_classifier(model)
    if target is None or target == "predicted":
        return int(np.argmax(probabilities))
    if isinstance(target, bool | float):
        raise TargetClassError(f"Target class {target!r} is neither a class name nor an index.", _classes(model))
    if isinstance(target, int | np.integer):
        if not 0 <= int(target) < len(model.labels):
            raise TargetClassError(
                f"Class index {target} is out of range: model '{model.name}' has {len(model.labels)} classes.",
                _classes(model),
            )
        return int(target)
    if str(target) in model.labels:
        return model.labels.index(str(target))
    if str(target).lstrip("-").isdigit():  # an index given as text (the CLI, a URL)
        return target_index(model, int(target), probabilities)
    raise TargetClassError(f"Model '{model.name}' has no class '{target}'.", _classes(model))


def _classes(model: LoadedModel) -> str:
    listed = ", ".join(f"{i} = {label}" for i, label in enumerate(model.labels))
    return f"Choose one of: {listed} (or 'predicted')."


def class_relevance(
    model: LoadedModel, text: str, text_pair: str | None = None, *, target: str | int | None = None
) -> ClassRelevance:
    """Gradient-weighted attention relevance of each input token for ``target`` (default: the predicted class).

    One forward and one backward pass. Raises :class:`NotAClassifierError` for a model without a head and
    :class:`TargetClassError` for an unknown class.
    """
    return _explained_pass(model, *clean_texts(text, text_pair), target)[0]


def extract_and_explain(
    model: LoadedModel, text: str, text_pair: str | None = None, *, target: str | int | None = None
) -> tuple[AttentionRun, ClassRelevance]:
    """:func:`~attention.extraction.extract` and :func:`class_relevance` of a classifier from one forward pass (the
    attention weights the backward pass needs are the run's): what a dashboard analysis needs, for about two
    thirds of the two calls' cost. The run equals :func:`~attention.extraction.extract`'s (the same ``input_ids``
    pass)."""
    text, text_pair = clean_texts(text, text_pair)
    explained, output, facts, probabilities = _explained_pass(model, text, text_pair, target)
    weights = np.stack([a.detach()[0].float().numpy() for a in output.attentions])  # [layer, head, query, key]
    return run_of(model, text, text_pair, weights, facts, probabilities), explained


@contextmanager
def input_embeddings_kept(network) -> Iterator[list]:
    """While active, the word embeddings ``[batch, token, hidden]`` of this thread's passes of ``network`` become
    leaves that require grad, appended to the yielded list: a pass from ``input_ids`` (so with the model's own
    position ids — RoBERTa numbers positions after pad tokens, which a pass from ``inputs_embeds`` cannot) that
    still gives ``∂y/∂e``. Passes of other threads are left alone."""
    owner, kept = threading.get_ident(), []

    def keep(_module, _args, output):
        if threading.get_ident() != owner:
            return None
        leaf = output.detach().requires_grad_(True)
        kept.append(leaf)
        return leaf

    handle = network.get_input_embeddings().register_forward_hook(keep)
    try:
        yield kept
    finally:
        handle.remove()


def _explained_pass(model: LoadedModel, text: str, text_pair: str | None, target: str | int | None):
    """One forward and one backward pass of a classifier on cleaned texts (:func:`clean_texts`):
    ``(ClassRelevance, the model output, token facts, class probabilities)``."""
    import torch

    require_classifier(model)
    encoding = encode(model, text, text_pair)
    network = model.model
    with torch.enable_grad(), first_position_only(), input_embeddings_kept(network) as kept:
        output = network(**encoding, output_attentions=True)
        check_attentions(model, output)
        embeddings = kept[0]
        logits = output.logits[0]
        probabilities = torch.softmax(logits.detach().float(), dim=-1).numpy()
        index = target_index(model, target, probabilities)
        gradients = torch.autograd.grad(logits[index], [embeddings, *output.attentions])
    embedding_gradient, attention_gradients = gradients[0], gradients[1:]
    facts = token_facts(model, encoding)
    cls_row = facts.cls_index if facts.cls_index is not None else 0
    scores = gradient_rollout(output.attentions, attention_gradients, cls_row)[0]
    saliency = input_x_gradient(embeddings.detach(), embedding_gradient)[0]
    explained = ClassRelevance(
        tokens=facts.tokens,
        special=facts.special,
        groups=facts.groups,
        target=model.labels[index],
        target_index=index,
        labels=model.labels,
        probabilities=tuple(float(p) for p in probabilities),
        scores=scores,
        input_x_gradient=saliency,
    )
    return explained, output, facts, probabilities


def gradient_rollout(attentions: list, gradients: list, cls_rows, mask=None) -> np.ndarray:
    """``[batch, layer, position]``: each input's classification-token row of ``R`` after each layer (``R_0 = I``,
    ``R_l = R_{l-1} + Ā_l · R_{l-1}``, ``Ā_l = mean_h (∂y_t/∂A_l ⊙ A_l)⁺``), from each layer's attention and its
    gradient, torch tensors ``[batch, head, query, key]``; ``cls_rows`` ``[batch]``. For padded batches, ``mask``
    ``[batch, position]`` (1 on real tokens) keeps each input's rule on its own tokens: ``Ā_l`` is zero off the
    real block, so an input's row on its real positions equals its unpadded run's, and is 0 on padding."""
    batch, n = attentions[0].shape[0], attentions[0].shape[-1]
    inputs = np.arange(batch)
    rows = np.broadcast_to(np.asarray(cls_rows), (batch,))
    real = None if mask is None else np.asarray(mask, dtype=np.float64)
    joint = np.broadcast_to(np.eye(n), (batch, n, n))
    scores = np.empty((batch, len(attentions), n))
    for layer, (attn, grad) in enumerate(zip(attentions, gradients, strict=True)):
        weighted = (grad * attn.detach()).clamp(min=0).mean(dim=1).double().numpy()  # [batch, query, key]
        if real is not None:
            weighted *= real[:, :, None] * real[:, None, :]
        joint = joint + weighted @ joint
        scores[:, layer] = joint[inputs, rows]
    return scores


def input_x_gradient(embeddings, gradient) -> np.ndarray:
    """``[batch, position]``: ``‖e ⊙ ∂y_t/∂e‖₂`` over the hidden size, from torch tensors ``[batch, position, hidden]``
    (0 on padding, whose gradient is 0)."""
    return (embeddings * gradient).norm(dim=-1).double().numpy()


def blank_out(
    model: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    target: str | int | None = None,
    level: str = "token",
) -> np.ndarray:
    """Drop in the target class's probability when one token (``level="word"``: all pieces of one word) alone is
    blanked out: ``[token]`` (or ``[word]``) float64, NaN for special tokens. Positive = the token supported the
    class. An encoder's token is replaced by the mask token (else the unknown token); a decoder has neither, and
    any token put in its place is one it reads as text, so a decoder's token is deleted (the input without it, the
    rest shifted left: the leave-one-out input a causal model can read; NaN for a unit that is the whole input).
    All replacements run batched (:func:`blank_out_batch` at a time)."""
    import torch

    require_classifier(model)
    text, text_pair = clean_texts(text, text_pair)
    encoding = encode(model, text, text_pair)
    facts = token_facts(model, encoding)
    if level not in ("token", "word"):
        raise ValueError(f"level must be token or word, got {level!r}")
    groups = np.asarray(facts.groups)
    special = np.asarray(facts.special)
    units = groups if level == "word" else np.arange(groups.size)
    blanked_units = sorted({int(u) for u, s in zip(units, special, strict=True) if not s})
    blank = _deleted if model.causal else _masked(model)
    with torch.inference_mode(), first_position_only():
        base = torch.softmax(model.model(**encoding).logits[0].float(), dim=-1).numpy()
        index = target_index(model, target, base)
        drops = np.full(int(units.max()) + 1, np.nan)
        step = blank_out_batch(model.num_heads, int(encoding["input_ids"].shape[1]))
        if model.causal:  # deleting every token leaves no input: that unit has no blank-out
            blanked_units = [u for u in blanked_units if not np.all(units == u)]
        for start in range(0, len(blanked_units), step):
            chunk = blanked_units[start : start + step]
            inputs = blank(encoding, [units == unit for unit in chunk], model)
            probs = torch.softmax(model.model(**inputs).logits.float(), dim=-1)[:, index].numpy()
            drops[chunk] = base[index] - probs
    return drops


def _masked(model: LoadedModel):
    """Blank by the mask token (else unknown): each row of the batch is the input with its tokens replaced."""
    import torch

    mask_id = model.tokenizer.mask_token_id
    if mask_id is None:
        mask_id = model.tokenizer.unk_token_id
    if mask_id is None:
        raise NotAClassifierError(
            f"Model '{model.name}' has neither a mask nor an unknown token to blank out with.",
            "Blank-out needs a tokenizer with a [MASK] or [UNK] token.",
        )

    def blank(encoding, drops: list[np.ndarray], _model) -> dict:
        batch = encoding["input_ids"].repeat(len(drops), 1)
        for row, drop in enumerate(drops):
            batch[row, torch.as_tensor(drop)] = mask_id
        others = {k: v.repeat(len(drops), 1) for k, v in encoding.items() if k != "input_ids"}
        return {"input_ids": batch, **others}

    return blank


def _deleted(encoding, drops: list[np.ndarray], model: LoadedModel) -> dict:
    """Blank by deletion (decoders): each row is the input without its tokens, padded on the right with the pad
    token and masked there (a classification head reads the last token that is not padding)."""
    import torch

    ids = encoding["input_ids"][0]
    pad = model.model.config.pad_token_id
    if pad is None:
        raise NotAClassifierError(
            f"Model '{model.name}' has no pad token id, so inputs of different lengths cannot share a batch.",
            "Set pad_token_id in the model's config.json (a decoder classifier needs one to find its last token).",
        )
    batch = torch.full((len(drops), ids.numel() - 1), pad, dtype=ids.dtype)
    attention = torch.zeros_like(batch)
    for row, drop in enumerate(drops):
        kept = ids[torch.as_tensor(~drop)]
        batch[row, : kept.numel()] = kept
        attention[row, : kept.numel()] = 1
    return {"input_ids": batch, "attention_mask": attention}
