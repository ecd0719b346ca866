"""Delayed labels without look-ahead: feature snapshots wait in the customer's state.

A snapshot taken at ``at`` asks "does the outcome happen within ``horizon``
of ``at``?". An outcome arriving in ``[at, at + horizon]`` marks it positive;
it is learned — positive or negative — once event time has passed
``at + horizon``, never earlier, so no label is learned before it is final.

Positives are held until then rather than learned on arrival: otherwise the
model would see the positives of the last ``horizon`` before the negatives of
the same moments, and overstate the rate (on the synthetic population of
1,500 customers, holding them cut the prequential log loss of fatigue from
0.229 to 0.146 and of propensity from 0.386 to 0.357). Snapshots are learned
in the order they were taken.

The features are stored as float32 (half the bytes of msgpack's float64): a
snapshot is one timestamp, one prediction and a short byte string.

>>> queue = [Snapshot(0, 0.5, b""), Snapshot(10, 0.5, b"")]
>>> mark(queue, 12, horizon=5)
>>> done, queue = expired(queue, until=6, horizon=5)
>>> [(s.at, s.hit) for s in done], [(s.at, s.hit) for s in queue]
([(0, False)], [(10, True)])
"""

from __future__ import annotations

import array
from collections.abc import Sequence

from momently.predict.state import Snapshot
from momently.predict.types import Features


def pack(values: Sequence[float]) -> bytes:
    """Feature values (in the model's feature order) as float32 bytes."""
    return array.array("f", values).tobytes()


def unpack(data: bytes, names: Sequence[str]) -> Features:
    """The features :func:`pack` stored; names beyond the stored values are left out."""
    values = array.array("f")
    values.frombytes(data)
    return dict(zip(names, values, strict=False))


def mark(queue: list[Snapshot], ts: int, horizon: int) -> None:
    """Mark the snapshots an outcome at ``ts`` makes positive (they are learned on expiry)."""
    for s in queue:
        if s.at <= ts <= s.at + horizon:
            s.hit = True


def expired(
    queue: list[Snapshot], until: int, horizon: int
) -> tuple[list[Snapshot], list[Snapshot]]:
    """Split ``queue`` into the snapshots whose horizon event time ``until`` has passed
    (their labels are final), in order, and the rest."""
    done = [s for s in queue if s.at + horizon < until]
    if not done:
        return [], queue
    return done, [s for s in queue if s.at + horizon >= until]
