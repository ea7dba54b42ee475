"""The corpora the corpus page may open: each pair's corpus folders under ``<data home>/corpora``, checked against
what the browser names, and a byte-bounded memo of what the page reads from them. The catalog of a server is one of
its Flask extensions (:func:`corpus_catalog`)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from app.service.memo import ByteLRU
from attention.corpus.source import shipped_configs
from attention.corpus.store import list_corpora
from attention.errors import AttentionFlowsError
from attention.resources import configs_dir

CATALOG_KEY = "attention_flows_corpora"  # the Flask extension that holds a server's CorpusCatalog


@dataclass(frozen=True)
class CorpusEntry:
    """A corpus the page may open: its folder name (all the browser sends), folder and manifest."""

    name: str
    path: Path
    manifest: dict

    @property
    def examples(self) -> int:
        return sum(chunk["rows"]["examples"] for chunk in self.manifest["chunks"].values())

    @property
    def label(self) -> str:
        return f"{self.name} ({self.examples:,} examples)"


class CorpusCatalog:
    """The corpora of each pair under ``root`` and a byte-bounded memo of what the page reads from them (keyed by
    the manifest's modification time, so a corpus still being computed is read afresh). ``default_models``: the
    pair a URL without ``models`` shows."""

    def __init__(
        self,
        root: Path,
        pair_config_names: dict[str, str],
        budget: int = 256 * 2**20,
        pair_config_files: dict[str, Path] | None = None,
        *,
        default_models: str,
    ) -> None:
        self.root = Path(root)
        self.pair_config_names = pair_config_names
        self.pair_config_files = pair_config_files or {}
        self.default_models = default_models
        self.cache = ByteLRU(budget)
        self.shipped = shipped_configs()  # config name -> its file name under configs/
        self.aliases = {
            stem: key
            for key, name in pair_config_names.items()
            if (stem := self.shipped.get(name)) is not None and stem not in pair_config_names
        }

    def resolve(self, models: object) -> str | None:
        """The pair a URL's ``models`` names: a pair's name, or the file name of its config under configs/
        (``default``, as ``--config`` takes it); None for anything else."""
        if not isinstance(models, str):
            return None
        return models if models in self.pair_config_names else self.aliases.get(models)

    def run_command(self, models: str) -> str:
        """A ``corpus run`` command that computes a corpus of pair ``models``: its config by file name when it is
        one of configs/ (no ``--config`` for ``default``), else by path."""
        path = self.pair_config_files.get(models)
        if path is not None and Path(path).parent.resolve() != configs_dir().resolve():
            config = str(path)
        else:
            config = Path(path).stem if path is not None else self.shipped.get(self.pair_config_names[models], models)
        return "attention-flows corpus run" + ("" if config == "default" else f" --config {shlex.quote(config)}")

    def entries(self, models: str) -> list[CorpusEntry]:
        """The corpora of pair ``models``, by folder name (none for a pair this server does not offer)."""
        name = self.pair_config_names.get(models)
        if name is None:
            return []
        return [CorpusEntry(folder, self.root / folder, manifest) for folder, manifest in list_corpora(self.root, name)]

    def check(self, models: str, corpus: str | None) -> CorpusEntry | None:
        """The corpus called ``corpus`` of pair ``models`` (the first one when None); an error for any other name."""
        entries = self.entries(models)
        if corpus is None:
            return entries[0] if entries else None
        for entry in entries:
            if entry.name == corpus:
                return entry
        names = ", ".join(e.name for e in entries) or "none yet"
        raise AttentionFlowsError(f"Pair '{models}' has no corpus called {corpus!r}.", f"Its corpora: {names}.")

    def memo(self, entry: CorpusEntry, what: str, compute: Callable[[], Any], *parts: object) -> Any:
        """``compute()``, memoised per corpus (and its manifest's modification time), ``what`` and ``parts``."""
        stamp = (entry.path / "manifest.json").stat().st_mtime_ns
        return self.cache.get_or_compute((str(entry.path), stamp, what, *parts), compute)


def corpus_catalog(server: Flask | None = None) -> CorpusCatalog:
    """The corpus catalog of ``server`` (one the corpus page is mounted on; default: the app handling the current
    request)."""
    return (server if server is not None else current_app).extensions[CATALOG_KEY]
