"""The server's model pairs: each loaded once, in a background thread, and reached one way (:func:`pair_service`).

A :class:`PairRegistry` holds the pairs a server offers (at most ``max_loaded`` stay loaded per process); each pair's
:class:`ServiceLoader` loads it in a background thread, so the page is served while torch and transformers import
(they and reading the weights take most of a start; the browser meanwhile loads Dash's and plotly.js's bundles).
Callbacks wait for the pair (:meth:`ServiceLoader.get`); a load that fails becomes a readable message in the page and
in ``/healthz``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask, current_app

from app.core.analysis import Analysis
from app.service.analysis import AnalysisService
from app.service.memo import fresh_locks_after_fork
from attention.errors import AttentionFlowsError, ConfigError
from attention.models import collector_paused

log = logging.getLogger("attention_flows.app")

EXTENSION_KEY = "attention_flows"  # the app's PairRegistry in flask's extensions
# A callback that arrives before the models are loaded waits this long before it gives up with a message.
WAIT_SECONDS = 300.0


class ModelsNotReadyError(AttentionFlowsError):
    """The models are still loading."""


class ServiceLoader:
    """Owns one :class:`AnalysisService`, built once by ``build`` in a daemon thread (one per process)."""

    def __init__(
        self,
        build: Callable[[], AnalysisService],
        *,
        after_ready: Callable[[AnalysisService], None] | None = None,
    ) -> None:
        self._build = build
        self._after_ready = after_ready
        self._done = threading.Event()
        self._service: AnalysisService | None = None
        self._error: AttentionFlowsError | None = None
        self._started = time.perf_counter()
        self.seconds: float | None = None  # how long the load took, once it is done

    @classmethod
    def loaded(cls, service: AnalysisService) -> ServiceLoader:
        """A loader whose service already exists (tests, scripts)."""
        loader = cls(lambda: service)
        loader._run()
        return loader

    def start(self) -> ServiceLoader:
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="attention-flows-loader", daemon=True)
        self._thread.start()
        return self

    def settle(self, timeout: float = WAIT_SECONDS) -> AnalysisService:
        """Wait until the load *and* its warm-up are over (the loader thread has ended): what a process must do
        before it forks workers that share the models (``serve --workers N`` preloads them in gunicorn's master)."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise ModelsNotReadyError(f"The models are still loading after {timeout:.0f} s.", "Start again.")
        return self.get(0)

    def _run(self) -> None:
        try:
            # One pause for the whole build (imports, both models, the first analysis): resuming between steps
            # made Python scan every object the imports had created, again and again (~1 s of a start).
            with collector_paused(freeze=True):
                self._service = self._build()
        except AttentionFlowsError as error:
            self._error = error
            log.error("error: %s", error)
        except Exception as error:  # anything else: keep the server up and say what happened
            log.exception("loading the models failed")
            self._error = AttentionFlowsError(
                f"Loading the models failed ({type(error).__name__}: {error}).", "The details are in the server log."
            )
        finally:
            self.seconds = time.perf_counter() - self._started
            self._done.set()
        if self._service is not None:
            log.info("models ready in %.1f s", self.seconds)
            if self._after_ready is not None:
                try:
                    self._after_ready(self._service)
                except Exception:  # a warm-up only saves time later: never let it take the server down
                    log.exception("warming up after loading failed")

    @property
    def status(self) -> str:
        """``loading``, ``ready`` or ``failed``."""
        if not self._done.is_set():
            return "loading"
        return "failed" if self._error is not None else "ready"

    @property
    def error(self) -> AttentionFlowsError | None:
        return self._error

    def get(self, timeout: float = WAIT_SECONDS) -> AnalysisService:
        """The service, once loaded (waits up to ``timeout`` seconds); raises the load's error if it failed."""
        if not self._done.wait(timeout):
            raise ModelsNotReadyError(
                f"The models are still loading after {timeout:.0f} s.", "Wait a little and press analyse again."
            )
        if self._error is not None:
            raise self._error
        assert self._service is not None
        return self._service


class PairRegistry:
    """The model pairs one process may serve, by name, each loaded on first use by its own :class:`ServiceLoader`.

    At most ``max_loaded`` pairs stay loaded: opening one more drops the least recently used (its memory goes once
    the requests still using it finish; it loads again when asked). ``builders`` maps each name to the function that
    loads it; ``default`` is the pair a page without ``?models=`` opens.
    """

    def __init__(
        self,
        builders: dict[str, Callable[[], AnalysisService]],
        *,
        max_loaded: int = 2,
        after_ready: Callable[[AnalysisService], None] | None = None,
    ) -> None:
        if not builders:
            raise ValueError("a registry needs at least one pair")
        self._builders = dict(builders)
        self.max_loaded = max_loaded
        self._after_ready = after_ready
        self._loaders: OrderedDict[str, ServiceLoader] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        fresh_locks_after_fork(self, "_lock")
        self.loads = self.unloads = 0  # for /metrics

    @classmethod
    def loaded(cls, service: AnalysisService) -> PairRegistry:
        """A registry of one already loaded service (tests, scripts)."""
        registry = cls({service.name: lambda: service})
        registry._loaders[service.name] = ServiceLoader.loaded(service)
        return registry

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._builders)

    @property
    def default(self) -> str:
        return self.names[0]

    def check(self, name: object) -> str:
        """``name`` if it is one of this server's pairs; a :class:`ConfigError` listing them otherwise."""
        if not isinstance(name, str) or name not in self._builders:
            raise ConfigError(
                f"There is no model pair called {str(name)[:60]!r} on this server.",
                f"Pick one of: {', '.join(self.names)}.",
            )
        return name

    def loader(self, name: str | None = None) -> ServiceLoader:
        """The loader of pair ``name`` (default pair if None), started if it was not loaded; marks it used."""
        name = self.check(self.default if name is None else name)
        with self._lock:
            loader = self._loaders.get(name)
            if loader is None:
                loader = ServiceLoader(self._builders[name], after_ready=self._after_ready).start()
                self._loaders[name] = loader
                self.loads += 1
                while len(self._loaders) > self.max_loaded:
                    dropped, _ = self._loaders.popitem(last=False)
                    self.unloads += 1
                    log.info("unloaded pair '%s' (at most %d pairs stay loaded)", dropped, self.max_loaded)
            self._loaders.move_to_end(name)
            return loader

    def get(self, name: str | None = None, timeout: float = WAIT_SECONDS) -> AnalysisService:
        """The loaded service of pair ``name`` (waits while it loads; raises its load error)."""
        return self.loader(name).get(timeout)

    def status(self) -> dict[str, str]:
        """``{name: loading | ready | failed}`` for the pairs loaded (or loading) in this process."""
        with self._lock:
            return {name: loader.status for name, loader in self._loaders.items()}

    def ready_services(self) -> list[AnalysisService]:
        with self._lock:
            loaders = list(self._loaders.values())
        return [loader.get(0) for loader in loaders if loader.status == "ready"]

    def peek(self, name: str) -> ServiceLoader | None:
        """The loader of ``name`` if it is loaded or loading, without starting or touching it."""
        with self._lock:
            return self._loaders.get(name)


def pair_registry(server: Flask | None = None) -> PairRegistry:
    """The pair registry of ``server`` (an app made by :func:`app.team.site.create_app`; default: the app handling
    the current request)."""
    return (server if server is not None else current_app).extensions[EXTENSION_KEY]


def pair_service(pair: Analysis | str | None = None, server: Flask | None = None) -> AnalysisService:
    """The one way to a pair's service: the pair ``pair`` was analysed with (or names; None: the server's default
    pair) in :func:`pair_registry`. Waits while the models load, raises their load error if they failed, and a
    readable error for a pair this server does not offer."""
    name = pair.models if isinstance(pair, Analysis) else pair
    return pair_registry(server).get(name)
