"""Memory, SQLite and PostgreSQL agree on any sequence of outbox and moment-store writes.

The event log's agreement (events, identities, merges through the Engine) is
:class:`tests.test_store_contract.StoresAgree`, which runs every backend in its
``BACKENDS``; this machine drives the other two stores of distributed mode the
same way: the in-memory one is the reference, and every answer must match it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from momently.decide.records import DecisionQuery
from momently.deliver.records import Entry
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.deliver.types import OutboxStore
from momently.moments.model import MomentKind
from momently.moments.records import MomentBatch, MomentQuery, StateRow
from momently.store.postgres import PostgresOutboxStore
from momently.types import MomentStore
from tests.deliver.fakes import message
from tests.postgres import cluster
from tests.store.moment_factories import MOMENT_BACKENDS, T0, decision, moment, open_moment_store

DECISIONS = st.sampled_from([f"de-{i}" for i in range(6)])
CUSTOMERS = st.sampled_from(["c1", "c2", "c3"])
CHANNELS = st.sampled_from(["hook", "mail"])
NAMES = st.sampled_from(["cart", "near", "angry"])
KINDS: Final[dict[str, MomentKind]] = {"cart": "buy", "near": "go", "angry": "friction"}
AGREEMENT: Final = settings(
    max_examples=20,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class OutboxesAgree(RuleBasedStateMachine):
    """Puts, claims, releases, finishes and cancels on every outbox store."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        where = Path(self.dir.name)
        self.outboxes: dict[str, OutboxStore] = {
            "memory": MemoryOutboxStore(),
            "sqlite": SqliteOutboxStore(where / "outbox.db", synchronous="OFF"),
            "postgresql": PostgresOutboxStore(cluster().url(where / "pg")),
        }
        self.now = T0
        self.held: dict[str, int] = {}  # key -> claims count of a claim we hold
        self.keys: set[str] = set()

    def teardown(self) -> None:
        for store in self.outboxes.values():
            store.close()
        self.dir.cleanup()  # the PostgreSQL schema goes back to the cluster, emptied

    def agree(self, ask: Callable[[str], object]) -> object:
        found = {name: ask(name) for name in self.outboxes}
        reference = found.pop("memory")
        for name, answer in found.items():
            assert answer == reference, f"{name} disagrees with memory"
        return reference

    @initialize(customers=st.lists(CUSTOMERS, min_size=3, max_size=3))
    def some_sends(self, customers: list[str]) -> None:
        for n, customer in enumerate(customers):
            self.put(f"de-{n}", customer, "hook", n)

    # The outbox.

    @rule(decision=DECISIONS, customer=CUSTOMERS, channel=CHANNELS, delay=st.integers(0, 50))
    def put(self, decision: str, customer: str, channel: str, delay: int) -> None:
        msg = message(decision, channel, customer)
        entry = Entry(
            key=msg.key, decision_id=decision, customer_id=customer, channel=channel,
            state="pending", due_ms=self.now + delay, send_at_ms=self.now + delay,
            created_ms=self.now, updated_ms=self.now, message=msg,
        )  # fmt: skip
        self.keys.add(msg.key)
        self.agree(lambda name: self.outboxes[name].put(entry))

    @rule(ms=st.integers(1, 120))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule(limit=st.integers(1, 4), lease=st.integers(1, 100), only=st.none() | CHANNELS)
    def claim(self, limit: int, lease: int, only: str | None) -> None:
        channels = None if only is None else {only}
        taken = self.agree(
            lambda name: self.outboxes[name].claim(
                now_ms=self.now, lease_ms=lease, limit=limit, worker="w", channels=channels
            )
        )
        assert isinstance(taken, list)
        for entry in taken:
            self.held[entry.key] = entry.claims

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), outcome=st.sampled_from(["sent", "dead", "cancelled", "retry"]))
    def resolve(self, data: st.DataObject, outcome: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        claims = self.held.pop(key)
        if outcome == "retry":
            self.agree(
                lambda name: self.outboxes[name].release(
                    key, claims, due_ms=self.now + 10, attempts=claims, reason="r", now_ms=self.now
                )
            )
        else:
            self.agree(
                lambda name: self.outboxes[name].finish(
                    key,
                    claims,
                    state=outcome,  # type: ignore[arg-type]
                    now_ms=self.now,
                    reason="x",
                )
            )

    @rule(customer=st.none() | CUSTOMERS, decision=DECISIONS)
    def cancel(self, customer: str | None, decision: str) -> None:
        self.agree(
            lambda name: self.outboxes[name].cancel(
                now_ms=self.now, reason="stop", customer_id=customer, decision_id=decision
            )
        )

    @rule(customer=CUSTOMERS)
    def entries_of(self, customer: str) -> None:
        self.agree(lambda name: self.outboxes[name].entries(customer_id=customer, limit=5))

    @invariant()
    def outboxes_agree(self) -> None:
        self.agree(lambda name: self.outboxes[name].counts())
        self.agree(lambda name: [self.outboxes[name].get(key) for key in sorted(self.keys)])
        self.agree(lambda name: self.outboxes[name].next_due_ms())


class MomentStoresAgree(RuleBasedStateMachine):
    """Moment batches (moments, states, decisions, cancellations, checkpoints) and queries
    on every moment store."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        where = Path(self.dir.name)
        self.moment_stores: dict[str, MomentStore] = {}
        for name in MOMENT_BACKENDS:
            (where / name).mkdir()
            self.moment_stores[name] = open_moment_store(name, where / name)
        self.decided: list[str] = []  # decision ids written
        self.step = 0

    def teardown(self) -> None:
        for store in self.moment_stores.values():
            store.close()
        self.dir.cleanup()  # the PostgreSQL schema goes back to the cluster, emptied

    def agree(self, ask: Callable[[str], object]) -> object:
        found = {name: ask(name) for name in self.moment_stores}
        reference = found.pop("memory")
        for name, answer in found.items():
            assert answer == reference, f"{name} disagrees with memory"
        return reference

    @rule(
        found=st.lists(st.tuples(CUSTOMERS, NAMES, st.integers(0, 5)), max_size=4),
        states=st.dictionaries(CUSTOMERS, st.none() | st.integers(0, 100), max_size=2),
        dropped=st.lists(CUSTOMERS, max_size=1),
        actions=st.lists(st.sampled_from(["send", "schedule", "silent"]), min_size=4, max_size=4),
        checkpoint=st.none() | st.integers(0, 30),
    )
    def commit_moments(
        self,
        found: list[tuple[str, str, int]],
        states: dict[str, int | None],
        dropped: list[str],
        actions: list[str],
        checkpoint: int | None,
    ) -> None:
        self.step += 1
        moments = [moment(c, n, at, kind=KINDS[n]) for c, n, at in found]
        decisions = [
            decision(m, action)  # type: ignore[arg-type]
            for m, action in zip(moments, actions, strict=False)
        ]
        batch = MomentBatch(
            moments=moments,
            states={
                c: StateRow(f"{c}@{self.step}".encode(), None if due is None else T0 + due)
                for c, due in states.items()
            },
            dropped=dropped,
            decisions=decisions,
            world_events={f"w{self.step % 3}": {"step": self.step}},
            checkpoint=checkpoint,
        )
        for store in self.moment_stores.values():
            store.commit(batch)
        self.decided.extend(d.decision_id for d in decisions)

    @precondition(lambda self: bool(self.decided))
    @rule(data=st.data())
    def cancel_decision(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sampled_from(self.decided))
        for store in self.moment_stores.values():
            store.commit(MomentBatch(cancelled={chosen: "purchase", "de-none": "x"}))

    @rule(
        customer=st.none() | CUSTOMERS,
        name=st.none() | NAMES,
        since=st.none() | st.integers(0, 5),
        limit=st.integers(1, 5),
    )
    def query(self, customer: str | None, name: str | None, since: int | None, limit: int) -> None:
        since_ms = None if since is None else T0 + since
        q = MomentQuery(customer_id=customer, name=name, since_ms=since_ms, limit=limit)
        page = self.agree(lambda n: self.moment_stores[n].moments(q))
        assert isinstance(page, list)
        if page:
            last = page[-1]
            after = msgspec.structs.replace(q, before=(last.at_ms, last.moment_id))
            self.agree(lambda n: self.moment_stores[n].moments(after))
        d = DecisionQuery(customer_id=customer, since_ms=since_ms, limit=limit)
        self.agree(lambda n: self.moment_stores[n].decisions(d))

    @invariant()
    def moment_stores_agree(self) -> None:
        for ask in (
            lambda store: store.moment_stats(),
            lambda store: list(store.all_states()),
            lambda store: store.timers(),
            lambda store: store.checkpoint(),
            lambda store: [store.decision(d) for d in self.decided],
            lambda store: [store.world_event(f"w{i}") for i in range(3)],
        ):
            self.agree(lambda n, ask=ask: ask(self.moment_stores[n]))  # type: ignore[misc]


OutboxesAgree.TestCase.settings = AGREEMENT
MomentStoresAgree.TestCase.settings = AGREEMENT
TestOutboxesAgree = pytest.mark.slow(OutboxesAgree.TestCase)
TestMomentStoresAgree = pytest.mark.slow(MomentStoresAgree.TestCase)
