"""Prometheus metrics of a worker, per partition: throughput, lag and checkpoint age."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from momently.clock import Clock


class PartitionMetrics(Collector):
    """Counters and gauges by partition; the checkpoint age is read at scrape time."""

    def __init__(self, clock: Clock, registry: CollectorRegistry | None = None) -> None:
        self.clock = clock
        self.registry = registry or CollectorRegistry()
        self.events = Counter(
            "momently_partition_events",
            "Stream messages applied, by partition",
            ["partition"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "momently_partition_lag",
            "Messages in the partition's stream after the last one fetched",
            ["partition"],
            registry=self.registry,
        )
        self.position = Gauge(
            "momently_partition_position",
            "The stream sequence the partition's store has committed",
            ["partition"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "momently_partition_undecodable",
            "Stream messages that were not an event, skipped",
            ["partition"],
            registry=self.registry,
        )
        self.owned = Gauge(
            "momently_partitions_owned", "Partitions this worker owns", registry=self.registry
        )
        self._committed_ms: dict[int, int] = {}
        self.registry.register(self)

    def taken(self, partition: int, position: int) -> None:
        self._committed_ms[partition] = self.clock.now_ms()
        self.position.labels(str(partition)).set(position)
        self.owned.set(len(self._committed_ms))

    def dropped(self, partition: int) -> None:
        self._committed_ms.pop(partition, None)
        for gauge in (self.lag, self.position):
            try:
                gauge.remove(str(partition))
            except KeyError:
                pass
        self.owned.set(len(self._committed_ms))

    def applied(self, partition: int, events: int, position: int, pending: int) -> None:
        label = str(partition)
        self._committed_ms[partition] = self.clock.now_ms()
        self.events.labels(label).inc(events)
        self.position.labels(label).set(position)
        self.lag.labels(label).set(pending)

    def idle(self, partition: int) -> None:
        """A fetch found nothing: the partition is caught up."""
        self._committed_ms[partition] = self.clock.now_ms()
        self.lag.labels(str(partition)).set(0)

    def undecodable(self, partition: int) -> None:
        self.skipped.labels(str(partition)).inc()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "momently_partition_checkpoint_age_seconds",
            "Seconds since the partition last committed or found nothing to commit",
            labels=["partition"],
        )
        now = self.clock.now_ms()
        for partition, at in sorted(self._committed_ms.items()):
            age.add_metric([str(partition)], max(0, now - at) / 1000)
        yield age
