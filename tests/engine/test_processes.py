"""Child processes never outlive their parent: `corpus run --workers 2` killed with SIGKILL (no cleanup runs) leaves
no pool worker and no multiprocessing helper behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from attention.corpus.store import read_manifest


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_pool_workers_die_within_5_s_of_a_sigkilled_corpus_run(tiny_config, tmp_path):
    texts = [f"a fine film number {i} moving and warm" for i in range(3000)]
    data = tmp_path / "reviews.csv"
    data.write_text("review\n" + "\n".join(texts) + "\n", encoding="utf-8")
    folder = tmp_path / "corpus"
    command = [sys.executable, "-m", "app.cli", "corpus", "run", "--config", str(tiny_config), "--data", str(data),
               "--text-col", "review", "--chunk-size", "5", "--workers", "2", "--out", str(folder)]  # fmt: skip
    env = {**os.environ, "ATTENTION_FLOWS_TORCH_THREADS": "1"}
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not _chunks(folder) >= 2:  # both workers loaded and computing
            assert parent.poll() is None, parent.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no chunk was written in time"
            time.sleep(0.05)
        children = _descendants(parent.pid)
        assert len([c for c in children if "spawn" in " ".join(c.cmdline())]) >= 2, [c.cmdline() for c in children]
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        assert _chunks(folder) < len(texts) // 5, "the run finished before it could be killed"
    finally:  # whatever happened, leave nothing running
        if parent.poll() is None:
            parent.kill()
        for child in [*children, *_descendants(parent.pid)]:
            if child.is_running():
                child.kill()


def _chunks(folder: Path) -> int:
    return len(read_manifest(folder)["chunks"]) if (folder / "manifest.json").is_file() else 0
