"""Prometheus metrics of one app, in a registry of its own (tests build many apps in one process).

:class:`ServingMetrics` is also the upstream calls' observer (:class:`lmroute.upstream.UpstreamObserver`):
it records their latencies, failures and retries. With several worker processes (``--workers``)
prometheus_client's multiprocess mode keeps every process's values in files in one folder
(``PROMETHEUS_MULTIPROC_DIR``, set before the workers start) and :meth:`ServingMetrics.render`
adds them up, so ``/metrics`` counts the requests of all workers whichever one answers.
"""

from __future__ import annotations

#: Seconds: routing is sub-millisecond for cheap routers, tens of ms for embedding routers.
_ROUTING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    """The server's counters and histograms; ``render()`` gives the Prometheus text format."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        #: The folder of a multi-process server's metric files (None: this process's values only).
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lmroute_requests",
            "Requests by endpoint, router, routed model and HTTP status",
            ["endpoint", "router", "model", "status"],
            registry=r,
        )
        self.routing_latency = Histogram(
            "lmroute_routing_latency_seconds",
            "Time to a routing decision (batching wait + scoring)",
            ["router"],
            buckets=_ROUTING_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "lmroute_scoring_batch_size",
            "Prompts scored together in one router call",
            ["router"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "lmroute_upstream_latency_seconds",
            "Upstream call time (whole answer, or until a stream is accepted)",
            ["model"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "lmroute_upstream_errors",
            "Failed upstream attempts by model and kind (timeout, connection, malformed, 4xx, 5xx)",
            ["model", "kind"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "lmroute_upstream_retries", "Upstream attempts repeated after a failure", ["model"], registry=r
        )
        self.router_errors = Counter(
            "lmroute_router_errors",
            "Routing decisions that failed because the router raised",
            ["router"],
            registry=r,
        )
        self.fallbacks = Counter(
            "lmroute_fallbacks",
            "Requests answered by the other model after the routed one failed",
            ["from_model", "to_model", "reason"],
            registry=r,
        )

    # -- what the upstream calls report (lmroute.upstream.UpstreamObserver) --------------------
    def observe_upstream_call(self, model: str, seconds: float) -> None:
        """One upstream attempt took ``seconds``."""
        self.upstream_latency.labels(model).observe(seconds)

    def count_upstream_error(self, model: str, kind: str) -> None:
        """One upstream attempt failed with ``kind`` (timeout, connection, malformed, 4xx, 5xx)."""
        self.upstream_errors.labels(model, kind).inc()

    def count_upstream_retry(self, model: str) -> None:
        """A failed upstream attempt is repeated."""
        self.upstream_retries.labels(model).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self.multiprocess_dir)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST
