"""``momently worker``: owns partitions of the stream and runs their shards.

The loop, every round::

    leases ── acquire free or expired partitions (compare-and-set in KV), renew held ones
       │      (a lease lost means the shard closes at once: its writes would be fenced)
    fetch  ── one pull request per owned partition, all at once; a request returns as
       │      soon as messages are there, or after ``fetch_wait_s``
    apply  ── each partition's batch through its shard, in one thread (the engine and the
       │      stage are single-writer); the stream position commits with the state
    ack    ── one ack per batch (AckAll on the last message)

On acquiring a partition the worker creates a durable pull consumer named after
its lease's token (``p<partition>-t<token>``), starting after the position the
partition's store committed, so the stream delivers exactly what the shard has
not applied, and deletes the former owner's. A former owner that has not noticed
its loss then fetches nothing (its consumer is gone) and writes nothing (the
store has the newer token).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from momently.clock import Clock
from momently.deliver.types import OutboxStore
from momently.distributed.lease import DEFAULT_TTL_MS, Lease, Leases
from momently.distributed.log import EventLog, LogSettings, connect, ensure_stream
from momently.distributed.metrics import PartitionMetrics
from momently.distributed.partition import subject
from momently.distributed.privacy import EraseCommand, decode_erase, is_erase
from momently.distributed.retention import Retention, expire_in_shard
from momently.distributed.shard import Shard
from momently.distributed.world import decode_world, is_world
from momently.errors import Fenced
from momently.events import Event, decode_event
from momently.moments.detector import MomentDetector
from momently.moments.model import Moment
from momently.moments.world import WorldEvent
from momently.runtime.stage import Decided
from momently.types import MomentStore, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs; built once from flags by the CLI."""

    log: LogSettings
    store_url: str  # with {partition}, e.g. sqlite:///data/p{partition}.db
    moments_url: str  # with {partition}
    partitions: tuple[int, ...]
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_ttl_ms: int = DEFAULT_TTL_MS
    batch: int = 1_000
    fetch_wait_s: float = 0.25
    leases_bucket: str = ""
    # --retention-days: raw events older than this leave the partitions' stores and the
    # stream once read (momently.distributed.retention); None keeps them.
    retention_days: float | None = None
    retention_every_ms: int = 3_600_000

    @property
    def bucket(self) -> str:
        return self.leases_bucket or f"{self.log.stream}_leases"


class Worker:
    """The partitions one process owns, and the loop that feeds them."""

    def __init__(
        self,
        settings: WorkerSettings,
        detector: MomentDetector,
        clock: Clock,
        *,
        deliver: Callable[[Store, MomentStore], Callable[[Decided], None]] | None = None,
        metrics: PartitionMetrics | None = None,
        on_applied: Callable[[int, list[tuple[int, Event]], int], None] | None = None,
        on_start: Callable[[EventLog], None] | None = None,
        outbox: OutboxStore | None = None,
        privacy_key: bytes | None = None,
        on_moments: Callable[[list[Moment]], None] | None = None,
    ) -> None:
        self.settings = settings
        # Every partition's new moments (the live feed's relay, momently.distributed.live).
        self._on_moments = on_moments
        # The ingest nodes' suppression key: each shard drops events of identities
        # erased in its partition (momently.distributed.privacy).
        self._privacy_key = privacy_key
        # The shared outbox, where an erase command reaches the customer's sends.
        self._outbox = outbox
        # Called on the worker's loop once connected, with the log to publish to (the
        # delivery's outcome events).
        self._on_start = on_start
        # Told (partition, batch, messages left in the partition) after each commit:
        # the benchmark's event-to-decision latencies and lag.
        self._on_applied = on_applied
        self.detector = detector
        self.clock = clock
        self._deliver = deliver
        self.metrics = metrics or PartitionMetrics(clock)
        self.shards: dict[int, Shard] = {}
        self.leases: dict[int, Lease] = {}
        self._subs: dict[int, JetStreamContext.PullSubscription] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="momently-shard")
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: Leases | None = None
        self._started = False
        self.retention = (
            None
            if settings.retention_days is None
            else Retention(
                settings.retention_days,
                clock,
                settings.retention_every_ms,
                registry=self.metrics.registry,
            )
        )

    async def in_shard(self, partition: int, read: Callable[[Shard], T]) -> T | None:
        """``read`` on the partition's shard, in the shards' thread (between two batches,
        as the stage is single-threaded); None if this worker does not own it."""
        shard = self.shards.get(partition)
        if shard is None:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: read(shard))

    # -- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the stream and open the lease bucket; a failure (the cluster
        electing a leader) closes the connection before it propagates, so the caller (a
        supervisor) can simply start again."""
        self._client = await connect(self.settings.log, f"momently-worker-{self.settings.owner}")
        try:
            self._js = self._client.jetstream(timeout=self.settings.log.timeout_s)
            await ensure_stream(self._js, self.settings.log)
            self._kv = await Leases.open(
                self._js,
                self.settings.bucket,
                self.settings.owner,
                self.clock,
                ttl_ms=self.settings.lease_ttl_ms,
                replicas=self.settings.log.replicas,
            )
        except BaseException:
            await self._client.close()
            self._client = None
            raise
        if self._on_start is not None:
            self._on_start(EventLog(self._client, self.settings.log))
        self._started = True

    @property
    def ready(self) -> bool:
        """Started and connected to NATS."""
        return self._started and self._client is not None and bool(self._client.is_connected)

    async def stop(self, release: bool = True) -> None:
        """Close every shard; with ``release`` give the leases back for others to take now."""
        for partition in sorted(self.shards):
            await self._drop(partition, release=release)
        self._executor.shutdown(wait=True)
        if self._client is not None:
            await self._client.close()
        self._started = False

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.round()
            except Exception:
                # NATS unreachable for a moment (a node failing over): the client
                # reconnects; the leases held run on until renewed or lost. A store
                # failure is handled in the round (the shard reopens); anything else
                # is logged and the loop goes on, so the process never stops working.
                log.exception("worker round failed; retrying")
                await asyncio.sleep(self.settings.fetch_wait_s)

    # -- one round -----------------------------------------------------------------

    async def round(self) -> int:
        """Balance leases, then fetch and apply once for every owned partition."""
        await self.balance()
        if not self._subs:
            await asyncio.sleep(self.settings.fetch_wait_s)
            return 0
        owned = sorted(self._subs)
        fetched = await asyncio.gather(*(self._fetch(p) for p in owned))
        done = 0
        for partition, msgs in zip(owned, fetched, strict=True):
            if partition in self.shards:
                done += await self._apply(partition, msgs)
                await self.renew()
        await self.retain()
        return done

    async def retain(self) -> int:
        """A retention pass over the owned partitions if one is due by the clock: each
        store's events older than the age that its stage has read, then the stream's
        messages its store has committed; how many events left the stores."""
        if self.retention is None or self._client is None or not self.shards:
            return 0
        cutoff = self.retention.due()
        if cutoff is None:
            return 0
        loop = asyncio.get_running_loop()
        try:
            return await self.retention.run(
                self._client,
                self.settings.log,
                self.shards,
                lambda shard, at: loop.run_in_executor(self._executor, expire_in_shard, shard, at),
                cutoff,
                self.renew,
            )
        except Exception:
            log.exception("retention pass failed; retried at the next one")
            return 0

    async def balance(self) -> None:
        """Renew held leases that are a third spent; acquire wanted partitions that are free."""
        assert self._kv is not None
        await self.renew()
        for partition in self.settings.partitions:
            if partition in self.leases:
                continue
            got = await self._kv.acquire(partition)
            if got is not None:
                await self._take(got)

    async def renew(self) -> None:
        """Renew the leases that are a third spent (called between partitions too, so a
        long round never lets a lease run out)."""
        assert self._kv is not None
        now = self.clock.now_ms()
        for partition, lease in list(self.leases.items()):
            if lease.expires_ms - now > self.settings.lease_ttl_ms * 2 // 3:
                continue
            # The compare-and-set succeeds only if nobody took the lease over, even
            # one that ran out: then this worker still holds it alone.
            renewed = await self._kv.renew(lease)
            if renewed is None:
                log.warning("lease of partition %d lost; closing its shard", partition)
                await self._drop(partition, release=False)
            else:
                self.leases[partition] = renewed

    async def _take(self, lease: Lease) -> None:
        assert self._js is not None and self._kv is not None
        partition = lease.partition
        loop = asyncio.get_running_loop()
        try:
            shard = await loop.run_in_executor(
                self._executor,
                lambda: Shard.open(
                    partition,
                    lease.token,
                    self.settings.store_url,
                    self.settings.moments_url,
                    self.detector,
                    self.clock,
                    deliver=self._deliver,
                    privacy_key=self._privacy_key,
                    on_moments=self._on_moments,
                ),
            )
        except Fenced:
            log.warning("partition %d: a newer owner wrote first; lease given back", partition)
            await self._kv.release(lease)
            return
        except Exception:
            # Its stores cannot be opened now (PostgreSQL restarting or unreachable):
            # nothing of it was applied; give the partition back and try again next round.
            log.exception("partition %d: could not open its stores; retried next round", partition)
            await self._give_back(lease)
            return
        shard.outbox = self._outbox
        try:
            self._subs[partition] = await self._consumer(partition, lease.token, shard.position)
        except (nats.errors.Error, TimeoutError):
            # JetStream could not make the consumer now (a node failing over): give
            # the partition back and try again next round.
            log.warning("partition %d: no consumer yet; retried next round", partition)
            await loop.run_in_executor(self._executor, shard.close)
            await self._give_back(lease)
            return
        self.shards[partition] = shard
        self.leases[partition] = lease
        self.metrics.taken(partition, shard.position)
        log.info(
            "partition %d taken (token %d, position %d)", partition, lease.token, shard.position
        )

    async def _give_back(self, lease: Lease) -> None:
        assert self._kv is not None
        try:
            await self._kv.release(lease)
        except (nats.errors.Error, TimeoutError):
            pass  # it frees at expiry

    async def _consumer(
        self, partition: int, token: int, position: int
    ) -> JetStreamContext.PullSubscription:
        """A durable consumer of the partition for this lease, starting after ``position``.

        Named after the lease's token, so a former owner's fetches go to its own
        consumer, which is deleted here, and never take messages from this one.
        """
        assert self._js is not None
        stream = self.settings.log.stream
        durable = f"p{partition}-t{token}"
        for info in await self._consumers():
            name = info.name or ""
            if name.startswith(f"p{partition}-t") and name != durable:
                try:
                    await self._js.delete_consumer(stream, name)
                except nats.js.errors.NotFoundError:
                    pass
        try:
            await self._js.delete_consumer(stream, durable)  # a retry of this same lease
        except nats.js.errors.NotFoundError:
            pass
        start = (
            {"deliver_policy": DeliverPolicy.ALL}
            if position == 0
            else {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": position + 1}
        )
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=subject(stream, partition),
            ack_policy=AckPolicy.ALL,
            ack_wait=60.0,
            max_ack_pending=self.settings.batch * 4,
            **start,
        )
        await self._js.add_consumer(stream, config)
        return await self._js.pull_subscribe_bind(durable, stream=stream)

    async def _consumers(self) -> list[ConsumerInfo]:
        assert self._js is not None
        found: list[ConsumerInfo] = []
        while True:
            page = await self._js.consumers_info(self.settings.log.stream, offset=len(found))
            found.extend(page)
            if len(page) < 256:
                return found

    async def _drop(self, partition: int, *, release: bool) -> None:
        shard = self.shards.pop(partition, None)
        sub = self._subs.pop(partition, None)
        lease = self.leases.pop(partition, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass
        if shard is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, shard.close)
            except Exception:  # its stores failing: nothing is left to write
                log.exception("partition %d: closing its stores failed", partition)
        if release and lease is not None and self._kv is not None:
            try:
                await self._kv.release(lease)
            except (nats.errors.Error, TimeoutError):
                log.warning("could not release partition %d; it frees at expiry", partition)
        self.metrics.dropped(partition)

    # -- fetch and apply -----------------------------------------------------------

    async def _fetch(self, partition: int) -> list[Msg]:
        sub = self._subs[partition]
        try:
            return await sub.fetch(self.settings.batch, timeout=self.settings.fetch_wait_s)
        except TimeoutError:
            return []
        except nats.errors.Error:
            log.exception("fetch from partition %d failed; retried next round", partition)
            return []

    async def _apply(self, partition: int, msgs: list[Msg]) -> int:
        shard = self.shards[partition]
        batch: list[tuple[int, Event]] = []
        # the events, world events and erase commands
        items: list[tuple[int, Event | WorldEvent | EraseCommand]] = []
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            try:
                if is_world(msg.headers):
                    items.append((seq, decode_world(msg.data)))
                elif is_erase(msg.headers):
                    items.append((seq, decode_erase(msg.data)))
                else:
                    event = decode_event(msg.data)
                    batch.append((seq, event))
                    items.append((seq, event))
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
                # Ingest validated it, so this is not ours: counted and skipped.
                self.metrics.undecodable(partition)
                log.error("partition %d: an undecodable message was skipped", partition)
        loop = asyncio.get_running_loop()
        try:
            if items:
                await loop.run_in_executor(self._executor, shard.apply, items)
            else:
                await loop.run_in_executor(self._executor, shard.tick)
        except Fenced:
            log.warning("partition %d: fenced by a newer owner; closing its shard", partition)
            await self._drop(partition, release=False)
            return 0
        except Exception:
            # The store failed (PostgreSQL restarting, a disk): the transaction rolled
            # back and nothing is acked, but the shard's memory (the engine's and the
            # stage's caches, the models) may hold part of the batch. The shard is closed
            # and its lease given back: the next round opens it afresh from what its
            # stores committed (this worker or another; retried until the stores answer)
            # and its new consumer starts after the position committed there.
            log.exception(
                "partition %d: applying a batch failed; reopened from its stores", partition
            )
            await self._drop(partition, release=True)
            return 0
        if not msgs:
            self.metrics.idle(partition)
        else:
            await msgs[-1].ack()  # AckAll: one ack for the batch
            pending = msgs[-1].metadata.num_pending
            self.metrics.applied(partition, len(batch), shard.position, pending)
            if self._on_applied is not None:
                self._on_applied(partition, batch, pending)
        return len(batch)
