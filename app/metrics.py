"""Prometheus metrics: request metrics come from the edge middleware (app/edge.py), batching metrics from the model
cache, training-queue gauges are collected at scrape time.

Many API processes (`genserve serve --workers N`): each counts in its own memory (the hot path writes no file and
takes no lock across processes), writes a snapshot of its counts to a directory shared by the processes of one
`serve` (GENSERVE_METRICS_DIR, made by `serve`) every SNAPSHOT_INTERVAL_S, and answers a scrape with the totals over
every snapshot in it (its own read fresh). So a scrape shows the same totals whichever process answers, up to the
last SNAPSHOT_INTERVAL_S of the others' traffic; a process that ended leaves its last counts in the totals (counters
never go down), as Prometheus' own multiprocess mode does. The training gauges are the same in every process and
are not summed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.serving.batching import BatchStats
from app.serving.edge import RequestStats
from worker.state.status import TrainingStatus

log = logging.getLogger("genserve.api")

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


SNAPSHOT_INTERVAL_S = 1.0


class Metrics:
    """`registry` is what /metrics exposes: this process's counts (or, with `shared_dir`, the totals over the
    processes that share it) and the scrape-time gauges."""

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.local = CollectorRegistry(auto_describe=True)  # this process's counts
        self.registry = CollectorRegistry(auto_describe=True)
        self.totals = ProcessTotals(self.local, shared_dir)
        self.registry.register(self.totals)
        r = self.local
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
        self.model_loads = Histogram(
            "genserve_model_load_seconds",
            "Cold loads of a model into memory (store reads, net build, padding rule), by whether the padding rule "
            "was known or had to be calibrated",
            ["rule"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.model_evictions = Counter(
            "genserve_model_evictions_total", "Models dropped from memory (budget or deletion)", registry=r
        )
        self.models_loaded = Gauge("genserve_models_loaded", "Models in memory", registry=r)
        self.models_loaded_bytes = Gauge(
            "genserve_models_loaded_bytes", "Weights in memory (bounded by GENSERVE_MODEL_CACHE_MB)", registry=r
        )
        self.samples = Counter("genserve_samples_total", "Samples generated", registry=r)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_rows.observe(stats.rows)
        self.batch_requests.observe(stats.requests)
        self.samples.inc(stats.rows)
        for wait in stats.queue_wait_s:
            self.queue_wait.observe(wait)

    def add_collector(self, collector: Collector) -> None:
        """A collector whose values are the same whichever process is asked (not summed across processes)."""
        self.registry.register(collector)


class ProcessTotals(Collector):
    """This process's metric families, summed with the other processes' latest snapshots in `shared_dir`."""

    def __init__(self, local: CollectorRegistry, shared_dir: Path | None) -> None:
        self.local = local
        self.shared_dir = shared_dir
        self.own = shared_dir / f"{os.getpid()}.json" if shared_dir is not None else None

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "name": family.name,
                "documentation": family.documentation,
                "type": family.type,
                "samples": [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")],
            }
            for family in self.local.collect()
        ]

    def write_snapshot(self) -> None:
        """This process's counts to the shared directory (atomically: a reader never sees half a file)."""
        if self.own is None:
            return
        temporary = self.own.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.snapshot()))
        os.replace(temporary, self.own)

    def _snapshots(self) -> Iterable[list[dict[str, Any]]]:
        yield self.snapshot()
        if self.shared_dir is None:
            return
        for path in self.shared_dir.glob("*.json"):
            if path == self.own:
                continue
            try:
                yield json.loads(path.read_text())
            except (OSError, ValueError) as exc:  # a process between writes, or gone with its directory
                log.debug("metrics snapshot %s unreadable: %s", path, exc)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        totals: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for snapshot in self._snapshots():
            for family in snapshot:
                name = family["name"]
                if name not in families:
                    families[name] = Metric(name, family["documentation"], family["type"])
                    totals[name] = {}
                for sample, labels, value in family["samples"]:
                    key = (sample, tuple(sorted(labels.items())))
                    totals[name][key] = totals[name].get(key, 0.0) + value
        for name, metric in families.items():
            for (sample, labels), value in totals[name].items():
                metric.add_sample(sample, dict(labels), value)
            yield metric


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


async def keep_snapshots(totals: ProcessTotals) -> None:
    """Write this process's snapshot every SNAPSHOT_INTERVAL_S (in a thread: the event loop keeps serving)."""
    if totals.own is None:
        return
    while True:
        try:
            await asyncio.to_thread(totals.write_snapshot)
        except OSError as exc:
            log.warning("could not write the metrics snapshot %s: %s", totals.own, exc)
        await asyncio.sleep(SNAPSHOT_INTERVAL_S)
