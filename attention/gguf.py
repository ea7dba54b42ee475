"""GGUF model files (llama.cpp's format) made into safetensors folders, once, so that they load like any other model.

transformers reads a GGUF file through its GGUF loader (``gguf_file=``, packages ``gguf`` and ``accelerate``: the
``decoders`` extra) and dequantises every tensor to float32; that takes ~20 s for a 135M model. ``convert_gguf``
does it once and saves the result (weights, config, tokenizer) under ``<home>/models/gguf/``; later loads read the
safetensors folder in well under a second. A card (``conversion.json`` and ``README.md``) records the source file,
its size and SHA-256. A file shipped in pieces (``gguf_parts``) is put together in a temporary folder for the
conversion and removed after it. Nothing is ever downloaded.
"""

from __future__ import annotations

# Lazy imports (torch, transformers, gguf, accelerate): loaded when converting, so `import attention` stays light.
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from attention.config import ModelSpec, PairConfig, gguf_converted_dir, gguf_sources
from attention.errors import ModelLoadError
from attention.files import concatenate, file_sha256, follow_umask, staged_folder
from attention.settings import Settings, configure_torch, load_settings

CONVERSION_CARD = "conversion.json"


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_gguf` did: the folder, whether it already existed, and the source's facts (``sources``:
    the file, or its pieces in order)."""

    path: Path
    skipped: bool
    sources: tuple[Path, ...]
    sha256: str
    seconds: float

    @property
    def source_name(self) -> str:
        """The source as a person names it: the file's name, or the pieces' first name and their count."""
        first = self.sources[0].name
        return first if len(self.sources) == 1 else f"{first} … ({len(self.sources)} pieces)"


def read_conversion(folder: Path) -> dict | None:
    """The conversion card of a converted folder, or None."""
    card = folder / CONVERSION_CARD
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None


def convert_gguf(
    spec: ModelSpec,
    *,
    config_file: Path | None = None,
    settings: Settings | None = None,
    force: bool = False,
) -> Conversion:
    """Convert ``spec``'s GGUF file to a safetensors folder (skipped when one made from a file of the same SHA-256
    exists). :class:`ModelLoadError` for a missing file or piece, a SHA-256 other than ``gguf_sha256``, missing
    ``gguf``/``accelerate``, or an architecture transformers cannot read from GGUF."""
    settings = settings or load_settings()
    sources = gguf_sources(spec, config_file=config_file)
    out_dir = gguf_converted_dir(spec, settings)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out_dir.parent / f".{out_dir.name}.lock"):
        card = read_conversion(out_dir)
        sha256 = file_sha256(*sources)
        if spec.gguf_sha256 and sha256 != spec.gguf_sha256.lower():
            raise ModelLoadError(
                f"The GGUF file of '{spec.display_name}' has SHA-256 {sha256}, not the {spec.gguf_sha256} the config "
                "expects: it is damaged or another file.",
                "Reinstall the package(s) that ship it, or fix 'gguf_sha256' in the config.",
            )
        if card and not force and card.get("source_sha256") == sha256 and (out_dir / "config.json").is_file():
            return Conversion(out_dir, True, tuple(sources), sha256, 0.0)
        started = time.perf_counter()
        configure_torch(settings)
        with _whole_file(sources, str(spec.gguf_file), out_dir.parent) as source:
            model, tokenizer = _load_gguf(source, spec.display_name)
        record = {
            "source_file": str(sources[0] if len(sources) == 1 else spec.gguf_file),
            "source_package": spec.gguf_package,
            "source_parts": [f"{part.package}/{part.file}" for part in spec.gguf_parts or ()] or None,
            "source_bytes": sum(path.stat().st_size for path in sources),
            "source_sha256": sha256,
            "architecture": type(model).__name__,
            "seconds": round(time.perf_counter() - started, 1),
        }
        with staged_folder(out_dir) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / CONVERSION_CARD).write_text(json.dumps(record, indent=2), encoding="utf-8")
            (staging / "README.md").write_text(_card_text(spec, record), encoding="utf-8")
            follow_umask(staging)
        return Conversion(out_dir, False, tuple(sources), sha256, time.perf_counter() - started)


@contextmanager
def _whole_file(sources: list[Path], name: str, scratch: Path) -> Iterator[Path]:
    """The GGUF file itself: the one source, or its pieces put together in a temporary folder under ``scratch``
    (removed afterwards)."""
    if len(sources) == 1:
        yield sources[0]
        return
    folder = Path(tempfile.mkdtemp(prefix=".assembling-", dir=scratch))
    try:
        yield concatenate(sources, folder / Path(name).name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load_gguf(source: Path, name: str):
    """The causal LM and tokenizer in ``source``, dequantised to float32, ready for ``save_pretrained``."""
    try:
        import accelerate  # noqa: F401  (transformers' GGUF loader needs both)
        import gguf  # noqa: F401
    except ImportError as err:
        raise ModelLoadError(
            f"Reading the GGUF model '{name}' needs the packages gguf and accelerate ({err.name} is missing).",
            "Install them with: pip install 'attention-flows[decoders]'",
        ) from err
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, attn_implementation="eager")
    except (ValueError, KeyError, OSError) as err:
        raise ModelLoadError(
            f"transformers cannot read the GGUF model '{name}' ({source.name}): {err}",
            "Use a GGUF file of an architecture transformers' GGUF loader supports (llama, gemma3, qwen2, …), "
            "or a safetensors folder ('path').",
        ) from err
    # The weights are plain float32 now; the quantisation record only stops save_pretrained.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    return model, tokenizer


def _card_text(spec: ModelSpec, record: dict) -> str:
    where = f"package `{spec.gguf_package}`, " if spec.gguf_package else ""
    if record["source_parts"]:
        where = f"{len(record['source_parts'])} pieces ({', '.join(record['source_parts'])}) making "
    return "\n".join(
        [
            f"# {spec.display_name} (converted from GGUF)",
            "",
            f"Converted by `attention-flows prepare` from {where}file `{Path(record['source_file']).name}`",
            f"({record['source_bytes']} bytes, SHA-256 `{record['source_sha256']}`), every tensor dequantised to",
            f"float32 by transformers' GGUF loader ({record['architecture']}, {record['seconds']} s).",
            "",
        ]
    )


def gguf_specs(config: PairConfig) -> list[ModelSpec]:
    """The pair's models that come from GGUF files."""
    return [spec for spec in (config.pretrained, config.finetuned) if spec.gguf_file]


def convert_pair(config: PairConfig, *, settings: Settings | None = None, force: bool = False) -> list[Conversion]:
    """:func:`convert_gguf` for each of the pair's GGUF models (none: nothing to do)."""
    return [
        convert_gguf(spec, config_file=config.source_path, settings=settings, force=force)
        for spec in gguf_specs(config)
    ]
