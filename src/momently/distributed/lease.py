"""Partition ownership: one lease per partition in JetStream KV, with a fencing token.

Why a KV lease, and not what else NATS offers:

- A durable pull consumer is not exclusive: any number of clients may fetch
  from it (that is how work queues scale), so it cannot say who owns a
  partition. Pinned clients of consumer priority groups can, but they arrived
  in nats-server 2.11; Debian ships 2.9.10, and a pin alone gives no token a
  store could check against a paused former owner.
- A KV bucket is a replicated stream (R=3 in a cluster, like the log), so
  ownership survives losing a NATS node. Writing a key with an expected last
  revision is a compare-and-set: of several contenders exactly one wins. The
  revision is a sequence of the bucket's stream, so it only grows: the
  revision a worker acquired a lease with is its **fencing token**.
- The token is checked by the store, in the same transaction as every write
  of the partition (``momently.store.fence_sql``): the new owner registers it
  first, and from then on a former owner that lost its lease without knowing
  (a long pause, a network partition) cannot commit anything. Leases decide who
  *should* work; the fence makes sure nobody else *can*.
- Placing owners with another engine (Ray actors with restarts, Kubernetes
  leader election) would add a second cluster to run for 64-256 partitions,
  and still need the fence; NATS is already there.

A lease's value is ``{"owner": ..., "expires_ms": ...}``, written by the holder
from its clock; a contender takes it over once its own clock is past the expiry
(time comes from an injected :class:`~momently.clock.Clock`, so tests move it by
hand). Clocks of different hosts need only agree within the renewal margin: if
they do not, two workers may both think they own a partition for a moment, and
the fence refuses the older one's writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from momently.clock import Clock

DEFAULT_TTL_MS: Final = 10_000


class _Held(msgspec.Struct, frozen=True):
    owner: str
    expires_ms: int


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Held).decode


@dataclass(frozen=True, slots=True)
class Lease:
    """A partition this worker owns: ``token`` fences its writes, ``revision`` renews it."""

    partition: int
    token: int
    revision: int
    expires_ms: int


class Leases:
    """Acquire, renew and release partition leases for one worker (``owner``)."""

    def __init__(self, kv: KeyValue, owner: str, clock: Clock, ttl_ms: int) -> None:
        if ttl_ms < 1:
            raise ValueError("ttl_ms must be positive")
        self.kv = kv
        self.owner = owner
        self.clock = clock
        self.ttl_ms = ttl_ms

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        bucket: str,
        owner: str,
        clock: Clock,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        replicas: int = 1,
    ) -> Leases:
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                kv = await js.create_key_value(
                    KeyValueConfig(bucket=bucket, history=1, replicas=replicas),
                    storage=StorageType.FILE,
                )
            except nats.js.errors.BadRequestError:  # another worker made it first
                kv = await js.key_value(bucket)
        return cls(kv, owner, clock, ttl_ms)

    @staticmethod
    def key(partition: int) -> str:
        return f"p{partition}"

    async def holder(self, partition: int) -> tuple[str, int, int] | None:
        """(owner, expires_ms, revision) of a partition's lease, or None if never taken."""
        try:
            entry = await self.kv.get(self.key(partition))
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        held = _decode(entry.value)
        return held.owner, held.expires_ms, entry.revision

    async def acquire(self, partition: int) -> Lease | None:
        """Take a partition that is free or whose lease ran out; None if another holds it."""
        now = self.clock.now_ms()
        expires = now + self.ttl_ms
        value = _encode(_Held(self.owner, expires))
        found = await self.holder(partition)
        try:
            if found is None:
                revision = await self.kv.create(self.key(partition), value)
            else:
                owner, held_until, last = found
                if owner != self.owner and held_until > now:
                    return None
                # A lease this worker held before a restart is taken afresh: a new
                # token, so any write still in flight from the old process is fenced.
                revision = await self.kv.update(self.key(partition), value, last=last)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None  # another contender won the compare-and-set
        return Lease(partition, revision, revision, expires)

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend a lease; None if it was lost (taken over after running out)."""
        expires = self.clock.now_ms() + self.ttl_ms
        value = _encode(_Held(self.owner, expires))
        try:
            revision = await self.kv.update(self.key(lease.partition), value, last=lease.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        return Lease(lease.partition, lease.token, revision, expires)

    async def release(self, lease: Lease) -> None:
        """Give a partition up now (a clean shutdown), so another worker need not wait."""
        value = _encode(_Held(self.owner, 0))
        try:
            await self.kv.update(self.key(lease.partition), value, last=lease.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass  # already taken over
