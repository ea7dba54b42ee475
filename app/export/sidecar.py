"""The JSON sidecar: everything needed to make an exported figure again. This module alone writes and reads it.

A sidecar names its model pair by the pair's configured **name** and the SHA-256 of its config file, never by a
path: opening a sidecar someone sent you resolves the name against the configs installed with this program
(``configs/``) and checks the hash **before** anything is imported or loaded. A sidecar whose pair is not installed,
or whose config changed since the figure was made, is refused with a sentence; ``--config`` chooses a pair
explicitly (your choice, not the file's). Version 1 sidecars (before this scheme) are read: their path is ignored,
their pair name resolved the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from app.core.options import VIEWS, ExportOptions, OptionError, ViewOptions, check_choice
from attention.config import PairConfig, available_configs, load_config
from attention.errors import AttentionFlowsError
from attention.extraction import MAX_TEXT_CHARS
from attention.version import __version__

SIDECAR_VERSION = 3  # 3: options name the measure the graph views are drawn over
MAX_SIDECAR_BYTES = 1_000_000


class SidecarError(AttentionFlowsError):
    """A sidecar that cannot be read, or names a pair that is not installed or has changed."""


def config_digest(config: PairConfig) -> str:
    """SHA-256 of the pair's config file (of its validated content when it has no file)."""
    if config.source_path is not None and Path(config.source_path).is_file():
        return hashlib.sha256(Path(config.source_path).read_bytes()).hexdigest()
    return hashlib.sha256(config.model_dump_json(exclude={"source_path"}).encode()).hexdigest()


@dataclass(frozen=True)
class Sidecar:
    """A figure to make again: the pair (name and config hash), the input, the view and every option."""

    pair_name: str
    config_sha256: str | None
    text: str
    text_pair: str | None
    view: str
    options: ViewOptions
    selected: tuple[int, int | None] | None
    export: ExportOptions

    def to_json(self) -> str:
        data = {
            "sidecar_version": SIDECAR_VERSION,
            "attention_flows_version": __version__,
            "pair": {"name": self.pair_name, "config_sha256": self.config_sha256},
            "text": self.text,
            "text_pair": self.text_pair,
            "view": self.view,
            "options": self.options.to_dict(),
            "selected_head": None if self.selected is None else {"layer": self.selected[0], "head": self.selected[1]},
            "export": {
                "format": self.export.fmt,
                "preset": self.export.preset,
                "width": self.export.width,
                "height": self.export.height,
                "scale": self.export.scale,
            },
        }
        return json.dumps(data, indent=2, ensure_ascii=False)


def make_sidecar(config: PairConfig, *, text: str, text_pair: str | None, view: str, options: ViewOptions,
                 selected: tuple[int, int | None] | None, export: ExportOptions) -> Sidecar:  # fmt: skip
    """The sidecar of a figure just made with ``config``."""
    return Sidecar(config.name, config_digest(config), text, text_pair, view, options, selected, export)


CORPUS_FIGURE = "corpus-figure"  # the "kind" of a corpus figure's sidecar (app/export/corpus_sidecar.py)


def read_sidecar(path: Path) -> Sidecar:
    """Parse and validate a sidecar file (version 1 to 3); nothing it names is imported or loaded here."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{path} is larger than a sidecar can be.", "Pass a JSON file written by an export.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except SidecarError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SidecarError(f"Cannot read sidecar {path}: {err}.", "Pass a JSON file written by an export.") from None
    except RecursionError:  # Python's parser recurses once per level: a sidecar is four levels deep
        raise SidecarError(
            f"Cannot read sidecar {path}: its JSON nests deeper than Python can parse.",
            "Pass a JSON file written by an export.",
        ) from None
    if isinstance(data, dict) and data.get("kind") == CORPUS_FIGURE:
        raise SidecarError(
            f"{path} is the sidecar of a corpus figure, not of a single-example figure.",
            f"Make it again with: attention-flows corpus export --from-sidecar {path} --out FILE",
        )
    try:
        return _parse(data)
    except RecursionError:  # a value nested just below the parser's limit, seen again in an error message
        raise SidecarError(
            f"Sidecar {path} is not valid: a value nests far deeper than any option.",
            "Pass a JSON file written by an export.",
        ) from None
    except (OptionError, KeyError, TypeError, AttributeError, ValueError) as err:
        detail = str(err) if isinstance(err, OptionError) else f"missing or malformed {err}"
        raise SidecarError(f"Sidecar {path} is not valid: {detail}", "Pass a JSON file written by an export.") from None


def _with_measure(options: object, version: int) -> object:
    """Options of a sidecar older than version 3 were drawn over raw attention (the only measure then)."""
    if version < 3 and isinstance(options, dict) and "measure" not in options:
        return {**options, "measure": "raw_attention"}
    return options


def _parse(data: dict) -> Sidecar:
    if not isinstance(data, dict):
        raise TypeError("top level")
    version = data.get("sidecar_version", 1)
    if version not in (1, 2, SIDECAR_VERSION):
        raise OptionError(f"version {version!r} is newer than this program reads.", "Upgrade attention-flows.")
    pair = data["pair"]
    name = pair["name"]
    if not isinstance(name, str) or not name.strip():
        raise OptionError(f"pair.name {name!r} is not a pair name.", "")
    digest = pair.get("config_sha256") if version >= 2 else None
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
        raise OptionError(f"pair.config_sha256 {digest!r} is not a SHA-256.", "")
    text, text_pair = data["text"], data.get("text_pair")
    if not isinstance(text, str) or not text.strip():
        raise OptionError("text is empty or not text.", "")
    if text_pair is not None and not isinstance(text_pair, str):
        raise OptionError("text_pair is not text.", "")
    size = len(text) + len(text_pair or "")
    if size > MAX_TEXT_CHARS:
        raise OptionError(f"text is {size:,} characters long; at most {MAX_TEXT_CHARS:,} are analysed.", "")
    export = data["export"] if version >= 2 else {k: data[k] for k in ("format", "width", "height", "scale")}
    selected = data.get("selected_head")
    if selected is not None:
        layer, head = selected["layer"], selected.get("head")
        selected = (layer, head)
    return Sidecar(
        pair_name=name,
        config_sha256=digest,
        text=text,
        text_pair=text_pair,
        view=check_choice("view", data["view"], VIEWS),
        options=ViewOptions.from_dict(_with_measure(data["options"], version)),
        selected=selected,
        export=ExportOptions.create(
            export["format"],
            preset=export.get("preset"),
            width=export.get("width"),
            height=export.get("height"),
            scale=export.get("scale"),
        ),
    )


def resolve_pair(sidecar: Sidecar, config: str | None = None) -> PairConfig:
    """The installed pair the sidecar names (hash checked), or ``config`` when the user chose one explicitly."""
    if config is not None:
        chosen = load_config(config)
        if chosen.name != sidecar.pair_name:
            raise SidecarError(
                f"The sidecar was made with pair '{sidecar.pair_name}', not '{chosen.name}'.",
                "Pass the config of that pair, or no --config.",
            )
        return chosen
    installed = {}
    for name in available_configs():
        try:
            candidate = load_config(name)
        except AttentionFlowsError:
            continue
        installed[candidate.name] = candidate
    if sidecar.pair_name not in installed:
        raise SidecarError(
            f"The sidecar names pair '{sidecar.pair_name}', which is not installed here "
            f"(installed: {', '.join(sorted(installed)) or 'none'}).",
            "Install that pair's config under configs/, or pass --config to choose a pair yourself.",
        )
    chosen = installed[sidecar.pair_name]
    if sidecar.config_sha256 is not None and sidecar.config_sha256 != config_digest(chosen):
        raise SidecarError(
            f"Pair '{chosen.name}' has changed since this figure was made (its config's hash differs).",
            "Pass --config to redraw it with the pair as it is now.",
        )
    return chosen
