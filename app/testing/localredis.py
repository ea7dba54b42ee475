"""A throwaway ``redis-server`` on a free loopback port, for tests and ``attention-flows bench team``.

It persists nothing, keeps its files in one folder, and can be stopped and started again on the same port (the
fault bench restarts Redis under load). Production Redis is the operator's (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

from app.testing.servers import free_port


class LocalRedis:
    """Debian's ``redis-server`` on ``127.0.0.1:port`` with ``maxmemory`` and least-recently-used eviction."""

    def __init__(self, folder: Path, *, maxmemory: str = "256mb", port: int | None = None) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.maxmemory = maxmemory
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20) -> LocalRedis:
        """Start it and wait until it answers PING; RuntimeError with its log otherwise."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log_path = self.folder / "redis.log"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                   "--save", "", "--appendonly", "no", "--maxmemory", self.maxmemory,
                   "--maxmemory-policy", "allkeys-lru"]  # fmt: skip
        with log_path.open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ping():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer within {timeout:.0f} s")

    def ping(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
