"""Prometheus metrics of one engine, on its own ``CollectorRegistry`` (several engines in
one process do not collide): counters of runs and steps, the call latency per app,
invoker errors per kind, and the queue's depth and lag per function (read at scrape time
with one indexed query, cached ``metrics_cache_seconds``).

Counters count on this replica; the queue gauges read the shared database, so every
replica reports the same depth (docs/observability.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.store import Store

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                          30.0, 60.0)


class QueueCollector(Collector):
    """Queue depth and lag per function, from one query cached ``ttl`` seconds."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._at = -float("inf")
        self._rows: list[tuple[str, int, float]] = []
        self._read_at = 0.0

    async def refresh(self) -> None:
        """Read the queue again unless the cached reading is younger than ``ttl``."""
        if time.monotonic() - self._at < self.ttl:
            return
        now = time.time()
        async with self.store.read() as tx:
            self._rows = await tx.queue.depth(now)
        self._read_at = now
        self._at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "durable_queue_depth", "Runs due now (waiting for a call or in one), per "
            "function", labels=["function"])
        lag = GaugeMetricFamily(
            "durable_queue_lag_seconds", "Age of the oldest due queue item, per function",
            labels=["function"])
        for function, due, oldest in self._rows:
            depth.add_metric([function], due)
            lag.add_metric([function], max(0.0, self._read_at - oldest))
        yield depth
        yield lag


class Metrics:
    def __init__(self, store: Store, cache_seconds: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs_started = Counter("durable_runs_started", "Runs created, per function",
                                    ["function"], registry=r)
        self.runs_ended = Counter("durable_runs_ended", "Runs ended, per function and "
                                  "status (completed, failed, cancelled, timed_out, skipped)",
                                  ["function", "status"], registry=r)
        self.steps = Counter("durable_steps", "Steps recorded from answers, per function "
                             "and status", ["function", "status"], registry=r)
        self.call_latency = Histogram("durable_call_duration_seconds",
                                      "Duration of one call to an app, per app", ["app"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.invoker_errors = Counter("durable_invoker_errors", "Calls that gave no valid "
                                      "answer, per kind", ["kind"], registry=r)
        self.runs_deleted = Counter("durable_runs_deleted", "Ended runs deleted by the "
                                    "retention sweep, per function", ["function"],
                                    registry=r)
        self.events_deleted = Counter("durable_events_deleted", "Events deleted by the "
                                      "retention sweep", registry=r)
        self.queue = QueueCollector(store, cache_seconds)
        r.register(self.queue)

    def committed(self, started: Iterable[str], finished: Iterable[tuple[str, str]],
                  steps: Iterable[tuple[str, str]]) -> None:
        """Count what a committed transaction did."""
        for function in started:
            self.runs_started.labels(function).inc()
        for function, status in finished:
            self.runs_ended.labels(function, status).inc()
        for function, status in steps:
            self.steps.labels(function, status).inc()

    def deleted(self, functions: Iterable[str], events: int) -> None:
        """Count what a committed retention transaction deleted."""
        for function in functions:
            self.runs_deleted.labels(function).inc()
        if events:
            self.events_deleted.inc(events)

    def call(self, app: str, seconds: float, error: str | None) -> None:
        self.call_latency.labels(app).observe(seconds)
        if error is not None:
            self.invoker_errors.labels(error).inc()

    async def exposition(self) -> bytes:
        """The text format of every metric (the queue read at most every TTL)."""
        await self.queue.refresh()
        return generate_latest(self.registry)
