"""The SQLite outbox store agrees with the in-memory reference on any sequence of operations."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from momently.deliver.records import Entry
from momently.deliver.store_memory import MemoryOutboxStore
from momently.deliver.store_sqlite import SqliteOutboxStore
from tests.deliver.conftest import START
from tests.deliver.fakes import message

DECISIONS = st.sampled_from([f"de-{i}" for i in range(6)])
CUSTOMERS = st.sampled_from(["c1", "c2"])
CHANNELS = st.sampled_from(["hook", "mail"])


class Agreement(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.memory = MemoryOutboxStore()
        self.sqlite = SqliteOutboxStore(Path(self.dir.name) / "outbox.db")
        self.now = START
        self.held: dict[str, int] = {}  # key -> claims count of a claim we hold
        self.keys: set[str] = set()

    def teardown(self) -> None:
        self.sqlite.close()
        self.dir.cleanup()

    @rule(decision=DECISIONS, customer=CUSTOMERS, channel=CHANNELS, delay=st.integers(0, 50))
    def put(self, decision: str, customer: str, channel: str, delay: int) -> None:
        msg = message(decision, channel, customer)
        entry = Entry(
            key=msg.key, decision_id=decision, customer_id=customer, channel=channel,
            state="pending", due_ms=self.now + delay, send_at_ms=self.now + delay,
            created_ms=self.now, updated_ms=self.now, message=msg,
        )  # fmt: skip
        self.keys.add(msg.key)
        assert self.memory.put(entry) == self.sqlite.put(entry)

    @rule(ms=st.integers(1, 120))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule(limit=st.integers(1, 4), lease=st.integers(1, 100), only=st.none() | CHANNELS)
    def claim(self, limit: int, lease: int, only: str | None) -> None:
        channels = None if only is None else {only}
        a = self.memory.claim(now_ms=self.now, lease_ms=lease, limit=limit, worker="w",
                              channels=channels)  # fmt: skip
        b = self.sqlite.claim(now_ms=self.now, lease_ms=lease, limit=limit, worker="w",
                              channels=channels)  # fmt: skip
        assert a == b
        for entry in a:
            self.held[entry.key] = entry.claims

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), outcome=st.sampled_from(["sent", "dead", "cancelled", "retry"]))
    def resolve(self, data: st.DataObject, outcome: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        claims = self.held.pop(key)
        if outcome == "retry":
            due = self.now + 10
            a = self.memory.release(key, claims, due_ms=due, attempts=claims, reason="r",
                                    now_ms=self.now)  # fmt: skip
            b = self.sqlite.release(key, claims, due_ms=due, attempts=claims, reason="r",
                                    now_ms=self.now)  # fmt: skip
            assert a == b
        else:
            a = self.memory.finish(key, claims, state=outcome, now_ms=self.now, reason="x")  # type: ignore[arg-type]
            b = self.sqlite.finish(key, claims, state=outcome, now_ms=self.now, reason="x")  # type: ignore[arg-type]
            assert a == b

    @rule(customer=st.none() | CUSTOMERS, decision=st.none() | DECISIONS)
    def cancel(self, customer: str | None, decision: str | None) -> None:
        if customer is None and decision is None:
            return
        a = self.memory.cancel(now_ms=self.now, reason="stop", customer_id=customer,
                               decision_id=decision)  # fmt: skip
        b = self.sqlite.cancel(now_ms=self.now, reason="stop", customer_id=customer,
                               decision_id=decision)  # fmt: skip
        assert a == b

    @invariant()
    def agree(self) -> None:
        assert self.memory.counts() == self.sqlite.counts()
        for key in self.keys:
            assert self.memory.get(key) == self.sqlite.get(key)
        assert self.memory.next_due_ms() == self.sqlite.next_due_ms()


TestAgreement = pytest.mark.slow(Agreement.TestCase)
