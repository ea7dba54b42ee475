"""A fuzz suite of bad texts, kept in the repo: special-token strings typed as text ([CLS], <s>, <pad>), texts that
are empty once tokenised (zero-width, control and NUL characters), and texts over the one length limit
(:data:`attention.extraction.MAX_TEXT_CHARS`). Each case asserts the exact outcome, the tokens shown or the words of the
refusal, through the engine on the tokenizer families we support (WordPiece: the real MiniLM tokenizer; byte-level
BPE: RoBERTa; SentencePiece unigram: ALBERT, both built offline from a hand-made vocabulary), the dashboard over
HTTP, the export command line and a corpus run's ``encode_rows``."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import replace

import pandas as pd
import pytest

from app.cli.main import main
from app.dashboard import ids
from app.testing.dash_http import call
from attention import extract, load_model
from attention.errors import InputTextError
from attention.extraction import MAX_TEXT_CHARS, encode
from tests.conftest import BASE

EMPTY_ONCE_TOKENISED = "The text is empty once tokenised"
PAIR_EMPTY_ONCE_TOKENISED = "The second segment is empty once tokenised"
FIVE_MB = "x" * 5_000_000
MILLION_WORDS = "word " * 1_000_000

# (text, second segment, the tokens the MiniLM tokenizer gives: special-token strings stay text)
WORDPIECE_TOKENS = [
    ("[CLS]", None, ("[CLS]", "[", "cl", "s", "]", "[SEP]")),
    ("[MASK] [PAD] [UNK]", None, ("[CLS]", "[", "mask", "]", "[", "pad", "]", "[", "un", "k", "]", "[SEP]")),
    ("[SEP] x", None, ("[CLS]", "[", "sep", "]", "x", "[SEP]")),
    ("a [SEP] b", None, ("[CLS]", "a", "[", "sep", "]", "b", "[SEP]")),
    ("<s>", None, ("[CLS]", "<", "s", ">", "[SEP]")),
    ("a", "[SEP]", ("[CLS]", "a", "[SEP]", "[", "sep", "]", "[SEP]")),
    ("[CLS]", "[CLS]", ("[CLS]", "[", "cl", "s", "]", "[SEP]", "[", "cl", "s", "]", "[SEP]")),
    ("\u200b film \x00", None, ("[CLS]", "film", "[SEP]")),
]

# (text, second segment, the words of the refusal)
REFUSED_TEXTS = [
    ("", None, "The text is empty"),
    (" \n\t ", None, "The text is empty"),
    ("\u200b", None, EMPTY_ONCE_TOKENISED),
    ("\u200b\u200c\u200d\u2060\ufeff", None, EMPTY_ONCE_TOKENISED),
    ("\x01\x02\x03\x7f", None, EMPTY_ONCE_TOKENISED),
    ("\x00", None, EMPTY_ONCE_TOKENISED),
    ("\x00" * 100, None, EMPTY_ONCE_TOKENISED),
    ("\u200b \x00 \x07", None, EMPTY_ONCE_TOKENISED),
    ("a fine film", "\u200b", PAIR_EMPTY_ONCE_TOKENISED),
    ("a fine film", "\x00\x01", PAIR_EMPTY_ONCE_TOKENISED),
    ("x" * (MAX_TEXT_CHARS + 1), None, "The text is 5,001 characters long; at most 5,000 are analysed"),
    ("x" * 4999, "yy", "The text and its second segment are 5,001 characters long"),
    (FIVE_MB, None, "The text is 5,000,000 characters long"),
    (MILLION_WORDS, None, "The text is 4,999,999 characters long"),
    ("film " * 100, None, "The input is 102 tokens long; model 'tiny bert' accepts at most 64"),
]


def _ids(cases: list[tuple]) -> list[str]:
    """Test ids: each text's first characters (and its second segment)."""
    shown = [repr(text[:12] + ("…" if len(text) > 12 else "")) for text, _, _ in cases]
    return [label + ("" if pair is None else f"+{pair!r}") for label, (_, pair, _) in zip(shown, cases, strict=True)]


class NeverCalled:
    """A tokenizer that fails the test when it is used at all: a text over the limit must be refused before."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the tokenizer was used ({name}) before the text's length was checked")

    def __call__(self, *args, **kwargs):
        raise AssertionError("the tokenizer was called before the text's length was checked")


_TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
         "max_position_embeddings": 64}  # fmt: skip


@pytest.fixture(scope="module")
def bert(tiny_models):
    """A tiny random BERT with the real all-MiniLM-L6-v2 WordPiece tokenizer (64 positions)."""
    return load_model(tiny_models["bert"], name="tiny bert")


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """A tiny random RoBERTa with a byte-level BPE tokenizer of the 256 byte symbols and no merges (<s>, </s>,
    <mask>, <pad>, <unk> as RoBERTa numbers them)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    folder = tmp_path_factory.mktemp("roberta")
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *sorted(ByteLevel.alphabet())])}
    config = RobertaConfig(vocab_size=len(vocab), pad_token_id=1, **_TINY)
    RobertaModel(config).save_pretrained(folder)
    RobertaTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return load_model(folder, name="tiny roberta")


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """A tiny random ALBERT with a SentencePiece unigram tokenizer built from pieces and scores. The special pieces
    score higher than any letter, so the unigram model itself picks ``<pad>`` out of text: the case
    ``split_special_tokens`` cannot cover (it only stops the tokenizer's added-token matching)."""
    from transformers import AlbertConfig, AlbertModel, AlbertTokenizer

    folder = tmp_path_factory.mktemp("albert")
    pieces = [("<pad>", 0.0), ("<unk>", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz<>[]/"]
    AlbertModel(AlbertConfig(vocab_size=len(pieces), embedding_size=8, **_TINY)).save_pretrained(folder)
    AlbertTokenizer(vocab=pieces).save_pretrained(folder)
    return load_model(folder, name="tiny albert")


# --- the engine -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "pair", "tokens"), WORDPIECE_TOKENS, ids=_ids(WORDPIECE_TOKENS))
def test_special_token_strings_stay_text_with_wordpiece(bert, text, pair, tokens):
    run = extract(bert, text, pair)
    assert run.tokens == tokens
    added = [i for i, token in enumerate(tokens) if token in ("[CLS]", "[SEP]")]
    assert [i for i, special in enumerate(run.special) if special] == added  # only the tokenizer's own are special
    assert run.cls_index == 0 and run.sep_indices == tuple(added[1:])


BPE_TOKENS = [
    ("<s>", None, ("<s>", "<", "s", ">", "</s>")),
    ("</s> x", None, ("<s>", "<", "/", "s", ">", "\u0120", "x", "</s>")),
    ("<mask>", None, ("<s>", "<", "m", "a", "s", "k", ">", "</s>")),
    ("<pad><unk>", None, ("<s>", "<", "p", "a", "d", ">", "<", "u", "n", "k", ">", "</s>")),
    ("a", "<s>", ("<s>", "a", "</s>", "</s>", "<", "s", ">", "</s>")),
    ("[CLS]", None, ("<s>", "[", "C", "L", "S", "]", "</s>")),
]


@pytest.mark.parametrize(("text", "pair", "tokens"), BPE_TOKENS, ids=_ids(BPE_TOKENS))
def test_special_token_strings_stay_text_with_byte_level_bpe(roberta, text, pair, tokens):
    run = extract(roberta, text, pair)
    assert run.tokens == tokens
    assert sum(run.special) == (2 if pair is None else 4)


SENTENCEPIECE_TOKENS = [
    ("[CLS]", ("[CLS]", "\u2581", "[", "c", "l", "s", "]", "[SEP]")),
    ("[MASK] [SEP]", ("[CLS]", "\u2581", "[", "m", "a", "s", "k", "]", "\u2581", "[", "s", "e", "p", "]", "[SEP]")),
    ("< pad>", ("[CLS]", "\u2581", "<", "\u2581", "p", "a", "d", ">", "[SEP]")),
]


@pytest.mark.parametrize(("text", "tokens"), SENTENCEPIECE_TOKENS, ids=[t for t, _ in SENTENCEPIECE_TOKENS])
def test_special_token_strings_stay_text_with_sentencepiece(albert, text, tokens):
    run = extract(albert, text)
    assert run.tokens == tokens
    assert sum(run.special) == 2


def test_a_special_piece_the_unigram_model_still_picks_out_of_text_is_refused(albert):
    with pytest.raises(InputTextError) as raised:
        extract(albert, "a <pad> b")
    assert str(raised.value) == (
        "Model 'tiny albert' reads '<pad>' in the text as its special token, not as text. "
        "Write it another way (e.g. with a space inside: '< pad>')."
    )


def test_a_slow_tokenizer_that_keeps_special_strings_whole_is_refused_not_obeyed(bert, minilm_dir):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    slow = replace(bert, tokenizer=BertTokenizerLegacy(vocab_file=str(minilm_dir / "vocab.txt")))
    with pytest.raises(InputTextError, match="reads '\\[CLS\\]' in the text as its special token"):
        extract(slow, "[CLS] film")
    with pytest.raises(InputTextError, match=PAIR_EMPTY_ONCE_TOKENISED):
        extract(slow, "film", "\u200b")
    assert extract(slow, "a fine film").tokens == ("[CLS]", "a", "fine", "film", "[SEP]")


def test_the_tokenizers_own_setting_is_left_alone(bert):
    from attention.models import same_tokenizer

    extract(bert, "[CLS]")
    tokenizer = bert.tokenizer
    assert tokenizer.split_special_tokens is False
    assert tokenizer.convert_ids_to_tokens(tokenizer("[CLS]")["input_ids"]) == ["[CLS]", "[CLS]", "[SEP]"]
    assert same_tokenizer(tokenizer, load_model(bert.path).tokenizer)


@pytest.mark.parametrize(("text", "pair", "words"), REFUSED_TEXTS, ids=_ids(REFUSED_TEXTS))
def test_bad_texts_are_refused_by_the_engine(bert, text, pair, words):
    with pytest.raises(InputTextError) as raised:
        extract(bert, text, pair)
    assert words in str(raised.value)
    assert raised.value.problem and raised.value.fix  # a problem and a fix, as every engine error


@pytest.mark.parametrize("text", [FIVE_MB, MILLION_WORDS, "x" * (MAX_TEXT_CHARS + 1)], ids=["5 MB", "1M words", "5001"])
def test_a_text_over_the_limit_is_refused_before_tokenising(bert, text):
    never = replace(bert, tokenizer=NeverCalled())
    started = time.perf_counter()
    for attempt in (lambda: extract(never, text), lambda: encode(never, text, None)):
        with pytest.raises(InputTextError, match="characters long"):
            attempt()
    assert time.perf_counter() - started < 0.5


def test_the_limit_counts_text_and_pair_together_and_is_inclusive(bert):
    with pytest.raises(InputTextError, match="The input is"):  # 5,000 characters pass the limit, not the model
        extract(bert, "x " * 2499 + "x", "y")
    with pytest.raises(InputTextError, match="5,001 characters long"):
        extract(bert, "x" * 2500, "y" * 2501)


# --- the dashboard over HTTP ---------------------------------------------------------------------------------------


def _analyse(client, text, pair=None):
    values = {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": text, f"{ids.TEXT_PAIR}.value": pair}
    return call(client, f"{ids.ANALYSIS}.data", values, f"{ids.ANALYSE}.n_clicks").get_json()


def _matrix(client, analysis: dict) -> dict:
    values = {**BASE, f"{ids.ANALYSIS}.data": analysis, f"{ids.SELECTED_HEAD}.data": {"layer": 1, "head": 0}}
    return call(client, f"{ids.MATRIX}.figure", values, f"{ids.ANALYSIS}.data").get_json()


@pytest.mark.parametrize(("text", "pair", "tokens"), WORDPIECE_TOKENS[:6], ids=_ids(WORDPIECE_TOKENS[:6]))
def test_the_page_draws_special_token_strings_as_text(tiny_app, text, pair, tokens):
    client = tiny_app.server.test_client()
    analysed = _analyse(client, text, pair)
    assert analysed["response"][ids.ERROR]["children"] == ""
    figure = _matrix(client, analysed["response"][ids.ANALYSIS]["data"])["response"][ids.MATRIX]["figure"]
    # pieces that continue a word carry "##" (app/service/drawn.py CONTINUATION_MARK)
    assert tuple(t.removeprefix("##") for t in figure["layout"]["xaxis"]["ticktext"]) == tokens


@pytest.mark.parametrize(("text", "pair", "words"), REFUSED_TEXTS[2:-1], ids=_ids(REFUSED_TEXTS[2:-1]))
def test_the_analyse_button_refuses_bad_texts(tiny_app, text, pair, words):
    payload = _analyse(tiny_app.server.test_client(), text, pair)
    assert words in payload["sideUpdate"][ids.ERROR]["children"]
    assert ids.ANALYSIS not in payload.get("response", {})


STORED = [(FIVE_MB, "characters long"), (MILLION_WORDS, "characters long"), ("\u200b", EMPTY_ONCE_TOKENISED),
          ("\x00", EMPTY_ONCE_TOKENISED), ("\x01\x02", EMPTY_ONCE_TOKENISED)]  # fmt: skip


@pytest.mark.parametrize("output", [ids.SANKEY, ids.SENTENCE, ids.MATRIX])
@pytest.mark.parametrize(("text", "words"), STORED, ids=["5 MB", "1M words", "zero-width", "NUL", "control"])
def test_a_bad_text_put_in_the_pages_store_is_refused_not_drawn(tiny_app, monkeypatch, output, text, words):
    from app.service.registry import pair_service

    if "characters" in words:  # over the limit: the tokenizer must never run
        tokenizer = type(pair_service(server=tiny_app.server).pair.pretrained.tokenizer)
        monkeypatch.setattr(tokenizer, "__call__", NeverCalled.__call__)
    client = tiny_app.server.test_client()
    values = {**BASE, f"{ids.ANALYSIS}.data": {"text": text, "text_pair": None},
              f"{ids.SELECTED_HEAD}.data": {"layer": 1, "head": 0}}  # fmt: skip
    payload = call(client, f"{output}.figure", values, f"{ids.ANALYSIS}.data").get_json()
    assert words in payload["sideUpdate"][ids.ERROR]["children"]
    assert output not in payload.get("response", {})


# --- the export command line ----------------------------------------------------------------------------------------


def _export(capsys, argv: list[str]) -> tuple[int, str]:
    status = main(["export", *argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("text", "pair", "words"), REFUSED_TEXTS[2:-1], ids=_ids(REFUSED_TEXTS[2:-1]))
def test_export_refuses_bad_texts_in_one_line_and_writes_nothing(tiny_config, tmp_path, capsys, text, pair, words):
    out = tmp_path / "figure.svg"
    argv = ["--config", str(tiny_config), "--text", text, "--view", "sentence", "--out", str(out)]
    status, stderr = _export(capsys, argv + ([] if pair is None else ["--text-pair", pair]))
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("attention-flows: error: "), stderr[:300]
    assert words in lines[0] and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_export_draws_special_token_strings_as_text(tiny_config, tmp_path, capsys):
    out = tmp_path / "matrix.svg"
    argv = ["--config", str(tiny_config), "--text", "[CLS] [MASK]", "--view", "matrix", "--head", "1:0"]
    assert _export(capsys, [*argv, "--out", str(out)])[0] == 0
    texts = [t.text for t in ET.fromstring(out.read_bytes()).iter() if t.tag.endswith("text")]
    assert {"[", "cl", "##s", "]", "mask"} <= set(texts)
    assert "[MASK]" not in texts


def test_export_lists_the_bad_lines_of_a_texts_file(tiny_config, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text(f"[CLS] film\n\u200b\n{'x' * 6000}\n\x01\x02\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["--config", str(tiny_config), "--texts", str(texts), "--out-dir", str(out_dir), "--format", "svg",
            "--view", "heads"]  # fmt: skip
    status, stderr = _export(capsys, argv)
    assert status == 1
    assert f"line 2: {EMPTY_ONCE_TOKENISED}" in stderr
    assert "line 3: The text is 6,000 characters long" in stderr
    assert f"line 4: {EMPTY_ONCE_TOKENISED}" in stderr
    assert [p.name[:14] for p in out_dir.iterdir()] == ["001-heads-comp"]


@pytest.mark.parametrize(
    ("text", "pair", "words"),
    [("x" * 5001, None, "text is 5,001 characters long"), ("x" * 4000, "y" * 1001, "text is 5,001 characters long")],
    ids=["text", "text and pair"],
)
def test_a_sidecar_over_the_limit_is_refused_before_loading(tmp_path, capsys, monkeypatch, text, pair, words):
    from app.service.analysis import AnalysisService
    from tests.dashboard.test_bad_input import _sidecar

    def refuse(*_args, **_kwargs):
        raise AssertionError("the models were loaded before the sidecar's text was checked")

    monkeypatch.setattr(AnalysisService, "from_config", classmethod(refuse))
    side = _sidecar(tmp_path, text=text, text_pair=pair)
    status, stderr = _export(capsys, ["--from-sidecar", side, "--out", str(tmp_path / "again.svg")])
    assert status == 2 and words in stderr and "Traceback" not in stderr


# --- a corpus run ----------------------------------------------------------------------------------------------------


def _rows(texts: list[tuple[str, str | None]]) -> pd.DataFrame:
    """Corpus rows as a source gives them (object columns: a missing second segment stays None, not NaN)."""
    column = lambda values: pd.Series(values, dtype=object)  # noqa: E731
    return pd.DataFrame(
        {"example_id": range(len(texts)), "text": column([t for t, _ in texts]),
         "text_pair": column([p for _, p in texts]), "label": column([None] * len(texts))}
    )  # fmt: skip


def test_corpus_rows_keep_special_strings_as_text_and_skip_bad_texts_with_the_reason(tiny_config):
    from attention import load_pair
    from attention.corpus.batch import encode_rows

    pair = load_pair(tiny_config)
    good = [(text, p) for text, p, _ in WORDPIECE_TOKENS]
    bad = [(text, p) for text, p, _ in REFUSED_TEXTS]
    encoded, skipped = encode_rows(pair, _rows(good + bad))
    assert [e.facts.tokens for e in encoded] == [tokens for _, _, tokens in WORDPIECE_TOKENS]
    reasons = {row["example_id"] - len(good): row["reason"] for row in skipped}
    assert sorted(reasons) == list(range(len(bad)))
    for index, (_, _, words) in enumerate(REFUSED_TEXTS):
        assert words in reasons[index], (index, reasons[index])


def test_corpus_rows_over_the_limit_are_skipped_before_tokenising(tiny_config):
    from attention import load_pair
    from attention.corpus.batch import encode_rows

    pair = load_pair(tiny_config)
    never = NeverCalled()
    pair = replace(pair, pretrained=replace(pair.pretrained, tokenizer=never),
                   finetuned=replace(pair.finetuned, tokenizer=never))  # fmt: skip
    started = time.perf_counter()
    encoded, skipped = encode_rows(pair, _rows([(FIVE_MB, None), (MILLION_WORDS, None), ("x" * 4000, "y" * 1001)]))
    assert time.perf_counter() - started < 0.5
    assert encoded == []
    assert [row["reason"] for row in skipped] == [
        "The text is 5,000,000 characters long; at most 5,000 are analysed.",
        "The text is 4,999,999 characters long; at most 5,000 are analysed.",
        "The text and its second segment are 5,001 characters long; at most 5,000 are analysed.",
    ]
