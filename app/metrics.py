"""Prometheus metrics: one registry per app; request metrics come from the edge middleware (app/edge.py),
training-queue gauges are collected at scrape time."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.serving.batching import BatchStats
from app.serving.edge import RequestStats
from worker.state.status import TrainingStatus

log = logging.getLogger("genserve.api")

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = RequestStats(LATENCY_BUCKETS_S)
        r.register(self.requests)
        self.batch_rows = Histogram(
            "genserve_batch_size_samples", "Samples per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "genserve_batch_size_requests", "Requests per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "genserve_batch_queue_wait_seconds",
            "Time a request waited for its pass",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.forward_time = Histogram(
            "genserve_forward_seconds", "Forward pass time", buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.encode_time = Histogram(
            "genserve_encode_seconds", "Response encoding time", ["format"], buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.rejected = Counter("genserve_sample_rejected_total", "Sample requests not served", ["reason"], registry=r)
        self.samples = Counter("genserve_samples_total", "Samples generated", registry=r)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_rows.observe(stats.rows)
        self.batch_requests.observe(stats.requests)
        self.samples.inc(stats.rows)
        for wait in stats.queue_wait_s:
            self.queue_wait.observe(wait)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class TrainingCollector(Collector):
    """Queue depth and trainings by status, read when Prometheus scrapes (errors give no sample, not a 500)."""

    def __init__(self, queue_depth: Callable[[], int], statuses: Callable[[], Iterable[TrainingStatus]]) -> None:
        self.queue_depth = queue_depth
        self.statuses = statuses

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("genserve_training_queue_depth", "Training jobs waiting in the RQ queue")
        try:
            depth.add_metric([], self.queue_depth())
            yield depth
        except Exception as exc:  # Redis down: leave the gauge out
            log.debug("queue depth unavailable: %s", exc)
        by_status = GaugeMetricFamily("genserve_trainings", "Trainings by status", labels=["status"])
        tally = Tally(self.statuses())
        for status in TrainingStatus:
            by_status.add_metric([status.value], tally.get(status, 0))
        yield by_status
