"""Prometheus metrics of one server app.

Every app owns its own ``CollectorRegistry`` (no process-global state), so two apps in one
process, or a test suite creating many, never share or collide on counters.

Several workers (``routecast serve --workers N``): serve sets ``PROMETHEUS_MULTIPROC_DIR`` to a
temporary folder before the workers start, prometheus_client then keeps every value in a
per-process file there, and :meth:`ServerMetrics.render` answers the sum over every worker's
files (prometheus_client's ``MultiProcessCollector``), whichever worker the scrape reaches.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

#: set by ``routecast serve --workers N`` for its workers (prometheus_client reads it at import)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    def __init__(self) -> None:
        #: the folder of every worker's values, or None in a single-process server
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry(auto_describe=True)
        # every status (the gate's own 401/408/429/500 included); key_id is a short hash, never the key
        self.requests = Counter("routecast_requests_total", "HTTP requests by endpoint, status and API key id",
                                ["endpoint", "status", "key_id"], registry=self.registry)
        self.decisions = Counter("routecast_decisions_total", "Routing decisions by chosen model",
                                 ["model"], registry=self.registry)
        self.latency = Histogram("routecast_request_seconds", "Request latency by endpoint",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.route_latency = Histogram("routecast_route_seconds", "Time to route (encoder + head)",
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_prompts = Histogram("routecast_route_batch_prompts",
                                       "Prompts per routed batch (micro-batching merges concurrent requests)",
                                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.fallbacks = Counter("routecast_fallbacks_total", "Requests moved to the next model after a backend failure",
                                 ["from_model", "to_model"], registry=self.registry)
        self.implausible_usage = Counter("routecast_implausible_usage_total", "Backend token usage reports not "
                                         "believed (charged at the expected cost instead)", ["model"],
                                         registry=self.registry)
        self.backend_errors = Counter("routecast_backend_errors_total", "Backend failures by model and kind",
                                      ["model", "kind"], registry=self.registry)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, path=self.multiprocess_dir)
        return generate_latest(every_worker)
