"""Privacy rights in distributed mode: export, erasure and suppression across partitions.

The ingest node answers the embedded mode's privacy routes
(:func:`momently.web.privacy_api.privacy_router`, reused as it is) through
:class:`DistributedPrivacy`, an adapter over the partitions' stores and the log:

* **export** gathers, with the embedded export's own
  :func:`~momently.privacy.service.gather`, from every partition that holds the
  person (:func:`theirs`: an anonymous id's pre-login partition as well as the
  user's): profile, identities, consent, events, moments, decisions, journeys, model
  state, and the shared outbox's deliveries;
* **delete** (:meth:`DistributedPrivacy.erase_async`):

  1. finds the customer as the admin reads do, the same person in every other
     partition (:func:`theirs`), and every identifier those partitions hold of them;
  2. adds each identifier's keyed digest (:class:`~momently.privacy.suppression.Suppression`,
     the same key on every ingest node: ``MOMENTLY_PRIVACY_SECRET``) to the JetStream KV
     bucket ``<stream>_suppressed``, which every ingest node watches: from then on
     their events are dropped at ingestion, and counted;
  3. publishes an :class:`EraseCommand` on the subject of every partition that holds
     them, or would receive their events (the partitions of their userIds and
     anonymousIds), so that the partition's owner applies it *in stream order*
     (:func:`erase_in_shard`): after every event of theirs before it, it erases
     them from the partition's PostgreSQL schema (``VACUUM FULL``, and the WAL retired
     where the server allows), the moment store, the shared outbox and schedule, the
     engine's and the stage's memory, and commits the command's stream position with
     it: a restart or a takeover resumes after it, from a checkpoint without them;
  4. waits until each of those partitions has committed that position, then reads the
     partition's subject and deletes every message that names one of their
     identifiers (and the commands themselves) with JetStream's *secure* delete
     (``STREAM.MSG.DELETE`` without ``no_erase``): the file store overwrites the
     message's bytes in its block file.

A worker given the same key runs each shard on the
:class:`~momently.privacy.engine.PrivacyEngine` with the partition's digests, so an
event an ingest node took before it heard of the erasure is dropped there too.

What does not hold is in SECURITY.md: the replicas' stream stores are overwritten by
the same (replicated) delete, but not their Raft logs until the server compacts them;
PostgreSQL's WAL only where ``wal_recycle`` is off; no backups; a message taken by an
ingest node that had not heard of the erasure stays in the stream until ``max_age``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    Header,
    KeyValueConfig,
    StorageType,
)
from nats.js.kv import KeyValue
from prometheus_client.registry import Collector

from momently.clock import Clock
from momently.deliver.outbox import Outbox
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.types import OutboxStore
from momently.distributed.admin import Part, Partitions
from momently.distributed.deliver import LogSubmitter
from momently.distributed.partition import partition_of, subject
from momently.distributed.world import is_world
from momently.errors import Unavailable
from momently.events import decode_event
from momently.moments.playbook import Playbook
from momently.privacy.engine import PrivacyEngine
from momently.privacy.service import Erasure, gather, identities_of
from momently.privacy.suppression import Suppression, event_identities
from momently.runtime.delivery import Delivery, Ingest
from momently.state.profile import Profile
from momently.types import IdentityKey, Store
from momently.web.admin import NotFound

if TYPE_CHECKING:
    from fastapi import APIRouter

    from momently.distributed.log import EventLog
    from momently.distributed.shard import Shard
    from momently.privacy.service import Privacy
    from momently.runtime.writer import Writer

log = logging.getLogger(__name__)

HEADER: Final = "Momently-Erase"
SCAN_BATCH: Final = 1_000
WAIT_S = 60.0  # how long a delete's answer waits for the partitions' owners


class EraseCommand(msgspec.Struct, frozen=True):
    """Erase a customer from one partition, in stream order (see the module docstring).

    ``keys`` are their identifiers, resolved by the partition's owner when it reaches
    the command (a merge still in flight is applied first); ``customers`` the
    canonical ids the ingest node found there; ``digests`` the suppression entries the
    partition's store keeps beside its own erasure.
    """

    id: str
    keys: list[tuple[str, str]]
    customers: list[str]
    digests: list[str]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(EraseCommand).decode


def is_erase(headers: dict[str, str] | None) -> bool:
    """Whether a stream message is an erase command."""
    return headers is not None and HEADER in headers


def decode_erase(data: bytes) -> EraseCommand:
    """The command a message carries; raises ``msgspec.ValidationError`` if none."""
    return _decode(data)


def theirs(store: Store, keys: Iterable[IdentityKey]) -> set[str]:
    """The canonical customers of ``store`` that are the person these identifiers name:
    the owner of one of their userIds, and the owner of one of their anonymousIds if
    that profile is anonymous or one of their userIds. Never through a device, email or
    phone, which another person may share, nor an anonymous id merged into another
    user (someone else who logged in on the same app install)."""
    strong = sorted({k for k in keys if k[0] in ("user_id", "anonymous_id")})
    users = {v for k, v in strong if k == "user_id"}
    found: set[str] = set()
    for key, owner in store.owners(strong).items():
        customer = store.canonical(owner) or owner
        if key[0] != "user_id":
            profile = store.profile(customer)
            if profile is not None and profile.user_id not in (None, *users):
                continue
        found.add(customer)
    return found


def erase_in_shard(shard: Shard, command: EraseCommand) -> int:
    """Apply an erase command in the partition's owner: the customers its identifiers
    name there, gone from the partition's stores, the shared outbox and memory.
    Returns the events erased. The caller commits the command's stream position."""
    store = shard.store
    keys: list[IdentityKey] = [(k, v) for k, v in command.keys]
    # Resolved here, in stream order: a merge that was in flight has happened.
    found = {*theirs(store, keys), *command.customers}
    canonical = {store.canonical(c) or c for c in found}
    members: set[str] = set(canonical)
    for customer in canonical:
        profile = store.profile(customer)
        if profile is not None:
            members.update(profile.merged_from)
    if not members:
        return 0
    erased = sorted(members)
    events = store.erase(erased, command.digests)
    shard.moments.erase(erased)
    outbox: OutboxStore | None = getattr(shard, "outbox", None)
    if outbox is not None:
        outbox.erase(erased)  # pending, scheduled and sent alike
    # The hot state: the engine's identity and profile caches, the stage's states,
    # timers and world-event audience.
    engine = shard.engine
    if isinstance(engine, PrivacyEngine):
        engine.suppression.add(command.digests)  # kept in the store too (store.erase)
    PrivacyEngine.forget(cast("PrivacyEngine", engine), erased)
    shard.stage.forget(erased)
    log.info("partition %d: erased %d customers, %d events", shard.partition, len(erased), events)
    return events


class SharedSuppression:
    """The suppression list of every ingest node: digests in a JetStream KV bucket,
    watched into this node's :class:`Suppression`."""

    def __init__(self, suppression: Suppression, bucket: str) -> None:
        self.suppression = suppression
        self.bucket = bucket
        self.kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, js: JetStreamContext, replicas: int = 1) -> None:
        """Open (or make) the bucket, load every digest, then follow new ones."""
        try:
            self.kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                self.kv = await js.create_key_value(
                    KeyValueConfig(bucket=self.bucket, history=1, replicas=replicas),
                    storage=StorageType.FILE,
                )
            except nats.js.errors.BadRequestError:  # another node made it first
                self.kv = await js.key_value(self.bucket)
        watcher = await self.kv.watchall(ignore_deletes=True, meta_only=True)
        loaded: list[str] = []
        while (entry := await watcher.updates(timeout=30.0)) is not None:  # type: ignore[no-untyped-call]
            loaded.append(entry.key)
        self.suppression.add(loaded)
        self._task = asyncio.create_task(self._follow(watcher))

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is not None:
                    self.suppression.add([entry.key])
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def add(self, digests: Iterable[str]) -> None:
        """Put digests in the bucket (and in this node's list at once)."""
        found = sorted(set(digests))
        self.suppression.add(found)
        assert self.kv is not None
        for digest in found:
            await self.kv.put(digest, b"")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class LogHandle:
    """The ingest node's log and loop, once its lifespan has opened them."""

    def __init__(self) -> None:
        self.log: EventLog | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> tuple[EventLog, asyncio.AbstractEventLoop]:
        if self.log is None or self.loop is None:
            raise Unavailable(retry_after=1)
        return self.log, self.loop


class PartitionsStore:
    """The reads :func:`~momently.web.admin.find_customer`, the consent route and
    :class:`Ingest` make of a store, answered from the partition that holds the customer
    (:meth:`Partitions.find`)."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def _find(self, identifier: str) -> tuple[Part, str] | None:
        try:
            return self.partitions.find(identifier)
        except NotFound:
            return None

    def canonical(self, customer_id: str) -> str | None:
        found = self._find(customer_id)
        return None if found is None else found[1]

    def owner(self, key: IdentityKey) -> str | None:
        return self.canonical(key[1])

    def profile(self, customer_id: str) -> Profile | None:
        found = self._find(customer_id)
        return None if found is None else found[0].store.profile(found[1])

    def identities(self, customer_id: str) -> list[IdentityKey]:
        found = self._find(customer_id)
        return [] if found is None else found[0].store.identities(found[1])


class DistributedPrivacy:
    """Export, erasure and stats of the privacy routes, over partitions and the log."""

    def __init__(
        self,
        partitions: Partitions,
        handle: LogHandle,
        suppression: Suppression,
        playbook: Playbook,
        clock: Clock,
        *,
        outbox: OutboxStore | None = None,
        wait_s: float | None = None,
    ) -> None:
        self.partitions = partitions
        self.handle = handle
        self.suppression = suppression
        self.shared = SharedSuppression(
            suppression, f"{partitions.log.stream}_suppressed".replace(".", "_")
        )
        self.playbook = playbook
        self.clock = clock
        self.outbox = outbox
        self.wait_s = WAIT_S if wait_s is None else wait_s
        self.counts = {"erasures": 0, "erasedEvents": 0, "erasedMessages": 0}
        self._pending: set[asyncio.Future[int]] = set()

    # -- export ------------------------------------------------------------------------

    def _resolve(self, identifier: str) -> tuple[Part, str, dict[int, set[str]], set[IdentityKey]]:
        """The partition and customer that answer for ``identifier`` (as the admin reads
        pick them), every partition's customers that are the same person
        (:func:`theirs`: their pre-login history, say), and every identifier of theirs."""
        part, customer = self.partitions.find(identifier)
        profile = part.store.profile(customer)
        merged = profile.merged_from if profile is not None else ()
        keys = identities_of(part.store, customer, [customer, *merged])
        where: dict[int, set[str]] = {part.partition: {customer}}

        def same(p: Part) -> list[tuple[str, set[IdentityKey]]]:
            found = []
            for c in theirs(p.store, keys):
                prof = p.store.profile(c)
                if prof is not None:
                    found.append((c, identities_of(p.store, c, [c, *prof.merged_from])))
            return found

        extra: set[IdentityKey] = set()
        for p, found in zip(self.partitions.parts(), self.partitions.each(same), strict=True):
            for c, more in found:
                where.setdefault(p.partition, set()).add(c)
                extra |= more
        return part, customer, where, keys | extra

    def export(self, identifier: str) -> dict[str, Any]:
        """The embedded export's body from the partition that answers for the customer,
        and ``partitions``: what every partition holds of the same person."""
        part, customer, where, _ = self._resolve(identifier)
        parts = {p.partition: p for p in self.partitions.parts()}
        bodies = {
            (p, c): gather(parts[p].store, parts[p].moments, None, self.playbook, c)
            for p, found in where.items()
            for c in found
        }
        members: set[str] = set()
        for (_, c), body in bodies.items():
            shown = body["profile"]
            members.update({c, *(shown["mergedFrom"] if shown is not None else ())})
        outbox = self.outbox
        deliveries = (
            []
            if outbox is None
            else [
                e.to_json()
                for member in sorted(members)
                for e in outbox.entries(customer_id=member, limit=1_000_000)
            ]
        )
        return {
            "customerId": customer,
            "exportedAt": self.clock.now_ms(),
            **bodies[(part.partition, customer)],
            "deliveries": deliveries,
            "partitions": [
                {"partition": p, "customerId": c, **bodies[(p, c)]} for p, c in sorted(bodies)
            ],
        }

    # -- erasure -----------------------------------------------------------------------

    def erase(self, identifier: str) -> Erasure:
        """:meth:`erase_async` on the node's loop, from a request's thread."""
        _, loop = self.handle.get()
        future = asyncio.run_coroutine_threadsafe(self.erase_async(identifier), loop)
        return future.result()

    def _found(self, identifier: str) -> tuple[dict[int, set[str]], set[IdentityKey], int, int]:
        """Per partition the customers to erase, every identifier of theirs, and the
        events and moment rows the partitions hold of them (the answer's counts)."""
        _, _, where, keys = self._resolve(identifier)

        def held(part: Part) -> tuple[int, int]:
            events = rows = 0
            for customer in where.get(part.partition, ()):
                body = gather(part.store, part.moments, None, self.playbook, customer)
                events += len(body["events"])
                rows += sum(len(body[k]) for k in ("moments", "decisions", "journeys", "state"))
            return events, rows

        counts = [held(p) for p in self.partitions.parts() if p.partition in where]
        return where, keys, sum(e for e, _ in counts), sum(r for _, r in counts)

    async def erase_async(self, identifier: str) -> Erasure:
        """Erase the customer known by ``identifier`` everywhere (module docstring)."""
        log_, _ = self.handle.get()
        where, keys, events, rows = await asyncio.to_thread(self._found, identifier)
        digests = sorted({self.suppression.digest(k) for k in keys})
        partitions = log_.settings.partitions
        for kind, value in keys:  # where their future events would go
            if kind == "user_id":
                where.setdefault(partition_of("u:" + value, partitions), set())
            elif kind == "anonymous_id":
                where.setdefault(partition_of("a:" + value, partitions), set())
        members = sorted({c for found in where.values() for c in found})
        deliveries = await asyncio.to_thread(self._deliveries, members)
        try:
            await self.shared.add(digests)
            command_id = uuid.uuid4().hex
            positions: dict[int, int] = {}
            for p, customers in sorted(where.items()):
                command = EraseCommand(
                    command_id, [(k, v) for k, v in sorted(keys)], sorted(customers), digests
                )
                ack = await log_.js.publish(
                    subject(log_.settings.stream, p),
                    _encode(command),
                    stream=log_.settings.stream,
                    headers={Header.MSG_ID.value: f"erase:{command_id}:{p}", HEADER: "1"},
                )
                positions[p] = ack.seq
        except (nats.errors.Error, TimeoutError) as error:
            raise Unavailable(retry_after=1) from error
        # The rest runs on even if the answer gives up waiting: a partition without a
        # live owner applies its command when one takes it over, and its messages are
        # deleted then (by this node, unless it stops first: SECURITY.md).
        finish = asyncio.ensure_future(self._finish(log_, positions))
        self._pending.add(finish)
        finish.add_done_callback(self._done)
        try:
            erased = await asyncio.wait_for(asyncio.shield(finish), self.wait_s)
        except TimeoutError:
            log.warning("erasure: not all partitions applied it yet; finishing in the background")
            raise Unavailable(retry_after=5) from None
        except nats.errors.Error as error:
            raise Unavailable(retry_after=1) from error
        self.counts["erasures"] += 1
        self.counts["erasedEvents"] += events
        log.info(
            "erased a customer in %d partitions: %d events, %d stream messages",
            len(positions), events, erased,
        )  # fmt: skip
        return Erasure(len(members), len(keys), events, rows, deliveries)

    def _done(self, task: asyncio.Future[int]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("erasure: deleting the stream's messages failed", exc_info=task.exception())

    def _deliveries(self, members: Sequence[str]) -> int:
        if self.outbox is None:
            return 0
        return sum(len(self.outbox.entries(customer_id=m, limit=1_000_000)) for m in members)

    async def _finish(self, log_: EventLog, positions: dict[int, int]) -> int:
        """Wait until each partition's owner has committed the position of its command,
        then delete the partition's messages that name the customer; how many went."""
        parts = {p.partition: p for p in self.partitions.parts()}
        waiting = dict(positions)
        pause = 0.02

        def behind() -> dict[int, int]:
            late = {}
            for p, seq in waiting.items():
                fence = getattr(parts[p].store, "fence", None)
                at = fence() if callable(fence) else None
                if at is None or at.position < seq:
                    late[p] = seq
            return late

        while waiting := await asyncio.to_thread(behind):
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 1.5)  # a partition without an owner: wait calmly
        erased = 0
        for p in sorted(positions):
            erased += await self._scrub_partition(log_, p)
        self.counts["erasedMessages"] += erased
        return erased

    async def _scrub_partition(self, log_: EventLog, partition: int) -> int:
        """Securely delete the partition's messages that name an erased identifier, and
        the erase commands; how many went. Reads the partition's subject through an
        ephemeral consumer, a batch at a time."""
        js = log_.js
        stream = log_.settings.stream
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=60.0,
            max_waiting=1,
        )
        sub = await js.pull_subscribe(subject(stream, partition), stream=stream, config=config)
        gone = 0
        try:
            # Asking for no more than are there, a fetch answers at once.
            left = (await sub.consumer_info()).num_pending or 0
            while left > 0:
                try:
                    msgs = await sub.fetch(min(SCAN_BATCH, left), timeout=log_.settings.timeout_s)
                except TimeoutError:
                    return gone  # fewer than counted: deleted meanwhile
                for msg in msgs:
                    if await self._erased(js, stream, msg):
                        gone += 1
                left = msgs[-1].metadata.num_pending
            return gone
        finally:
            try:
                name = (await sub.consumer_info()).name
                await sub.unsubscribe()
                if name:
                    await js.delete_consumer(stream, name)
            except (nats.errors.Error, TimeoutError):
                pass  # it goes by itself after inactive_threshold

    async def _erased(self, js: JetStreamContext, stream: str, msg: Msg) -> bool:
        """Delete ``msg`` if it names an erased identifier (or is an erase command)."""
        headers = msg.headers
        if is_world(headers):
            return False
        if not is_erase(headers):
            try:
                event = decode_event(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
                return False
            if not self.suppression.suppressed(event_identities(event)):
                return False
        try:
            # STREAM.MSG.DELETE without no_erase: the file store overwrites the message
            return bool(await js.delete_msg(stream, msg.metadata.sequence.stream))
        except nats.js.errors.NotFoundError:
            return False  # deleted meanwhile (another node's erasure)

    # -- stats -------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            **self.counts,
            "expiredEvents": 0,
            "suppressedIdentities": len(self.suppression),
            "suppressedEvents": self.suppression.dropped,
        }

    def collector(self) -> Collector:
        """Prometheus, as the single-process server exports them: erasures, erased
        events, suppressed identities and the events they turned away."""
        from momently.privacy.service import PrivacyCollector

        return PrivacyCollector(cast("Privacy", self))

    async def start(self, log_: EventLog) -> None:
        await self.shared.start(log_.js, replicas=log_.settings.replicas)

    async def stop(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.shared.stop()


class _Consent:
    """What the consent route reads of :class:`Delivery`: the outbox to cancel in."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox


class _Submitter:
    """:class:`Ingest`'s writer: consent events published on the node's loop."""

    def __init__(self, handle: LogHandle) -> None:
        self.handle = handle

    def submit(self, events: Sequence[Any]) -> Any:
        log_, loop = self.handle.get()
        return LogSubmitter(log_, loop).submit(events)


def distributed_privacy_router(
    privacy: DistributedPrivacy, handle: LogHandle, clock: Clock
) -> APIRouter:
    """The embedded privacy routes (consent, export, delete, stats) on an ingest node."""
    from momently.web.privacy_api import privacy_router

    store = cast("Store", PartitionsStore(privacy.partitions))
    ingest = Ingest(cast("Writer", _Submitter(handle)), store, clock)
    outbox = Outbox(privacy.outbox or MemoryOutboxStore(), clock, {})
    return privacy_router(
        store,
        cast("Privacy", privacy),
        ingest,
        cast("Delivery", _Consent(outbox)),
        privacy.playbook,
        clock,
    )
