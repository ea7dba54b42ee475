"""Locate the project's data folders (``configs/``) in a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def configs_dir() -> Path:
    """The folder of model-pair configs: ``attention/_configs`` in a wheel, else the checkout's ``configs/``."""
    packaged = _PACKAGE_DIR / "_configs"
    return packaged if packaged.is_dir() else _PACKAGE_DIR.parent / "configs"
