"""The team server's config: which model pairs a team may open, how many a worker keeps loaded, and the optional
Redis cache and Celery broker. See ``configs/server.toml`` (every key commented there).

The browser only ever sends a pair's *name*; it is looked up in :attr:`ServerConfig.pairs` (never a path, a hub id
or a package name from the page).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from attention.config import PairConfig, config_path, load_config
from attention.errors import ConfigError
from attention.settings import format_validation_error

ENV_SERVER_CONFIG = "ATTENTION_FLOWS_SERVER_CONFIG"
ENV_REDIS = "ATTENTION_FLOWS_REDIS"
ENV_BROKER = "ATTENTION_FLOWS_BROKER"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSection(_Strict):
    """``[cache]``: the shared analysis cache in Redis, in front of each worker's own cache."""

    redis: str = ""  # redis://host:port/db; empty: each worker's cache only
    entry_mb: float = Field(default=16, gt=0, le=1024)  # larger analyses stay in the worker's own cache
    ttl_seconds: int = Field(default=3600, ge=10, le=30 * 86400)

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("'redis' must start with redis://, rediss:// or unix://")
        return value


class JobsSection(_Strict):
    """``[jobs]``: where background jobs run. Empty broker: in processes of this machine (diskcache)."""

    broker: str = ""  # redis://…: Celery workers (``attention-flows worker``) run the jobs
    folder: str = ""  # the diskcache folder (default: <data home>/jobs)
    # a Celery job whose worker beat no heartbeat (every 2 s) for this long is reported lost
    lost_after_seconds: float = Field(default=15.0, ge=5.0, le=3600.0)

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("'broker' must be a redis:// URL")
        return value


class ServerConfig(_Strict):
    """A validated server config. ``pairs`` maps each pair's name to its config, the first being the default."""

    pairs: dict[str, PairConfig]
    max_loaded_pairs: int = Field(default=2, ge=1, le=64)
    cache: CacheSection = CacheSection()
    jobs: JobsSection = JobsSection()

    @property
    def default(self) -> str:
        return next(iter(self.pairs))

    @classmethod
    def single(cls, pair: str | Path | PairConfig = "default", **sections) -> ServerConfig:
        """A server of one pair (``serve --config``), Redis and broker from the environment."""
        config = pair if isinstance(pair, PairConfig) else load_config(pair)
        try:
            return cls(pairs={config.name: config}, **_sections_from_env(sections))
        except ValidationError as err:
            raise ConfigError(
                f"Invalid --redis / --broker (or {ENV_REDIS} / {ENV_BROKER}): {format_validation_error(err)}.",
                "Give a redis://HOST:PORT/DB URL.",
            ) from err

    def pair(self, name: object) -> PairConfig:
        """The configured pair called ``name`` (what the page sent); a :class:`ConfigError` otherwise."""
        if not isinstance(name, str) or name not in self.pairs:
            raise ConfigError(
                f"There is no model pair called {str(name)[:60]!r} on this server.",
                f"Pick one of: {', '.join(self.pairs)}.",
            )
        return self.pairs[name]


def _sections_from_env(sections: dict) -> dict:
    """``ATTENTION_FLOWS_REDIS`` / ``ATTENTION_FLOWS_BROKER``, when set, override the cache and jobs sections (the
    command line's ``--redis`` / ``--broker`` reach gunicorn workers this way)."""
    cache = dict(sections.pop("cache", {}))
    jobs = dict(sections.pop("jobs", {}))
    if os.environ.get(ENV_REDIS):
        cache["redis"] = os.environ[ENV_REDIS]
    if os.environ.get(ENV_BROKER):
        jobs["broker"] = os.environ[ENV_BROKER]
    return {**sections, "cache": cache, "jobs": jobs}


def load_server_config(path: str | Path) -> ServerConfig:
    """Read ``path`` (TOML): ``pairs`` names pair configs (names under configs/ or paths relative to the file).
    Errors name the file, the key and the fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Server config {path} does not exist.", "Check the path (see configs/server.toml).")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err}).", "Fix the syntax at the position given.") from err
    names = raw.get("pairs")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{path}: 'pairs' must be a non-empty list of pair configs.", 'For example: pairs = ["default"].'
        )
    pairs: dict[str, PairConfig] = {}
    for entry in names:
        relative = path.parent / entry
        config = load_config(relative if entry.endswith(".toml") and relative.is_file() else config_path(entry))
        if config.name in pairs:
            raise ConfigError(f"{path}: two pairs are called '{config.name}'.", "Give each pair config its own name.")
        pairs[config.name] = config
    try:
        return ServerConfig.model_validate(_sections_from_env({**raw, "pairs": pairs}))
    except ValidationError as err:
        raise ConfigError(
            f"{path} is not a valid server config: {format_validation_error(err)}.",
            "See configs/server.toml for a complete, commented example.",
        ) from err


def server_config_from_env(default_pair: str = "default") -> ServerConfig:
    """What a gunicorn worker or a Celery worker serves: ``ATTENTION_FLOWS_SERVER_CONFIG`` if set, else the one pair
    ``ATTENTION_FLOWS_CONFIG`` (default ``default``)."""
    if os.environ.get(ENV_SERVER_CONFIG):
        return load_server_config(os.environ[ENV_SERVER_CONFIG])
    return ServerConfig.single(os.environ.get("ATTENTION_FLOWS_CONFIG", default_pair))
