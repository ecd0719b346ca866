"""The in-memory moment store: the test double and the reference the others must match."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from momently.decide.records import Decision, DecisionQuery, cancelled_copy, decision_counts
from momently.decide.records import matches as decision_matches
from momently.moments.journey_stats import JourneyRecord
from momently.moments.model import Moment
from momently.moments.records import ModelSnapshot, MomentBatch, MomentQuery, StateRow
from momently.store.fence_sql import check_memory
from momently.types import Fence


def matches(moment: Moment, query: MomentQuery) -> bool:
    """Whether a moment passes the filters of a query (the cursor aside)."""
    return (
        (query.customer_id is None or moment.customer_id == query.customer_id)
        and (query.kind is None or moment.kind == query.kind)
        and (query.name is None or moment.name == query.name)
        and (query.since_ms is None or moment.at_ms >= query.since_ms)
        and (query.until_ms is None or moment.at_ms < query.until_ms)
        and (query.before is None or (moment.at_ms, moment.moment_id) < query.before)
    )


class MemoryMomentStore:
    """Dicts; ``commit`` is atomic because it cannot fail half-way."""

    def __init__(self) -> None:
        self._moments: dict[str, Moment] = {}
        self._states: dict[str, StateRow] = {}
        self._journeys: dict[tuple[str, str, int], JourneyRecord] = {}
        self._world: dict[str, dict[str, Any]] = {}
        self._models: dict[str, ModelSnapshot] = {}
        self._decisions: dict[str, Decision] = {}
        self._checkpoint = 0
        self._fence: Fence | None = None

    @classmethod
    def from_url(cls, url: str) -> MemoryMomentStore:
        return cls()

    def commit(self, batch: MomentBatch) -> None:
        if batch.fence is not None:
            self._fence = check_memory(self._fence, Fence(batch.fence))
        for moment in batch.moments:
            self._moments.setdefault(moment.moment_id, moment)
        for customer in batch.dropped:
            self._states.pop(customer, None)
        self._states.update(batch.states)
        for run in batch.journeys:
            self._journeys[(run.customer_id, run.journey, run.run)] = run
        for event_id, body in batch.world_events.items():
            self._world.setdefault(event_id, body)
        self._models.update(batch.models)
        for decision in batch.decisions:
            self._decisions.setdefault(decision.decision_id, decision)
        for decision_id, reason in batch.cancelled.items():
            found = self._decisions.get(decision_id)
            if found is not None and found.status != "cancelled":
                self._decisions[decision_id] = cancelled_copy(found, reason)
        if batch.checkpoint is not None:
            self._checkpoint = max(self._checkpoint, batch.checkpoint)

    def checkpoint(self) -> int:
        return self._checkpoint

    def states(self, customer_ids: Sequence[str]) -> dict[str, StateRow]:
        return {c: self._states[c] for c in customer_ids if c in self._states}

    def all_states(self) -> Iterator[tuple[str, StateRow]]:
        yield from sorted(self._states.items())

    def timers(self) -> list[tuple[int, str]]:
        return sorted((row.due_ms, c) for c, row in self._states.items() if row.due_ms is not None)

    def moments(self, query: MomentQuery) -> list[Moment]:
        found = [m for m in self._moments.values() if matches(m, query)]
        found.sort(key=lambda m: (m.at_ms, m.moment_id), reverse=True)
        return found[: query.limit]

    def journey_runs(self, journey: str, customer_id: str | None = None) -> list[JourneyRecord]:
        return [
            run
            for key, run in sorted(self._journeys.items())
            if key[1] == journey and (customer_id is None or key[0] == customer_id)
        ]

    def world_event(self, event_id: str) -> dict[str, Any] | None:
        return self._world.get(event_id)

    def decisions(self, query: DecisionQuery) -> list[Decision]:
        found = [d for d in self._decisions.values() if decision_matches(d, query)]
        found.sort(key=lambda d: (d.at_ms, d.decision_id), reverse=True)
        return found[: query.limit]

    def decision(self, decision_id: str) -> Decision | None:
        return self._decisions.get(decision_id)

    def model_snapshots(self) -> dict[str, ModelSnapshot]:
        return dict(sorted(self._models.items()))

    def moment_stats(self) -> dict[str, int]:
        return {
            "moments": len(self._moments),
            "customerStates": len(self._states),
            "journeyRuns": len(self._journeys),
            "worldEvents": len(self._world),
            **decision_counts(self._decisions.values()),
            "checkpoint": self._checkpoint,
        }

    def erase(self, customer_ids: Sequence[str]) -> int:
        members = set(customer_ids)
        gone = 0
        for table in (self._moments, self._decisions):
            for key in [k for k, v in table.items() if v.customer_id in members]:
                del table[key]
                gone += 1
        for customer in members:
            gone += self._states.pop(customer, None) is not None
        for run in [k for k in self._journeys if k[0] in members]:
            del self._journeys[run]
            gone += 1
        return gone

    def close(self) -> None:
        pass
