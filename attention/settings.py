"""Runtime settings: code defaults < ``configs/settings.toml`` < environment variables.

==============================  =====================================  ===========================
setting                         environment variable                   default
==============================  =====================================  ===========================
``torch_threads``               ``ATTENTION_FLOWS_TORCH_THREADS``      1
``home`` (models, caches)       ``ATTENTION_FLOWS_HOME``               the user data directory
``cache_mb`` (per process)      ``ATTENTION_FLOWS_CACHE_MB``           1024
``corpora`` (corpus folders)    ``ATTENTION_FLOWS_CORPORA``            ``<home>/corpora``
==============================  =====================================  ===========================

One torch thread is the default on purpose: on a 2-core machine two threads make every forward pass ~30x
slower as soon as anything else runs.
"""

from __future__ import annotations

# Lazy imports (torch, threadpoolctl): loaded when threads are set, so `import attention` stays light.
import os
import tomllib
from pathlib import Path

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attention.errors import ConfigError
from attention.resources import configs_dir

ENV_PREFIX = "ATTENTION_FLOWS_"


class Settings(BaseModel):
    """Process-wide runtime settings (immutable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    torch_threads: int = Field(default=1, ge=1, le=256)
    home: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("attention-flows")))
    # The dashboard's analysis cache, per worker process: 1 GB each lets 2 workers and the models fit in 24 GB with
    # room to spare; one analysis larger than this is computed and shown, never cached.
    cache_mb: int = Field(default=1024, ge=16, le=1_000_000)
    # Where `corpus run` writes by default and the corpus page looks (None: <home>/corpora).
    corpora: Path | None = None

    @property
    def models_dir(self) -> Path:
        """Where ``attention-flows prepare`` writes fine-tuned models."""
        return self.home / "models"

    @property
    def corpora_dir(self) -> Path:
        """Where corpora live: ``corpus run``'s default ``--out`` parent and the corpus page's list."""
        return (self.corpora or self.home / "corpora").expanduser()

    @property
    def cache_dir(self) -> Path:
        """Where the dashboard keeps its analysis cache."""
        return self.home / "cache"


def _from_env(environ: dict[str, str]) -> dict[str, str]:
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if environ.get(ENV_PREFIX + name.upper(), "").strip()
    }


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (default ``configs/settings.toml``, optional) and the environment."""
    path = path or configs_dir() / "settings.toml"
    values: dict[str, object] = {}
    if path.is_file():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML ({err}).", "Fix the syntax or delete the file.") from err
    values.update(_from_env(dict(os.environ) if environ is None else environ))
    try:
        settings = Settings.model_validate(values)
    except ValidationError as err:
        raise ConfigError(
            f"Invalid settings in {path} or {ENV_PREFIX}* variables: {format_validation_error(err)}.",
            f"Allowed settings: {', '.join(Settings.model_fields)}.",
        ) from err
    return settings.model_copy(update={"home": settings.home.expanduser()})


def configure_torch(settings: Settings) -> None:
    """Apply ``settings.torch_threads`` to torch and to numpy's BLAS (safe to call repeatedly). BLAS's own default
    is a thread per core: on a shared machine its threads wait on each other, and the head map's eigendecomposition
    in a web worker took 40 ms instead of 3."""
    import torch
    from threadpoolctl import threadpool_limits

    if torch.get_num_threads() != settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    threadpool_limits(limits=settings.torch_threads, user_api="blas")


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: ``location: message``, joined with '; '."""
    parts = []
    for item in err.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        parts.append(f"{location}: {message}")
    return "; ".join(parts)
