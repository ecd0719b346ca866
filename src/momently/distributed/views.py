"""The partitions' stores seen as one, for the embedded admin routers on an ingest node.

The embedded routers (deliveries, previews, lift) take a :class:`~momently.types.Store`
and a :class:`~momently.types.MomentStore`; on an ingest node those are every
partition's. :class:`PartitionedStore` and :class:`PartitionedMoments` answer the
few reads those routers make, over :class:`~momently.distributed.admin.Partitions`:

* a customer is found as the node's other reads find one (an identified profile
  before an anonymous one, then the one seen last: see
  :mod:`momently.distributed.admin`), and their profile is read from that partition;
* ``read_log`` walks the partitions one after another, each record's ``seq``
  carrying its partition in the high bits (``partition << 40 | seq``) so a caller's
  ``after`` cursor resumes where it stopped;
* decisions and moments are merged newest first over the partitions' pages.

Anything else a router might call is not there: an ``AttributeError`` in a test,
rather than a silent answer from one partition.
"""

from __future__ import annotations

from typing import Final

import msgspec

from momently.decide.records import Decision, DecisionQuery
from momently.distributed.admin import Partitions
from momently.moments.model import Moment
from momently.moments.records import MomentQuery
from momently.state.profile import Profile
from momently.types import LogRecord
from momently.web.admin import NotFound

SHIFT: Final = 40  # a partition's own seq stays below 2**40 (a trillion events)
MASK: Final = (1 << SHIFT) - 1


class PartitionedStore:
    """The reads the embedded routers make of a store, over every partition."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def canonical(self, identifier: str) -> str | None:
        try:
            return self.partitions.find(identifier)[1]
        except NotFound:
            return None

    def owner(self, key: tuple[str, str]) -> str | None:
        return None  # canonical() looked the identifier up under every kind already

    def profile(self, customer_id: str) -> Profile | None:
        try:
            part, customer = self.partitions.find(customer_id)
        except NotFound:
            return None
        return part.store.profile(customer)

    def read_log(self, after: int, limit: int) -> list[LogRecord]:
        """Up to ``limit`` records after the cursor ``after``, partition by partition."""
        parts = self.partitions.parts()
        partition, seq = after >> SHIFT, after & MASK
        while partition < len(parts):
            found = parts[partition].store.read_log(seq, limit)
            if found:
                high = partition << SHIFT
                return [msgspec.structs.replace(r, seq=high | r.seq) for r in found]
            partition, seq = partition + 1, 0
        return []


def _newest(pages: list[list[Decision]], limit: int) -> list[Decision]:
    found = sorted(
        (d for page in pages for d in page), key=lambda d: (d.at_ms, d.decision_id), reverse=True
    )
    return found[:limit]


class PartitionedMoments:
    """The reads the embedded routers make of a moment store, over every partition."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def decisions(self, query: DecisionQuery) -> list[Decision]:
        """Newest first, as one store's: the newest ``limit`` of every partition's page."""
        return _newest(self.partitions.each(lambda p: p.moments.decisions(query)), query.limit)

    def decision(self, decision_id: str) -> Decision | None:
        found = self.partitions.each(lambda p: p.moments.decision(decision_id))
        return next((d for d in found if d is not None), None)

    def moments(self, query: MomentQuery) -> list[Moment]:
        pages = self.partitions.each(lambda p: p.moments.moments(query))
        found = sorted(
            (m for page in pages for m in page), key=lambda m: (m.at_ms, m.moment_id), reverse=True
        )
        return found[: query.limit]
