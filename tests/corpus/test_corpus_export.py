"""Corpus figures exported as the single-example figures are (docs/corpus.md, "Exporting corpus figures"): every
figure of the corpus page at every preset meets the figure standard, PNG and PDF have the preset's canvas, file
names say figure, preset and format, a sidecar makes the same figure again from the corpus folder (and only from
that corpus), and the errors say what to do. On a small corpus of the tiny pair, as tests/corpus/test_corpus_page.py
builds one; the standard also on 60 held-out sentences of the default pair (6 layers × 12 heads)."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from app.cli.main import build_parser, main
from app.core.options import DPI, FORMATS, PRESETS, ExportOptions
from app.export.corpus import CorpusFigureRequest, corpus_export_bytes, corpus_figure, corpus_file_stem
from app.export.corpus_figures import CORPUS_FIGURES, CorpusExportError, figure_options
from app.export.corpus_sidecar import read_corpus_sidecar
from app.export.sidecar import SidecarError, read_sidecar
from app.testing.figure_standard import check_svg, normalised_svg
from attention.corpus.source import CorpusError
from tests.servers import ARTIFACTS

WORD = "film"
# every figure with each kind of option it is drawn with: the head grid and the layer view by an unsigned and the
# signed change measure
DRAWN = [
    ("heads", {"metric": "js_divergence"}),
    ("heads", {"metric": "contribution_share"}),
    ("layers", {"metric": "js_divergence"}),
    ("layers", {"metric": "contribution_share"}),
    ("word", {"word": WORD}),
    ("head-map", {}),
]


@pytest.fixture(scope="module")
def corpora(tiny_config, tmp_path_factory) -> Path:
    """A corpora folder with one corpus of the tiny pair (30 labelled rows, 4 chunks)."""
    import pandas as pd

    from attention import load_pair
    from attention.corpus import corpus_source, run_corpus

    root = tmp_path_factory.mktemp("corpora")
    words = ["a", "fine", "moving", "film", "dull", "plot", "great", "acting", "bad", "music"]
    texts = [" ".join(words[(i * 3 + k) % len(words)] for k in range(4 + i % 5)) for i in range(30)]
    data = root.parent / "reviews.csv"
    pd.DataFrame({"text": texts, "label": [i % 2 for i in range(30)]}).to_csv(data, index=False)
    pair = load_pair(tiny_config)
    run_corpus(pair, corpus_source(data, config=pair.config, label_col="label"), root / "tiny-reviews", chunk_size=8,
               progress=False)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def corpus(corpora) -> Path:
    return corpora / "tiny-reviews"


def _request(folder: Path, figure: str, options: dict, fmt: str = "svg", preset: str = "double", out=None):
    return CorpusFigureRequest(folder, figure, options, ExportOptions.create(fmt, preset=preset), out)


def _standard(folder: Path, tab, tag: str) -> dict:
    """Each figure × preset's broken rules of the figure standard (none: an empty dict); broken SVGs are kept in
    test-artifacts/."""
    broken = {}
    for figure, options in DRAWN:
        for preset in PRESETS:
            request = _request(folder, figure, options, preset=preset)
            svg = corpus_export_bytes(request)[0]
            found = check_svg(tab, svg, corpus_figure(folder, figure, options))
            name = "-".join([figure, *options.values(), preset])
            if found:
                broken[name] = found[:6]
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS / f"corpus-standard-{tag}-{name}.svg").write_bytes(svg)
    return broken


@pytest.mark.browser
def test_every_corpus_figure_meets_the_figure_standard_at_every_preset(corpus, tab):
    assert not _standard(corpus, tab, "tiny")


@pytest.mark.slow
@pytest.mark.browser
def test_the_figure_standard_holds_for_a_corpus_of_the_default_pair(default_pair, tab, tmp_path):
    """At the shape a paper shows (6 layers × 12 heads, 144 points in the head map)."""
    from attention.corpus import corpus_source, run_corpus

    folder = tmp_path / "held-out-60"
    run_corpus(default_pair, corpus_source(None, config=default_pair.config, limit=60), folder, chunk_size=30,
               progress=False)  # fmt: skip
    assert not _standard(folder, tab, "default")


def test_png_and_pdf_have_the_presets_canvas(corpus):
    for preset, size in PRESETS.items():
        made = {fmt: corpus_export_bytes(_request(corpus, "heads", {"metric": "js_divergence"}, fmt, preset))[0]
                for fmt in FORMATS}  # fmt: skip
        width, height = (float(v) for v in re.search(rb'<svg[^>]* width="([\d.]+)" height="([\d.]+)"',
                                                     made["svg"]).groups())  # fmt: skip
        assert width == pytest.approx(size.width_in * DPI, abs=1)
        assert height == pytest.approx(size.height_in * DPI, abs=1)
        scale = ExportOptions.create("png", preset=preset).scale
        assert struct.unpack(">II", made["png"][16:24]) == (
            pytest.approx(width * scale, abs=2),
            pytest.approx(height * scale, abs=2),
        )
        page = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", made["pdf"])
        assert (float(page[1]), float(page[2])) == (
            pytest.approx(width * 0.75, abs=2),
            pytest.approx(height * 0.75, abs=2),
        )


def test_file_names_say_figure_measure_preset_and_format():
    stems = {}
    for figure, options in DRAWN:
        for preset in PRESETS:
            for fmt in FORMATS:
                stem = corpus_file_stem(figure, options, "tiny-reviews", ExportOptions.create(fmt, preset=preset))
                assert stem.startswith(f"corpus-{figure}-") and f"-tiny-reviews-{preset}-{fmt}-" in stem, stem
                stems[stem] = (figure, tuple(options.values()), preset, fmt)
    assert len(stems) == len(DRAWN) * len(PRESETS) * len(FORMATS)  # no two exports share a name
    assert "-contribution-share-" in next(s for s, v in stems.items() if v[1] == ("contribution_share",))
    assert corpus_file_stem("word", {"word": "Great!"}, "c", ExportOptions.create("pdf")).startswith(
        "corpus-word-great-c-"
    )


def test_the_command_line_exports_and_its_sidecar_makes_the_same_figure_again(corpus, tmp_path, capsys):
    out = tmp_path / "moved.svg"
    args = ["corpus", "export", str(corpus), "--figure", "layers", "--metric", "contribution_share", "--preset",
            "single", "--out", str(out), "--sidecar"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".json"))]
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["kind"] == "corpus-figure" and side["figure"] == "layers"
    assert side["options"] == {"metric": "contribution_share"} and side["export"]["preset"] == "single"
    assert side["corpus"]["folder"] == str(corpus.resolve()) and side["corpus"]["examples"] == 30
    again = tmp_path / "again.svg"
    assert main(["corpus", "export", "--from-sidecar", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert normalised_svg(again.read_bytes()) == normalised_svg(out.read_bytes())
    pdf = tmp_path / "again.pdf"  # another format of the same figure: the format from --out
    assert main(["corpus", "export", "--from-sidecar", str(out.with_suffix(".json")), "--out", str(pdf)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF")


def test_out_dir_names_the_file_for_figure_preset_and_format(corpus, tmp_path, capsys):
    args = ["corpus", "export", str(corpus), "--figure", "word", "--word", WORD, "--preset", "slide", "--format",
            "png", "--out-dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    made = Path(capsys.readouterr().out.strip())
    assert made.parent == tmp_path and made.name.startswith(f"corpus-word-{WORD}-tiny-reviews-slide-png-")
    assert made.read_bytes().startswith(b"\x89PNG") and not list(tmp_path.glob("*.json"))


def test_a_page_sidecar_names_the_corpus_under_the_corpora_folder(corpora, corpus, tmp_path, monkeypatch, capsys):
    """The page records the corpus's folder name, never the server's path; the command line finds it under
    <corpora> (ATTENTION_FLOWS_CORPORA), or in the folder given."""
    request = _request(corpus, "head-map", {}, "svg", "single")
    request = CorpusFigureRequest(request.folder, "head-map", {}, request.export, recorded_folder="tiny-reviews")
    data, side = corpus_export_bytes(request)
    assert json.loads(side.to_json())["corpus"]["folder"] == "tiny-reviews"
    (tmp_path / "map.json").write_text(side.to_json())
    monkeypatch.setenv("ATTENTION_FLOWS_CORPORA", str(corpora))
    assert (
        main(["corpus", "export", "--from-sidecar", str(tmp_path / "map.json"), "--out", str(tmp_path / "m.svg")]) == 0
    )
    assert normalised_svg((tmp_path / "m.svg").read_bytes()) == normalised_svg(data)
    monkeypatch.setenv("ATTENTION_FLOWS_CORPORA", str(tmp_path / "elsewhere"))
    assert (
        main(["corpus", "export", "--from-sidecar", str(tmp_path / "map.json"), "--out", str(tmp_path / "n.svg")]) == 2
    )
    said = capsys.readouterr().err
    assert "which the sidecar names, does not exist here" in said and "--from-sidecar" in said and "FOLDER" in said
    assert main(["corpus", "export", "--from-sidecar", str(tmp_path / "map.json"), str(corpus), "--out",
                 str(tmp_path / "n.svg")]) == 0  # fmt: skip


def test_a_sidecar_is_made_again_only_from_its_own_corpus(corpus, tmp_path, capsys):
    side_path = tmp_path / "heads.json"
    args = ["corpus", "export", str(corpus), "--figure", "heads", "--out", str(tmp_path / "heads.svg"), "--sidecar"]
    assert main(args) == 0
    changed = tmp_path / "changed"
    shutil.copytree(corpus, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    del manifest["chunks"][max(manifest["chunks"], key=int)]  # as if its last chunk were still being computed
    (changed / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "again.svg"
    assert main(["corpus", "export", "--from-sidecar", str(side_path), str(changed), "--out", str(out)]) == 2
    assert "has changed since the figure was drawn (30 examples then, 24 now" in capsys.readouterr().err
    manifest["pair"]["name"] = "another-pair"
    (changed / "manifest.json").write_text(json.dumps(manifest))
    assert main(["corpus", "export", "--from-sidecar", str(side_path), str(changed), "--out", str(out)]) == 2
    assert "holds another corpus than the figure was drawn from (pair 'another-pair' there" in capsys.readouterr().err
    assert not out.exists()


def test_sidecars_of_other_kinds_are_refused_with_what_to_do(tmp_path):
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"sidecar_version": 3, "view": "sankey", "text": "a film", "pair": {"name": "x"}}))
    with pytest.raises(SidecarError, match=r"single-example figure.*attention-flows export --from-sidecar"):
        read_corpus_sidecar(single)
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"kind": "corpus-figure", "sidecar_version": 1, "figure": "heads"}))
    with pytest.raises(SidecarError, match=r"corpus figure.*attention-flows corpus export --from-sidecar"):
        read_sidecar(corpus)  # what `attention-flows export --from-sidecar` reads
    for content, said in [("{", "Cannot read sidecar"), ("[]", "not valid"),
                          (json.dumps({"kind": "corpus-figure", "sidecar_version": 1, "figure": "nope",
                                       "corpus": {"folder": "c", "pair": "p", "data": "d", "examples": 1,
                                                  "tables_sha256": "s"},
                                       "options": {}, "export": {"format": "svg"}}),
                           "no corpus figure called 'nope'")]:  # fmt: skip
        (tmp_path / "bad.json").write_text(content)
        with pytest.raises(SidecarError, match=said):
            read_corpus_sidecar(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--figure", "nope", "--out", "{tmp}/x.pdf"],
         "There is no corpus figure called 'nope'. Use one of: heads, layers, word, head-map."),
        (["--figure", "head-map", "--metric", "cosine", "--out", "{tmp}/x.pdf"], "'head-map' takes no --metric"),
        (["--figure", "word", "--out", "{tmp}/x.pdf"], "Figure 'word' needs a word. Give it with --word"),
        (["--figure", "heads", "--metric", "bogus", "--out", "{tmp}/x.pdf"], "Unknown metric 'bogus'. Use one of:"),
        (["--figure", "heads", "--out", "/proc/x.pdf"], "Folder /proc is not writable"),
        (["--figure", "heads", "--out", "{tmp}/missing/x.pdf"], "missing does not exist. Create it first"),
        (["--figure", "heads", "--out", "{tmp}/x.txt"], "not a format the exporter writes"),
        (["--figure", "heads"], "needs --out FILE or --out-dir DIR"),
        (["--figure", "heads", "--out-dir", "{tmp}"], "--out-dir needs --format"),
        (["--out", "{tmp}/x.pdf"], "needs a corpus folder and --figure"),
    ],
)  # fmt: skip
def test_each_wrong_request_is_one_line_that_says_what_to_do(corpus, tmp_path, capsys, args, said):
    argv = ["corpus", "export", str(corpus), *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("attention-flows: error: ") and said in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.rglob("x.*"))


def test_a_folder_that_is_not_a_corpus_is_named_as_such(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a corpus")
    for folder, said in [(tmp_path, "is not a corpus folder (it has no manifest.json)"),
                         (tmp_path / "nowhere", "nowhere does not exist")]:  # fmt: skip
        assert main(["corpus", "export", str(folder), "--figure", "heads", "--out", str(tmp_path / "h.pdf")]) == 2
        assert said in capsys.readouterr().err
        with pytest.raises(CorpusError, match=re.escape(said)):
            corpus_figure(folder, "heads", {"metric": "js_divergence"})
    assert not (tmp_path / "h.pdf").exists()


def test_a_figure_takes_only_its_own_options():
    assert figure_options("heads") == {"metric": "js_divergence"}
    assert figure_options("word", word="  great ") == {"word": "great"}
    assert figure_options("head-map") == {}
    with pytest.raises(CorpusExportError, match="'layers' takes no --word"):
        figure_options("layers", word="great")


def test_the_command_line_names_every_corpus_figure():
    """The parser's help lists the figures by hand (importing app.export would load plotly for every command):
    held equal to CORPUS_FIGURES here."""
    corpus = build_parser()._subparsers._group_actions[0].choices["corpus"]
    export = corpus._subparsers._group_actions[0].choices["export"]
    figure = next(a for a in export._actions if a.dest == "figure")
    assert figure.help == f"which figure: {', '.join(CORPUS_FIGURES)}"


# The corpus page: each card's export controls, and its Export button over HTTP as the page sends it.


@pytest.fixture(scope="module")
def client(tiny_config, corpora):
    from app.team.site import create_app
    from attention.settings import Settings

    return create_app(tiny_config, settings=Settings(corpora=corpora)).server.test_client()


def _export_body(spec: dict, figure: str, fmt: str, size: str, sidecar: bool, page: dict) -> dict:
    """The request the page posts when card ``figure``'s Export button is clicked (every card's controls sent, as
    an ``ALL`` pattern sends them)."""
    chosen = {"button": 0, "format": "png", "size": "double", "sidecar": [], "width": None, "height": None,
              "scale": 3.125}  # fmt: skip

    def item(dep: dict) -> dict | list:
        if not dep["id"].startswith("{"):
            return {"id": dep["id"], "property": dep["property"], "value": page.get(dep["id"])}
        part = json.loads(dep["id"])["type"].removeprefix("export-")
        mine = {"button": 1, "format": fmt, "size": size, "sidecar": ["sidecar"] if sidecar else []}
        return [{"id": {"type": f"export-{part}", "view": name}, "property": dep["property"],
                 "value": mine.get(part, chosen[part]) if name == figure else chosen[part]}
                for name in CORPUS_FIGURES]  # fmt: skip

    return {"output": spec["output"], "outputs": [{"id": o, "property": "data"} for o in
            ("corpus-export-download", "corpus-export-download-sidecar")],
            "inputs": [item(d) for d in spec["inputs"]], "state": [item(d) for d in spec["state"]],
            "changedPropIds": [json.dumps({"type": "export-button", "view": figure}, separators=(",", ":"))
                               + ".n_clicks"]}  # fmt: skip


def _export_from_page(client, figure: str, fmt: str = "svg", size: str = "single", sidecar: bool = True, **page):
    import base64

    from app.testing.dash_http import dependencies

    specs = dependencies(_Prefixed(client))
    spec = next(s for s in specs if "corpus-export-download.data" in s["output"])
    page = {"corpus-select": "tiny-reviews", "corpus-metric": "js_divergence", "corpus-word": None,
            "corpus-context": {"models": "tiny", "options": ""}} | page  # fmt: skip
    response = client.post("/corpus/_dash-update-component", json=_export_body(spec, figure, fmt, size, sidecar, page))
    if response.status_code == 204:  # nothing sent: the callback said why in the banner
        return None, None
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    answer = response.get_json()["response"]
    if "corpus-export-download" not in answer:
        return None, response.get_json()  # the banner's message: a side update
    sent = answer["corpus-export-download"]["data"]
    data = base64.b64decode(sent["content"]) if sent.get("base64") else sent["content"].encode()
    side = answer.get("corpus-export-download-sidecar", {}).get("data")
    return (sent["filename"], data), side


class _Prefixed:
    def __init__(self, client) -> None:
        self.client = client

    def get(self, path: str, **kwargs):
        return self.client.get("/corpus" + path, **kwargs)


def test_every_card_of_the_page_has_the_single_example_pages_export_controls(client):
    from app.dashboard.ids import EXPORT_PARTS

    page = client.get("/corpus/_dash-layout", headers={"Referer": "http://x/corpus/"}).get_data(as_text=True)
    for figure, spec in CORPUS_FIGURES.items():
        assert spec.title in page
        for part in EXPORT_PARTS:
            assert json.dumps({"type": f"export-{part}", "view": figure}, separators=(",", ":"))[1:-1] in page
    for component in ("corpus-export-download", "corpus-export-download-sidecar", "corpus-export-status"):
        assert f'"id":"{component}"' in page


def test_the_page_exports_the_clicked_cards_figure_with_its_sidecar(client, corpus, tmp_path, monkeypatch, capsys):
    made, side = _export_from_page(client, "heads", "svg", "single", **{"corpus-metric": "contribution_share"})
    name, data = made
    assert re.fullmatch(r"corpus-heads-contribution-share-tiny-reviews-single-svg-[0-9a-f]{8}\.svg", name), name
    assert data.startswith(b"<svg") and b"contribution share" in data
    assert side["filename"] == name.removesuffix(".svg") + ".json"
    sidecar = json.loads(side["content"])
    assert sidecar["corpus"]["folder"] == "tiny-reviews"  # the folder's name, never the server's path
    assert sidecar["options"] == {"metric": "contribution_share"} and sidecar["export"]["preset"] == "single"
    (tmp_path / "page.json").write_text(side["content"])
    monkeypatch.setenv("ATTENTION_FLOWS_CORPORA", str(corpus.parent))
    again = tmp_path / "again.svg"
    assert main(["corpus", "export", "--from-sidecar", str(tmp_path / "page.json"), "--out", str(again)]) == 0
    assert normalised_svg(again.read_bytes()) == normalised_svg(data)
    word, _ = _export_from_page(client, "word", "pdf", "double", sidecar=False, **{"corpus-word": " Film "})
    assert word[0].startswith("corpus-word-film-tiny-reviews-double-pdf-") and word[1].startswith(b"%PDF")


def test_a_page_export_that_cannot_be_made_says_why_in_the_banner(client):
    made, answer = _export_from_page(client, "word", **{"corpus-word": "  "})
    assert made is None and "no word to export yet" in json.dumps(answer)
    made, answer = _export_from_page(client, "heads", **{"corpus-select": "../../etc"})
    assert made is None and "has no corpus called '../../etc'" in json.dumps(answer)


def test_the_share_layer_view_keeps_its_capital_sigma_and_delta(corpus):
    """Its title once went through str.capitalize, which lower-cases every letter but the first (½ σ|δ share|)."""
    title = corpus_figure(corpus, "layers", {"metric": "contribution_share"})["layout"]["title"]["text"]
    assert title.startswith("Share of mixing moved between heads (½ Σ|Δ share|) per layer"), title
