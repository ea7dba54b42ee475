"""Extract every layer's and head's attention for one input: :func:`extract` and :func:`extract_pair`."""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
import warnings
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from attention.errors import InputTextError, NoAttentionsError, NotAClassifierError
from attention.models import LoadedModel, ModelPair
from attention.schema import ATTENTION_COLUMNS, validate_frame
from attention.shortcut import first_position_only
from attention.tokens import aligns_words, display_token, is_punctuation, join_pieces, marker_word_ids, word_groups
from attention.transforms import drop_tokens, merge_groups


def _warn_facts() -> None:
    warnings.warn(
        "pass an AttentionRun's token facts as facts=TokenFacts(...), not one by one", DeprecationWarning, stacklevel=3
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class TokenFacts:
    """Per-token facts of one encoded input, from the tokenizer (never guessed from strings): display ``tokens``,
    ``special`` flags, ``segments`` (1: the second text of a pair), word ``groups``, the classification token's
    index and the separators' indices (one entry per token in each tuple but the indices). A decoder's run is
    ``causal``: its "classification token" is the last token, whose output the model decides from (a classification
    head reads it, and it predicts the next token), and ``sink_indices`` holds its first token, the attention sink
    that plays the part [CLS] and [SEP] play in an encoder (the attention graph absorbs what reaches it)."""

    tokens: tuple[str, ...]
    special: tuple[bool, ...]
    segments: tuple[int, ...]
    groups: tuple[int, ...]
    cls_index: int | None
    sep_indices: tuple[int, ...]
    sink_indices: tuple[int, ...] = ()
    causal: bool = False


FACT_FIELDS: tuple[str, ...] = tuple(TokenFacts.__dataclass_fields__)
_POSITIONAL_FACTS = 6  # the old positional form of AttentionRun passed the first six facts


@dataclass(frozen=True, eq=False, init=False)
class AttentionRun:
    """One model's attention for one input.

    ``weights`` is a read-only float32 array ``[layer, head, query, key]``; every row sums to 1. ``facts`` holds the
    token-level facts (:class:`TokenFacts`), each also readable on the run (``run.tokens``, ``run.groups``…).
    ``groups[i]`` is the word that token ``i`` belongs to (special tokens are words of their own). ``label`` and
    ``probabilities`` (in ``labels`` order) are set for classifiers only.

    Passing the six facts one by one (``AttentionRun(name, text, pair, weights, tokens, special, …)`` or
    ``tokens=…``), as before they were grouped, still works and warns.
    """

    model_name: str
    text: str
    text_pair: str | None
    weights: np.ndarray
    facts: TokenFacts
    level: Literal["token", "word"] = "token"
    labels: tuple[str, ...] = ()
    label: str | None = None
    probabilities: tuple[float, ...] | None = None

    def __init__(self, model_name: str, text: str, text_pair: str | None, weights: np.ndarray, *rest, **named):
        facts = named.pop("facts", None)
        if rest and isinstance(rest[0], TokenFacts):
            facts, rest = rest[0], rest[1:]
        elif len(rest) >= _POSITIONAL_FACTS:  # the old positional form: the six facts first
            facts, rest = TokenFacts(*rest[:_POSITIONAL_FACTS]), rest[_POSITIONAL_FACTS:]
            _warn_facts()
        loose = {name: named.pop(name) for name in FACT_FIELDS if name in named}
        if loose:  # the old keyword form, or dataclasses.replace(run, tokens=...)
            facts = replace(facts, **loose) if facts is not None else TokenFacts(**loose)
            _warn_facts()
        if facts is None:
            raise TypeError("AttentionRun needs its token facts: facts=TokenFacts(...)")
        values = dict(zip(("level", "labels", "label", "probabilities"), rest, strict=False)) | named
        for name, value in {"model_name": model_name, "text": text, "text_pair": text_pair, "weights": weights,
                            "facts": facts, "level": "token", "labels": (), "label": None, "probabilities": None,
                            **values}.items():  # fmt: skip
            object.__setattr__(self, name, value)

    tokens = property(lambda self: self.facts.tokens, doc="Display string of each token.")
    special = property(lambda self: self.facts.special, doc="Per token: a special token ([CLS], [SEP], <s>…).")
    segments = property(lambda self: self.facts.segments, doc="Per token: 0, or 1 in the second text of a pair.")
    groups = property(lambda self: self.facts.groups, doc="Per token: the word it belongs to.")
    cls_index = property(lambda self: self.facts.cls_index, doc="The classification token's index, or None.")
    sep_indices = property(lambda self: self.facts.sep_indices, doc="The separator tokens' indices.")
    sink_indices = property(lambda self: self.facts.sink_indices, doc="A decoder's attention sink (its first token).")
    causal = property(lambda self: self.facts.causal, doc="Whether the model is a decoder (causal attention).")

    @property
    def num_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.weights.shape[-1]

    @property
    def punctuation(self) -> tuple[bool, ...]:
        """Per token: made only of punctuation (and not a special token)."""
        return tuple(is_punctuation(t) and not s for t, s in zip(self.tokens, self.special, strict=True))

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame, one row per (layer, head, query, key): see ``schema.ATTENTION_COLUMNS``; layers 1-based."""
        layers, heads, n = self.num_layers, self.num_heads, self.num_tokens
        layer, head, query, key = np.indices((layers, heads, n, n)).reshape(4, -1)
        tokens = np.asarray(self.tokens, dtype=object)
        frame = pd.DataFrame(
            {
                "model": self.model_name,
                "layer": layer + 1,
                "head": head,
                "query_idx": query,
                "query_token": tokens[query],
                "key_idx": key,
                "key_token": tokens[key],
                "weight": self.weights.reshape(-1),
            }
        )
        return validate_frame(frame, ATTENTION_COLUMNS)

    def words(self) -> tuple[str, ...]:
        """Display string of each word (group), in group order, without merging any weights."""
        pieces: dict[int, list[str]] = {}
        for token, group in zip(self.tokens, self.groups, strict=True):
            pieces.setdefault(int(group), []).append(token)
        return tuple(join_pieces(pieces.get(g, [])) for g in range(max(pieces) + 1))

    def at_word_level(self) -> AttentionRun:
        """Sub-word pieces merged into words (attention to a word sums its pieces, from a word averages them)."""
        if self.level == "word":
            return self
        return replace(self.merged(np.asarray(self.groups), list(self.words())), level="word")

    def merged(self, groups: np.ndarray | list[int], labels: list[str] | tuple[str, ...]) -> AttentionRun:
        """Tokens merged into groups (``groups[i]`` in ``0..g-1``, not necessarily contiguous, e.g. a long input's
        "other" tokens), labelled ``labels``: attention to a group sums its tokens, from a group averages them
        (:func:`attention.transforms.merge_groups`). A group's special flag and segment are its first token's."""
        groups = np.asarray(groups)
        count = int(groups.max()) + 1
        first = [int(np.flatnonzero(groups == g)[0]) for g in range(count)]
        facts = TokenFacts(
            tokens=tuple(labels),
            special=tuple(self.special[i] for i in first),
            segments=tuple(self.segments[i] for i in first),
            groups=tuple(range(count)),
            cls_index=None if self.cls_index is None else int(groups[self.cls_index]),
            sep_indices=tuple(int(groups[i]) for i in self.sep_indices),
            sink_indices=tuple(sorted({int(groups[i]) for i in self.sink_indices})),
            causal=self.causal,
        )
        return replace(self, weights=_frozen(merge_groups(self.weights, groups)), facts=facts)

    def without_tokens(self, drop: np.ndarray | list[bool], *, renormalize: bool = True) -> AttentionRun:
        """The run with the tokens marked in ``drop`` removed (rows renormalised to sum to 1)."""
        keep = ~np.asarray(drop, dtype=bool)
        if not keep.any():
            raise InputTextError("Every token would be hidden.", "Hide fewer token kinds.")
        new_index = np.cumsum(keep) - 1
        remap = lambda i: int(new_index[i]) if keep[i] else None  # noqa: E731
        groups = np.asarray(self.groups)[keep]
        _, dense = np.unique(groups, return_inverse=True)
        facts = TokenFacts(
            tokens=tuple(np.asarray(self.tokens, dtype=object)[keep]),
            special=tuple(np.asarray(self.special)[keep].tolist()),
            segments=tuple(np.asarray(self.segments)[keep].tolist()),
            groups=tuple(dense.tolist()),
            cls_index=None if self.cls_index is None else remap(self.cls_index),
            sep_indices=tuple(j for j in (remap(i) for i in self.sep_indices) if j is not None),
            sink_indices=tuple(j for j in (remap(i) for i in self.sink_indices) if j is not None),
            causal=self.causal,
        )
        return replace(self, weights=_frozen(drop_tokens(self.weights, keep, renormalize=renormalize)), facts=facts)

    def without_special_tokens(self, *, renormalize: bool = True) -> AttentionRun:
        """The run with special tokens ([CLS], [SEP], <s>, ...) removed and rows renormalised."""
        return self.without_tokens(np.asarray(self.special), renormalize=renormalize)


@dataclass(frozen=True, eq=False)
class PairRuns:
    """Both models' runs on the same input (same tokens)."""

    pretrained: AttentionRun
    finetuned: AttentionRun

    def map(self, transform) -> PairRuns:
        """Apply ``transform(run) -> run`` to both runs."""
        return PairRuns(transform(self.pretrained), transform(self.finetuned))


@dataclass(frozen=True)
class Prediction:
    """A classifier's decision: ``label`` and ``probabilities`` in ``labels`` order."""

    label: str
    probabilities: tuple[float, ...]
    labels: tuple[str, ...]


MAX_TEXT_CHARS = 5000
"""The longest input in characters, text and second segment together: the one limit of the dashboard, the export
and corpus runs, checked before tokenising (the models read at most 512 tokens, a few thousand characters, and
tokenising a megabyte only to refuse it takes seconds)."""


def check_length(text: str, text_pair: str | None = None) -> None:
    """:class:`InputTextError` when ``text`` and ``text_pair`` together are longer than :data:`MAX_TEXT_CHARS`."""
    size = len(text) + len(text_pair or "")
    if size > MAX_TEXT_CHARS:
        what = "The text and its second segment are" if text_pair else "The text is"
        raise InputTextError(
            f"{what} {size:,} characters long; at most {MAX_TEXT_CHARS:,} are analysed.",
            f"Shorten it by {size - MAX_TEXT_CHARS:,} characters or more (texts are never truncated silently).",
        )


def _clean(text: str | None, what: str) -> str:
    stripped = "" if text is None else str(text).strip()
    if not stripped:
        raise InputTextError(f"The {what} is empty.", "Type a sentence to analyse.")
    return stripped


def clean_texts(text: str | None, text_pair: str | None) -> tuple[str, str | None]:
    """The text stripped (refused when empty) and the optional second segment (None when blank); refused when
    together longer than :data:`MAX_TEXT_CHARS`, before any tokenising."""
    pair = str(text_pair).strip() if text_pair is not None and str(text_pair).strip() else None
    text = _clean(text, "text")
    check_length(text, pair)
    return text, pair


def encode(model: LoadedModel, text: str, text_pair: str | None):
    """The tokenizer's tensors for one input. Special-token strings in the text (``[CLS]``, ``<s>``, ``<mask>``)
    are read as the text they are, never as special tokens (``split_special_tokens`` per call: the tokenizer's own
    setting is left alone). Refused with an :class:`InputTextError`, never truncated: longer than
    :data:`MAX_TEXT_CHARS` (before tokenising) or than the model accepts, a text or second segment with no token,
    or a piece of text the tokenizer still reads as a special token other than unknown."""
    check_length(text, text_pair)
    if text_pair is not None and model.causal:
        raise InputTextError(
            f"Model '{model.name}' is a decoder: it reads one text, not a pair of segments.",
            "Clear the second segment (or join both texts into one).",
        )
    tokenizer = model.tokenizer
    encoding = tokenizer(
        text, text_pair, return_tensors="pt", truncation=False, verbose=False, split_special_tokens=True
    )
    length = int(encoding["input_ids"].shape[1])
    if length > model.max_length:
        raise InputTextError(
            f"The input is {length} tokens long; model '{model.name}' accepts at most {model.max_length}.",
            f"Shorten the text by about {length - model.max_length} tokens (texts are never truncated silently).",
        )
    _check_text_tokens(model, encoding, text, text_pair)
    return encoding


def _text_tokens(model: LoadedModel, encoding, text: str, text_pair: str | None) -> list[tuple[int, int]]:
    """``(segment, id)`` of every token read from the text (0) or the second segment (1), none the tokenizer
    added. Slow tokenizers have no alignment, so there each segment is tokenised again on its own."""
    tokenizer = model.tokenizer
    try:
        sequence_ids = encoding.sequence_ids(0)
    except (ValueError, AttributeError):
        segments = [text] if text_pair is None else [text, text_pair]
        pieces = [tokenizer(s, add_special_tokens=False, split_special_tokens=True)["input_ids"] for s in segments]
        return [(segment, int(i)) for segment, ids in enumerate(pieces) for i in ids]
    ids = encoding["input_ids"][0].tolist()
    return [(int(s), int(i)) for s, i in zip(sequence_ids, ids, strict=True) if s is not None]


def _check_text_tokens(model: LoadedModel, encoding, text: str, text_pair: str | None) -> None:
    """:class:`InputTextError` when the text or second segment has no token (only characters the tokenizer drops),
    or when a piece of it is read as a special token (other than unknown) despite ``split_special_tokens``: e.g. a
    SentencePiece vocabulary that holds ``<pad>`` as a piece."""
    tokens = _text_tokens(model, encoding, text, text_pair)
    found = {segment for segment, _ in tokens}
    for segment, what in enumerate(["text"] if text_pair is None else ["text", "second segment"]):
        if segment not in found:
            raise InputTextError(
                f"The {what} is empty once tokenised: model '{model.name}' drops every character of it "
                "(zero-width, control and NUL characters are not read).",
                "Type a sentence with letters, digits or punctuation.",
            )
    tokenizer = model.tokenizer
    reserved = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    special = next((i for _, i in tokens if i in reserved), None)
    if special is not None:
        token = tokenizer.convert_ids_to_tokens(special)
        raise InputTextError(
            f"Model '{model.name}' reads {token!r} in the text as its special token, not as text.",
            f"Write it another way (e.g. with a space inside: '{token[:1]} {token[1:]}').",
        )


def _segments(sequence_ids: list[int | None]) -> list[int]:
    """Segment per token; special tokens join the segment before them (the first one joins segment 0)."""
    out, current = [], 0
    for sid in sequence_ids:
        current = current if sid is None else sid
        out.append(current)
    return out


def token_facts(model: LoadedModel, encoding) -> TokenFacts:
    """Display tokens, special-token flags, segments, word groups, [CLS] and [SEP] positions of ``encoding`` (for a
    decoder: the last token read as its classification token, the first as its sink; see :class:`TokenFacts`)."""
    ids = encoding["input_ids"][0].tolist()
    tokenizer = model.tokenizer
    special_ids = set(tokenizer.all_special_ids)
    special = [i in special_ids for i in ids]
    try:
        word_ids = encoding.word_ids(0)
        sequence_ids = encoding.sequence_ids(0)
    except (ValueError, AttributeError):  # slow tokenizers have no alignment: one word per token
        word_ids = [None if s else i for i, s in enumerate(special)]
        sequence_ids = [None if s else 0 for s in special]
    raw_tokens = tokenizer.convert_ids_to_tokens(ids)
    if not aligns_words(raw_tokens, word_ids):
        word_ids = marker_word_ids(raw_tokens, special)
    segments = _segments(sequence_ids)
    if model.causal:
        return TokenFacts(
            tokens=tuple(display_token(t) for t in raw_tokens),
            special=tuple(special),
            segments=tuple(segments),
            groups=tuple(word_groups(word_ids, segments).tolist()),
            cls_index=len(ids) - 1,
            sep_indices=(),
            sink_indices=(0,) if len(ids) > 1 else (),
            causal=True,
        )
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    return TokenFacts(
        tokens=tuple(display_token(t) for t in raw_tokens),
        special=tuple(special),
        segments=tuple(segments),
        groups=tuple(word_groups(word_ids, segments).tolist()),
        cls_index=ids.index(cls_id) if cls_id is not None and cls_id in ids else None,
        sep_indices=tuple(i for i, t in enumerate(ids) if sep_id is not None and t == sep_id),
    )


def extract(model: LoadedModel, text: str, text_pair: str | None = None) -> AttentionRun:
    """Run ``model`` on ``text`` (and optionally ``text_pair``) and return all its attention weights.

    Texts longer than the model's maximum length are refused with an :class:`InputTextError` (never truncated).
    """
    import torch

    text, text_pair = clean_texts(text, text_pair)
    encoding = encode(model, text, text_pair)
    with torch.inference_mode(), first_position_only():
        output = model.model(**encoding, output_attentions=True)
    check_attentions(model, output)
    weights = torch.stack(output.attentions)[:, 0].float().numpy()  # [layer, head, query, key]
    probabilities = torch.softmax(output.logits[0].float(), dim=-1).tolist() if model.is_classifier else None
    return run_of(model, text, text_pair, weights, token_facts(model, encoding), probabilities)


def check_attentions(model: LoadedModel, output) -> None:
    """:class:`NoAttentionsError` when a pass returned no attention weights (a kernel other than eager)."""
    if not output.attentions:
        raise NoAttentionsError(
            f"Model '{model.name}' returned no attention weights.",
            "Load it with attn_implementation='eager'; architectures that cannot return attentions are unsupported.",
        )


def run_of(
    model: LoadedModel,
    text: str,
    text_pair: str | None,
    weights: np.ndarray,
    facts: TokenFacts,
    probabilities: list[float] | np.ndarray | None = None,
) -> AttentionRun:
    """The :class:`AttentionRun` of ``model`` on one input from its ``weights`` ``[layer, head, query, key]``
    (made read-only), token facts and, for a classifier, class probabilities (the label is their argmax)."""
    label = None if probabilities is None else model.labels[int(np.argmax(probabilities))]
    return AttentionRun(
        model_name=model.name,
        text=text,
        text_pair=text_pair,
        weights=_frozen(np.asarray(weights, dtype=np.float32)),
        facts=facts,
        labels=model.labels,
        label=label,
        probabilities=None if probabilities is None else tuple(float(p) for p in probabilities),
    )


def predict(model: LoadedModel, text: str, text_pair: str | None = None) -> Prediction:
    """The classifier's label and class probabilities; :class:`NotAClassifierError` for a bare encoder."""
    if not model.is_classifier:
        raise NotAClassifierError(
            f"Model '{model.name}' has no classification head, so it makes no prediction.",
            "Ask the fine-tuned model of the pair, or load a *ForSequenceClassification checkpoint.",
        )
    run = extract(model, text, text_pair)
    return Prediction(label=run.label, probabilities=run.probabilities, labels=run.labels)


def extract_pair(pair: ModelPair, text: str, text_pair: str | None = None) -> PairRuns:
    """Extract both models of a pair on the same input in one call."""
    return PairRuns(extract(pair.pretrained, text, text_pair), extract(pair.finetuned, text, text_pair))
