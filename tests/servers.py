"""Start `attention-flows serve` in a subprocess, as a user does, and wait until /healthz says the models are loaded."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.testing.localredis import LocalRedis
from app.testing.servers import CHROMIUM, ServerNotReady, free_port, wait_until_ready

__all__ = ["ARTIFACTS", "CHROMIUM", "CHROMIUM_ARGS", "corpus_cli", "free_port", "redis_server", "serving"]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]  # Debian's Chromium, as the browser tests and kaleido drive it


@contextlib.contextmanager
def serving(
    *args: str, log: Path, env: dict | None = None, timeout: float = 120, wait_for_models: bool = True
) -> Iterator[str]:
    """Run ``attention-flows serve ARGS --port P``; yield its base URL once the models are loaded (or, with
    ``wait_for_models=False``, as soon as it answers); stop it afterwards."""
    port = free_port()
    with log.open("w") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", *args, "--port", str(port)],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            statuses = (200,) if wait_for_models else (200, 503)  # 503 while the models load
            try:
                wait_until_ready(f"{url}/healthz", timeout=timeout, statuses=statuses, process=process, log=log)
            except ServerNotReady as error:
                pytest.fail(str(error))
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[LocalRedis]:
    """A fresh Redis for a test (:class:`app.testing.localredis.LocalRedis`), stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.fail("Debian's redis-server is missing: make test installs it (sudo apt-get install redis-server)")
    server = LocalRedis(folder)
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()


def corpus_cli(*args: str, **kwargs) -> subprocess.Popen:
    """``attention-flows corpus ARGS`` in a child process that takes Ctrl-C as a terminal's would (a test run started
    in the background by a shell inherits SIGINT ignored)."""
    env = {**os.environ, "ATTENTION_FLOWS_TORCH_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "app.cli", "corpus", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)  # fmt: skip
