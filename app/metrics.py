"""``/metrics`` in Prometheus' text format (prometheus_client), one registry per app (workers share nothing).

- ``attention_flows_request_seconds{route, callback}``: latency histogram of every request; ``callback`` is the
  Dash callback's output id for ``/_dash-update-component`` (only ids the app declares: bounded labels).
- ``attention_flows_cache_{hits,misses,evictions}_total``, ``attention_flows_cache_bytes``: the analysis cache.
- ``attention_flows_models_ready``: 1 once the pair is loaded, 0 while loading or after a failed load.

Behind sign-in like every route (:mod:`app.auth`). With gunicorn each worker answers for itself.
"""

from __future__ import annotations

import time

from app.loading import ServiceLoader

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def install_metrics(dash_app, loader: ServiceLoader) -> None:
    """Time every request and serve ``/metrics`` for ``dash_app``."""
    from flask import Response, g, request
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    registry = CollectorRegistry()
    latency = Histogram(
        "attention_flows_request_seconds",
        "Server time per request",
        ["route", "callback"],
        buckets=BUCKETS,
        registry=registry,
    )

    class ServiceCollector:
        """Reads the cache's counters and the loader's state at scrape time (no copies of state)."""

        def collect(self):
            ready = loader.status == "ready"
            yield GaugeMetricFamily("attention_flows_models_ready", "1 once the model pair is loaded", value=ready)
            cache = loader.get().cache if ready else None
            for name, help_text in (("hits", "Cache hits"), ("misses", "Cache misses"), ("evictions", "Evictions")):
                yield CounterMetricFamily(
                    f"attention_flows_cache_{name}", help_text, value=getattr(cache, name, 0) if cache else 0
                )
            yield GaugeMetricFamily(
                "attention_flows_cache_bytes", "Bytes the cache holds", value=cache.held if cache else 0
            )

    registry.register(ServiceCollector())
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
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
