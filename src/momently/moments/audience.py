"""The audience index: which customers a world event concerns, over millions of them.

Three kinds of entry, each updated in O(1) amortised time:

* **positions** — every customer's latest position lives in numpy arrays at a
  *slot* (freed slots are reused), and the slot is filed in the bucket of its
  cell in a :class:`~momently.moments.world.CellGrid` (~500 m cells). A radius
  query reads only the buckets of the cells the circle may touch, then filters
  those candidates with one vectorised freshness test and one vectorised
  haversine: exact, and never a scan of every customer.
* **interests** — product → {customer: last ms}, category → {customer: last ms}.
* **topics** — topic → set of subscribed customers.

Each customer's entry remembers which products, categories and topics it
appears under, so that a merge or a privacy delete touches only those. The
index is plain memory, rebuilt by replaying profiles and events.

>>> from momently.moments.world import WorldEvent
>>> index = AudienceIndex()
>>> index.update_position("c1", 51.5007, -0.1246, ts_ms=1_000)
>>> index.add_interest("c1", product="sku-42", ts_ms=1_000)
>>> index.update_position("c2", 51.5200, -0.1000, ts_ms=1_000)
>>> event = WorldEvent(id="w-1", name="price-drop", near={"place": "store-12"},
...                    products=("sku-42",))
>>> index.audience(event, (51.5010, -0.1250), now_ms=2_000)
[Recipient(customer_id='c1', reasons=('near:store-12 43m', 'interested:sku-42'))]
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Collection, Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

from momently.moments.world import FloatArray, Recipient, WorldEvent, cell_grid, haversine_many_m

IntArray = npt.NDArray[np.int64]
_NO_SLOT: Final = -1


class _Entry:
    """What the index holds for one customer; the name lists are made on first use."""

    __slots__ = ("categories", "products", "slot", "topics")

    def __init__(self) -> None:
        self.slot = _NO_SLOT
        self.products: list[str] | None = None
        self.categories: list[str] | None = None
        self.topics: list[str] | None = None

    def empty(self) -> bool:
        return self.slot == _NO_SLOT and not (self.products or self.categories or self.topics)


class AudienceIndex:
    """In-memory, rebuildable from profiles and events; all updates O(1) amortised."""

    def __init__(self, cell_m: float = 500.0) -> None:
        if not 10.0 <= cell_m <= 100_000.0:
            raise ValueError("cell_m must be between 10 m and 100 km")
        self._grid = cell_grid(cell_m)
        self._entries: dict[str, _Entry] = {}
        self._ids: list[str] = []  # slot -> customer, "" while the slot is free
        self._free: list[int] = []
        self._lat = np.zeros(0, dtype=np.float64)  # numpy: read whole by the queries
        self._lon = np.zeros(0, dtype=np.float64)
        self._ts = np.zeros(0, dtype=np.int64)
        self._cell = array("q")  # slot -> cell key; arrays: read one item at a time
        self._at = array("q")  # slot -> index in its cell's bucket
        self._cells: dict[int, array[int]] = {}  # cell key -> bucket of slots
        self._products: dict[str, dict[str, int]] = {}
        self._categories: dict[str, dict[str, int]] = {}
        self._topics: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._entries

    def _entry(self, customer_id: str) -> _Entry:
        entry = self._entries.get(customer_id)
        if entry is None:
            entry = self._entries[customer_id] = _Entry()
        return entry

    def _drop_if_empty(self, customer_id: str, entry: _Entry) -> None:
        if entry.empty():
            del self._entries[customer_id]

    # -- positions ---------------------------------------------------------

    def update_position(self, customer_id: str, lat: float, lon: float, ts_ms: int) -> None:
        """Record a customer's position; a ping older than the one held is ignored."""
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"not a position: lat {lat}, lon {lon}")
        entry = self._entries.get(customer_id)
        if entry is None:
            entry = self._entries[customer_id] = _Entry()
        slot = entry.slot
        key = self._grid.key(lat, lon)
        if slot == _NO_SLOT:
            slot = entry.slot = self._allocate(customer_id)
            self._file(slot, key)
        elif ts_ms < self._ts[slot]:
            return
        elif key != self._cell[slot]:
            self._unfile(slot)
            self._file(slot, key)
        self._lat[slot] = lat
        self._lon[slot] = lon
        self._ts[slot] = ts_ms

    def forget_position(self, customer_id: str) -> None:
        """Drop a customer's position (location consent withdrawn, app uninstalled)."""
        entry = self._entries.get(customer_id)
        if entry is None or entry.slot == _NO_SLOT:
            return
        self._release(entry.slot)
        entry.slot = _NO_SLOT
        self._drop_if_empty(customer_id, entry)

    def _allocate(self, customer_id: str) -> int:
        if self._free:
            slot = self._free.pop()
            self._ids[slot] = customer_id
            return slot
        slot = len(self._ids)
        self._ids.append(customer_id)
        self._cell.append(0)
        self._at.append(0)
        if slot == len(self._ts):  # grow by doubling: amortised O(1)
            size = max(1024, 2 * slot)
            for name in ("_lat", "_lon", "_ts"):
                old = getattr(self, name)
                new = np.zeros(size, dtype=old.dtype)
                new[:slot] = old
                setattr(self, name, new)
        return slot

    def _release(self, slot: int) -> None:
        self._unfile(slot)
        self._ids[slot] = ""
        self._free.append(slot)

    def _file(self, slot: int, key: int) -> None:
        bucket = self._cells.get(key)
        if bucket is None:
            self._cells[key] = array("q", (slot,))
            self._at[slot] = 0
        else:
            self._at[slot] = len(bucket)
            bucket.append(slot)
        self._cell[slot] = key

    def _unfile(self, slot: int) -> None:
        key = self._cell[slot]
        bucket = self._cells[key]
        last = bucket.pop()  # the last slot moves into the hole: O(1)
        if not bucket:
            del self._cells[key]
        elif last != slot:
            hole = self._at[slot]
            bucket[hole] = last
            self._at[last] = hole

    # -- interests and topics ----------------------------------------------

    def add_interest(
        self,
        customer_id: str,
        *,
        product: str | None = None,
        category: str | None = None,
        ts_ms: int,
    ) -> None:
        """Record interest in a product and/or a category; the latest time counts."""
        if product is None and category is None:
            raise ValueError("add_interest needs a product or a category")
        entry = self._entry(customer_id)
        if product is not None and _touch(self._products, product, customer_id, ts_ms):
            entry.products = _appended(entry.products, product)
        if category is not None and _touch(self._categories, category, customer_id, ts_ms):
            entry.categories = _appended(entry.categories, category)

    def keep_interests(
        self, customer_id: str, products: Collection[str], categories: Collection[str]
    ) -> int:
        """Forget the customer's interests not named here (the customer's state keeps only
        its latest ones: the index must not keep more); returns how many went."""
        entry = self._entries.get(customer_id)
        if entry is None:
            return 0
        gone = 0
        for maps, names, kept in (
            (self._products, entry.products, products),
            (self._categories, entry.categories, categories),
        ):
            for name in _names(names):
                if name not in kept:
                    _discard(maps, name, customer_id)
                    gone += 1
        if gone:
            entry.products = _kept(entry.products, self._products, customer_id)
            entry.categories = _kept(entry.categories, self._categories, customer_id)
            self._drop_if_empty(customer_id, entry)
        return gone

    def interest_count(self, customer_id: str) -> int:
        """How many products and categories the index holds for the customer."""
        entry = self._entries.get(customer_id)
        if entry is None:
            return 0
        return len(_names(entry.products)) + len(_names(entry.categories))

    def subscribe(self, customer_id: str, topic: str) -> None:
        """Subscribe a customer to a topic."""
        subscribers = self._topics.get(topic)
        if subscribers is None:
            subscribers = self._topics[topic] = set()
        elif customer_id in subscribers:
            return
        subscribers.add(customer_id)
        entry = self._entry(customer_id)
        entry.topics = _appended(entry.topics, topic)

    def unsubscribe(self, customer_id: str, topic: str) -> None:
        """Unsubscribe a customer from a topic (no error when not subscribed)."""
        entry = self._entries.get(customer_id)
        if entry is None or not entry.topics or topic not in entry.topics:
            return
        entry.topics.remove(topic)
        if not entry.topics:
            entry.topics = None
        _discard(self._topics, topic, customer_id)
        self._drop_if_empty(customer_id, entry)

    def prune_interests(self, before_ms: int) -> int:
        """Forget interests last seen before ``before_ms``; returns how many went (O(all))."""
        touched: set[str] = set()
        dropped = 0
        for maps in (self._products, self._categories):
            for name in list(maps):
                customers = maps[name]
                stale = [c for c, ts in customers.items() if ts < before_ms]
                for customer_id in stale:
                    del customers[customer_id]
                touched.update(stale)
                dropped += len(stale)
                if not customers:
                    del maps[name]
        for customer_id in touched:
            entry = self._entries[customer_id]
            entry.products = _kept(entry.products, self._products, customer_id)
            entry.categories = _kept(entry.categories, self._categories, customer_id)
            self._drop_if_empty(customer_id, entry)
        return dropped

    # -- identity and privacy ----------------------------------------------

    def merge(self, loser: str, winner: str) -> None:
        """Identity merge: move the loser's entries to the winner (the fresher position wins)."""
        if loser == winner or loser not in self._entries:
            return
        lost = self._entries.pop(loser)
        kept = self._entry(winner)
        if lost.slot != _NO_SLOT:
            slot = lost.slot
            if kept.slot == _NO_SLOT:
                kept.slot = slot  # the slot and its cell carry over as they are
                self._ids[slot] = winner
            elif self._ts[slot] > self._ts[kept.slot]:
                lat, lon, ts = float(self._lat[slot]), float(self._lon[slot]), int(self._ts[slot])
                self._release(slot)
                self.update_position(winner, lat, lon, ts)
            else:
                self._release(slot)
        for name in _names(lost.products):
            if _touch(self._products, name, winner, self._products[name].pop(loser)):
                kept.products = _appended(kept.products, name)
        for name in _names(lost.categories):
            if _touch(self._categories, name, winner, self._categories[name].pop(loser)):
                kept.categories = _appended(kept.categories, name)
        for topic in _names(lost.topics):
            subscribers = self._topics[topic]
            subscribers.discard(loser)
            if winner not in subscribers:
                subscribers.add(winner)
                kept.topics = _appended(kept.topics, topic)

    def remove(self, customer_id: str) -> None:
        """Privacy delete: the customer leaves no trace in the index."""
        entry = self._entries.pop(customer_id, None)
        if entry is None:
            return
        if entry.slot != _NO_SLOT:
            self._release(entry.slot)
        for product in _names(entry.products):
            _discard(self._products, product, customer_id)
        for category in _names(entry.categories):
            _discard(self._categories, category, customer_id)
        for topic in _names(entry.topics):
            _discard(self._topics, topic, customer_id)

    # -- queries -----------------------------------------------------------

    def near(
        self, lat: float, lon: float, radius_m: float, since_ms: int
    ) -> tuple[IntArray, FloatArray]:
        """The radius query: slots seen at or after ``since_ms`` within ``radius_m``, distances.

        A slot names a customer through :meth:`customer_at`.
        """
        cells = self._cells
        buckets = [b for key in self._grid.cover(lat, lon, radius_m) if (b := cells.get(key))]
        if not buckets:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        candidates = np.concatenate(buckets)
        fresh = candidates[self._ts[candidates] >= since_ms]
        distance = haversine_many_m(lat, lon, self._lat[fresh], self._lon[fresh])
        inside = distance <= radius_m
        return fresh[inside], distance[inside]

    def customer_at(self, slot: int) -> str:
        """The customer whose position a slot holds ("" for a free slot)."""
        return self._ids[slot]

    def audience(
        self, event: WorldEvent, center: tuple[float, float] | None, now_ms: int
    ) -> list[Recipient]:
        """Every customer the event concerns, once, with all its reasons, by customer id.

        ``center`` is where ``event.near`` points (its place resolved by the
        caller); it may be left out when the event gives coordinates. Freshness
        is a lower bound only: a position or interest stamped after ``now_ms``
        counts, since device clocks run ahead. Whether the event itself has
        expired is the caller's to check.
        """
        reasons: dict[str, tuple[str, ...]] = {}
        near = event.near
        if near is not None:
            if center is None:
                if near.lat is None or near.lon is None:
                    raise ValueError(f"place {near.place!r} must be resolved to a center")
                center = (near.lat, near.lon)
            slots, distance = self.near(*center, near.radius_m, now_ms - near.seen_within)
            prefix = f"near:{near.label} "
            ids = self._ids
            metres = np.rint(distance).astype(np.int64).tolist()
            for slot, metre in zip(slots.tolist(), metres, strict=True):
                reasons[ids[slot]] = (f"{prefix}{metre}m",)
        for topic in event.topics:
            _add_reason(reasons, self._topics.get(topic, ()), f"subscribed:{topic}")
        since = now_ms - event.interest_within
        for maps, names, label in (
            (self._products, event.products, "interested"),
            (self._categories, event.categories, "interested-category"),
        ):
            for name in names:
                chosen = [c for c, ts in maps.get(name, {}).items() if ts >= since]
                _add_reason(reasons, chosen, f"{label}:{name}")
        order = sorted(reasons)
        return list(map(Recipient, order, map(reasons.__getitem__, order)))

    def memory_bytes(self) -> int:
        """Approximate memory held, from numpy ``nbytes`` and ``sys.getsizeof`` (O(n))."""
        size = self._lat.nbytes + self._lon.nbytes + self._ts.nbytes
        size += sum(sys.getsizeof(x) for x in (self._cell, self._at, self._ids, self._free))
        size += sys.getsizeof(self._cells) + sum(map(sys.getsizeof, self._cells.values()))
        size += sys.getsizeof(self._entries)
        for customer_id, entry in self._entries.items():
            size += sys.getsizeof(customer_id) + sys.getsizeof(entry)
            for names in (entry.products, entry.categories, entry.topics):
                size += 0 if names is None else sys.getsizeof(names)
        for maps in (self._products, self._categories):
            size += sys.getsizeof(maps)
            for name, customers in maps.items():
                size += sys.getsizeof(name) + sys.getsizeof(customers)
                size += sum(map(sys.getsizeof, customers.values()))  # the int timestamps
        size += sys.getsizeof(self._topics)
        size += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self._topics.items())
        return size


def _touch(maps: dict[str, dict[str, int]], name: str, customer_id: str, ts_ms: int) -> bool:
    """Keep the latest time of an interest; True when it is new for that customer."""
    customers = maps.get(name)
    if customers is None:
        customers = maps[name] = {}
    held = customers.get(customer_id)
    if held is None or ts_ms > held:
        customers[customer_id] = ts_ms
    return held is None


def _appended(names: list[str] | None, name: str) -> list[str]:
    if names is None:
        return [name]
    names.append(name)
    return names


def _names(names: list[str] | None) -> list[str]:
    return [] if names is None else names


def _kept(names: list[str] | None, maps: dict[str, dict[str, int]], cid: str) -> list[str] | None:
    kept = [name for name in _names(names) if cid in maps.get(name, ())]
    return kept or None


def _discard(maps: dict[str, dict[str, int]] | dict[str, set[str]], name: str, cid: str) -> None:
    members = maps.get(name)
    if members is None:
        return
    if isinstance(members, dict):
        members.pop(cid, None)
    else:
        members.discard(cid)
    if not members:
        del maps[name]


def _add_reason(reasons: dict[str, tuple[str, ...]], customers: Iterable[str], reason: str) -> None:
    """Give each customer one more reason; done in C where the sets allow it."""
    single = (reason,)
    if not reasons:
        reasons.update(dict.fromkeys(customers, single))
        return
    chosen = customers if isinstance(customers, set) else set(customers)
    both = chosen.intersection(reasons)
    for customer_id in both:
        reasons[customer_id] += single
    reasons.update(dict.fromkeys(chosen.difference(both), single))
