"""The engine's core loop for a group of events: dedupe, resolve identity, fold into
profiles, and hand the store one atomic commit.

The engine is the single writer of a store. It keeps hot identities and
profiles in bounded caches and updates them only after the store has
committed, so a failed commit leaves memory and disk in agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from momently.events import Event
from momently.identity import identity_keys, new_customer_id, resolve
from momently.state.profile import (
    Profile,
    apply_event,
    apply_events,
    merge_profiles,
    new_profile,
)
from momently.types import Changes, Fence, IdentityKey, Store

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one submission: new events stored, and duplicates dropped."""

    accepted: int
    duplicates: int


def _no_owner(key: IdentityKey) -> None:
    return None


def planned_keys(event: Event) -> list[IdentityKey] | None:
    """The identity keys the engine plans for ``event`` before it looks up any owner:
    all of them but for an alias, whose previousId's kind depends on the owners."""
    return None if event.type == "alias" else identity_keys(event, _no_owner)


class PreparedEvents(list[Event]):
    """Events with the per-event work the writer would otherwise do worked out already.

    The parse workers (:mod:`momently.ingest.parsepool`) hand them over so: each
    event's log payload (``encode_event(event)``, byte for byte) and its
    :func:`planned_keys`. The writer thread then neither encodes the events nor
    works out their identifiers; a plain list of events works as before.
    """

    __slots__ = ("keys", "payloads")

    def __init__(
        self,
        events: Sequence[Event],
        payloads: Sequence[bytes],
        keys: Sequence[list[IdentityKey] | None],
    ) -> None:
        if not len(events) == len(payloads) == len(keys):
            raise ValueError("one payload and one plan of keys per event")
        super().__init__(events)
        self.payloads = payloads
        self.keys = keys

    def without(self, drop: Callable[[Event], bool]) -> PreparedEvents:
        """These events but those ``drop`` picks, each still with its payload and keys."""
        kept = [i for i, event in enumerate(self) if not drop(event)]
        return PreparedEvents(
            [self[i] for i in kept], [self.payloads[i] for i in kept], [self.keys[i] for i in kept]
        )


class _Pending:
    """State changed by events not yet committed, layered over the engine's caches."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.owners: dict[IdentityKey, str] = {}
        self.profiles: dict[str, Profile] = {}
        self.merged: dict[str, str] = {}
        # Events of returning customers not folded into ``profiles`` yet: a run of
        # them is folded in one pass (apply_events) when the profile is next read.
        self.unfolded: dict[str, list[Event]] = {}

    def owner(self, key: IdentityKey) -> str | None:
        found = self.owners.get(key)
        return found if found is not None else self.engine.owner(key)

    def profile(self, customer_id: str) -> Profile:
        found = self.profiles.get(customer_id)
        if found is None:
            found = self.engine.profile(customer_id)
        if found is None:
            raise LookupError(f"identity points at {customer_id}, which has no profile")
        waiting = self.unfolded.pop(customer_id, None)
        if waiting:
            found = self.profiles[customer_id] = apply_events(found, waiting)
        return found

    def fold_later(self, customer_id: str, event: Event) -> None:
        """Fold ``event`` into the customer's profile when it is next read."""
        waiting = self.unfolded.get(customer_id)
        if waiting is None:
            self.profile(customer_id)  # it must exist (LookupError if not)
            self.unfolded[customer_id] = [event]
        else:
            waiting.append(event)

    def fold_all(self) -> None:
        for customer_id in list(self.unfolded):
            self.profile(customer_id)

    def user_of(self, customer_id: str) -> str | None:
        # As after folding the waiting events: the profile's userId, else the first
        # one they name (apply_event keeps a userId once set); no fold needed.
        found = self.profiles.get(customer_id)
        if found is None:
            found = self.engine.profile(customer_id)
        if found is None:
            raise LookupError(f"identity points at {customer_id}, which has no profile")
        if found.user_id is not None:
            return found.user_id
        for event in self.unfolded.get(customer_id, ()):
            if event.user_id:
                return event.user_id
        return None

    def identities(self, customer_id: str) -> set[IdentityKey]:
        keys = {k for k in self.engine.store.identities(customer_id) if k not in self.owners}
        keys |= {k for k, c in self.owners.items() if c == customer_id}
        return keys


def known_customer(
    keys: Sequence[IdentityKey],
    owner: Callable[[IdentityKey], str | None],
    user_of: Callable[[str], str | None],
) -> str | None:
    """The customer every key points at, when :func:`resolve` could only answer that.

    That is: all keys have one owner, at most one of them is a userId, and the
    owner's own userId (if any) is the one the event claims; ``resolve`` would
    then say: that customer, nothing to merge, bind or hold back. The common case
    of a returning customer, answered without working through the merge rules.
    """
    if not keys:
        return None
    customer = owner(keys[0])
    if customer is None:
        return None
    claimed = None
    for kind, value in keys:
        if kind == "user_id":
            if claimed is not None:
                return None
            claimed = value
    for key in keys[1:]:
        if owner(key) != customer:
            return None
    if claimed is not None:
        user = user_of(customer)
        if user is not None and user != claimed:
            return None
    return customer


class Engine:
    """Applies events to a store; not thread-safe: one writer thread owns it."""

    def __init__(self, store: Store, *, cache_size: int = 200_000) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.store = store
        self._cache_size = cache_size
        self._owners: dict[IdentityKey, str] = {}
        self._profiles: dict[str, Profile] = {}
        # Keys the store was just asked about and does not know: valid only inside
        # one ingest_groups, before its commit binds any of them.
        self._unowned: set[IdentityKey] = set()
        # Distributed mode: the partition owner's fencing token and stream position,
        # checked and stored by the store in each commit (see momently.distributed).
        self.fence: Fence | None = None
        self._last_known: tuple[list[IdentityKey], str] | None = None

    def owner(self, key: IdentityKey) -> str | None:
        found = self._owners.get(key)
        if found is None:
            if key in self._unowned:
                return None
            found = self.store.owner(key)
            if found is not None:
                self._remember(self._owners, key, found)
        return found

    def profile(self, customer_id: str) -> Profile | None:
        found = self._profiles.get(customer_id)
        if found is None:
            found = self.store.profile(customer_id)
            if found is not None:
                self._remember(self._profiles, customer_id, found)
        return found

    def _remember(self, cache: dict[K, V], key: K, value: V) -> None:
        if len(cache) >= self._cache_size and key not in cache:
            # dicts keep insertion order: drop the oldest tenth
            for old in list(cache)[: max(1, self._cache_size // 10)]:
                del cache[old]
        cache[key] = value

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store the events the log has not seen and fold them into state, atomically."""
        return self.ingest_groups([events])[0]

    def ingest_groups(self, groups: Sequence[Sequence[Event]]) -> list[IngestResult]:
        """Like :meth:`ingest` for several submissions in one commit (group commit)."""
        try:
            return self._ingest_groups(groups)
        finally:
            self._unowned.clear()

    def _prefetch(self, keys: set[IdentityKey]) -> None:
        """Load owners and profiles behind ``keys`` in a few queries, not one per key."""
        missing = [k for k in keys if k not in self._owners]
        if missing:
            found = self.store.owners(missing)
            for key in missing:
                customer = found.get(key)
                if customer is None:
                    self._unowned.add(key)
                else:
                    self._remember(self._owners, key, customer)
        customers = {
            c for k in keys if (c := self._owners.get(k)) is not None and c not in self._profiles
        }
        if customers:
            for customer, profile in self.store.profiles(sorted(customers)).items():
                self._remember(self._profiles, customer, profile)

    def _ingest_groups(self, groups: Sequence[Sequence[Event]]) -> list[IngestResult]:
        all_ids = [e.message_id for group in groups for e in group]
        seen: set[str] = set()
        for start in range(0, len(all_ids), 500):
            seen |= self.store.known_messages(all_ids[start : start + 500])
        # An event's keys depend on the owners only for an alias (see identity_keys),
        # so the others are worked out once here and their owners fetched together.
        planned: list[list[IdentityKey] | None] = []
        wanted: set[IdentityKey] = set()
        for group in groups:
            given = group.keys if isinstance(group, PreparedEvents) else None
            for index, event in enumerate(group):
                if event.message_id in seen:
                    planned.append(None)
                    continue
                keys = given[index] if given is not None else planned_keys(event)
                planned.append(keys)
                if keys is not None:
                    wanted.update(keys)
        self._prefetch(wanted)
        pending = _Pending(self)
        records: list[tuple[str, Event]] = []
        encoded: dict[str, bytes] = {}
        results = []
        plans = iter(planned)
        # The keys of the last event that went to a returning customer, and that
        # customer: the next event naming exactly those keys goes there too, as long
        # as no identifier has been bound or merged in between (_apply resets it).
        self._last_known = None
        for group in groups:
            accepted = 0
            payloads = group.payloads if isinstance(group, PreparedEvents) else None
            for index, event in enumerate(group):
                plan = next(plans)
                if event.message_id in seen:
                    continue
                seen.add(event.message_id)
                records.append((self._apply(pending, event, plan), event))
                if payloads is not None:
                    encoded[event.message_id] = payloads[index]
                accepted += 1
            results.append(IngestResult(accepted, len(group) - accepted))
        pending.fold_all()
        if records:
            changes = Changes(pending.profiles, pending.owners, pending.merged, self.fence, encoded)
            self.store.commit(records, changes)
            for key, customer in pending.owners.items():
                self._remember(self._owners, key, customer)
            for loser in pending.merged:
                self._profiles.pop(loser, None)
            for customer, profile in pending.profiles.items():
                self._remember(self._profiles, customer, profile)
        return results

    def _apply(self, pending: _Pending, event: Event, keys: list[IdentityKey] | None) -> str:
        if keys is None:
            keys = identity_keys(event, pending.owner)
        last = self._last_known
        if last is not None and last[0] == keys:
            # The same identifiers as the last returning customer's event, nothing
            # bound or merged since: known_customer would answer the same again (that
            # event's userId, if any, is the profile's now, or is the same claim).
            pending.fold_later(last[1], event)
            return last[1]
        known = known_customer(keys, pending.owner, pending.user_of)
        if known is not None:
            # Every identifier already points at one customer: nothing to bind or merge.
            pending.fold_later(known, event)
            self._last_known = (keys, known)
            return known
        self._last_known = None
        resolution = resolve(keys, pending.owner, pending.user_of)
        if resolution.customer_id is None:
            customer = new_customer_id(event.message_id)
            profile = new_profile(customer, event)
        else:
            customers = [pending.profile(c) for c in (resolution.customer_id, *resolution.merge)]
            # The customer whose creating event is oldest (event time, then messageId)
            # survives; the grouping of identifiers, not this id, is order-independent.
            customers.sort(key=lambda p: p.created)
            profile = customers[0]
            customer = profile.customer_id
            for loser in customers[1:]:
                profile = merge_profiles(profile, loser)
                for key in pending.identities(loser.customer_id):
                    pending.owners[key] = customer
                pending.profiles.pop(loser.customer_id, None)
                pending.merged[loser.customer_id] = customer
                for old, winner in pending.merged.items():
                    if winner == loser.customer_id:
                        pending.merged[old] = customer
        for key in resolution.bind:
            pending.owners[key] = customer
        pending.profiles[customer] = apply_event(profile, event)
        return customer
