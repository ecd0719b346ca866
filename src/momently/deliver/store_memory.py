"""The in-memory outbox store: the default, the test double and the reference."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from types import TracebackType

import msgspec

from momently.deliver.records import DONE, LIVE, STATES, Entry, State


class MemoryOutboxStore:
    """Outbox entries in a dict; thread-safe; gone when the process ends."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._live: set[str] = set()
        self._lock = threading.Lock()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """As the SQLite store's: here every write is already atomic on its own."""
        yield

    def __enter__(self) -> MemoryOutboxStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        pass

    def put(self, entry: Entry) -> tuple[Entry, bool]:
        with self._lock:
            existing = self._entries.get(entry.key)
            if existing is not None:
                return existing, False
            stored = msgspec.structs.replace(entry, recovered=False)
            self._entries[entry.key] = stored
            if stored.state in LIVE:
                self._live.add(entry.key)
            return stored, True

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def claim(
        self,
        *,
        now_ms: int,
        lease_ms: int,
        limit: int,
        worker: str,
        channels: Collection[str] | None = None,
    ) -> list[Entry]:
        with self._lock:
            due = sorted(
                (e.due_ms, e.key)
                for e in (self._entries[k] for k in self._live)
                if e.due_ms <= now_ms and (channels is None or e.channel in channels)
            )[:limit]
            claimed = []
            for _, key in due:
                entry = self._entries[key]
                taken = msgspec.structs.replace(
                    entry,
                    state="claimed",
                    due_ms=now_ms + lease_ms,
                    claims=entry.claims + 1,
                    worker=worker,
                    updated_ms=now_ms,
                    recovered=False,
                )
                self._entries[key] = taken
                claimed.append(msgspec.structs.replace(taken, recovered=entry.state == "claimed"))
            return claimed

    def _held(self, key: str, claims: int) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.state != "claimed" or entry.claims != claims:
            return None
        return entry

    def release(
        self, key: str, claims: int, *, due_ms: int, attempts: int, reason: str, now_ms: int
    ) -> bool:
        with self._lock:
            entry = self._held(key, claims)
            if entry is None:
                return False
            self._entries[key] = msgspec.structs.replace(
                entry,
                state="pending",
                due_ms=due_ms,
                attempts=attempts,
                reason=reason,
                updated_ms=now_ms,
            )
            return True

    def finish(
        self,
        key: str,
        claims: int,
        *,
        state: State,
        now_ms: int,
        reason: str = "",
        provider: str = "",
        provider_message_id: str = "",
    ) -> bool:
        if state not in DONE:
            raise ValueError(f"finish needs a final state, not {state!r}")
        with self._lock:
            entry = self._held(key, claims)
            if entry is None:
                return False
            self._entries[key] = msgspec.structs.replace(
                entry,
                state=state,
                reason=reason,
                provider=provider,
                provider_message_id=provider_message_id,
                updated_ms=now_ms,
            )
            self._live.discard(key)
            return True

    def cancel(
        self,
        *,
        now_ms: int,
        reason: str,
        decision_id: str | None = None,
        customer_id: str | None = None,
    ) -> list[Entry]:
        if decision_id is None and customer_id is None:
            raise ValueError("cancel needs a decision_id or a customer_id")
        with self._lock:
            done = []
            for key in sorted(self._live):
                entry = self._entries[key]
                if decision_id is not None and entry.decision_id != decision_id:
                    continue
                if customer_id is not None and entry.customer_id != customer_id:
                    continue
                if entry.state == "claimed" and entry.due_ms > now_ms:
                    continue  # in flight: its worker finishes it
                entry = msgspec.structs.replace(
                    entry, state="cancelled", reason=reason, updated_ms=now_ms
                )
                self._entries[key] = entry
                self._live.discard(key)
                done.append(entry)
            return done

    def entries(
        self,
        *,
        state: State | None = None,
        customer_id: str | None = None,
        decision_id: str | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        with self._lock:
            found = [
                e
                for e in self._entries.values()
                if (state is None or e.state == state)
                and (customer_id is None or e.customer_id == customer_id)
                and (decision_id is None or e.decision_id == decision_id)
            ]
        found.sort(key=lambda e: (-e.created_ms, e.key))
        return found[:limit]

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = dict.fromkeys(STATES, 0)
            for entry in self._entries.values():
                counts[entry.state] += 1
            return counts

    def erase(self, customer_ids: Collection[str]) -> int:
        members = set(customer_ids)
        with self._lock:
            gone = [k for k, e in self._entries.items() if e.customer_id in members]
            for key in gone:
                del self._entries[key]
                self._live.discard(key)
        return len(gone)

    def next_due_ms(self, channels: Collection[str] | None = None) -> int | None:
        with self._lock:
            due = [
                self._entries[k].due_ms
                for k in self._live
                if channels is None or self._entries[k].channel in channels
            ]
        return min(due, default=None)
