"""Delivery from a worker: every partition hands its decisions to one shared outbox.

The embedded :class:`~momently.runtime.delivery.Delivery` is reused as it is:
one per partition submits that partition's decisions (composing from its own
stores, and reconciling at takeover the decisions its stage committed but the
outbox never heard of), and one per worker runs the sender. The outbox is keyed
by each send's idempotency key (decision id and channel), so a replay after a
takeover, or two partitions' submitters, put a send in once; claims with a
lease (``FOR UPDATE SKIP LOCKED`` in PostgreSQL) keep several workers' senders
from sending one entry twice.

Not yet done in distributed mode: the outcome events (``Message Sent``,
``Message Failed``) are not published back into the log, and messages carry no
tracking links (no public URL or secret in a worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from momently.clock import Clock
from momently.deliver.channels.inapp import InAppHub
from momently.deliver.types import OutboxStore
from momently.moments.playbook import Playbook
from momently.runtime.delivery import Delivery, Routes, build_routes
from momently.runtime.stage import Decided
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore
from momently.types import MomentStore, Store


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
    ) -> None:
        self.spec = playbook.decide
        self.outbox = outbox
        self.clock = clock
        self.routes = (
            routes
            if routes is not None
            else build_routes(self.spec, environ or {}, clock, InAppHub(clock))
        )
        # The sender reads no partition's stores: it claims entries and sends them.
        self.sender = self._delivery(MemoryStore(), MemoryMomentStore())

    def _delivery(self, store: Store, moments: MomentStore) -> Delivery:
        return Delivery(
            self.spec,
            self.outbox,
            self.routes,
            store=store,
            moments=moments,
            clock=self.clock,
            ingest=None,
            links=None,
        )

    def for_partition(self, store: Store, moments: MomentStore) -> Callable[[Decided], None]:
        """The partition stage's ``on_decisions``; first submits what a crash left out."""
        delivery = self._delivery(store, moments)
        delivery.reconcile()

        def submit(decided: Decided) -> None:
            delivery.on_decisions(decided)
            self.sender.worker.wake()

        return submit

    def start(self) -> None:
        self.sender.start()

    def close(self) -> None:
        self.sender.close()  # stops the sender, closes the routes and the outbox
