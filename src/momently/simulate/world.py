"""The simulated world: a population living in simulated time, emitting Segment messages.

Each customer's day is planned at their local midnight into hourly buckets;
an hour is sorted when the clock reaches it, and merged with the events that
answers to messages inject, so the stream comes out in time order (ties by
customer, then plan order) without holding more than about a day ahead.

>>> from momently.simulate.population import Population
>>> world = World(Population(20, seed=1))
>>> stream = list(world.events_until(world.start_ms + DAY))
>>> stream == list(World(Population(20, seed=1)).events_until(world.start_ms + DAY))
True
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np

from momently.simulate import messages as m
from momently.simulate.personas import CHANNELS
from momently.simulate.plan import Item, Planner
from momently.simulate.population import Population
from momently.simulate.respond import Response, Send, respond
from momently.simulate.simtime import DAY, HOUR, MINUTE, START, local_day, rng
from momently.simulate.state import Need, State
from momently.simulate.types import Message

_AFTER: Final = 0xAF7E
_INJECTED_SEQ: Final = 1 << 40


@dataclass(slots=True, eq=False)
class Injected:
    """An event the world did not plan (an answer to a message, a post after an order)."""

    message: Message
    effect: str = ""  # "order" or "unsubscribe" where the event changes something
    need: Need | None = None  # the need an order meets
    revenue: float = 0.0
    counted: bool = False  # whether the order happened (its need was still live)


class Tally:
    """Per-customer outcomes: the truth the comparison reads."""

    def __init__(self, size: int) -> None:
        self.conversions = np.zeros(size, dtype=np.int32)
        self.revenue = np.zeros(size, dtype=np.float64)
        self.messages = np.zeros(size, dtype=np.int32)
        self.attributed = np.zeros(size, dtype=np.int32)  # orders that followed a click
        self.opted_out = np.zeros(size, dtype=np.int8)  # one bit per channel


class World:
    """A population in simulated time from ``start_ms``; it only moves forward."""

    def __init__(self, population: Population, *, start_ms: int = START) -> None:
        self.population = population
        self.catalog = population.catalog
        self.seed = population.seed
        self.start_ms = start_ms
        self.now_ms = start_ms
        self.states = [State() for _ in range(len(population))]
        self.tally = Tally(len(population))
        self.emitted = 0
        self.dropped = 0  # planned events of needs that were met or lapsed first
        self._planner = Planner(self.catalog, self.seed)
        self._customers = population.customers
        self._buckets: dict[int, list[Item]] = {}
        self._hour = start_ms // HOUR - 1
        self._current: list[Item] = []
        self._pos = 0
        self._injected: list[Item] = []
        self._due = [(start_ms, c.index, local_day(c.timezone, start_ms)) for c in population]

    def next_ms(self, limit: int) -> int | None:
        """When the next event happens, if before ``limit``."""
        item = self._find(limit)
        return None if item is None else item[0]

    def pop(self) -> tuple[int, Message]:
        """The next event (after :meth:`next_ms` said there is one) and its time."""
        item = self._find(None)
        assert item is not None  # _find(None) plans hour after hour until it finds one
        self._consume(item)
        return item[0], self._emit(item)

    def timed_until(
        self, end_ms: int, wants: frozenset[str] | None = None
    ) -> Iterator[tuple[int, Message]]:
        """Every event before ``end_ms`` with its time, in order.

        With ``wants`` (event names, or ``identify``/``page``/``screen`` for
        those calls) only those are built and yielded; the others still happen.
        The world may be handed messages (:meth:`deliver`) between two events:
        the answers join the stream in their place.
        """
        # The hottest loop of the simulator: state in locals, written back before each yield.
        pop, injected, name_of, emit = heapq.heappop, self._injected, m.name_of, self._emit
        current, pos = self._current, self._pos
        size, hour_end = len(current), (self._hour + 1) * HOUR
        while True:
            if pos < size and not (injected and injected[0] < current[pos]):
                item = current[pos]
                pos += 1
                planned = True
            elif injected and (pos < size or injected[0][0] < hour_end):
                item = pop(injected)
                planned = False
            elif hour_end >= end_ms:
                self._pos = pos
                return
            else:
                self._advance()
                current, pos = self._current, self._pos
                size, hour_end = len(current), (self._hour + 1) * HOUR
                continue
            ts, need = item[0], item[5]
            if ts >= end_ms:  # not yet: put it back
                if planned:
                    pos -= 1
                else:
                    heapq.heappush(injected, item)
                self._pos = pos
                return
            if need is not None and not need.live(ts):
                self.dropped += 1
                continue
            self._pos = pos
            if wants is None:
                yield ts, emit(item)
            elif item[3] == m.INJECTED:  # built already; a failed order changes its name
                message = emit(item)
                if (message.get("event") or message["type"]) in wants:
                    yield ts, message
            elif name_of(item[3], item[4]) in wants:
                yield ts, emit(item)
            else:
                self._happen(item)

    def events_until(self, end_ms: int) -> Iterator[Message]:
        """Every event before ``end_ms``, in order."""
        for _, message in self.timed_until(end_ms):
            yield message

    def events_between(self, start_ms: int, end_ms: int) -> Iterator[Message]:
        """The events from ``start_ms`` up to ``end_ms``; earlier ones still happen, unseen."""
        for ms, message in self.timed_until(end_ms):
            if ms >= start_ms:
                yield message

    def deliver(self, send: Send) -> Response:
        """Put ``send`` in front of its customer; their answer joins the stream."""
        index = self.population.index_of(send.customer)
        if index is None:
            raise KeyError(f"no simulated customer {send.customer!r}")
        c, st = self.population[index], self.states[index]
        if send.send_at < self.now_ms:
            send = Send(
                send.customer,
                send.channel,
                send.offer_id,
                send.category,
                self.now_ms,
                send.decision_id,
            )
        answer = respond(c, st, send, seed=self.seed, catalog=self.catalog)
        if answer.delivered:
            st.messages += 1
            st.received.append(send.send_at)
            st.received = [t for t in st.received if t > send.send_at - 7 * DAY]
            self.tally.messages[index] += 1
            for ms, message, effect in answer.events:
                revenue = 0.0
                if effect == "order" and answer.need is not None:
                    revenue = self.catalog.products[answer.need.product].price
                self._inject(index, ms, Injected(message, effect, answer.need, revenue))
        return answer

    def _inject(self, index: int, ms: int, payload: Injected) -> None:
        st = self.states[index]
        st.injected += 1
        heapq.heappush(
            self._injected, (ms, index, _INJECTED_SEQ + st.injected, m.INJECTED, payload, None)
        )

    def _find(self, limit: int | None) -> Item | None:
        """The next live item, dropping those whose need is gone; None from ``limit`` on."""
        while True:
            current, pos, injected = self._current, self._pos, self._injected
            if pos < len(current):
                item = current[pos]
                if injected and injected[0] < item:
                    item = injected[0]
            elif injected and injected[0][0] < (self._hour + 1) * HOUR:
                item = injected[0]
            elif limit is not None and (self._hour + 1) * HOUR >= limit:
                return None
            else:
                self._advance()
                continue
            if limit is not None and item[0] >= limit:
                return None
            need = item[5]
            if need is None or need.live(item[0]):
                return item
            self.dropped += 1
            self._consume(item)

    def _consume(self, item: Item) -> None:
        if self._pos < len(self._current) and self._current[self._pos] is item:
            self._pos += 1
        else:
            heapq.heappop(self._injected)

    def _advance(self) -> None:
        self._hour += 1
        hour, end = self._hour, (self._hour + 1) * HOUR
        due, buckets, customers = self._due, self._buckets, self.population.customers
        plan, states = self._planner.plan, self.states
        while due and due[0][0] < end:
            begins, index, day = heapq.heappop(due)  # at or after this hour's start
            items, following = plan(customers[index], states[index], day, begins)
            for item in items:
                key = item[0] // HOUR
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = []
                bucket.append(item)
            heapq.heappush(due, (following, index, day + 1))
        self._current = buckets.pop(hour, [])
        self._current.sort()
        self._pos = 0

    def _emit(self, item: Item) -> Message:
        ts, index, seq, code, payload, _ = item
        if code == m.INJECTED:
            self._happen(item)
            answer: Injected = payload
            if answer.effect == "order" and not answer.counted:
                failed = dict(answer.message)  # the need was gone: only a checkout is left
                failed["event"] = "Checkout Started"
                return failed
            return answer.message
        c, st = self._customers[index], self.states[index]
        message = m.build(code, payload, c, st, ts, c.user_id + "-" + str(seq), self.catalog)
        self._happen(item)
        return message

    def _happen(self, item: Item) -> None:
        """What an event changes, whether or not anyone reads it."""
        ts, index, _, code, payload, need = item
        self.now_ms = ts
        self.emitted += 1
        if code == m.IDENTIFY:
            self.states[index].identified |= 1 << payload
        elif code == m.ORDER and need is not None:
            self._ordered(index, ts, need, self.catalog.products[payload[1]].price)
        elif code == m.INJECTED:
            answer: Injected = payload
            if answer.effect == "order":
                if answer.need is not None and answer.need.live(ts):
                    answer.counted = True
                    self.tally.attributed[index] += 1
                    self._ordered(index, ts, answer.need, answer.revenue)
                else:
                    self.dropped += 1
            elif answer.effect == "unsubscribe":
                channel = answer.message["properties"]["channel"]
                self.states[index].opted_out.add(channel)
                self.tally.opted_out[index] |= 1 << CHANNELS.index(channel)

    def _ordered(self, index: int, ts: int, need: Need, revenue: float) -> None:
        need.resolved_ms = ts
        self.tally.conversions[index] += 1
        self.tally.revenue[index] += revenue
        c = self.population.customers[index]
        r = rng(self.seed, index, _AFTER, int(self.tally.conversions[index]))
        share = 0.6 if need.spec.journey else 0.05
        if r.random() < share:
            at = ts + int((2 + 6 * r.random()) * DAY)
            text = m.after_order_post(r, need.spec.category)
            post = m.server(
                "Social Post",
                {
                    "text": text,
                    "platform": "instagram",
                    "url": f"https://instagram.example/p/{index}-{ts}",
                },
                c,
                at,
                f"{c.user_id}-post-{ts:x}",
            )
            self._inject(index, at, Injected(post))
        if r.random() < 0.12:
            at = ts + int((2 + 4 * r.random()) * DAY) + 7 * MINUTE
            rating = 1 + int(2 * r.random()) if r.random() < 0.15 else 4 + int(2 * r.random())
            props = {
                "text": "not great" if rating <= 2 else "does the job nicely",
                "rating": rating,
                "product_id": self.catalog.products[need.product].id,
            }
            review = m.server("Review Posted", props, c, at, f"{c.user_id}-review-{ts:x}")
            self._inject(index, at, Injected(review))
