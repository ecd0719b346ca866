"""The admin API's reads on an ingest node, answered from the partitions' stores.

``momently serve --log nats://… --store 'postgresql://…?schema=p{partition}'``
opens every partition's store (the workers write them; this node only reads)
and answers the embedded mode's read routes with the same shapes:
``/api/stats``, ``/api/profiles/{id}``, ``/api/events``, ``/api/moments``,
``/api/decisions`` and ``/api/decisions/{id}``, plus ``/api/partitions``
(how far each partition's worker has got: distributed mode is eventually
consistent, an event is in the stores once its partition's lag is 0).

Finding a customer. A known user's events all live in one partition, but an
identifier may be known in several: an anonymous id both in its own partition
(the history from before the login) and in the user's (where ``identify``
merged it), a shared device in the partition of every user who used it. The
answer is the profile the embedded mode would give for what happens next: an
identified profile (with a ``userId``) before an anonymous one, then the one
seen last. Its events, moments and decisions are that partition's; the
pre-login history in the anonymous id's partition is not merged in (see
:mod:`momently.distributed.partition`). Lists without a customer merge every
partition's newest-first pages.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from fastapi import APIRouter, Depends, Path, Query

from momently.decide.records import ACTIONS, DecisionQuery
from momently.distributed.log import EventLog, LogSettings
from momently.distributed.partition import subject
from momently.distributed.shard import partition_url
from momently.errors import InvalidInput, Unavailable
from momently.identity import KINDS
from momently.moments.model import MOMENT_KINDS
from momently.moments.records import MomentQuery
from momently.state.profile import Profile, normal_email, normal_phone
from momently.store import open_moment_store, open_store
from momently.types import MomentStore, Store
from momently.web import models
from momently.web.admin import (
    NotFound,
    admin_guard,
    event_cursor,
    event_page,
    millis,
    page_cursor,
    profile_body,
)
from momently.web.auth import AdminAuth

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Part:
    """One partition's stores, as this node reads them."""

    partition: int
    store: Store
    moments: MomentStore


class Partitions:
    """Every partition's stores, opened on first use, read in parallel."""

    def __init__(self, log: LogSettings, store_url: str, moments_url: str) -> None:
        for template in (store_url, moments_url):
            partition_url(template, 0)  # a URL without {partition} fails at start-up
        self.log = log
        self.store_url = store_url
        self.moments_url = moments_url
        self._parts: list[Part] | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="momently-admin")

    def parts(self) -> list[Part]:
        with self._lock:
            if self._parts is None:
                opened: list[Part] = []
                try:
                    for p in range(self.log.partitions):
                        store = open_store(partition_url(self.store_url, p))
                        try:
                            moments = open_moment_store(partition_url(self.moments_url, p))
                        except BaseException:
                            store.close()
                            raise
                        opened.append(Part(p, store, moments))
                except BaseException:
                    for part in opened:
                        part.moments.close()
                        part.store.close()
                    raise
                self._parts = opened
            return self._parts

    def each(self, read: Callable[[Part], T]) -> list[T]:
        """``read`` on every partition, in partition order."""
        return list(self._pool.map(read, self.parts()))

    def find(self, identifier: str, field: str = "id") -> tuple[Part, str]:
        """The partition and canonical customer the identifier names (module docstring)."""
        hits = self.hits(identifier)
        if not hits:
            raise NotFound(f"no customer is known by {identifier!r}", field)
        part, customer, _ = max(
            hits, key=lambda h: (h[2].user_id is not None, h[2].last_seen, -h[0].partition)
        )
        return part, customer

    def hits(self, identifier: str) -> list[tuple[Part, str, Profile]]:
        """Every partition that knows the identifier, with its canonical customer there
        and their profile (privacy rights reach them all)."""
        candidates = [(kind, identifier) for kind in KINDS]
        candidates[KINDS.index("email")] = ("email", normal_email(identifier) or identifier)
        candidates[KINDS.index("phone")] = ("phone", normal_phone(identifier) or identifier)

        def lookup(part: Part) -> tuple[Part, str, Profile] | None:
            # find_customer's answer in two queries, not one per kind: this runs on
            # every partition.
            customer = part.store.canonical(identifier)
            if customer is None:
                owners = part.store.owners(candidates)
                owner = next((owners[key] for key in candidates if key in owners), None)
                if owner is None:
                    return None
                customer = part.store.canonical(owner) or owner
            profile = part.store.profile(customer)
            return None if profile is None else (part, customer, profile)

        return [hit for hit in self.each(lookup) if hit is not None]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            found, self._parts = self._parts, None
        for part in found or []:
            part.moments.close()
            part.store.close()


def _newest_page(
    pages: Sequence[Sequence[T]], key: Callable[[T], tuple[int, str]], limit: int
) -> tuple[list[T], str | None]:
    """The newest ``limit`` items of the partitions' pages (each newest first, up to
    ``limit + 1`` long), and the ``"{at_ms}~{id}"`` cursor of the next page (None at
    the end)."""
    found = sorted((item for page in pages for item in page), key=key, reverse=True)
    page = found[:limit]
    if not page or len(found) <= limit:
        return page, None
    at, key_id = key(page[-1])
    return page, f"{at}~{key_id}"


def reads_router(
    partitions: Partitions, log: Callable[[], EventLog | None], admin_key: AdminAuth
) -> APIRouter:
    """The admin read routes of an ingest node (module docstring)."""
    router = APIRouter(tags=["admin"], dependencies=[Depends(admin_guard(admin_key))])

    @router.get("/api/stats", response_model=models.Stats)
    def stats() -> dict[str, int]:
        """Events, customers and identities, summed over the partitions."""
        total = {"events": 0, "customers": 0, "identities": 0}
        for found in partitions.each(lambda part: part.store.stats()):
            for name in total:
                total[name] += found[name]
        return total

    @router.get("/api/partitions")
    async def progress() -> dict[str, Any]:
        """Per partition: the stream's last message, the position the worker committed
        with its events, and whether its moment stage has caught up."""
        found = log()
        if found is None:
            raise Unavailable(retry_after=1)
        stream = partitions.log.stream

        async def last(p: int) -> int:
            try:
                msg = await found.js.get_last_msg(stream, subject(stream, p))
            except nats.js.errors.NotFoundError:
                return 0
            except (nats.errors.Error, TimeoutError) as error:
                raise Unavailable(retry_after=1) from error
            return int(msg.seq or 0)

        heads = await asyncio.gather(*(last(p) for p in range(partitions.log.partitions)))

        def applied(part: Part) -> tuple[int, int, int]:
            fence = getattr(part.store, "fence", None)
            at = fence() if callable(fence) else None
            return (
                at.position if at is not None else 0,
                part.store.stats()["events"],
                part.moments.checkpoint(),
            )

        done = await asyncio.to_thread(partitions.each, applied)
        rows = [
            {
                "partition": p,
                "stream": head,
                "position": position,
                "lag": max(0, head - position),
                "stageBehind": max(0, events - checkpoint),
            }
            for p, (head, (position, events, checkpoint)) in enumerate(
                zip(heads, done, strict=True)
            )
        ]
        return {
            "partitions": rows,
            "settled": all(r["lag"] == 0 and r["stageBehind"] == 0 for r in rows),
        }

    @router.get("/api/profiles/{id}", response_model=models.Profile)
    def profile(id: str) -> dict[str, Any]:  # noqa: A002 - the path names it id
        """The profile of the customer known by ``id``, from the partition that holds it."""
        part, customer = partitions.find(id)
        return profile_body(part.store, customer, id)

    @router.get("/api/events", response_model=models.EventPage)
    def events(
        customer: Annotated[str, Query(description="any identifier of the customer")],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next` from the previous page")] = None,
    ) -> dict[str, Any]:
        """The customer's stored events in their partition's log order, a page at a time."""
        after = event_cursor(cursor)
        part, customer_id = partitions.find(customer, "customer")
        return event_page(part.store, customer_id, after, limit)

    @router.get("/api/moments", response_model=models.MomentPage)
    def list_moments(
        customer: Annotated[str | None, Query(description="any identifier of the customer")] = None,
        kind: Annotated[str | None, Query(description=", ".join(MOMENT_KINDS))] = None,
        name: Annotated[str | None, Query(max_length=200)] = None,
        since: Annotated[int | None, millis("from this time (ms since epoch)")] = None,
        until: Annotated[int | None, millis("before this time (ms since epoch)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next` from the previous page")] = None,
    ) -> dict[str, Any]:
        """Detected moments, newest first, over every partition (or the customer's)."""
        if kind is not None and kind not in MOMENT_KINDS:
            raise InvalidInput(f"unknown kind {kind!r}; one of {', '.join(MOMENT_KINDS)}", "kind")
        before = page_cursor(cursor, "mo-")
        where: list[Part] | None = None
        customer_id = None
        if customer is not None:
            part, customer_id = partitions.find(customer, "customer")
            where = [part]
        query = MomentQuery(
            customer_id=customer_id, kind=kind, name=name, since_ms=since, until_ms=until,
            before=before, limit=limit + 1,
        )  # fmt: skip
        pages = (
            [p.moments.moments(query) for p in where]
            if where
            else partitions.each(lambda p: p.moments.moments(query))
        )
        page, after = _newest_page(pages, lambda m: (m.at_ms, m.moment_id), limit)
        return {"moments": [msgspec.to_builtins(m) for m in page], "next": after}

    @router.get("/api/decisions", response_model=models.DecisionPage)
    def list_decisions(
        customer: Annotated[str | None, Query(description="any identifier of the customer")] = None,
        moment: Annotated[str | None, Query(max_length=100, description="a moment id")] = None,
        action: Annotated[str | None, Query(description=", ".join(ACTIONS))] = None,
        offer: Annotated[str | None, Query(max_length=100)] = None,
        status: Annotated[str | None, Query(max_length=40)] = None,
        since: Annotated[int | None, millis("from this time (ms since epoch)")] = None,
        until: Annotated[int | None, millis("before this time (ms since epoch)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next` from the previous page")] = None,
    ) -> dict[str, Any]:
        """Decisions, newest first, over every partition (or the customer's)."""
        if action is not None and action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", "action")
        before = page_cursor(cursor, "de-")
        where: list[Part] | None = None
        customer_id = None
        if customer is not None:
            part, customer_id = partitions.find(customer, "customer")
            where = [part]
        query = DecisionQuery(
            customer_id=customer_id, moment_id=moment, action=action, offer=offer,
            status=status, since_ms=since, until_ms=until, before=before, limit=limit + 1,
        )  # fmt: skip
        pages = (
            [p.moments.decisions(query) for p in where]
            if where
            else partitions.each(lambda p: p.moments.decisions(query))
        )
        page, after = _newest_page(pages, lambda d: (d.at_ms, d.decision_id), limit)
        return {"decisions": [msgspec.to_builtins(d) for d in page], "next": after}

    @router.get("/api/decisions/{decision_id}", response_model=models.Decision)
    def get_decision(decision_id: Annotated[str, Path(max_length=100)]) -> dict[str, Any]:
        """One decision, from whichever partition made it."""
        for found in partitions.each(lambda p: p.moments.decision(decision_id)):
            if found is not None:
                body: dict[str, Any] = msgspec.to_builtins(found)
                return body
        raise NotFound(f"no decision {decision_id!r}", "decision_id")

    return router
