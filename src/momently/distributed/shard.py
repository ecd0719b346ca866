"""One partition's engine: the embedded :class:`Engine` and :class:`MomentStage` over the
partition's own stores, fed from its slice of the stream.

Each partition is a shard of the embedded mode: its events go through the
same identity resolution, profile folding, moment detection, prediction and
decision code, into its own stores (``--store sqlite:///data/p{partition}.db``
or ``postgresql://…?schema=p{partition}``). The stream position is committed
by the store in the same transaction as the events it covers
(:class:`~momently.types.Fence`), so on restart or takeover the shard resumes
from that position: an event replayed from before it is a known ``messageId``
and is dropped, and the stage resumes from its own checkpoint in its own
store; its ids are deterministic, so a replay decides and sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from momently.clock import Clock
from momently.engine import Engine
from momently.errors import ConfigError
from momently.events import Event
from momently.moments.detector import MomentDetector
from momently.moments.model import Moment
from momently.moments.records import MomentBatch
from momently.moments.world import WorldEvent
from momently.privacy.engine import PrivacyEngine
from momently.privacy.suppression import Suppression
from momently.runtime.stage import Decided, MomentStage
from momently.store import open_moment_store, open_store
from momently.types import Changes, Fence, MomentStore, Store

if TYPE_CHECKING:
    from momently.deliver.types import OutboxStore
    from momently.distributed.privacy import EraseCommand


class FencedStore(Store, Protocol):
    """A store that keeps a fencing token and stream position (distributed mode)."""

    def fence(self) -> Fence | None: ...


def partition_url(template: str, partition: int) -> str:
    """A store URL for one partition: ``{partition}`` in the template is replaced.

    >>> partition_url("sqlite:///data/p{partition}.db", 7)
    'sqlite:///data/p7.db'
    """
    if "{partition}" not in template and not template.startswith("memory:"):
        raise ConfigError(
            f"store URL {template!r} has no {{partition}}: each partition needs its own store"
        )
    return template.replace("{partition}", str(partition))


class Shard:
    """A partition this process owns, with the token its lease gave it."""

    def __init__(
        self,
        partition: int,
        token: int,
        store: Store,
        moments: MomentStore,
        detector: MomentDetector,
        clock: Clock,
        *,
        on_decisions: Callable[[Decided], None] | None = None,
        deliver: Callable[[Store, MomentStore], Callable[[Decided], None]] | None = None,
        privacy_key: bytes | None = None,
        on_moments: Callable[[list[Moment]], None] | None = None,
    ) -> None:
        if not callable(getattr(store, "fence", None)):
            raise ConfigError(f"{type(store).__name__} cannot hold a fencing token")
        self.partition = partition
        self.token = token
        self.store: FencedStore = store  # type: ignore[assignment]
        self.moments = moments
        # The shared outbox, where an erase command reaches the sends (set by the worker).
        self.outbox: OutboxStore | None = None
        fence = self.store.fence()
        self.position = fence.position if fence is not None else 0
        # The token goes in before anything else: from here on, writes of a former
        # owner of this partition are refused.
        self.store.commit([], Changes(fence=Fence(token, self.position)))
        moments.commit(MomentBatch(fence=token))
        if deliver is not None:  # after the token: a fenced owner submits nothing
            on_decisions = deliver(store, moments)
        # With the ingest nodes' privacy key, events naming an identity erased here
        # (the partition's suppression digests) are dropped, even one an ingest node
        # took in the moment before it heard of the erasure.
        self.engine: Engine = (
            Engine(store)
            if privacy_key is None
            else PrivacyEngine(store, Suppression(privacy_key, store.suppressed()))
        )
        self.engine.fence = Fence(token, self.position)
        self.stage = MomentStage(
            store, moments, detector, clock, on_moments=on_moments, on_decisions=on_decisions
        )
        self.stage.fence = token
        self.stage.catch_up()  # events in the store that the stage had not reached

    @classmethod
    def open(
        cls,
        partition: int,
        token: int,
        store_url: str,
        moments_url: str,
        detector: MomentDetector,
        clock: Clock,
        *,
        deliver: Callable[[Store, MomentStore], Callable[[Decided], None]] | None = None,
        privacy_key: bytes | None = None,
        on_moments: Callable[[list[Moment]], None] | None = None,
    ) -> Shard:
        store = open_store(partition_url(store_url, partition))
        moments = open_moment_store(partition_url(moments_url, partition))
        try:
            return cls(
                partition, token, store, moments, detector, clock,
                deliver=deliver, privacy_key=privacy_key, on_moments=on_moments,
            )  # fmt: skip
        except BaseException:
            moments.close()
            store.close()
            raise

    def apply(self, batch: Sequence[tuple[int, Event | WorldEvent | EraseCommand]]) -> int:
        """Fold stream messages (stream seq, event) into state; returns events new to it.

        Messages at or before the committed position were applied already (a
        replay after a takeover): they are skipped here, and any that slip
        through are dropped by the ``messageId`` dedupe. A world event among them
        is applied in its place in the stream, after the events before it; so is an
        erase command (:mod:`momently.distributed.privacy`), its position committed
        after the customer is gone from the stores.
        """
        accepted = 0
        run: list[tuple[int, Event]] = []
        for seq, item in batch:
            if isinstance(item, Event):
                run.append((seq, item))
                continue
            accepted += self._events(run)
            run = []
            if seq > self.position:
                if isinstance(item, WorldEvent):
                    # Replayed after a crash between the two commits: the stage finds
                    # the world event's id committed and does nothing.
                    self.stage.world_event(item)
                else:  # an erase command; a replay of it finds nobody left to erase
                    from momently.distributed.privacy import erase_in_shard

                    erase_in_shard(self, item)
                self.store.commit([], Changes(fence=Fence(self.token, seq)))
                self.position = seq
        return accepted + self._events(run)

    def _events(self, batch: Sequence[tuple[int, Event]]) -> int:
        fresh = [event for seq, event in batch if seq > self.position]
        if not fresh:
            return 0
        last = batch[-1][0]
        self.engine.fence = Fence(self.token, last)
        result = self.engine.ingest(fresh)
        if result.accepted == 0:  # all known: the position still moves on
            self.store.commit([], Changes(fence=Fence(self.token, last)))
        self.position = last
        self.stage.catch_up()
        self.stage.tick()
        return result.accepted

    def tick(self) -> int:
        """Fire the stage's timers due by the clock (absences, dwells, labels)."""
        return self.stage.tick()

    def close(self) -> None:
        self.moments.close()
        self.store.close()
