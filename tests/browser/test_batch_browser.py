"""Background jobs in a real browser against real processes: `attention-flows serve` (diskcache jobs), and
redis-server + `attention-flows worker` (Celery jobs), including a worker killed mid-job."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from app.dashboard import ids
from tests.servers import redis_server, serving

pytestmark = pytest.mark.browser
TEXTS = "\n".join(f"sentence number {n} is a fine film" for n in range(1, 41))


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1600, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#sankey-graph .sankey", timeout=60_000)
    page.locator("#card-jobs").scroll_into_view_if_needed()
    return context, page


def _status(page, status_id: str, text: str, timeout: float = 60_000) -> str:
    page.wait_for_function(
        "([id, text]) => (document.getElementById(id)?.textContent || '').includes(text)",
        arg=[status_id, text],
        timeout=timeout,
    )
    return page.locator(f"#{status_id}").text_content()


def test_jobs_run_with_progress_and_cancel_in_child_processes(browser, tiny_config, tmp_path):
    env = {"ATTENTION_FLOWS_HOME": str(tmp_path / "home")}
    with serving("--config", str(tiny_config), log=tmp_path / "serve.log", env=env) as url:
        context, page = _open(browser, url)
        # faithfulness over the pair's sentences: a plot and "Done"
        page.click(f"#{ids.JOB_FAITH_RUN}")
        assert "Done: 2 sentences" in _status(page, ids.JOB_FAITH_STATUS, "Done")
        page.wait_for_selector(f"#{ids.JOB_FAITH_FIGURE} .scatterlayer .trace", state="attached", timeout=10_000)
        assert page.locator(f"#{ids.JOB_FAITH_FIGURE}").is_visible()
        assert "Faithfulness" in page.locator(f"#{ids.JOB_FAITH_FIGURE} .gtitle").text_content()

        # a batch export: one zip, a figure and a sidecar per line, in input order
        page.fill(f"#{ids.JOB_EXPORT_TEXTS}", "a fine film\na dull film")
        with page.expect_download(timeout=120_000) as download:
            page.click(f"#{ids.JOB_EXPORT_RUN}")
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        names = sorted(archive.namelist())
        assert [n[:4] for n in names] == ["001-", "001-", "002-", "002-"]
        assert {Path(n).suffix for n in names} == {".svg", ".json"}
        assert b"<svg" in archive.read(next(n for n in names if n.endswith(".svg")))
        assert "Done: 2 figures" in _status(page, ids.JOB_EXPORT_STATUS, "Done")

        # cancel a long export: it stops, says so, the Run button comes back, nothing is downloaded
        page.fill(f"#{ids.JOB_EXPORT_TEXTS}", TEXTS)
        page.click(f"#{ids.JOB_EXPORT_RUN}")
        _status(page, ids.JOB_EXPORT_STATUS, "of 40 exported")
        assert page.locator(f"#{ids.JOB_EXPORT_RUN}").is_disabled()
        page.click(f"#{ids.JOB_EXPORT_CANCEL}")
        _status(page, ids.JOB_EXPORT_STATUS, "Cancelled", timeout=20_000)
        page.wait_for_function(f"() => !document.getElementById('{ids.JOB_EXPORT_RUN}').disabled", timeout=20_000)
        time.sleep(3)  # a few more polls: a cancelled job is not reported as failed
        assert "Cancelled" in page.locator(f"#{ids.JOB_EXPORT_STATUS}").text_content()
        assert "failed" not in (page.locator(f"#{ids.ERROR}").text_content() or "")
        context.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_celery_worker_runs_jobs_and_a_killed_worker_is_reported(browser, tiny_config, tmp_path):
    with redis_server(tmp_path / "redis") as redis:
        broker = redis.url(1)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ATTENTION_FLOWS_HOME": str(tmp_path / "home")}
        worker_log = tmp_path / "worker.log"
        with worker_log.open("w") as stream:
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--config", str(tiny_config), "--broker", broker],
                stdout=stream, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            server_toml = tmp_path / "server.toml"  # a job is lost after 5 s without a heartbeat (default 15)
            server_toml.write_text(
                f'pairs = ["{tiny_config}"]\n[jobs]\nbroker = "{broker}"\nlost_after_seconds = 5\n', encoding="utf-8"
            )
            with serving("--server-config", str(server_toml), log=tmp_path / "serve.log",
                         env={"ATTENTION_FLOWS_HOME": str(tmp_path / "home")}) as url:  # fmt: skip
                context, page = _open(browser, url)
                page.click(f"#{ids.JOB_FAITH_RUN}")
                assert "Done: 2 sentences" in _status(page, ids.JOB_FAITH_STATUS, "Done", timeout=120_000)
                assert "succeeded" in worker_log.read_text()  # it ran on the Celery worker

                page.fill(f"#{ids.JOB_EXPORT_TEXTS}", TEXTS)
                page.click(f"#{ids.JOB_EXPORT_RUN}")
                _status(page, ids.JOB_EXPORT_STATUS, "of 40 exported", timeout=60_000)
                os.killpg(worker.pid, signal.SIGKILL)  # the worker dies mid-job
                killed = time.perf_counter()
                page.wait_for_function(
                    f"() => (document.getElementById('{ids.ERROR}')?.textContent || '').includes('This job failed')",
                    timeout=60_000,
                )
                reported = time.perf_counter() - killed
                assert "the worker running this job stopped" in page.locator(f"#{ids.ERROR}").text_content()
                assert 3 <= reported < 25, reported  # the last beat up to 2 s before the kill, lost after 5 s, polls
                page.wait_for_function(f"() => !document.getElementById('{ids.JOB_EXPORT_RUN}').disabled")
                context.close()
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


def _decoder_pair_folders(tiny_decoders) -> tuple[Path, Path, str]:
    """The real SmolLM2 pair's folders when this machine has prepared it (`attention-flows prepare --pair
    smollm-sentiment`), else the tiny random Llama pair; and the kept text's last piece as the page names it."""
    from attention.config import gguf_converted_dir, load_config
    from attention.prepare import prepared_dir
    from attention.settings import load_settings

    config, settings = load_config("smollm-sentiment"), load_settings()
    base, twin = gguf_converted_dir(config.pretrained, settings), prepared_dir(config, settings)
    if (base / "config.json").is_file() and (twin / "config.json").is_file():
        return base, twin, "keep"
    return tiny_decoders["llama"], tiny_decoders["llama-classifier"], "p"  # the tiny tokenizer's "kee", "p"


def test_the_pair_picker_opens_a_decoder_pair_with_the_same_text(browser, tiny_config, tiny_decoders, tmp_path):
    """The second pair is a decoder pair (the real SmolLM2 pair when prepared here, else tiny random Llamas with
    grouped-query attention): picked in a real browser it keeps the text, traces the Sankey from the last token,
    shows no second-segment box and greys out the measures that decompose encoder blocks only."""
    base, twin, last_piece = _decoder_pair_folders(tiny_decoders)
    second = tmp_path / "second.toml"
    second.write_text(
        f'name = "second"\nexamples = ["the second pair speaks"]\n[pretrained]\npath = "{base}"\n'
        f'[finetuned]\npath = "{twin}"\n[task]\nname = "t"\nlabels = ["bad", "good"]\n',
        encoding="utf-8",
    )
    server_toml = tmp_path / "server.toml"
    server_toml.write_text(f'pairs = ["{tiny_config}", "{second}"]\n', encoding="utf-8")
    env = {"ATTENTION_FLOWS_HOME": str(tmp_path / "home")}
    with serving("--server-config", str(server_toml), log=tmp_path / "serve.log", env=env) as url:
        context, page = _open(browser, url)
        assert page.locator(f"#{ids.MODELS}").is_visible() and page.locator(f"#{ids.TEXT_PAIR}").is_visible()
        page.fill(f"#{ids.TEXT}", "a text to keep")
        page.click(f"#{ids.MODELS}")
        page.get_by_role("option", name="second").click()
        page.wait_for_url("**models=second**", timeout=30_000)
        page.wait_for_selector("#sankey-graph .sankey", timeout=60_000)
        assert page.input_value(f"#{ids.TEXT}") == "a text to keep"
        assert "second" in page.locator(f"#{ids.MODELS}").text_content()
        assert not page.locator(f"#{ids.TEXT_PAIR}").is_visible()
        sankey = " ".join(page.locator("#sankey-graph text").all_text_contents())
        assert f"from the last token “{last_piece}”" in sankey, sankey  # the kept text's last piece is traced
        page.click(f"#{ids.MEASURE}")
        option = page.locator("[role=option]", has_text="GlobEnc").first
        assert "(encoders only)" in option.text_content()
        assert option.evaluate(
            "el => el.getAttribute('aria-disabled') === 'true' || !!el.querySelector('input:disabled')"
        ), option.evaluate("el => el.outerHTML")
        page.keyboard.press("Escape")
        page.goto(url + "/?models=nothing")
        page.wait_for_function(
            f"() => (document.getElementById('{ids.ERROR}')?.textContent || '').includes('no model pair called')"
        )
        context.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
