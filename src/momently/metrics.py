"""Prometheus metrics, one registry per running app so tests never share counters."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from momently.moments.model import Moment


class Metrics:
    """Everything the engine counts: no rejected input or dropped event goes uncounted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "momently_ingest_requests",
            "Ingestion requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "momently_events_accepted",
            "Events durably appended to the log",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "momently_events_duplicate",
            "Events dropped as duplicates of a known messageId",
            registry=self.registry,
        )
        self.rejected = Counter(
            "momently_events_rejected",
            "Messages refused as invalid, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "momently_commit_seconds",
            "Time to commit one group of events",
            registry=self.registry,
        )
        self.commit_size = Histogram(
            "momently_commit_events",
            "Events per group commit",
            buckets=(1, 10, 100, 500, 1000, 5000, 20000),
            registry=self.registry,
        )
        self.pending = Gauge(
            "momently_writer_pending_events",
            "Events waiting for the next commit",
            registry=self.registry,
        )

        self.moments = Counter(
            "momently_moments_detected",
            "Moments detected, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.moment_position = Gauge(
            "momently_moment_stage_position",
            "The last log seq the moment stage has committed",
            registry=self.registry,
        )

    def on_moments(self, moments: Sequence[Moment]) -> None:
        for moment in moments:
            self.moments.labels(moment.kind).inc()

    def on_commit(self, size: int, seconds: float) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_size.observe(size)
