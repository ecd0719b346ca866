"""In-memory stores for the engine in the simulator's loop that forget what it is done with.

:class:`~momently.store.memory.MemoryStore` keeps every event, and
:class:`~momently.store.moments_memory.MemoryMomentStore` every moment and
decision: at 100,000 customers over 30 days (about 45 million events) that is far
more than this machine's memory. The engine in the loop reads the log only
forward, from its stage's checkpoint, and the harness asks only about recent
decisions (whether a send due now was cancelled), so at each simulated day's end
(:meth:`~momently.simulate.engine_policy.EnginePolicy.compact`) these drop the log
behind the stage's position with those events' message ids, every moment (counted
in :attr:`WindowMomentStore.moments_seen`), and the decisions done with for
:data:`KEEP_DECISIONS_MS`. Profiles, identities, customer states, journeys and
models are kept whole, so memory still grows with the number of customers, but no
longer with the number of events. What they forget, the engine never reads again in
the simulator: ``tests/simulate/test_window.py`` runs the engine on both kinds of
store over one seeded population for a week, and every send, decision and outcome
is the same. They are not stores for anything else: ``customer_events`` only sees
the kept window, a forgotten message id would be taken again (the simulator's are
unique), and there is no erasure or expiry.

>>> store = WindowStore()
>>> store.stats()["events"]
0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from momently.events import Event
from momently.simulate.simtime import DAY
from momently.store.fence_sql import check_memory
from momently.store.memory import MemoryStore
from momently.store.moments_memory import MemoryMomentStore
from momently.types import Changes, LogRecord

KEEP_DECISIONS_MS: Final = 3 * DAY
"""How long after it was decided (or after its send was due) a decision is kept."""


class WindowStore(MemoryStore):
    """A :class:`MemoryStore` whose log starts at ``base + 1`` (see :meth:`forget_before`)."""

    def __init__(self) -> None:
        super().__init__()
        self._base = 0  # records forgotten from the front of the log
        self._by_customer.clear()

    def commit(self, records: Sequence[tuple[str, Event]], changes: Changes) -> list[int]:
        ids = {e.message_id for _, e in records}
        if len(ids) != len(records) or any(m in self._messages for m in ids):
            raise ValueError("commit takes only messages the log has not seen, once each")
        if changes.fence is not None:
            self._fence = check_memory(self._fence, changes.fence)
        log = self._log
        seqs = []
        for customer_id, event in records:
            seq = self._base + len(log) + 1
            log.append(LogRecord(seq, customer_id, event))
            seqs.append(seq)
        self._messages |= ids
        self._fold(changes)
        return seqs

    def forget_before(self, seq: int) -> int:
        """Forget the records before ``seq`` (and their message ids); how many went."""
        drop = min(len(self._log), max(0, seq - 1 - self._base))
        if drop:
            for record in self._log[:drop]:
                self._messages.discard(record.event.message_id)
            del self._log[:drop]
            self._base += drop
        return drop

    def customer_events(self, customer_id: str, after: int, limit: int) -> list[LogRecord]:
        members = set(self._members(customer_id))
        found = [r for r in self._log if r.seq > after and r.customer_id in members]
        return found[:limit]

    def read_log(self, after: int, limit: int) -> list[LogRecord]:
        start = max(0, after - self._base)
        return self._log[start : start + limit]

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "events": self._base + len(self._log)}

    def erase(self, customer_ids: Sequence[str], suppress: Sequence[str]) -> int:
        raise NotImplementedError("the simulator's store does not erase")

    def expire_events(self, before_ms: int, through_seq: int) -> int:
        raise NotImplementedError("the simulator's store does not expire events")


class WindowMomentStore(MemoryMomentStore):
    """A :class:`MemoryMomentStore` that counts moments instead of keeping them, and keeps
    decisions for :data:`KEEP_DECISIONS_MS` (see :meth:`forget_before`)."""

    def __init__(self) -> None:
        super().__init__()
        self.moments_seen = 0

    def forget_before(self, now_ms: int) -> int:
        """Forget every moment, and the decisions done with before ``now_ms`` less
        :data:`KEEP_DECISIONS_MS`; how many decisions went."""
        self.moments_seen += len(self._moments)
        self._moments.clear()
        horizon = now_ms - KEEP_DECISIONS_MS
        old = [k for k, d in self._decisions.items() if max(d.at_ms, d.send_at_ms or 0) < horizon]
        for key in old:
            del self._decisions[key]
        return len(old)
