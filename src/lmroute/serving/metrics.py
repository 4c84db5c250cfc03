"""Prometheus metrics of one app, in a registry of its own (tests build many apps in one process).

:class:`ServingMetrics` is also the upstream calls' observer (:class:`lmroute.upstream.UpstreamObserver`):
it records their latencies, failures and retries. The control hub's figures (thresholds, realized
shares, drift, conversations) are read from its status when ``/metrics`` is scraped
(:meth:`ServingMetrics.watch_control`), so routing pays nothing for them.

With several worker processes (``--workers``) prometheus_client's multiprocess mode keeps every
process's counters and histograms in files in one folder (``PROMETHEUS_MULTIPROC_DIR``, set before
the workers start) and :meth:`ServingMetrics.render` adds them up, so ``/metrics`` counts the
requests of all workers whichever one answers. The control hub is per worker (each holds its own
controllers, drift monitors and conversations): its families are those of the worker that answers
the scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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
        #: The control hub's collectors, registered again in the registry of every worker's values.
        self._control: list[_ControlCollector] = []
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lmroute_requests",
            "Requests by endpoint, router, model that answered (else routed to) and HTTP status",
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
            "Fallbacks tried: requests sent on to the next model after one failed, answered or not",
            ["from_model", "to_model", "reason"],
            registry=r,
        )

    def watch_control(self, status: Callable[[], dict[str, Any]]) -> None:
        """Export the control hub's figures from ``status`` (:meth:`ControlHub.status`) at each scrape."""
        collector = _ControlCollector(status)
        self.registry.register(collector)
        self._control.append(collector)

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
        for collector in self._control:
            every_worker.register(collector)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST


class _ControlCollector:
    """Gauges and counters built from the control hub's status when the registry is collected."""

    def __init__(self, status: Callable[[], dict[str, Any]]):
        self._status = status

    def describe(self) -> list[Any]:
        return []  # the families depend on the targets in use: collected, never described up front

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self._status()
        target = ["model", "tenant"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "threshold": GaugeMetricFamily(
                "lmroute_control_threshold", "Current threshold of each target mode", labels=target
            ),
            "target": GaugeMetricFamily(
                "lmroute_control_target", "Target share, or spend in $ per 1,000 requests", labels=target
            ),
            "realized": GaugeMetricFamily(
                "lmroute_control_realized",
                "Realized share (or spend per 1,000 requests) over the controller's window",
                labels=target,
            ),
            "decisions": CounterMetricFamily(
                "lmroute_control_decisions", "Decisions made under each target", labels=target
            ),
        }
        for c in status["controllers"]:
            labels = [c["model"], c["tenant"] or ""]
            for key, family in families.items():
                if c[key] is not None:
                    family.add_metric(labels, c[key])
        yield from families.values()
        drift: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "score_shift": GaugeMetricFamily(
                "lmroute_drift_score_shift",
                "Score distribution shift over its alarm level",
                labels=["router"],
            ),
            "embedding_shift": GaugeMetricFamily(
                "lmroute_drift_embedding_shift",
                "Prompt embedding shift over its alarm level",
                labels=["router"],
            ),
            "drifted": GaugeMetricFamily(
                "lmroute_drift_drifted",
                "1 from a drift alarm until a new reference is set",
                labels=["router"],
            ),
            "alarms": CounterMetricFamily(
                "lmroute_drift_alarms", "Drift alarms (episodes)", labels=["router"]
            ),
            "collected": GaugeMetricFamily(
                "lmroute_drift_collected",
                "Requests collected toward a reference of lmroute_drift_reference_size (before the first "
                "reference and after an alarm); no sample while a reference is watched",
                labels=["router"],
            ),
            "reference_size": GaugeMetricFamily(
                "lmroute_drift_reference_size",
                "Requests a reference taken from the traffic is made of",
                labels=["router"],
            ),
        }
        for router, d in status["drift"].items():
            values = {
                **d,
                "drifted": 1.0 if d["state"] == "drifted" else 0.0,
                "collected": None if d["state"] == "watching" else d["collected"],
            }
            for key, family in drift.items():
                if values[key] is not None:
                    family.add_metric([router], values[key])
        yield from drift.values()
        conversations = status["conversations"]
        if conversations is not None:
            turns = CounterMetricFamily(
                "lmroute_conversation_turns", "Turns of conversations by outcome", labels=["outcome"]
            )
            for outcome in ("new", "stayed", "switched", "held"):
                turns.add_metric([outcome], conversations[outcome])
            yield turns
            rate = conversations["switch_rate"]
            yield GaugeMetricFamily(
                "lmroute_conversation_switch_rate",
                "Later turns that moved their conversation to the other model, as a share",
                value=0.0 if rate is None else rate,
            )
