"""Start `attention-flows serve` in a subprocess, as a user does, and wait until /healthz says the models are loaded."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.testing.localredis import LocalRedis, free_port


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
            deadline = time.time() + timeout
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/healthz", timeout=1).read().startswith(b"ok"):
                        break
                except urllib.error.HTTPError as error:  # 503 while the models load; 500 if they failed
                    if error.code == 503 and not wait_for_models:
                        break
                    if error.code == 500:
                        pytest.fail(f"the models failed to load: {error.read().decode()}\n{log.read_text()[-3000:]}")
                except OSError:  # not listening yet
                    if process.poll() is not None:
                        pytest.fail(f"the server exited:\n{log.read_text()[-3000:]}")
                if time.time() > deadline:
                    pytest.fail(f"the server was not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[LocalRedis]:
    """A fresh Redis for a test (:class:`app.testing.localredis.LocalRedis`), stopped afterwards."""
    import shutil

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
