"""Privacy rights in the running engine: export, erasure and retention.

* :meth:`Privacy.export` — everything held about one customer, from every store;
* :meth:`Privacy.erase` — the customer gone from every store and every cache,
  the freed bytes scrubbed from the files, and each of their identifiers kept
  only as a keyed digest that turns their events away at ingestion;
* :meth:`Privacy.tick` — retention: raw events older than the configured age
  deleted, on a schedule read from the injected clock.

Erasure and retention run on the writer thread (no ingest can interleave) and
under the moment stage's lock (the stage neither reads nor writes meanwhile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from momently.clock import Clock
from momently.decide.records import DecisionQuery
from momently.deliver.types import OutboxStore
from momently.moments.detector import decode_state
from momently.moments.playbook import Playbook
from momently.moments.records import MomentQuery
from momently.privacy.engine import PrivacyEngine
from momently.privacy.suppression import Suppression
from momently.runtime.stage import StageRunner
from momently.runtime.writer import Writer
from momently.types import IdentityKey, MomentStore, Store
from momently.web.admin import NotFound, find_customer

log = logging.getLogger(__name__)

DAY_MS: Final = 86_400_000
PAGE: Final = 1_000


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure removed."""

    customers: int
    identities: int
    events: int
    moment_rows: int
    deliveries: int


def gather(
    store: Store,
    moments: MomentStore,
    outbox: OutboxStore | None,
    playbook: Playbook,
    customer: str,
) -> dict[str, Any]:
    """What one set of stores holds about the canonical ``customer`` (and the customers
    merged into it), as JSON values: the body of an export. Also what distributed mode
    gathers from each partition that knows the customer (:mod:`momently.distributed.privacy`).
    """
    profile = store.profile(customer)
    members = sorted({customer, *(profile.merged_from if profile is not None else ())})
    events: list[dict[str, Any]] = []
    after = 0
    while page := store.customer_events(customer, after, PAGE):
        events.extend(
            {"seq": r.seq, "customerId": r.customer_id, **msgspec.to_builtins(r.event)}
            for r in page
        )
        after = page[-1].seq
    found_moments: list[Any] = []
    decisions: list[Any] = []
    deliveries: list[Any] = []
    journeys: list[Any] = []
    for member in members:
        found_moments.extend(msgspec.to_builtins(m) for m in _moments_of(moments, member))
        decisions.extend(msgspec.to_builtins(d) for d in _decisions_of(moments, member))
        if outbox is not None:
            deliveries.extend(
                e.to_json() for e in outbox.entries(customer_id=member, limit=1_000_000)
            )
        for journey in playbook.journeys:
            journeys.extend(
                msgspec.to_builtins(r) for r in moments.journey_runs(journey.name, member)
            )
    states = {
        member: msgspec.to_builtins(decode_state(row.body))
        for member, row in moments.states(members).items()
    }
    shown = profile.to_json() if profile is not None else None
    return {
        "profile": shown,
        "identities": [{"kind": k, "value": v} for k, v in store.identities(customer)],
        "consent": shown["consent"] if shown is not None else {},
        "events": events,
        "moments": found_moments,
        "decisions": decisions,
        "deliveries": deliveries,
        "journeys": journeys,
        "state": states,
    }


def identities_of(store: Store, customer: str, members: Sequence[str]) -> set[IdentityKey]:
    """Every identifier ``store`` holds of the customer and the ``members`` merged into
    it: the identity rows, and the profile's userId, emails, phones and devices."""
    keys = {k for m in members for k in store.identities(m)}
    profile = store.profile(customer)
    if profile is not None:
        if profile.user_id:
            keys.add(("user_id", profile.user_id))
        keys.update(("email", e) for e in profile.emails)
        keys.update(("phone", p) for p in profile.phones)
        keys.update(("device_id", d) for d in profile.devices)
    return keys


def _moments_of(store: MomentStore, customer: str) -> list[Any]:
    found: list[Any] = []
    before = None
    while True:
        page = store.moments(MomentQuery(customer_id=customer, before=before, limit=PAGE))
        found.extend(page)
        if len(page) < PAGE:
            return found
        before = (page[-1].at_ms, page[-1].moment_id)


def _decisions_of(store: MomentStore, customer: str) -> list[Any]:
    found: list[Any] = []
    before = None
    while True:
        page = store.decisions(DecisionQuery(customer_id=customer, before=before, limit=PAGE))
        found.extend(page)
        if len(page) < PAGE:
            return found
        before = (page[-1].at_ms, page[-1].decision_id)


class Privacy:
    """Export, erasure and retention across the log, the moment store and the outbox."""

    def __init__(
        self,
        *,
        store: Store,
        moments: MomentStore,
        outbox: OutboxStore,
        runner: StageRunner,
        engine: PrivacyEngine,
        writer: Writer,
        playbook: Playbook,
        clock: Clock,
        retention_days: float | None = None,
        retention_every_ms: int = 3_600_000,
    ) -> None:
        self.store = store
        self.moments = moments
        self.outbox = outbox
        self.runner = runner
        self.engine = engine
        self.writer = writer
        self.playbook = playbook
        self.clock = clock
        self.retention_ms = None if retention_days is None else int(retention_days * DAY_MS)
        self.retention_every_ms = retention_every_ms
        self.next_retention_ms = clock.now_ms()
        self.counts = {"erasures": 0, "erasedEvents": 0, "expiredEvents": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def suppression(self) -> Suppression:
        return self.engine.suppression

    # -- export ------------------------------------------------------------------------

    def export(self, identifier: str) -> dict[str, Any]:
        """Everything held about the customer known by ``identifier``, as JSON values."""
        customer = find_customer(self.store, identifier)
        if self.store.profile(customer) is None:
            raise NotFound(f"no customer is known by {identifier!r}", "id")
        return {
            "customerId": customer,
            "exportedAt": self.clock.now_ms(),
            **gather(self.store, self.moments, self.outbox, self.playbook, customer),
        }

    # -- erasure -----------------------------------------------------------------------

    def erase(self, identifier: str) -> Erasure:
        """Erase the customer known by ``identifier`` everywhere; NotFound if none."""
        return self.engine.call(self.writer, lambda: self._erase(identifier))

    def _identities(self, customer: str, members: list[str]) -> set[IdentityKey]:
        return identities_of(self.store, customer, members)

    def _erase(self, identifier: str) -> Erasure:
        customer = find_customer(self.store, identifier)
        profile = self.store.profile(customer)
        members = sorted({customer, *(profile.merged_from if profile is not None else ())})
        keys = self._identities(customer, members)
        digests = sorted({self.suppression.digest(k) for k in keys})
        with self.runner.lock:
            events = self.store.erase(members, digests)
            self.suppression.add(digests)
            rows = self.moments.erase(members)
            sends = self.outbox.erase(members)
            self.engine.forget(members)
            self.runner.stage.forget(members)
        self.counts["erasures"] += 1
        self.counts["erasedEvents"] += events
        log.info("erased a customer: %d events, %d identities", events, len(keys))
        return Erasure(len(members), len(keys), events, rows, sends)

    # -- retention ---------------------------------------------------------------------

    def expire(self) -> int:
        """Delete the raw events older than the retention age now; how many went."""
        if self.retention_ms is None:
            return 0
        cutoff = self.clock.now_ms() - self.retention_ms
        return self.engine.call(self.writer, lambda: self._expire(cutoff))

    def _expire(self, cutoff: int) -> int:
        with self.runner.lock:
            # Only what the moment stage has read: an event it has not seen is kept for it.
            gone = self.store.expire_events(cutoff, self.moments.checkpoint())
        self.counts["expiredEvents"] += gone
        return gone

    def tick(self) -> int:
        """Run retention if it is due by the clock; how many events went."""
        now = self.clock.now_ms()
        if self.retention_ms is None or now < self.next_retention_ms:
            return 0
        self.next_retention_ms = now + self.retention_every_ms
        return self.expire()

    def start(self, poll_s: float = 60.0) -> None:
        """Check every ``poll_s`` seconds whether retention is due."""
        if self.retention_ms is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(poll_s):
                try:
                    self.tick()
                except Exception:
                    log.exception("retention pass failed; retried at the next one")

        self._thread = threading.Thread(target=loop, name="momently-retention", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stats(self) -> dict[str, int]:
        """Erasures, events erased and expired, suppressed identities and events dropped."""
        return {
            **self.counts,
            "suppressedIdentities": len(self.suppression),
            "suppressedEvents": self.suppression.dropped,
        }


class PrivacyCollector(Collector):
    """Prometheus: erasures, erased and expired events, suppressed identities and the
    events they turned away at ingestion."""

    def __init__(self, privacy: Privacy) -> None:
        self.privacy = privacy

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.privacy.stats()
        for name, key, text in (
            ("momently_privacy_erasures", "erasures", "Customers erased"),
            ("momently_privacy_erased_events", "erasedEvents", "Events erased with a customer"),
            ("momently_privacy_expired_events", "expiredEvents", "Events deleted by retention"),
            ("momently_privacy_suppressed_events", "suppressedEvents",
             "Events dropped at ingestion for naming an erased identity"),
        ):  # fmt: skip
            yield CounterMetricFamily(name, text, value=stats[key])
        yield GaugeMetricFamily(
            "momently_privacy_suppressed_identities",
            "Identities kept as suppression digests",
            value=stats["suppressedIdentities"],
        )
