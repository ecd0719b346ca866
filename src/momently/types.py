"""Type aliases and Protocols shared across momently; nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import msgspec

from momently.decide.records import Decision, DecisionQuery
from momently.events import Event
from momently.moments.journey_stats import JourneyRecord
from momently.moments.model import Moment
from momently.moments.records import ModelSnapshot, MomentBatch, MomentQuery, StateRow
from momently.state.profile import Profile

IdentityKey = tuple[str, str]


class LogRecord(msgspec.Struct, frozen=True):
    """One event in the log: its position, the customer it went to, the event."""

    seq: int
    customer_id: str
    event: Event


class Fence(msgspec.Struct, frozen=True):
    """A partition owner's fencing token and the stream position a commit covers.

    Distributed mode only (momently.distributed): a store refuses a commit whose
    token is older than one it has committed (raising ``Fenced``), and keeps the
    position with the state in the same transaction.
    """

    token: int
    position: int = 0


class Changes(msgspec.Struct):
    """State written in the same transaction as the events that caused it."""

    profiles: dict[str, Profile] = {}
    identities: dict[IdentityKey, str] = {}
    merged: dict[str, str] = {}  # loser customer id -> winner
    fence: Fence | None = None  # checked and stored atomically with the rest
    # Log payloads already encoded (encode_event's bytes), by messageId: a store that
    # writes the events as that JSON may take them instead of encoding the events again.
    encoded: dict[str, bytes] = {}


class Store(Protocol):
    """Where the log and the state derived from it live.

    ``commit`` is the one write: it appends events (each a new ``messageId``)
    and applies their state changes atomically, all or nothing.
    """

    def commit(self, records: Sequence[tuple[str, Event]], changes: Changes) -> list[int]: ...

    def known_messages(self, message_ids: Sequence[str]) -> set[str]: ...

    def owner(self, key: IdentityKey) -> str | None: ...

    def profile(self, customer_id: str) -> Profile | None: ...

    def owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        """:meth:`owner` for many keys at once; keys without an owner are left out."""
        ...

    def profiles(self, customer_ids: Sequence[str]) -> dict[str, Profile]:
        """:meth:`profile` for many customers at once; unknown ones are left out."""
        ...

    def canonical(self, customer_id: str) -> str | None: ...

    def identities(self, customer_id: str) -> list[IdentityKey]: ...

    def customer_events(self, customer_id: str, after: int, limit: int) -> list[LogRecord]: ...

    def read_log(self, after: int, limit: int) -> list[LogRecord]: ...

    def stats(self) -> dict[str, int]: ...

    def erase(self, customer_ids: Sequence[str], suppress: Sequence[str]) -> int:
        """Privacy: delete the events, identities, profiles and merges of these customers
        (and of those merged into them), keep the ``suppress`` digests, and scrub the freed
        bytes from the store's files; returns how many events went."""
        ...

    def suppressed(self) -> set[str]:
        """Every suppression digest :meth:`erase` kept."""
        ...

    def expire_events(self, before_ms: int, through_seq: int) -> int:
        """Retention: delete the events older than ``before_ms`` (event time) with a seq
        at most ``through_seq``, and scrub them from the files; returns how many."""
        ...

    def close(self) -> None: ...


class MomentStore(Protocol):
    """Where the moment stage keeps its output and its per-customer state.

    ``commit`` is the one write, atomic: moments are keyed by their
    deterministic id, so committing the same moment twice stores it once.
    """

    def commit(self, batch: MomentBatch) -> None: ...

    def checkpoint(self) -> int:
        """The last log seq whose effects are committed (0 before any)."""
        ...

    def states(self, customer_ids: Sequence[str]) -> dict[str, StateRow]: ...

    def all_states(self) -> Iterator[tuple[str, StateRow]]: ...

    def timers(self) -> list[tuple[int, str]]:
        """Every (due_ms, customer_id) with a timer set."""
        ...

    def moments(self, query: MomentQuery) -> list[Moment]:
        """Moments matching ``query``, newest first."""
        ...

    def journey_runs(self, journey: str, customer_id: str | None = None) -> list[JourneyRecord]: ...

    def world_event(self, event_id: str) -> dict[str, Any] | None: ...

    def model_snapshots(self) -> dict[str, ModelSnapshot]:
        """The latest committed snapshot of each population model, by name."""
        ...

    def decisions(self, query: DecisionQuery) -> list[Decision]:
        """Decisions matching ``query``, newest first."""
        ...

    def decision(self, decision_id: str) -> Decision | None: ...

    def moment_stats(self) -> dict[str, int]: ...

    def erase(self, customer_ids: Sequence[str]) -> int:
        """Privacy: delete these customers' moments, states, journey runs and decisions,
        and scrub the freed bytes from the store's files; returns how many rows went."""
        ...

    def close(self) -> None: ...
