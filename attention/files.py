"""Folders written whole or not at all, with the modes a plain ``mkdir`` / ``open`` would give them; file digests."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir`` to write into; renamed to ``out_dir`` (replacing it) when the block
    completes, removed when it fails: never a half-written folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def follow_umask(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes a plain ``mkdir`` / ``open`` would: mkdtemp makes 0700 and
    safetensors writes 0600, so a prepared model would otherwise be private while the rest of the data home is not."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def file_sha256(*paths: Path) -> str:
    """SHA-256 of a file (of several: of their concatenation, in order), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def concatenate(paths: list[Path], target: Path) -> Path:
    """Write the files ``paths``, in order, into ``target`` (1 MiB at a time); returns ``target``."""
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)
    return target
