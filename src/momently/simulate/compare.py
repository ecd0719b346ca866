"""Run policies over the simulated population and compare them against a holdout.

A stable share of customers (a hash of the user id) is held out: the policy
sees their events and decides as usual, but nothing it sends them is
delivered. Lift is treated minus held-out, per customer, with an interval.
Because the simulator is deterministic, running :class:`NoMessages` on the
same population gives each treated customer's life without messages, so the
true effect of a policy is known too (:func:`true_effect`).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from momently.simulate.population import Population
from momently.simulate.respond import Response, Send
from momently.simulate.simtime import DAY, MINUTE, START
from momently.simulate.stats import Lift, lift
from momently.simulate.types import Policy
from momently.simulate.world import World


def in_holdout(user_id: str, share: float, salt: str = "global") -> bool:
    """Whether ``user_id`` is in the held-out ``share`` (stable across runs and processes)."""
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return share > 0 and int.from_bytes(digest, "big") / 2**64 < share


@dataclass(frozen=True, slots=True)
class RunResult:
    """One policy over one population: totals, per-customer outcomes and lift."""

    policy: str
    customers: int
    days: int
    holdout_share: float
    events: int  # everything that happened
    seen: int  # events the policy was shown (see Policy.wants)
    requested: int  # sends the policy asked for
    delivered: int  # messages that reached a treated customer
    held_out: int  # sends withheld from held-out customers
    refused: dict[str, int]  # not delivered, by reason (unsubscribed, no address, withdrawn...)
    conversions: int
    revenue: float
    attributed: int  # orders straight after a clicked message
    opt_outs: int  # customers who opted out of at least one channel
    conversion: Lift  # share of customers who bought at least once
    revenue_lift: Lift  # revenue per customer
    held: npt.NDArray[np.bool_] = field(repr=False)
    orders: npt.NDArray[np.int32] = field(repr=False)
    spend: npt.NDArray[np.float64] = field(repr=False)

    @property
    def treated(self) -> int:
        return int((~self.held).sum())


def run_policy(
    policy: Policy,
    world: World,
    *,
    days: int,
    holdout: float = 0.1,
    tick_ms: int = 15 * MINUTE,
    salt: str = "global",
    confidence: float = 0.95,
) -> RunResult:
    """Run ``policy`` on ``world`` for ``days`` of simulated time from where the world is."""
    run = Run(policy, world, days=days, holdout=holdout, tick_ms=tick_ms, salt=salt)
    while not run.done:
        run.advance_day()
    return run.result(confidence)


class Run:
    """One policy on one world, a simulated day at a time (see :func:`run_policy`).

    :meth:`advance_day` runs the next day and :meth:`result` gives the outcome so far,
    so two policies can be stepped side by side (``tests/simulate/test_window.py``).
    At the end of each day a policy with ``compact(now_ms)`` is asked to forget what it
    no longer needs (the engine's log behind its stage, with ``window=True``).
    """

    def __init__(
        self,
        policy: Policy,
        world: World,
        *,
        days: int,
        holdout: float = 0.1,
        tick_ms: int = 15 * MINUTE,
        salt: str = "global",
    ) -> None:
        if days < 1 or tick_ms < 1:
            raise ValueError("days and tick_ms must be positive")
        if not 0.0 <= holdout <= 1.0:
            raise ValueError("holdout must be a share between 0 and 1")
        self.policy = policy
        self.world = world
        self.days = days
        self.holdout = holdout
        self.tick_ms = tick_ms
        people = world.population
        self.held = np.fromiter(
            (in_holdout(c.user_id, holdout, salt) for c in people), bool, len(people)
        )
        self.start = world.now_ms
        self.end = self.start + days * DAY
        self.refused: Counter[str] = Counter()
        self.counts = Counter[str]()
        self.queue: list[tuple[int, int, Send]] = []
        self.next_tick = self.start + tick_ms
        self.happened = world.emitted
        self.seen = 0
        self.days_done = 0  # whole simulated days run so far

    @property
    def done(self) -> bool:
        return self.days_done >= self.days

    def _deliver(self, send: Send) -> None:
        policy, refused = self.policy, self.refused
        index = self.world.population.index_of(send.customer)
        still_wanted: Callable[[Send], bool] | None = getattr(policy, "still_wanted", None)
        if index is None:
            refused["unknown customer"] += 1
        elif still_wanted is not None and not still_wanted(send):
            refused["withdrawn"] += 1
        elif self.held[index]:
            self.counts["held_out"] += 1
        else:
            answer = self.world.deliver(send)
            if not answer.delivered:
                refused[answer.reason] += 1
            delivered: Callable[[Send, Response], None] | None = getattr(
                policy, "on_delivered", None
            )
            if delivered is not None:
                delivered(send, answer)

    def _take(self, sends: Sequence[Send], now: int) -> None:
        counts, queue = self.counts, self.queue
        for send in sends:
            counts["requested"] += 1
            if send.send_at <= now:
                self._deliver(send)
            else:
                heapq.heappush(queue, (send.send_at, counts["requested"], send))

    def advance_day(self) -> None:
        """Run the next simulated day (events, due sends and ticks up to its end)."""
        if self.done:
            return
        self.days_done += 1
        stop = self.start + self.days_done * DAY
        policy, world, queue, end = self.policy, self.world, self.queue, self.end
        wants: frozenset[str] | None = getattr(policy, "wants", None)
        while True:
            boundary = min(self.next_tick, queue[0][0] if queue else end, end, stop)
            interrupted = False
            for ms, message in world.timed_until(boundary, wants):
                self.seen += 1
                sends = policy.on_event(message)
                if sends:
                    self._take(sends, ms)
                    if queue and queue[0][0] < boundary:
                        interrupted = True  # a send is due sooner than we meant to stop
                        break
            if interrupted:
                continue
            if boundary >= end or boundary >= stop:
                break
            while queue and queue[0][0] <= boundary:
                self._deliver(heapq.heappop(queue)[2])
            if self.next_tick <= boundary:
                self._take(policy.on_tick(self.next_tick), self.next_tick)
                self.next_tick += self.tick_ms
        compact: Callable[[int], None] | None = getattr(policy, "compact", None)
        if compact is not None:
            compact(stop)

    def result(self, confidence: float = 0.95) -> RunResult:
        """The outcome so far (the run's, once :attr:`done`)."""
        world, held = self.world, self.held
        tally = world.tally
        orders, spend = tally.conversions.copy(), tally.revenue.copy()
        converted = (orders > 0).astype(np.float64)
        counts = self.counts
        return RunResult(
            policy=self.policy.name,
            customers=len(world.population),
            days=self.days,
            holdout_share=self.holdout,
            events=world.emitted - self.happened,
            seen=self.seen,
            requested=counts["requested"],
            delivered=int(tally.messages.sum()),
            held_out=counts["held_out"],
            refused=dict(sorted(self.refused.items())),
            conversions=int(orders.sum()),
            revenue=float(spend.sum()),
            attributed=int(tally.attributed.sum()),
            opt_outs=int((tally.opted_out != 0).sum()),
            conversion=lift(
                "conversion rate", converted[~held], converted[held], confidence=confidence
            ),
            revenue_lift=lift(
                "revenue per customer", spend[~held], spend[held], confidence=confidence
            ),
            held=held,
            orders=orders,
            spend=spend,
        )


def compare(
    policies: Sequence[Policy],
    population: Population,
    *,
    days: int,
    start_ms: int = START,
    holdout: float = 0.1,
    tick_ms: int = 15 * MINUTE,
) -> list[RunResult]:
    """Each policy on a fresh world of the same population: same lives, same draws."""
    return [
        run_policy(
            p, World(population, start_ms=start_ms), days=days, holdout=holdout, tick_ms=tick_ms
        )
        for p in policies
    ]


def true_effect(result: RunResult, without: RunResult) -> tuple[float, float]:
    """The exact effect on the treated: (conversion rate, revenue per customer) differences.

    ``without`` is a :class:`~momently.simulate.baselines.NoMessages` run of the same
    population, days and start: the treated customers' lives had nothing been sent.
    """
    if result.customers != without.customers or result.days != without.days:
        raise ValueError("the two runs must cover the same population and days")
    treated = ~result.held
    rate = float(((result.orders > 0) & treated).sum() - ((without.orders > 0) & treated).sum())
    money = float(result.spend[treated].sum() - without.spend[treated].sum())
    n = max(1, int(treated.sum()))
    return rate / n, money / n
