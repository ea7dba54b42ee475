"""Batched forward (and, for the classifier, backward) passes of both models over a chunk of a corpus, turned into
the corpus tables (:mod:`attention.corpus.schema`).

Inputs are padded (on the right) into batches of similar length with an attention mask; every per-example figure
is computed on the example's own (unpadded) tokens — for the whole batch with padding zeroed (the per-head figures,
:mod:`attention.corpus.summaries`; class relevance and input × gradient; the [CLS] rollout row) or with the
single-example engine's functions — so a corpus row equals what the dashboard shows for that input
(tests/corpus/test_corpus.py checks sampled rows). Passes cut the last layer to position 0 (:mod:`attention.shortcut`).
Each pass also keeps its layers' inputs, from which the context-mixing figures are worked out for the batch
(:mod:`attention.corpus.mixing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from attention.corpus.mixing import BatchMixing, batch_mixing, kept_tensors
from attention.corpus.positions import own_positions
from attention.errors import InputTextError
from attention.extraction import AttentionRun, TokenFacts, clean_texts, encode, run_of, token_facts
from attention.gradients import gradient_rollout, input_embeddings_kept, input_x_gradient
from attention.models import LoadedModel, ModelPair
from attention.rollouts import top_rollout_rows
from attention.shortcut import first_position_only

MODELS = ("pretrained", "finetuned")
HEAD_STATS = ("entropy", "to_cls", "to_sep", "to_punct", "to_self")


@dataclass(frozen=True)
class Encoded:
    """One input both tokenizers split the same way: its example id and row, token facts and length."""

    example_id: int
    text: str
    text_pair: str | None
    label: str | None
    encoding: object  # the pre-trained tokenizer's BatchEncoding (one input, torch tensors)
    length: int
    facts: TokenFacts


@dataclass(frozen=True)
class ModelPass:
    """One model on one batch: ``attentions`` ``[layer, batch, head, query, key]`` (padded), and for a classifier
    ``probabilities`` ``[batch, class]``, the gradient rollout ``relevance`` per example ``[layer, token]`` and
    ``input_x_gradient`` per example ``[token]`` (unpadded); ``mask`` ``[batch, position]``, 1 on real tokens;
    ``rollout`` per example ``[token]``: its [CLS] row of the top layer's attention rollout (unpadded);
    ``mixing``: each head's contribution share ``[batch, layer, head]`` and each example's [CLS] contribution row
    (:mod:`attention.corpus.mixing`)."""

    attentions: np.ndarray
    mask: np.ndarray
    probabilities: np.ndarray | None
    relevance: list[np.ndarray] | None
    input_x_gradient: list[np.ndarray] | None
    rollout: list[np.ndarray]
    mixing: BatchMixing


def encode_rows(pair: ModelPair, rows: pd.DataFrame) -> tuple[list[Encoded], list[dict]]:
    """Tokenize each row with both models' tokenizers: the inputs to run, and the rows skipped with the reason
    (empty text, over :data:`~attention.extraction.MAX_TEXT_CHARS` characters, checked before tokenising, no token once
    tokenised, longer than a model accepts, tokenizers that disagree) — never truncated."""
    encoded, skipped = [], []
    shared = pair.shared_tokenizer
    for row in rows.itertuples(index=False):
        try:
            text, text_pair = clean_texts(row.text, row.text_pair)
            first = encode(pair.pretrained, text, text_pair)
            fits = first["input_ids"].shape[1] <= pair.finetuned.max_length
            encodings = [first, first if shared and fits else encode(pair.finetuned, text, text_pair)]
        except InputTextError as error:
            skipped.append({"example_id": int(row.example_id), "reason": error.problem})
            continue
        ids = [e["input_ids"][0].tolist() for e in encodings]
        if ids[0] != ids[1]:
            skipped.append({"example_id": int(row.example_id), "reason": "the two tokenizers split it differently"})
            continue
        facts = token_facts(pair.pretrained, encodings[0])
        encoded.append(Encoded(int(row.example_id), text, text_pair, row.label, encodings[0], len(ids[0]), facts))
    return encoded, skipped


ATTENTION_CELLS = 16 * 128 * 128  # per batch: inputs × padded length², bounds a batch's attention maps (memory)


def batches(encoded: list[Encoded], batch_size: int, cells: int = ATTENTION_CELLS) -> list[list[Encoded]]:
    """Inputs of similar length together (less padding): at most ``batch_size`` per batch, and fewer for long
    inputs, so that inputs × longest length² stays within ``cells`` (a 512-token input runs alone: its attention
    and gradients are ~75 MB per model and layer stack instead of 16 times that)."""
    ordered = sorted(encoded, key=lambda e: (e.length, e.example_id))
    out: list[list[Encoded]] = []
    for item in ordered:  # ascending length: the newest item is the batch's longest
        if out and len(out[-1]) < batch_size and (len(out[-1]) + 1) * item.length**2 <= cells:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def padded(model: LoadedModel, batch: list[Encoded]):
    """``batch`` padded on the right, whatever the tokenizer's default: models with absolute position ids (BERT)
    number positions from the first, so left padding would give each example other positions than its own pass."""
    features = [{key: value[0].tolist() for key, value in item.encoding.items()} for item in batch]
    return model.tokenizer.pad(features, padding=True, padding_side="right", return_tensors="pt")


def forward_backward(model: LoadedModel, inputs) -> tuple[object, object, tuple]:
    """A classifier's pass as a run makes it: forward from ``input_ids`` (the model's own position ids; last layer
    cut to position 0) with the word embeddings kept as leaves, then one backward pass of each example's predicted
    class logit (examples of a batch do not interact, so the gradient of the sum is each example's own).
    ``(output, embeddings [batch, position, hidden], gradients (∂/∂embeddings, ∂/∂attention of each layer))``."""
    import torch  # heavy: loaded on first use

    with torch.enable_grad(), first_position_only(), input_embeddings_kept(model.model) as kept:
        output = model.model(**inputs, output_attentions=True)
        chosen = output.logits.max(dim=-1).values.sum()  # each example's predicted class
        return output, kept[0], torch.autograd.grad(chosen, [kept[0], *output.attentions])


def run_model(model: LoadedModel, batch: list[Encoded], *, explain: bool) -> ModelPass:
    """``model`` on ``batch``; with ``explain`` (a classifier) one backward pass too (:func:`forward_backward`)."""
    import torch  # heavy: loaded on first use

    inputs = padded(model, batch)
    mask = inputs["attention_mask"].numpy()
    blocks = [own_positions(row) for row in mask]
    positions = np.arange(mask.shape[1])
    cls_rows = [positions[block][item.facts.cls_index or 0] for item, block in zip(batch, blocks, strict=True)]

    def rollout_rows(attentions: np.ndarray) -> list[np.ndarray]:
        rows = top_rollout_rows(attentions, cls_rows, mask)
        return [rows[i][block] for i, block in enumerate(blocks)]

    if not explain:
        with torch.inference_mode(), first_position_only(), kept_tensors(model) as kept:
            output = model.model(**inputs, output_attentions=True)
        probabilities = torch.softmax(output.logits.float(), dim=-1).numpy() if model.is_classifier else None
        attentions = torch.stack(output.attentions).float().numpy()
        mixing = batch_mixing(model, batch, kept, attentions, mask)
        return ModelPass(attentions, mask, probabilities, None, None, rollout_rows(attentions), mixing)
    with kept_tensors(model) as kept:
        output, embeddings, gradients = forward_backward(model, inputs)
    probabilities = torch.softmax(output.logits.detach().float(), dim=-1).numpy()
    relevance = gradient_rollout(output.attentions, gradients[1:], cls_rows, mask)
    saliency = input_x_gradient(embeddings.detach(), gradients[0])
    relevances = [relevance[i][:, block] for i, block in enumerate(blocks)]
    saliencies = [saliency[i][block] for i, block in enumerate(blocks)]
    attentions = torch.stack([a.detach() for a in output.attentions]).float().numpy()
    mixing = batch_mixing(model, batch, kept, attentions, mask)
    return ModelPass(attentions, mask, probabilities, relevances, saliencies, rollout_rows(attentions), mixing)


def example_run(model: LoadedModel, item: Encoded, weights: np.ndarray, probabilities) -> AttentionRun:
    """The :class:`AttentionRun` of one example, from its unpadded ``weights`` ``[layer, head, query, key]``."""
    return run_of(model, item.text, item.text_pair, weights, item.facts, probabilities)


def gold_label(label: str | None, labels: tuple[str, ...]) -> str | None:
    """The class a gold ``label`` names: a class name, or an index into ``labels`` (``"1"`` → ``labels[1]``)."""
    if label is None or not labels:
        return None
    if label in labels:
        return label
    text = label.strip()
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(labels):
        return labels[int(text)]
    if text.endswith(".0") and text[:-2].isdigit() and int(text[:-2]) < len(labels):  # ints read back as floats
        return labels[int(text[:-2])]
    return None
