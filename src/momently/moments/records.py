"""What the moment stage writes: moments, per-customer state, journey runs, checkpoints
and the population models' snapshots.

The moment stage reads the event log and writes one :class:`MomentBatch` per
step, atomically, together with the log position it has processed up to, so
a restart resumes exactly where the last commit left off and a replay of the
same events writes the same moments (their ids are deterministic).
"""

from __future__ import annotations

from typing import Any

import msgspec

from momently.decide.records import Decision
from momently.moments.journey_stats import JourneyRecord
from momently.moments.model import Moment


class StateRow(msgspec.Struct, array_like=True, frozen=True):
    """A customer's encoded moment state and when its next timer is due."""

    body: bytes
    due_ms: int | None


class ModelSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """A population model, pickled, with the version it was trained as."""

    version: str
    body: bytes


class MomentBatch(msgspec.Struct, kw_only=True):
    """Everything one step of the moment stage writes, in one transaction."""

    moments: list[Moment] = []
    states: dict[str, StateRow] = {}
    dropped: list[str] = []  # customers merged away: their state is gone
    journeys: list[JourneyRecord] = []
    world_events: dict[str, dict[str, Any]] = {}  # world event id -> its body
    checkpoint: int | None = None  # the last log seq this batch covers
    models: dict[str, ModelSnapshot] = {}  # population models as of ``checkpoint``, by name
    decisions: list[Decision] = []  # one per moment decided in this step
    cancelled: dict[str, str] = {}  # decision id -> why its planned send was called off
    fence: int | None = None  # distributed mode: refused if older than a committed token


class MomentQuery(msgspec.Struct, kw_only=True, frozen=True):
    """Filters of ``GET /api/moments``; all optional, combined with AND."""

    customer_id: str | None = None
    kind: str | None = None
    name: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    before: tuple[int, str] | None = None  # page cursor: (at_ms, moment_id) of the last seen
    limit: int = 100
