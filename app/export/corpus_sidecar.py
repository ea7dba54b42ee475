"""The JSON sidecar of a corpus figure: the corpus folder, the figure and its options, the size and format. This
module alone writes and reads it (the single-example figure's sidecar is :mod:`app.export.sidecar`'s).

A sidecar names its corpus by folder and by what is in it: the pair's name, the data's fingerprint and a SHA-256 of
every chunk's tables (from the manifest), so a figure is made again only from the very corpus it was drawn from. A
relative ``folder`` (the corpus page writes the corpus's folder name, never a server's path) is a folder under
``<corpora>`` (the ``corpora`` setting, ``ATTENTION_FLOWS_CORPORA``); an absolute one is that folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from app.core.options import ExportOptions, OptionError
from app.export.corpus_figures import CorpusExportError, figure_options
from app.export.sidecar import CORPUS_FIGURE, MAX_SIDECAR_BYTES, SidecarError
from attention.version import __version__

CORPUS_SIDECAR_VERSION = 1
KIND = CORPUS_FIGURE  # tells a corpus figure's sidecar from a single-example figure's


@dataclass(frozen=True)
class CorpusIdentity:
    """What a corpus holds, from its manifest: the pair, the data's fingerprint, its examples and a SHA-256 over
    every chunk's tables."""

    pair: str
    data: str
    examples: int
    tables_sha256: str

    @classmethod
    def of(cls, manifest: dict) -> CorpusIdentity:
        chunks = manifest.get("chunks", {})
        records = [[key, sorted(chunks[key].get("sha256", {}).items())] for key in sorted(chunks, key=int)]
        return cls(
            pair=str(manifest.get("pair", {}).get("name")),
            data=str(manifest.get("source", {}).get("fingerprint")),
            examples=sum(chunk["rows"]["examples"] for chunk in chunks.values()),
            tables_sha256=hashlib.sha256(json.dumps(records).encode()).hexdigest(),
        )


@dataclass(frozen=True)
class CorpusSidecar:
    """A corpus figure to make again: where the corpus is (``folder``, as recorded) and what it held, the figure,
    its options and the export's size and format."""

    folder: str
    corpus: CorpusIdentity
    figure: str
    options: dict[str, str]
    export: ExportOptions

    def to_json(self) -> str:
        data = {
            "sidecar_version": CORPUS_SIDECAR_VERSION,
            "kind": KIND,
            "attention_flows_version": __version__,
            "corpus": {"folder": self.folder, **self.corpus.__dict__},
            "figure": self.figure,
            "options": self.options,
            "export": {
                "format": self.export.fmt,
                "preset": self.export.preset,
                "width": self.export.width,
                "height": self.export.height,
                "scale": self.export.scale,
            },
        }
        return json.dumps(data, indent=2, ensure_ascii=False)

    def folder_path(self, corpora: Path) -> Path:
        """The corpus folder the sidecar names: a relative one under ``corpora``."""
        folder = Path(self.folder).expanduser()
        return folder if folder.is_absolute() else Path(corpora) / folder


def read_corpus_sidecar(path: Path) -> CorpusSidecar:
    """Parse and validate a corpus figure's sidecar; a single-example figure's sidecar is refused with the command
    that makes it again."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{path} is larger than a sidecar can be.", "Pass a JSON file written by an export.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except SidecarError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        detail = "its JSON nests too deep" if isinstance(error, RecursionError) else str(error)
        raise SidecarError(f"Cannot read sidecar {path}: {detail}.", "Pass a JSON file written by an export.") from None
    if isinstance(data, dict) and data.get("kind") != KIND and "view" in data:
        raise SidecarError(
            f"{path} is the sidecar of a single-example figure, not of a corpus figure.",
            f"Make it again with: attention-flows export --from-sidecar {path} --out FILE",
        )
    try:
        return _parse(data)
    except (OptionError, CorpusExportError, KeyError, TypeError, AttributeError, ValueError) as error:
        detail = str(error) if isinstance(error, OptionError | CorpusExportError) else f"missing or malformed {error}"
        raise SidecarError(f"Sidecar {path} is not valid: {detail}", "Pass a JSON file written by an export.") from None


def _parse(data: object) -> CorpusSidecar:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise KeyError("'kind' (a corpus figure's sidecar says \"corpus-figure\")")
    version = data.get("sidecar_version")
    if version != CORPUS_SIDECAR_VERSION:
        raise OptionError(f"version {version!r} is not one this program reads.", "Upgrade attention-flows.")
    corpus, options, export = data["corpus"], data["options"], data["export"]
    if not isinstance(corpus["folder"], str) or not corpus["folder"].strip():
        raise OptionError("corpus.folder is not a folder.", "")
    identity = CorpusIdentity(str(corpus["pair"]), str(corpus["data"]), int(corpus["examples"]),
                              str(corpus["tables_sha256"]))  # fmt: skip
    if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
        raise OptionError("options are not a table of texts.", "")
    figure = data["figure"]
    return CorpusSidecar(
        folder=corpus["folder"],
        corpus=identity,
        figure=figure,
        options=figure_options(figure, metric=options.get("metric"), word=options.get("word")),
        export=ExportOptions.create(
            export["format"],
            preset=export.get("preset"),
            width=export.get("width"),
            height=export.get("height"),
            scale=export.get("scale"),
        ),
    )


def check_same_corpus(sidecar: CorpusSidecar, folder: Path, manifest: dict) -> None:
    """Refuse to make a figure again from a corpus other than the one it was drawn from (another pair or data), or
    from that corpus after it changed (chunks added or computed again)."""
    now = CorpusIdentity.of(manifest)
    then = sidecar.corpus
    if (now.pair, now.data) != (then.pair, then.data):
        raise SidecarError(
            f"{folder} holds another corpus than the figure was drawn from (pair '{now.pair}' there, "
            f"'{then.pair}' in the sidecar{'' if now.pair != then.pair else '; other data'}).",
            "Pass the corpus folder the figure was made from: corpus export --from-sidecar FILE FOLDER",
        )
    if now.tables_sha256 != then.tables_sha256:
        raise SidecarError(
            f"The corpus in {folder} has changed since the figure was drawn ({then.examples:,} examples then, "
            f"{now.examples:,} now, or chunks computed again).",
            f"Export it afresh from the corpus as it is: corpus export {folder} --figure {sidecar.figure} …",
        )
