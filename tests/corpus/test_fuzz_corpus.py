"""A fuzz suite of the corpus tool: data files whose values must be kept exactly as given or refused row by row,
command lines that must end in one readable line (exit status 2, no traceback), and the corpus page's example grid
fed malformed requests. Each case asserts the exact outcome: the words of the message, the row listed as skipped
with its reason, what the page shows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.cli.main import main
from app.corpus.catalog import CATALOG_KEY
from app.corpus.grid import MAX_GRID_ROWS, GridRequestError, check_view, grid_rows, view_table
from attention.corpus import corpus_source, read_table, run_corpus
from attention.corpus.query import sql
from attention.corpus.source import CorpusSource, load_pair_config
from attention.errors import AttentionFlowsError
from attention.settings import Settings

WORDS = ["a", "fine", "moving", "film", "dull", "plot", "great", "acting", "bad", "music"]
NOT_TEXT = "not a string."
CLASSES = "(classes: bad, good; or an index 0–1)."


@pytest.fixture(scope="module")
def tiny_pair(tiny_config):
    from attention import load_pair

    return load_pair(tiny_config)


def _texts(count: int) -> list[str]:
    return [" ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(3 + i % 4)) for i in range(count)]


def _run(pair, data: Path, folder: Path, **columns) -> Path:
    run_corpus(pair, corpus_source(data, config=pair.config, **columns), folder, chunk_size=8, progress=False)
    return folder


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``attention-flows corpus ARGV`` in this process: exit status, stdout, stderr."""
    try:
        status = main(["corpus", *argv])
    except SystemExit as stop:  # argparse exits itself
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def _one_error_line(err: str) -> str:
    """The single line an error leaves on stderr (never a traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attention-flows: error: "), err
    return lines[0]


# --- values kept exactly as given --------------------------------------------------------------------------------

# CSV texts pandas would take for missing values or numbers; each must be run as the text it is
CSV_TEXTS = ["NA", "NULL", "null", "NaN", "N/A", "None", "nan", "-1.#IND", "#N/A", "123", "1e3", "0012", "TRUE"]


@pytest.fixture(scope="module")
def csv_corpus(tiny_pair, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("csv")
    data = folder / "texts.csv"
    data.write_text("text,label\n" + "".join(f"{text},{i % 2}\n" for i, text in enumerate(CSV_TEXTS)))
    return _run(tiny_pair, data, folder / "corpus", label_col="label")


@pytest.mark.parametrize("example_id", range(len(CSV_TEXTS)), ids=CSV_TEXTS)
def test_csv_texts_that_look_missing_or_numeric_are_run_as_written(csv_corpus, example_id):
    examples = read_table(csv_corpus, "examples").set_index("example_id")
    assert read_table(csv_corpus, "skipped").empty
    assert examples.loc[example_id, "text"] == CSV_TEXTS[example_id]
    assert examples.loc[example_id, "label"] == str(example_id % 2)  # "1", never "1.0"
    assert examples.loc[example_id, "gold"] == ["bad", "good"][example_id % 2]


# (JSON line, the reason its row is skipped with; None: run as given)
JSONL_ROWS = [
    ({"text": "a fine film", "label": 1}, None),
    ({"text": "a dull plot", "label": "bad"}, None),
    ({"text": [1, 2, 3], "label": 1}, f"The text is a list ([1, 2, 3]), {NOT_TEXT}"),
    ({"text": {"a": 1}}, f'The text is an object ({{"a": 1}}), {NOT_TEXT}'),
    ({"text": True}, f"The text is a boolean (true), {NOT_TEXT}"),
    ({"text": 123}, f"The text is a number (123), {NOT_TEXT}"),
    ({"text": 1.5}, f"The text is a number (1.5), {NOT_TEXT}"),
    ({"text": None}, "The text is missing (null or no such key)."),
    ({"review": "no text key"}, "The text is missing (null or no such key)."),
    ({"text": "a film", "pair": ["x"]}, f'The second sentence is a list (["x"]), {NOT_TEXT}'),
    ({"text": "a film", "pair": 7}, f"The second sentence is a number (7), {NOT_TEXT}"),
    ({"text": "a film", "label": False}, "The label is a boolean (false), not a class name or index."),
    ({"text": "a film", "label": [1]}, "The label is a list ([1]), not a class name or index."),
    ({"text": "a film", "pair": "", "label": None}, None),
]


@pytest.fixture(scope="module")
def jsonl_corpus(tiny_pair, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("jsonl")
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row, _ in JSONL_ROWS))
    return _run(tiny_pair, data, folder / "corpus", pair_col="pair", label_col="label")


@pytest.mark.parametrize("example_id", range(len(JSONL_ROWS)), ids=[json.dumps(r) for r, _ in JSONL_ROWS])
def test_a_jsonl_cell_that_is_not_text_is_skipped_with_why(jsonl_corpus, example_id):
    """A cell is never converted: a text that is not a string skips its row, with why."""
    row, reason = JSONL_ROWS[example_id]
    skipped = read_table(jsonl_corpus, "skipped").set_index("example_id")["reason"]
    examples = read_table(jsonl_corpus, "examples").set_index("example_id")
    if reason is None:
        assert example_id not in skipped.index and examples.loc[example_id, "text"] == row["text"]
        assert examples.loc[example_id, "text_pair"] is None
    else:
        assert skipped[example_id] == reason
        assert example_id not in examples.index  # never run on a converted value


# (label as the file gives it, as the examples table keeps it, the class it names: None when it names none)
LABELS = [
    (1, "1", "good"), (0, "0", "bad"), ("good", "good", "good"), ("1", "1", "good"), (1.0, "1.0", "good"),
    ("great", "great", None), (5, "5", None), (-1, "-1", None), (1.5, "1.5", None), ("5", "5", None),
    ("Good", "Good", None), (" 1", " 1", "good"), ("", None, None), (None, None, None),
]  # fmt: skip


@pytest.fixture(scope="module")
def labelled_corpus(tiny_config, tmp_path_factory) -> tuple[Path, str]:
    """A JSONL corpus of the labels above, run from the command line: its folder and the run's stderr."""
    folder = tmp_path_factory.mktemp("labels")
    data = folder / "labels.jsonl"
    data.write_text("".join(json.dumps({"text": text, "label": label}) + "\n"
                            for text, (label, _, _) in zip(_texts(len(LABELS)), LABELS, strict=True)))  # fmt: skip
    status = main(["corpus", "run", "--config", str(tiny_config), "--data", str(data), "--label-col", "label",
                   "--out", str(folder / "corpus")])  # fmt: skip
    assert status == 0
    return folder / "corpus"


@pytest.mark.parametrize("example_id", range(len(LABELS)), ids=[repr(label) for label, _, _ in LABELS])
def test_a_label_is_kept_as_given_and_one_naming_no_class_has_no_gold(labelled_corpus, example_id):
    _, kept, gold = LABELS[example_id]
    example = read_table(labelled_corpus, "examples").set_index("example_id").loc[example_id]
    assert (example["label"], example["gold"]) == (kept, gold)
    assert example["correct_finetuned"] is None if gold is None else example["correct_finetuned"] in (True, False)


def test_labels_that_name_no_class_are_listed_before_the_run_and_by_a_query(tiny_config, tmp_path, capsys):
    data = tmp_path / "labels.csv"
    data.write_text("text,label\na fine film,1\na dull plot,great\nmusic,good\nacting,1.5\nplot,great\n[1],x\n")
    status, out, err = _cli(capsys, "run", "--config", str(tiny_config), "--data", str(data), "--label-col", "label",
                            "--out", str(tmp_path / "corpus"))  # fmt: skip
    assert status == 0, err
    assert err.splitlines()[1:5] == [
        f"warning: 4 of 6 rows have a label that names no class of the fine-tuned model {CLASSES[:-1]}; they run "
        "without a gold label:",
        "  'great': 2 rows (1, 4)",
        "  '1.5': 1 row (3)",
        "  'x': 1 row (5)",
    ]
    assert "done: 6 examples (0 skipped), " in out and "Traceback" not in err
    status, out, _ = _cli(capsys, "query", str(tmp_path / "corpus"), "labels")
    assert status == 0
    assert [line.split() for line in out.splitlines()] == [
        ["label", "gold", "examples"], ["great", "None", "2"], ["1", "good", "1"], ["1.5", "None", "1"],
        ["good", "good", "1"], ["x", "None", "1"],
    ]  # fmt: skip


def test_parquet_lists_binary_and_numbers_are_not_read_as_text(tiny_pair, tmp_path):
    table = pa.table(
        {
            "text": pa.array(["a fine film", "a dull plot", None, "acting"]),
            "words": pa.array([["a"], ["b", "c"], [], None], pa.list_(pa.string())),
            "blob": pa.array([b"\xff\x00", b"film", None, b""], pa.binary()),
            "count": pa.array([123, 4, 5, 6], pa.int64()),
            "label": pa.array([1, 0, None, 7], pa.int64()),
        }
    )
    data = tmp_path / "rows.parquet"
    pq.write_table(table, data)
    source = corpus_source(data, config=tiny_pair.config, label_col="label")
    assert source.frame["label"].tolist() == ["1", "0", None, "7"]  # integers as their digits, null as no label
    folder = _run(tiny_pair, data, tmp_path / "corpus", label_col="label")
    assert read_table(folder, "skipped").set_index("example_id")["reason"].to_dict() == {
        2: "The text is missing (null or no such key)."
    }
    examples = read_table(folder, "examples")
    assert examples["label"].tolist() == ["1", "0", "7"] and examples["gold"].tolist() == ["good", "bad", None]
    for column, cells in (
        ("words", ['a list (["a"])', 'a list (["b", "c"])']),
        ("blob", ["binary data (2 bytes)", "binary data (4 bytes)"]),
        ("count", ["a number (123)", "a number (4)"]),
    ):
        other = _run(tiny_pair, data, tmp_path / column, text_col=column, limit=2)
        assert read_table(other, "skipped")["reason"].tolist() == [f"The text is {c}, {NOT_TEXT}" for c in cells]
        assert read_table(other, "examples").empty


def test_corpus_run_warns_of_the_rows_it_will_skip_before_running(tiny_config, tmp_path, capsys):
    data = tmp_path / "cells.jsonl"
    rows = [{"text": "a fine film"}, {"text": 7}, *[{"text": [i]} for i in range(6)], {"text": "music"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    status, out, err = _cli(capsys, "run", "--config", str(tiny_config), "--data", str(data), "--out",
                            str(tmp_path / "corpus"))  # fmt: skip
    assert status == 0, err
    folder = tmp_path / "corpus"
    assert err.splitlines()[1:8] == [
        "warning: 7 of 9 rows will be skipped, not converted:",
        "  row 1: The text is a number (7), not a string.",
        *[f"  row {i + 2}: The text is a list ([{i}]), not a string." for i in range(4)],
        f"  … and 2 more: corpus query {folder} skipped",
    ]
    assert f"done: 2 examples (7 skipped: corpus query {folder} skipped says why)" in out
    assert "Traceback" not in err


# --- one readable line, exit status 2 ----------------------------------------------------------------------------

BAD_JSONL = [
    ("[1, 2, 3]\n", "Line 1 of {path} is a list ([1, 2, 3]), not a JSON object."),
    ("42\n", "Line 1 of {path} is a number (42), not a JSON object."),
    ('{"text": "fine"}\n"just text"\n', 'Line 2 of {path} is a string ("just text"), not a JSON object.'),
    ("null\n", "Line 1 of {path} is null, not a JSON object."),
    ("true\n", "Line 1 of {path} is a boolean (true), not a JSON object."),
    ('{"text": "fine"\n', "Line 1 of {path} is not valid JSON (Expecting ',' delimiter)."),
    ("[" * 100_000 + "\n", "Line 1 of {path} is nested too deeply to read."),
]


@pytest.mark.parametrize(("content", "message"), BAD_JSONL, ids=[c[:12] for c, _ in BAD_JSONL])
def test_a_jsonl_of_non_objects_is_one_line_and_exit_2(tiny_config, tmp_path, capsys, content, message):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    status, _, err = _cli(capsys, "run", "--config", str(tiny_config), "--data", str(data), "--out",
                          str(tmp_path / "corpus"))  # fmt: skip
    assert status == 2
    expected = message.format(path=data) + ' Write one JSON object per line, e.g. {"text": "a fine film", "label": 1}.'
    assert _one_error_line(err) == "attention-flows: error: " + expected
    assert not (tmp_path / "corpus").exists()  # refused before any work


BAD_FILES = [
    ("rows.jsonl", b"\xff\xfe{}\n", "{path} could not be read as jsonl: 'utf-8' codec can't decode byte 0xff in "
     "position 0: invalid start byte. Check the file's format."),
    ("rows.parquet", b"not parquet", "{path} could not be read as parquet: Could not open Parquet input source "),
    ("rows.txt", b"text\nfilm\n", "{path} is a .txt. Use one of .csv, .jsonl, .parquet."),
    ("rows.csv", b'text\n"unclosed\n', "{path} could not be read as csv: Error tokenizing data. C error: EOF inside "
     "string starting at row 1. Check the file's format."),
    ("rows.csv", b"text,label\nb,0\na,1,2\n", "{path} could not be read as csv: Error tokenizing data. C error: "
     "Expected 2 fields in line 3, saw 3. Check the file's format."),
    ("rows.csv", b"text,label\na,1,2\n", "A row of {path} has more fields than its header. Quote the texts that hold "
     'a comma ("a fine, moving film"), or fix the header.'),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[f"{n}-{c[:10]}" for n, c, _ in BAD_FILES])
def test_an_unreadable_data_file_is_one_line_and_exit_2(tiny_config, tmp_path, capsys, name, content, message):
    data = tmp_path / name
    data.write_bytes(content)
    status, _, err = _cli(capsys, "run", "--config", str(tiny_config), "--data", str(data), "--out",
                          str(tmp_path / "corpus"))  # fmt: skip
    assert status == 2
    assert _one_error_line(err).startswith("attention-flows: error: " + message.format(path=data))


@pytest.mark.parametrize("header", ["text,label\n", "text\n"])
def test_a_data_file_without_rows_is_refused(tiny_config, tmp_path, capsys, header):
    data = tmp_path / "header.csv"
    data.write_text(header)
    status, _, err = _cli(capsys, "run", "--config", str(tiny_config), "--data", str(data), "--out",
                          str(tmp_path / "corpus"))  # fmt: skip
    assert status == 2
    assert _one_error_line(err) == (f"attention-flows: error: {data} has no rows. Give a data file with at least one "
                                    "row under its header.")  # fmt: skip


@pytest.fixture(scope="module")
def empty_corpora(tiny_pair, tmp_path_factory) -> dict[str, Path]:
    """A corpus made from a header-only file (as runs before this suite allowed) and one whose every row was
    skipped."""
    root = tmp_path_factory.mktemp("empty")
    header_only = pd.DataFrame({"example_id": [], "text": [], "text_pair": [], "label": []}, dtype=object)
    run_corpus(tiny_pair, CorpusSource("header only", header_only, "0"), root / "none", progress=False)
    data = root / "blank.csv"
    data.write_text('text\n""\n"   "\n')
    return {"none": root / "none", "skipped": _run(tiny_pair, data, root / "skipped")}


QUESTIONS = [["heads"], ["layers"], ["word", "film"], ["words"], ["examples"], ["examples", "wrong"]]


@pytest.mark.parametrize("question", QUESTIONS, ids=" ".join)
@pytest.mark.parametrize(
    ("corpus", "why"),
    [
        ("none", "its data has no rows). Run corpus run on a data file with rows, into a new --out folder."),
        ("skipped", "all 2 of its rows were skipped). See why: corpus query {folder} skipped"),
    ],
)
def test_querying_a_corpus_without_examples_says_why(empty_corpora, capsys, question, corpus, why):
    folder = empty_corpora[corpus]
    status, _, err = _cli(capsys, "query", str(folder), *question)
    assert status == 2
    assert _one_error_line(err) == (f"attention-flows: error: The corpus in {folder} has no examples to ask about ("
                                    + why.format(folder=folder))  # fmt: skip


# --- the skipped view and extra arguments ------------------------------------------------------------------------


def test_the_skipped_view_exists_when_nothing_was_skipped(csv_corpus, empty_corpora, capsys):
    status, out, err = _cli(capsys, "query", str(csv_corpus), "skipped")
    assert (status, out, err) == (0, "nothing skipped: every row of the data was run\n", "")
    assert sql(csv_corpus, "select count(*) as n from skipped")["n"].tolist() == [0]
    status, out, _ = _cli(capsys, "query", str(empty_corpora["skipped"]), "skipped")
    assert status == 0
    assert out.splitlines() == [" example_id             reason", "          0 The text is empty.",
                                "          1 The text is empty."]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["heads", "extra"], "'heads' takes no argument (got 'extra'). Choose the measure with --metric"),
        (["layers", "cosine"], "'layers' takes no argument (got 'cosine'). Choose the measure with --metric"),
        (["words", "relevance"], "'words' takes no argument (got 'relevance'). Choose the measure with --measure"),
        (["skipped", "all"], "'skipped' takes no argument (got 'all'). Drop it"),
        (["word"], "'word' needs an argument."),
        (["examples", "bogus"], "Unknown kind of examples 'bogus'. Use one of: most_changed, wrong, disagree, head."),
        (
            ["heads", "--metric", "bogus"],
            "Unknown metric 'bogus'. Use one of: js_divergence, cosine, tv_distance, contribution_share.",
        ),
        (["bogus"], "argument question: invalid choice: 'bogus'"),
    ],
)
def test_a_query_with_a_wrong_argument_is_refused(csv_corpus, capsys, argv, message):
    status, out, err = _cli(capsys, "query", str(csv_corpus), *argv)
    assert status == 2 and out == ""
    assert message in _one_error_line(err)


# --- a pair by its config's name --------------------------------------------------------------------------------


def test_corpus_run_takes_a_shipped_pair_by_its_name(tmp_path, capsys):
    assert load_pair_config("minilm-sentiment").source_path.stem == "default"
    assert load_pair_config("minilm-sentiment-seed7").source_path.stem == "seed7"
    missing = tmp_path / "missing.csv"
    status, _, err = _cli(capsys, "run", "--config", "minilm-sentiment", "--data", str(missing))
    assert status == 2  # the config is found; the data file is what is missing
    assert _one_error_line(err) == f"attention-flows: error: The data file {missing} does not exist. Check --data " \
                                   "(a .csv, .jsonl or .parquet file)."  # fmt: skip
    status, _, err = _cli(capsys, "run", "--config", "no-such-pair", "--data", str(missing))
    assert status == 2 and "No config named 'no-such-pair'" in _one_error_line(err)


def _bare_page(monkeypatch, tmp_path: Path, names: dict[str, str], default: str, files: dict | None = None):
    """The corpus page alone on a Flask server (no sign-in, no dashboard), over an empty corpora folder. (Dash takes
    the last app made as ``dash.get_app()``: the one before is restored after the test.)"""
    from dash import _get_app
    from flask import Flask

    monkeypatch.setattr(_get_app, "APP", _get_app.APP)

    from app.corpus.page import mount_corpus_page
    from app.team.site import assets_dir

    server = Flask(__name__)
    mount_corpus_page(server, pair_config_names=names, default_models=default, root=tmp_path,
                      assets_folder=str(assets_dir()), pair_config_files=files)  # fmt: skip
    return server.test_client()


def _layout(client, search: str = "") -> str:
    return client.get("/corpus/_dash-layout", headers={"Referer": f"http://x/corpus/{search}"}).get_data(as_text=True)


RUN = ["attention-flows", "corpus", "run"]


def _hint(page: str) -> list[str]:
    """The command of the page's "Compute one with: …" hint, as words."""

    def strings(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict | list):
            for child in node.values() if isinstance(node, dict) else node:
                yield from strings(child)

    (hint,) = [text for text in strings(json.loads(page)) if "Compute one with: " in text]
    return hint.split("Compute one with: ")[1].split()


@pytest.mark.parametrize(
    ("search", "pair", "command"),
    [
        ("", "minilm-sentiment", ["attention-flows", "corpus", "run"]),
        ("?models=default", "minilm-sentiment", ["attention-flows", "corpus", "run"]),
        ("?models=minilm-sentiment", "minilm-sentiment", ["attention-flows", "corpus", "run"]),
        ("?models=seed7", "minilm-sentiment-seed7", [*RUN, "--config", "seed7"]),
        ("?models=minilm-sentiment-seed7", "minilm-sentiment-seed7", [*RUN, "--config", "seed7"]),
    ],
)
def test_the_page_takes_a_pair_by_its_config_file_and_hints_a_command_that_works(
    monkeypatch, tmp_path, search, pair, command
):
    names = {"minilm-sentiment": "minilm-sentiment", "minilm-sentiment-seed7": "minilm-sentiment-seed7"}
    client = _bare_page(monkeypatch, tmp_path, names, "minilm-sentiment")
    page = _layout(client, search)
    assert "There is no model pair" not in page
    assert f"Pair '{pair}' has no corpus yet." in page
    assert _hint(page) == command
    config = command[command.index("--config") + 1] if "--config" in command else "default"
    assert load_pair_config(config).name == pair  # the hint's --config names this pair
    assert "There is no model pair called 'seed8'" in _layout(client, "?models=seed8")


def test_the_hint_names_a_config_outside_configs_by_its_path(monkeypatch, tiny_config, tmp_path):
    page = _layout(_bare_page(monkeypatch, tmp_path, {"tiny": "tiny"}, "tiny", files={"tiny": tiny_config}))
    assert _hint(page) == ["attention-flows", "corpus", "run", "--config", str(tiny_config)]
    assert load_pair_config(_hint(page)[-1]).name == "tiny"


# --- the corpus page's example grid ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpora(tiny_pair, tmp_path_factory) -> Path:
    """A corpora folder with one single-segment labelled corpus of the tiny pair (20 rows)."""
    root = tmp_path_factory.mktemp("corpora")
    data = root.parent / "reviews.csv"
    pd.DataFrame({"text": _texts(20), "label": [i % 2 for i in range(20)]}).to_csv(data, index=False)
    _run(tiny_pair, data, root / "tiny-reviews", label_col="label")
    return root


@pytest.fixture(scope="module")
def page_app(tiny_config, corpora):
    from app.team.site import create_app

    return create_app(tiny_config, settings=Settings(corpora=corpora))


GRID = {"type": "corpus-examples", "corpus": "tiny-reviews", "view": "all"}
CONTEXT = {"models": "tiny", "options": "tau=0.1"}


def _rows(page_app, request, context=CONTEXT, grid=GRID) -> dict:
    return grid_rows(page_app.server.extensions[CATALOG_KEY], request, context, grid, "tiny")


def test_a_single_segment_corpus_opens_its_examples_as_single_sentences(page_app, corpora):
    examples = read_table(corpora / "tiny-reviews", "examples")
    assert all(pair is None for pair in examples["text_pair"])  # a null stays None, never NaN
    assert all(pair is None for pair in view_table(corpora / "tiny-reviews", "all")["text_pair"])
    links = [row["open"] for row in _rows(page_app, {"startRow": 0, "endRow": 20})["rowData"]]
    assert len(links) == 20 and all(link.startswith("/?text=") for link in links)
    assert not [link for link in links if "pair=" in link]


FILTER = {"filterType": "text", "type": "contains", "filter": "film"}
# (request, the words of the message)
BAD_REQUESTS = [
    ("x", "The example table's request is not an object."),
    ([0, 100], "The example table's request is not an object."),
    ({"startRow": "a", "endRow": 100}, "asked for rows with startRow 'a', not a whole number."),
    ({"startRow": 0, "endRow": None}, "asked for rows with endRow None, not a whole number."),
    ({"startRow": 0, "endRow": 1e9}, "asked for rows with endRow 1000000000.0, not a whole number."),
    ({"startRow": 0.5, "endRow": 100}, "asked for rows with startRow 0.5, not a whole number."),
    ({"startRow": True, "endRow": 100}, "asked for rows with startRow True, not a whole number."),
    ({"startRow": -5, "endRow": 3}, "asked for rows -5 to 3. The first row must be from 0 and at most the last."),
    ({"startRow": 9, "endRow": 3}, "asked for rows 9 to 3. The first row must be from 0 and at most the last."),
    ({"startRow": 0, "endRow": 10**9}, "asked for 1,000,000,000 rows at once; at most 1,000 are sent."),
    ({"startRow": 5, "endRow": 5 + MAX_GRID_ROWS + 1}, "asked for 1,001 rows at once; at most 1,000 are sent."),
    ({"sortModel": "mean_change"}, "The example table's sort order is not a list."),
    ({"sortModel": [{"colId": "open", "sort": "asc"}]}, "cannot be sorted by 'open'. Sort by one of its columns."),
    ({"sortModel": [{"colId": "nope", "sort": "asc"}]}, "cannot be sorted by 'nope'."),
    ({"sortModel": ["mean_change"]}, "cannot be sorted by None."),
    ({"sortModel": [{"colId": "head_change", "sort": "asc"}]}, "cannot be sorted by 'head_change'."),
    ({"sortModel": [{"colId": "text", "sort": "up"}]}, "The sort of column 'text' is 'up'. Use 'asc' or 'desc'."),
    ({"filterModel": [FILTER]}, "The example table's filters are not an object of columns."),
    ({"filterModel": {"nope": FILTER}}, "The example table has no column 'nope' to filter."),
    ({"filterModel": {"open": FILTER}}, "The example table has no column 'open' to filter."),
    ({"filterModel": {"text": "film"}}, "The filter of column 'text' is not a text filter."),
    ({"filterModel": {"n_tokens": FILTER}}, "The filter of column 'n_tokens' is not a number filter."),
    ({"filterModel": {"text": FILTER | {"type": "regex"}}},
     "The filter of column 'text' asks for 'regex'. Use one of: contains, notContains, equals, startsWith."),
    ({"filterModel": {"text": FILTER | {"filter": 5}}}, "The filter of column 'text' is 5, not text."),
    ({"filterModel": {"text": FILTER | {"filter": "x" * 1001}}},
     "The filter of column 'text' is 1,001 characters long. Type a text of at most 1,000 characters."),
    ({"filterModel": {"n_tokens": {"filterType": "number", "type": "equals", "filter": "7"}}},
     "The filter of column 'n_tokens' is '7', not a number. Type a number."),
    ({"filterModel": {"n_tokens": {"filterType": "number", "type": "equals", "filter": float("nan")}}},
     "The filter of column 'n_tokens' is nan, not a number."),
    ({"filterModel": {"n_tokens": {"filterType": "number", "type": "between", "filter": 3}}},
     "The filter of column 'n_tokens' asks for 'between'. Use one of: equals, greaterThan, lessThan."),
    ({"filterModel": {"text": {"filterType": "text", "operator": "XOR", "conditions": [FILTER, FILTER]}}},
     "The filter of column 'text' must join one or two conditions with AND or OR."),
    ({"filterModel": {"text": {"filterType": "text", "operator": "OR", "conditions": [FILTER] * 3}}},
     "The filter of column 'text' must join one or two conditions with AND or OR."),
    ({"filterModel": {"text": {"filterType": "text", "operator": "OR", "conditions": [FILTER, "x"]}}},
     "The filter of column 'text' is not a text filter."),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "message"), BAD_REQUESTS, ids=[str(r)[:40] for r, _ in BAD_REQUESTS])
def test_a_malformed_grid_request_is_refused_with_what_is_wrong(page_app, request_, message):
    with pytest.raises(GridRequestError) as refused:
        _rows(page_app, request_)
    assert message in str(refused.value)


BAD_IDS = [
    ({"context": None}, "The page's pair and options are missing or unknown to this server."),
    ({"context": {"models": "nope", "options": ""}}, "The page's pair and options are missing or unknown"),
    ({"context": {"models": "tiny", "options": 5}}, "The page's pair and options are missing or unknown"),
    ({"grid": "corpus-examples"}, "The example table's id is not an object."),
    ({"grid": GRID | {"corpus": 5}}, "The page names no corpus (5). Pick a corpus from the list."),
    ({"grid": GRID | {"corpus": "../etc"}}, "Pair 'tiny' has no corpus called '../etc'. Its corpora: tiny-reviews."),
    ({"grid": GRID | {"view": "head-99-99"}},
     "no view 'head-99-99'. Views: all, wrong, head-L-H (layer L from 1 to 2, head H from 0 to 1)."),
    ({"grid": GRID | {"view": "head-0-0"}}, "The example table has no view 'head-0-0'."),
    ({"grid": GRID | {"view": "head-1-2"}}, "The example table has no view 'head-1-2'."),
    ({"grid": GRID | {"view": "head-x-y"}}, "The example table has no view 'head-x-y'."),
    ({"grid": GRID | {"view": "head-1-1-1"}}, "The example table has no view 'head-1-1-1'."),
    ({"grid": GRID | {"view": None}}, "The example table has no view None."),
    ({"grid": GRID | {"view": "everything"}}, "The example table has no view 'everything'."),
]  # fmt: skip


@pytest.mark.parametrize(("parts", "message"), BAD_IDS, ids=[str(p)[:40] for p, _ in BAD_IDS])
def test_a_grid_request_for_an_unknown_pair_corpus_or_view_says_so(page_app, parts, message):
    with pytest.raises(AttentionFlowsError) as refused:
        _rows(page_app, {"startRow": 0, "endRow": 10}, parts.get("context", CONTEXT), parts.get("grid", GRID))
    assert message in str(refused.value)


def test_well_formed_grid_requests_still_work(page_app, corpora):
    full = _rows(page_app, {"startRow": 0, "endRow": MAX_GRID_ROWS})
    assert full["rowCount"] == 20 and len(full["rowData"]) == 20
    either = {"filterType": "text", "operator": "OR", "conditions": [FILTER, FILTER | {"filter": "dull"}]}
    both = either | {"operator": "AND"}
    texts = view_table(corpora / "tiny-reviews", "all")["text"]
    for spec, expected in ((either, texts.str.contains("film") | texts.str.contains("dull")),
                           (both, texts.str.contains("film") & texts.str.contains("dull"))):  # fmt: skip
        assert _rows(page_app, {"startRow": 0, "endRow": 100, "filterModel": {"text": spec}})["rowCount"] == int(
            expected.sum()
        )
    head = _rows(page_app, {"startRow": 0, "endRow": 5}, grid=GRID | {"view": "head-2-1"})
    assert len(head["rowData"]) == 5 and "head_change" in head["rowData"][0]
    assert check_view("head-02-1", 2, 2) == "head-2-1"


def _grid_over_http(client, request, grid=GRID) -> dict:
    from app.testing.dash_http import dependencies

    corpus = "/corpus"
    spec = next(s for s in dependencies(_Prefixed(client, corpus)) if "getRowsResponse" in s["output"])
    changed = json.dumps(grid, separators=(",", ":"), sort_keys=True) + ".getRowsRequest"
    body = {
        "output": spec["output"],
        "outputs": {"id": grid, "property": "getRowsResponse"},
        "inputs": [{"id": grid, "property": "getRowsRequest", "value": request}],
        "state": [{"id": "corpus-context", "property": "data", "value": CONTEXT},
                  {"id": grid, "property": "id", "value": grid}],
        "changedPropIds": [changed],
    }  # fmt: skip
    response = client.post(f"{corpus}/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()


class _Prefixed:
    def __init__(self, client, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def get(self, path: str, **kwargs):
        return self.client.get(self.prefix + path, **kwargs)


@pytest.mark.parametrize(
    ("request_", "grid", "message"),
    [
        ({"startRow": 0, "endRow": 1e9}, GRID, "endRow 1000000000.0, not a whole number"),
        ({"startRow": "a", "endRow": 100}, GRID, "startRow 'a', not a whole number"),
        ("x", GRID, "The example table's request is not an object."),
        ({"sortModel": "x"}, GRID, "The example table's sort order is not a list."),
        ({"filterModel": [1]}, GRID, "The example table's filters are not an object of columns."),
        ({"startRow": 0, "endRow": 10}, GRID | {"view": "head-99-99"}, "The example table has no view 'head-99-99'."),
        ({"startRow": 0, "endRow": 10}, GRID | {"view": "head-x-y"}, "The example table has no view 'head-x-y'."),
        ({"startRow": 0, "endRow": 10}, GRID | {"corpus": 5}, "The page names no corpus (5)."),
    ],
)
def test_a_malformed_grid_request_over_http_shows_its_message_not_a_generic_one(page_app, request_, grid, message):
    answer = _grid_over_http(page_app.server.test_client(), request_, grid)
    banner = answer["sideUpdate"]["corpus-error"]
    assert message in banner["children"] and banner["className"] == "error-banner"
    assert "Something went wrong" not in json.dumps(answer)
    (response,) = answer["response"].values()
    assert response["getRowsResponse"] == {"rowData": [], "rowCount": 0}  # the grid stops waiting


def test_a_head_outside_the_corpus_gets_a_message_in_the_example_card(page_app):
    from app.testing.dash_http import dependencies, request_body

    client = page_app.server.test_client()
    spec = next(s for s in dependencies(_Prefixed(client, "/corpus")) if "corpus-grid.children" in s["output"])
    values = {"corpus-select.value": "tiny-reviews", "corpus-examples-kind.value": "head",
              "corpus-heads.clickData": {"points": [{"x": 99, "y": 99}]}, "corpus-context.data": CONTEXT}  # fmt: skip
    response = client.post("/corpus/_dash-update-component",
                           json=request_body(spec, values, "corpus-heads.clickData"))  # fmt: skip
    assert response.status_code == 200
    shown = json.dumps(response.get_json()["response"]["corpus-grid"]["children"])
    assert "The example table has no view 'head-99-99'." in shown


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("file", "is a file, not a folder. Give a folder for the corpus tables."),
        ("busy", "already holds files that are not a corpus. Give an empty or a new folder."),
        ("/proc/corpus", "/proc is not writable"),
    ],
)
def test_an_output_folder_a_run_cannot_use_is_refused_before_the_models_load(
    tiny_config, tmp_path, capsys, monkeypatch, out, message
):
    import attention

    data = tmp_path / "reviews.csv"
    data.write_text("text\na fine film\n")
    (tmp_path / "file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    monkeypatch.setattr(attention, "load_pair", lambda *a, **k: pytest.fail("the models were loaded"))
    target = out if out.startswith("/") else str(tmp_path / out)
    status, _, err = _cli(capsys, "run", "--config", str(tiny_config), "--data", str(data), "--out", target)
    assert status == 2 and message in _one_error_line(err)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
