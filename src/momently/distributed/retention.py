"""Retention in distributed mode: raw events older than ``--retention-days`` leave the
partitions' stores and the JetStream stream, never before their owner has read them.

Two copies of an event exist, and each goes its own way:

* **The partition's store** (PostgreSQL or SQLite): the owning worker runs the
  store's ``expire_events`` on a schedule (every ``retention_every_ms``, hourly by
  default) in the shard's thread, between two batches, for events whose *event time*
  is older than the cutoff and that the partition's moment stage has read (through
  its checkpoint), as the embedded server's :meth:`Privacy.expire
  <momently.privacy.service.Privacy.expire>` does; the store scrubs them from its
  files.
* **The stream**: in the same pass the owner purges its partition's subject of the
  messages that *arrived* before the cutoff (JetStream's own timestamp, monotone in
  the stream sequence, so a binary search over a few ``next_by_subj`` gets finds
  the boundary) and that its store has committed (sequence at most the shard's
  position). A message the owner has not read stays, however old. A purge is not
  the erasure's secure delete: JetStream drops the messages from its index at once,
  and their bytes leave its files when the whole message block holding them is
  emptied (blocks hold a stretch of arrival time across every partition, so once
  each owner has purged its share of it) or the max_age backstop removes the block
  (observed with nats-server 2.9.10); the file is unlinked, not overwritten.

The stream's ``max_age`` is only a backstop: with ``--retention-days N`` it is
N days plus :data:`LAG_ALLOWANCE_DAYS` (unless the log URL names ``max_age_s``), set
when the stream is created and updated on an existing stream whose value differs
(:func:`momently.distributed.log.ensure_stream`). A worker that falls further
behind than the allowance loses what the backstop deletes: JetStream drops by age
whatever was read or not. The partition lag metric (``momently_partition_lag``)
is what to alert on long before that. Without ``--retention-days`` nothing is
purged by the workers and the stream keeps its ``max_age`` (7 days by default, or
the URL's ``max_age_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final

import nats.js.errors
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter

from momently.clock import Clock
from momently.distributed.log import DAY_S, LogSettings
from momently.distributed.partition import subject
from momently.distributed.shard import Shard

log = logging.getLogger(__name__)

DAY_MS: Final = 86_400_000
# How far a worker may fall behind before the stream's max_age backstop drops events
# it has not read.
LAG_ALLOWANCE_DAYS: Final = 7.0


def with_retention(settings: LogSettings, retention_days: float | None) -> LogSettings:
    """The log settings of a process given ``--retention-days``: the stream's max_age
    becomes retention plus the lag allowance, unless the log URL named ``max_age_s``.

    >>> with_retention(LogSettings(), 30).max_age_s / DAY_S
    37.0
    >>> with_retention(LogSettings(), None).max_age_given
    False
    """
    if retention_days is None or settings.max_age_given:
        return settings
    return replace(
        settings, max_age_s=(retention_days + LAG_ALLOWANCE_DAYS) * DAY_S, max_age_given=True
    )


def expire_in_shard(shard: Shard, cutoff_ms: int) -> int:
    """The partition store's events older than ``cutoff_ms`` that its stage has read;
    called in the shard's thread. How many went."""
    return shard.store.expire_events(cutoff_ms, shard.moments.checkpoint())


async def purge_read(
    client: Client, stream: str, partition: int, position: int, cutoff_ms: int, timeout_s: float
) -> int:
    """Purge the partition's messages that arrived before ``cutoff_ms`` with a sequence
    at most ``position``; returns how many went."""
    js = client.jetstream(timeout=timeout_s)
    filter_subject = subject(stream, partition)

    async def kept(seq: int) -> int | None:
        """The first message of the partition at or after ``seq`` if it must go, else None."""
        try:
            msg = await js.get_msg(stream, seq=seq, subject=filter_subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        assert msg.seq is not None and msg.time is not None
        if msg.seq > position or msg.time.timestamp() * 1000 >= cutoff_ms:
            return None
        return msg.seq

    first = await kept(1)
    if first is None:
        return 0
    # The smallest sequence whose next message must stay: messages of the partition
    # below it all arrived before the cutoff and were read.
    low, high = first + 1, position + 1
    while low < high:
        middle = (low + high) // 2
        if await kept(middle) is None:
            high = middle
        else:
            low = middle + 1
    # The API itself (nats-py's purge_stream drops the answer's count).
    request = json.dumps({"filter": filter_subject, "seq": low}).encode()
    reply = json.loads(
        (await client.request(f"$JS.API.STREAM.PURGE.{stream}", request, timeout=timeout_s)).data
    )
    if "error" in reply:
        raise nats.js.errors.APIError.from_error(reply["error"])
    return int(reply.get("purged", 0))


class Retention:
    """When the worker's retention passes are due, and what they did."""

    def __init__(
        self,
        days: float,
        clock: Clock,
        every_ms: int = 3_600_000,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if days <= 0:
            raise ValueError("retention must be longer than 0 days")
        self.age_ms = int(days * DAY_MS)
        self.every_ms = every_ms
        self.clock = clock
        self.next_ms = clock.now_ms()
        self.counts = {"expiredEvents": 0, "purgedMessages": 0, "passes": 0}
        # On the worker's /metrics (the ingest node's /api/privacy/stats does not see them).
        self._expired = Counter(
            "momently_retention_expired_events",
            "Events deleted from the partitions' stores by retention",
            registry=registry,
        )
        self._purged = Counter(
            "momently_retention_purged_messages",
            "Stream messages purged by retention",
            registry=registry,
        )

    def due(self) -> int | None:
        """The cutoff if a pass is due by the clock (and the next one scheduled)."""
        now = self.clock.now_ms()
        if now < self.next_ms:
            return None
        self.next_ms = now + self.every_ms
        return now - self.age_ms

    async def run(
        self,
        client: Client,
        log_settings: LogSettings,
        shards: dict[int, Shard],
        in_thread: Callable[[Shard, int], asyncio.Future[int]],
        cutoff_ms: int,
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """One pass over the owned partitions (``shards``, the worker's own: one dropped
        meanwhile is skipped): the store, then the stream through the position the store
        has committed, then ``between`` (the worker renews its leases, as between two
        partitions' batches). How many events left the stores."""
        gone = purged = 0
        for partition in sorted(shards):
            shard = shards.get(partition)
            if shard is None:
                continue
            gone += await in_thread(shard, cutoff_ms)
            purged += await purge_read(
                client,
                log_settings.stream,
                partition,
                shard.position,
                cutoff_ms,
                log_settings.timeout_s,
            )
            if between is not None:
                await between()
        self.counts["expiredEvents"] += gone
        self.counts["purgedMessages"] += purged
        self.counts["passes"] += 1
        self._expired.inc(gone)
        self._purged.inc(purged)
        if gone or purged:
            log.info(
                "retention: %d events expired, %d stream messages purged, %d partitions",
                gone,
                purged,
                len(shards),
            )
        return gone
