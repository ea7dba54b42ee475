"""Token display strings and token groups (sub-word pieces of one word)."""

from __future__ import annotations

import numpy as np

# Markers tokenizers put on pieces: WordPiece continuation, byte-level BPE space, SentencePiece space.
_CONTINUATION = "##"
_SPACE_MARKERS = ("\u0120", "\u2581")  # Ġ, ▁


def display_token(raw: str) -> str:
    """Readable form of a raw tokenizer piece: ``##ing`` -> ``ing``, ``Ġthe`` -> ``the``, ``▁the`` -> ``the``."""
    if raw.startswith(_CONTINUATION) and len(raw) > len(_CONTINUATION):
        return raw[len(_CONTINUATION) :]
    for marker in _SPACE_MARKERS:
        if raw.startswith(marker) and len(raw) > len(marker):
            return raw[len(marker) :]
    return raw.replace("\u010a", "\\n")  # Ċ: byte-level newline


def word_groups(word_ids: list[int | None], segments: list[int]) -> np.ndarray:
    """Group index per token, ``[token]`` int array: pieces of one word share a group; every special token
    (``word_id`` None) is a group of its own. Groups are numbered in order of first appearance.

    >>> word_groups([None, 0, 1, 1, None], [0, 0, 0, 0, 0]).tolist()
    [0, 1, 2, 2, 3]
    """
    groups = np.empty(len(word_ids), dtype=np.int64)
    seen: dict[tuple[int, int], int] = {}
    next_group = 0
    for index, (word, segment) in enumerate(zip(word_ids, segments, strict=True)):
        if word is None:
            groups[index] = next_group
            next_group += 1
            continue
        key = (segment, word)
        if key not in seen:
            seen[key] = next_group
            next_group += 1
        groups[index] = seen[key]
    return groups


def aligns_words(raw_tokens: list[str], word_ids: list[int | None]) -> bool:
    """False when the tokenizer's word ids do not follow words: a piece that starts with a space marker (``▁``,
    ``Ġ``) shares its word with the piece before it (Gemma's SentencePiece tokenizer has no pre-tokenizer and puts
    the whole text in word 0). Pieces of whitespace alone (a run of spaces) say nothing.

    >>> aligns_words(["if", "▁this", "▁film"], [0, 0, 0]), aligns_words(["a", "ĠĠĠ", "ĠĠ", "Ġb"], [0, 1, 1, 2])
    (False, True)
    """
    return not any(
        word is not None and word == before and raw.startswith(_SPACE_MARKERS) and not _blank(raw)
        for raw, word, before in zip(raw_tokens[1:], word_ids[1:], word_ids[:-1], strict=True)
    )


_BLANKS = frozenset(_SPACE_MARKERS) | {"\u010a", "\u0109"}  # the markers, byte-level newline and tab


def _blank(raw: str) -> bool:
    """A piece made only of whitespace or its markers (a run of spaces, a newline, a tab)."""
    return all(ch in _BLANKS or ch.isspace() for ch in raw)


def marker_word_ids(raw_tokens: list[str], special: list[bool]) -> list[int | None]:
    """Word id per piece from the pieces themselves, for a tokenizer whose word ids do not follow words
    (:func:`aligns_words`): a word starts at a piece with a space marker, at a piece made only of punctuation or of
    whitespace (a newline, a run of spaces) and after one (as BERT's and byte-level BPE's pre-tokenizers split
    them); special tokens get None.

    >>> marker_word_ids(["<bos>", "if", "▁cartoon", "ish", ",", "▁", "c", "▁x", "\\n", "y"], [True] + [False] * 9)
    [None, 0, 1, 1, 2, 3, 3, 4, 5, 6]
    """
    out: list[int | None] = []
    word, apart, first = -1, False, True
    for raw, is_special in zip(raw_tokens, special, strict=True):
        if is_special:
            out.append(None)
            continue
        bare = raw in _SPACE_MARKERS  # a lone "▁" begins the word after it
        blank = _blank(raw) and not bare  # a newline, a tab, a run of spaces: a word of its own
        alone = blank or (not bare and is_punctuation(display_token(raw)))
        if first or raw.startswith(_SPACE_MARKERS) or alone or apart:
            word += 1
        out.append(word)
        apart, first = alone, False
    return out


def word_all(flags, groups) -> np.ndarray:
    """``[word]`` bool: True where every token of the word (group) has the flag (e.g. a special token, a word
    made only of punctuation pieces).

    >>> word_all([True, False, False, True], [0, 1, 1, 2]).tolist()
    [True, False, True]
    """
    flags, groups = np.asarray(flags, dtype=bool), np.asarray(groups)
    unflagged = np.zeros(int(groups.max()) + 1, dtype=bool)
    np.logical_or.at(unflagged, groups, ~flags)
    return ~unflagged


def join_pieces(pieces: list[str]) -> str:
    """Display string of a word from its pieces' display strings (``["un", "bel", "ievably"]`` -> ``unbelievably``)."""
    return "".join(pieces)


def is_punctuation(token: str) -> bool:
    """True for tokens made only of punctuation or symbols (``,``, ``...``, ``'``, ``-``).

    >>> [is_punctuation(t) for t in [",", "...", "don", "'s", "[CLS]"]]
    [True, True, False, False, False]
    """
    return bool(token) and all(not ch.isalnum() and not ch.isspace() for ch in token)
