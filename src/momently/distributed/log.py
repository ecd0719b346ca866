"""The event log of distributed mode: one JetStream stream, partitioned by customer.

Subjects are ``momently.ev.<partition>`` (:mod:`momently.distributed.partition`).
:meth:`EventLog.write` publishes a submission asynchronously, one message per
event with ``Nats-Msg-Id`` = ``messageId`` (JetStream drops a repeat within the
stream's duplicate window; the partition's store drops any later one), and
returns only once JetStream has acknowledged every message, i.e. stored it on
the stream's replicas. Any failure is :class:`~momently.errors.Unavailable` (a
503): the client resends the whole batch and the dedupe makes that harmless.

The log is named by a URL::

    nats://host1:4222,host2:4222?stream=MOMENTLY&partitions=64&replicas=3

(also ``duplicate_window_s``, ``max_age_s`` and ``timeout_s``, how long a publish
or a JetStream API call may take before it counts as failed; default 10).

The partition count is written into the stream's description when the stream
is created, and a process configured with another count refuses to start:
changing it would move customers between partitions.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import parse_qs, urlparse

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck, RetentionPolicy, StorageType, StreamConfig

from momently.distributed.partition import (
    DEFAULT_PARTITIONS,
    customer_key,
    partition_of,
    subject,
)
from momently.engine import IngestResult
from momently.errors import ConfigError, Unavailable
from momently.events import Event, encode_event

_log = logging.getLogger(__name__)
_PARTITIONS = re.compile(r"partitions=(\d+)")
DAY_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Where the log is and how its stream is made."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "MOMENTLY"
    partitions: int = DEFAULT_PARTITIONS
    replicas: int = 1
    duplicate_window_s: float = 120.0
    max_age_s: float = 7 * DAY_S
    timeout_s: float = 10.0
    # Whether max_age_s was configured (the URL's max_age_s, or --retention-days through
    # momently.distributed.retention.with_retention): only then is an existing stream's
    # max_age updated to it, so a process configured without it leaves the stream alone.
    max_age_given: bool = False

    @classmethod
    def from_url(cls, url: str) -> LogSettings:
        """``nats://h1:4222,h2:4222?stream=S&partitions=64&replicas=3``."""
        parsed = urlparse(url)
        if parsed.scheme != "nats" or not parsed.netloc:
            raise ConfigError(f"{url!r} is not a log URL: use nats://host:port[,host:port]")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        max_age_given = "max_age_s" in options
        try:
            settings = cls(
                servers=tuple(f"nats://{host}" for host in parsed.netloc.split(",")),
                stream=options.pop("stream", "MOMENTLY"),
                partitions=int(options.pop("partitions", DEFAULT_PARTITIONS)),
                replicas=int(options.pop("replicas", 1)),
                duplicate_window_s=float(options.pop("duplicate_window_s", 120.0)),
                max_age_s=float(options.pop("max_age_s", 7 * DAY_S)),
                timeout_s=float(options.pop("timeout_s", 10.0)),
                max_age_given=max_age_given,
            )
        except ValueError as error:
            raise ConfigError(f"bad log URL {url!r}: {error}") from None
        if options:
            raise ConfigError(f"unknown log URL options: {', '.join(sorted(options))}")
        if settings.partitions < 1 or not 1 <= settings.replicas <= 5:
            raise ConfigError("partitions must be at least 1 and replicas 1-5")
        if settings.timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")
        if settings.max_age_s <= 0:
            raise ConfigError("max_age_s must be positive")
        return settings


async def connect(settings: LogSettings, name: str) -> Client:
    """A client that reconnects for ever (to any server of the cluster it knows)."""
    return await nats.connect(
        servers=list(settings.servers),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=settings.timeout_s,
    )


async def ensure_stream(js: JetStreamContext, settings: LogSettings) -> None:
    """Create the stream, or check that the one there has the configured partitions (and
    update its max_age where this process was configured with another one)."""
    description = f"momently events; partitions={settings.partitions}"
    try:
        info = await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=settings.stream,
            description=description,
            subjects=[subject(settings.stream, "*")],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=settings.replicas,
            duplicate_window=settings.duplicate_window_s,
            max_age=settings.max_age_s,
        )
        try:
            await js.add_stream(config)
            return
        except nats.js.errors.BadRequestError:  # another process created it first
            info = await js.stream_info(settings.stream)
    found = _PARTITIONS.search(info.config.description or "")
    if found is None or int(found.group(1)) != settings.partitions:
        raise ConfigError(
            f"stream {settings.stream} was made for {found.group(1) if found else 'unknown'}"
            f" partitions, not {settings.partitions}: changing the count moves customers"
        )
    if settings.max_age_given and abs((info.config.max_age or 0) - settings.max_age_s) >= 1:
        _log.warning(
            "stream %s: max_age %.0fs -> %.0fs (give every process the same retention)",
            settings.stream,
            info.config.max_age or 0,
            settings.max_age_s,
        )
        await js.update_stream(replace(info.config, max_age=settings.max_age_s))


class EventLog:
    """Appends events to the stream; what the tracking API writes to in distributed mode."""

    def __init__(self, client: Client, settings: LogSettings) -> None:
        self.client = client
        self.js = client.jetstream(timeout=settings.timeout_s, publish_async_max_pending=20_000)
        self.settings = settings

    @classmethod
    async def open(cls, settings: LogSettings, *, name: str = "momently-ingest") -> EventLog:
        client = await connect(settings, name)
        log = cls(client, settings)
        try:
            await ensure_stream(log.js, settings)
        except BaseException:
            await client.close()
            raise
        return log

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected)

    def partition(self, event: Event) -> int:
        return partition_of(customer_key(event), self.settings.partitions)

    async def write(self, events: Sequence[Event]) -> IngestResult:
        """Publish and wait for every acknowledgement; :class:`Unavailable` if any fails."""
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for event in events:
                futures.append(
                    await self.js.publish_async(
                        subject(self.settings.stream, self.partition(event)),
                        encode_event(event),
                        headers={Header.MSG_ID.value: event.message_id},
                        stream=self.settings.stream,
                        wait_stall=self.settings.timeout_s,
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.settings.timeout_s)
        except (nats.errors.Error, TimeoutError) as error:
            for future in futures:
                future.cancel()  # frees its slot in the client's pending window
            raise Unavailable(retry_after=1) from error
        duplicates = sum(1 for ack in acks if ack.duplicate)
        return IngestResult(len(events) - duplicates, duplicates)

    async def close(self) -> None:
        await self.client.close()
