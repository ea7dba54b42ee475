"""``/metrics`` in Prometheus' text format (prometheus_client), one registry per app (workers share nothing).

- ``attention_flows_request_seconds{route, callback}``: latency histogram of every request; ``callback`` is the
  Dash callback's output id for ``/_dash-update-component`` (only ids the app declares: bounded labels).
- ``attention_flows_cache_{hits,misses,evictions}_total``, ``attention_flows_cache_bytes``: the analysis caches of
  the pairs this worker has loaded (summed).
- ``attention_flows_models_ready``: 1 once the default pair is loaded, 0 while loading or after a failed load.
- ``attention_flows_pairs_loaded``: pairs loaded in this worker; ``attention_flows_pair_{loads,unloads}_total``.
- ``attention_flows_shared_cache_up`` (1/0, only with Redis), ``attention_flows_shared_cache_{hits,misses,stores,
  skipped,errors}_total`` and ``…_bytes_{read,written}_total``: the Redis cache of runs (:mod:`app.service.stores`).
- ``attention_flows_jobs_total{job, outcome}``: background jobs this worker ran or watched (``done``, ``failed``,
  ``cancelled``); ``attention_flows_jobs_queued``: jobs waiting in the Celery queue (with a broker).

Behind sign-in like every route (:mod:`app.team.auth`). With gunicorn each worker answers for itself.
"""

from __future__ import annotations

import time

from flask import Response, g, request

from app.service.jobbook import JOBS_KEY
from app.service.registry import PairRegistry
from app.service.stores import RedisCache

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def install_metrics(dash_app, registry: PairRegistry) -> None:
    """Time every request and serve ``/metrics`` for ``dash_app``."""
    from prometheus_client import (  # the server extra: only a served app has /metrics
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    metrics_registry = CollectorRegistry()
    latency = Histogram(
        "attention_flows_request_seconds",
        "Server time per request",
        ["route", "callback"],
        buckets=BUCKETS,
        registry=metrics_registry,
    )

    class ServiceCollector:
        """Reads the caches' counters and the pairs' states at scrape time (no copies of state)."""

        def collect(self):
            default = registry.peek(registry.default)  # scraping never loads a pair
            ready = default is not None and default.status == "ready"
            yield GaugeMetricFamily("attention_flows_models_ready", "1 once the default pair is loaded", value=ready)
            services = registry.ready_services()
            yield GaugeMetricFamily("attention_flows_pairs_loaded", "Model pairs loaded here", value=len(services))
            yield CounterMetricFamily("attention_flows_pair_loads", "Pair loads", value=registry.loads)
            yield CounterMetricFamily("attention_flows_pair_unloads", "Pairs unloaded (LRU)", value=registry.unloads)
            caches = [service.cache for service in services]
            for name, help_text in (("hits", "Cache hits"), ("misses", "Cache misses"), ("evictions", "Evictions")):
                yield CounterMetricFamily(
                    f"attention_flows_cache_{name}", help_text, value=sum(getattr(c, name) for c in caches)
                )
            held = sum(cache.held for cache in caches)
            yield GaugeMetricFamily("attention_flows_cache_bytes", "Bytes the caches hold", value=held)
            shared = next((s.shared for s in services if isinstance(s.shared, RedisCache)), None)
            if shared is not None:
                up = shared.ping()  # checked at scrape time (0.5 s at most)
                yield GaugeMetricFamily("attention_flows_shared_cache_up", "1 while Redis answers", value=up)
                for name in ("hits", "misses", "stores", "skipped", "errors", "bytes_read", "bytes_written"):
                    yield CounterMetricFamily(
                        f"attention_flows_shared_cache_{name}", f"Shared cache {name}", value=getattr(shared, name)
                    )
            jobs = dash_app.server.extensions.get(JOBS_KEY)
            if jobs is not None:
                outcomes = CounterMetricFamily("attention_flows_jobs", "Background jobs", labels=["job", "outcome"])
                for (job, outcome), count in jobs.outcomes.items():
                    outcomes.add_metric([job, outcome], count)
                yield outcomes
                queued = jobs.queued()
                if queued is not None:
                    yield GaugeMetricFamily("attention_flows_jobs_queued", "Jobs waiting for a worker", value=queued)

    metrics_registry.register(ServiceCollector())
    server = dash_app.server

    @server.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @server.after_request
    def observe(response):
        started = g.pop("metrics_started", None)
        if started is not None:
            callback = ""
            if request.path == "/_dash-update-component":
                output = (request.get_json(silent=True) or {}).get("output")
                callback = output if output in dash_app.callback_map else "unknown"
            route = request.url_rule.rule if request.url_rule else "unmatched"
            latency.labels(route, callback).observe(time.perf_counter() - started)
        return response

    @server.route("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(metrics_registry), mimetype=CONTENT_TYPE_LATEST)
