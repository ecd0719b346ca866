"""Delivery from a worker: every partition hands its decisions to one shared outbox.

The embedded :class:`~momently.runtime.delivery.Delivery` is reused as it is:
one per partition submits that partition's decisions (composing from its own
stores, and reconciling at takeover the decisions its stage committed but the
outbox never heard of), and one per worker runs the sender. The outbox is keyed
by each send's idempotency key (decision id and channel), so a replay after a
takeover, or two partitions' submitters, put a send in once; claims with a
lease (``FOR UPDATE SKIP LOCKED`` in PostgreSQL) keep several workers' senders
from sending one entry twice.

The outcome of each send (``Message Sent``, ``Message Failed``) goes back into
the log as in the embedded mode, published to the stream by the worker's NATS
connection (:meth:`WorkerDelivery.attach`), so the customer's partition folds
it into their history like any event; its ``messageId`` is the send's, so a
repeat is dropped. The sender may send for any partition, so it names the
customer by the ids the partitions' stores hold for them, and checks their
consent at send time (as the embedded server does) against the profile there.

Tracking links: with ``links`` (``momently worker --public-url``, the key in
``MOMENTLY_TRACKING_SECRET``, the same on every worker and ingest node), each
message carries signed click, open and unsubscribe links to an ingest node's
``/t/*`` routes, as the embedded server's do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

from momently.clock import Clock
from momently.deliver.channels.inapp import InAppHub
from momently.deliver.tracking import TrackingLinks
from momently.deliver.types import OutboxStore
from momently.engine import IngestResult
from momently.errors import ConfigError
from momently.events import Event
from momently.moments.playbook import Playbook
from momently.privacy.consent import gate_routes
from momently.runtime.delivery import Delivery, Ingest, Routes, build_routes
from momently.runtime.stage import Decided
from momently.state.profile import Profile
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore
from momently.types import IdentityKey, MomentStore, Store

if TYPE_CHECKING:
    from momently.distributed.admin import Part, Partitions
    from momently.distributed.log import EventLog
    from momently.runtime.writer import Writer

log = logging.getLogger(__name__)


class LogSubmitter:
    """What :class:`Ingest` writes through (the embedded writer's ``submit``): the
    events published on the worker's loop, from the sender's thread."""

    def __init__(self, log: EventLog, loop: asyncio.AbstractEventLoop) -> None:
        self.log = log
        self.loop = loop

    def submit(self, events: Sequence[Event]) -> Future[IngestResult]:
        return asyncio.run_coroutine_threadsafe(self.log.write(events), self.loop)


class PartitionView:
    """What the sender reads of a customer it may send to, from whichever partition
    holds them: their ids (to name them in outcome events) and their profile (for
    the consent check at send time)."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def canonical(self, customer_id: str) -> str | None:
        return customer_id  # each partition resolves it in the reads below

    def identities(self, customer_id: str) -> list[IdentityKey]:
        def read(part: Part) -> list[IdentityKey]:
            canonical = part.store.canonical(customer_id)
            return [] if canonical is None else part.store.identities(canonical)

        found = self.partitions.each(read)
        return [key for keys in found for key in keys]

    def profile(self, customer_id: str) -> Profile | None:
        def read(part: Part) -> Profile | None:
            canonical = part.store.canonical(customer_id)
            return None if canonical is None else part.store.profile(canonical)

        found = [p for p in self.partitions.each(read) if p is not None]
        return max(found, key=lambda p: p.last_seen) if found else None


class WorkerDelivery:
    """The worker's outbox: a submitter per partition, one sender thread."""

    def __init__(
        self,
        playbook: Playbook,
        outbox: OutboxStore,
        clock: Clock,
        *,
        environ: Mapping[str, str] | None = None,
        routes: Routes | None = None,
        partitions: Partitions | None = None,
        links: TrackingLinks | None = None,
        hub: InAppHub | None = None,
    ) -> None:
        self.spec = playbook.decide
        self.links = links
        self.outbox = outbox
        self.clock = clock
        self.routes = (
            routes
            if routes is not None
            # In-app sends go to ``hub``: the ingest nodes' streams (distributed.inapp).
            else build_routes(self.spec, environ or {}, clock, hub or InAppHub(clock))
        )
        self._partitions = partitions
        if partitions is not None:
            # As the embedded server does: every provider checks consent as it stands
            # at send time, here in the customer's partition (ConsentGate reads
            # canonical() and profile()).
            view = cast("Store", PartitionView(partitions))
            self.routes.routes = gate_routes(self.routes.routes, self.spec, view)
        # The sender claims entries and sends them; it reads no partition's log.
        self.sender = self._delivery(MemoryStore(), MemoryMomentStore())
        # The counters of every partition's submitter this process made (one per take),
        # read without keeping a submitter, or its partition's stores, alive once the
        # partition is let go.
        self._submitted: list[Callable[[], dict[str, int]]] = []

    def _delivery(self, store: Store, moments: MomentStore) -> Delivery:
        return Delivery(
            self.spec,
            self.outbox,
            self.routes,
            store=store,
            moments=moments,
            clock=self.clock,
            ingest=None,
            links=self.links,
        )

    def for_partition(self, store: Store, moments: MomentStore) -> Callable[[Decided], None]:
        """The partition stage's ``on_decisions``; first submits what a crash left out."""
        delivery = self._delivery(store, moments)
        self._submitted.append(delivery.count_reader())
        delivery.reconcile()

        def submit(decided: Decided) -> None:
            delivery.on_decisions(decided)
            self.sender.worker.wake()

        return submit

    def attach(self, log: EventLog) -> None:
        """Publish outcome events to the log (called on the worker's loop once NATS is
        connected; outcomes before then are counted, not logged). Needs the
        partitions, to name each customer by the ids their partition holds."""
        if self._partitions is None:
            raise ConfigError("outcome events need the partitions' stores (partitions=)")
        writer = cast("Writer", LogSubmitter(log, asyncio.get_running_loop()))
        store = cast("Store", PartitionView(self._partitions))  # Ingest reads two methods
        self.sender.ingest = Ingest(writer, store, self.clock)

    def counters(self) -> dict[str, Any]:
        """The embedded ``/api/deliveries/stats``'s ``counts`` and ``worker`` for this
        process: its sender's and every partition submitter's it made, added (each
        counts since this process started, as the embedded server's do)."""
        found = self.sender.counters()
        counts: Counter[str] = Counter(found["counts"])
        for read in list(self._submitted):
            counts.update(read())
        return {"counts": dict(counts), "worker": found["worker"]}

    def stats(self) -> dict[str, Any]:
        """A worker's ``/metrics`` (:class:`DeliveryCollector`): :meth:`counters` and the
        shared outbox by state (the same on every worker: aggregate it with ``max``, not
        ``sum``). While the outbox's store does not answer it is left out, so the scrape,
        and the partitions' metrics in it, still answer."""
        try:
            outbox = self.outbox.counts()
        except Exception:
            log.warning("outbox unreachable; its entries are left out of /metrics", exc_info=True)
            outbox = {}
        return {"outbox": outbox, **self.counters()}

    def start(self) -> None:
        self.sender.start()

    def close(self) -> None:
        self.sender.close()  # stops the sender, closes the routes and the outbox
        if self._partitions is not None:
            self._partitions.close()
