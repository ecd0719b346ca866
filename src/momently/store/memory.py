"""The in-memory store: the default for tests, and the reference the others must match."""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Final, TypeVar

from momently.events import Event, from_ms
from momently.state.profile import Profile
from momently.store.fence_sql import check_memory
from momently.types import Changes, Fence, IdentityKey, LogRecord

_T = TypeVar("_T")
_PLACEHOLDER: Final = Event(
    message_id="", type="track", timestamp=from_ms(0), received_at=from_ms(0)
)


class MemoryStore:
    """Everything in dicts and lists; ``commit`` is atomic because it cannot fail half-way."""

    def __init__(self) -> None:
        self._log: list[LogRecord] = []
        self._messages: set[str] = set()
        self._by_customer: dict[str, list[int]] = defaultdict(list)
        self._identities: dict[IdentityKey, str] = {}
        self._keys_of: dict[str, set[IdentityKey]] = {}  # customer -> keys: the reverse
        self._profiles: dict[str, Profile] = {}
        self._merged: dict[str, str] = {}
        self._losers: dict[str, set[str]] = {}  # winner -> losers: the reverse of _merged
        self._suppressed: set[str] = set()
        self._holes = 0  # erased events, left as placeholders in the log
        self._fence: Fence | None = None

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        return cls()

    def commit(self, records: Sequence[tuple[str, Event]], changes: Changes) -> list[int]:
        fresh = [(c, e) for c, e in records if e.message_id not in self._messages]
        if len(fresh) != len(records) or len({e.message_id for _, e in records}) != len(records):
            raise ValueError("commit takes only messages the log has not seen, once each")
        if changes.fence is not None:
            self._fence = check_memory(self._fence, changes.fence)
        seqs = []
        for customer_id, event in fresh:
            seq = len(self._log) + 1
            self._log.append(LogRecord(seq, customer_id, event))
            self._messages.add(event.message_id)
            self._by_customer[customer_id].append(seq)
            seqs.append(seq)
        self._fold(changes)
        return seqs

    def _fold(self, changes: Changes) -> None:
        """A commit's identity and profile changes, merges followed through.

        The reverse maps are the durable stores' indexes on a key's and a loser's
        customer: without them a merge scanned every customer's keys, and a simulated
        population's run grew with the square of its size."""
        identities, keys_of = self._identities, self._keys_of
        for key, customer in changes.identities.items():
            old = identities.get(key)
            if old == customer:
                continue
            if old is not None:
                self._unindex(keys_of, old, key)
            identities[key] = customer
            keys_of.setdefault(customer, set()).add(key)
        self._profiles.update(changes.profiles)
        for loser, winner in changes.merged.items():
            self._profiles.pop(loser, None)
            self._point(loser, winner)
            for old in list(self._losers.get(loser, ())):
                self._point(old, winner)

    def _point(self, loser: str, winner: str) -> None:
        """``loser`` now merged into ``winner``, in both maps."""
        old = self._merged.get(loser)
        if old is not None:
            self._unindex(self._losers, old, loser)
        self._merged[loser] = winner
        self._losers.setdefault(winner, set()).add(loser)

    @staticmethod
    def _unindex(index: dict[str, set[_T]], owner: str, item: _T) -> None:
        items = index.get(owner)
        if items is not None:
            items.discard(item)
            if not items:
                del index[owner]

    def fence(self) -> Fence | None:
        return self._fence

    def known_messages(self, message_ids: Sequence[str]) -> set[str]:
        return {m for m in message_ids if m in self._messages}

    def owner(self, key: IdentityKey) -> str | None:
        return self._identities.get(key)

    def profile(self, customer_id: str) -> Profile | None:
        return self._profiles.get(customer_id)

    def owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        return {k: c for k in keys if (c := self._identities.get(k)) is not None}

    def profiles(self, customer_ids: Sequence[str]) -> dict[str, Profile]:
        return {c: p for c in customer_ids if (p := self._profiles.get(c)) is not None}

    def canonical(self, customer_id: str) -> str | None:
        if customer_id in self._profiles:
            return customer_id
        return self._merged.get(customer_id)

    def identities(self, customer_id: str) -> list[IdentityKey]:
        return sorted(self._keys_of.get(customer_id, ()))

    def _members(self, customer_id: str) -> list[str]:
        return [customer_id, *self._losers.get(customer_id, ())]

    def customer_events(self, customer_id: str, after: int, limit: int) -> list[LogRecord]:
        seqs = sorted(s for m in self._members(customer_id) for s in self._by_customer.get(m, []))
        start = bisect.bisect_right(seqs, after)
        return [self._log[s - 1] for s in seqs[start : start + limit]]

    def read_log(self, after: int, limit: int) -> list[LogRecord]:
        if not self._holes:
            return self._log[after : after + limit]
        found: list[LogRecord] = []  # erased events leave placeholders (customer ''): skipped
        for record in itertools.islice(self._log, max(after, 0), None):
            if record.customer_id:
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def stats(self) -> dict[str, int]:
        return {
            "events": len(self._log),
            "customers": len(self._profiles),
            "identities": len(self._identities),
        }

    # -- privacy ---------------------------------------------------------------------------

    def _drop(self, seqs: Sequence[int]) -> None:
        """Replace events by placeholders (seqs are positions here, never reused)."""
        for seq in seqs:
            record = self._log[seq - 1]
            self._messages.discard(record.event.message_id)
            self._log[seq - 1] = LogRecord(seq, "", _PLACEHOLDER)
            self._holes += 1

    def erase(self, customer_ids: Sequence[str], suppress: Sequence[str]) -> int:
        members = set(customer_ids)
        members |= {loser for winner in customer_ids for loser in self._losers.get(winner, ())}
        seqs = sorted(s for m in members for s in self._by_customer.pop(m, []))
        self._drop(seqs)
        for customer in members:
            for key in self._keys_of.pop(customer, ()):
                del self._identities[key]
            self._profiles.pop(customer, None)
            winner = self._merged.pop(customer, None)  # their losers are members too
            if winner is not None:
                self._unindex(self._losers, winner, customer)
        self._suppressed.update(suppress)
        return len(seqs)

    def suppressed(self) -> set[str]:
        return set(self._suppressed)

    def expire_events(self, before_ms: int, through_seq: int) -> int:
        old = [
            r.seq
            for r in self._log[: max(0, through_seq)]
            if r.customer_id and r.event.timestamp_ms < before_ms
        ]
        for seq in old:
            self._by_customer[self._log[seq - 1].customer_id].remove(seq)
        self._drop(old)
        return len(old)

    def close(self) -> None:
        pass
