"""Property tests for identity resolution and profile merging, through the Engine."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from momently.engine import Engine
from momently.events import Event, from_ms
from momently.identity import identity_keys
from momently.state.profile import (
    Profile,
    apply_event,
    event_traits,
    merge_profiles,
    new_profile,
    normal_email,
    normal_phone,
)
from momently.store.memory import MemoryStore
from momently.types import IdentityKey

BASE_MS: Final = 1_790_000_000_000
KINDS: Final = ["track", "identify", "page", "screen", "group", "alias"]
# A small pool of ticks, so that events often share a millisecond and ties must break.
ticks = st.integers(min_value=0, max_value=6).map(lambda n: BASE_MS + n * 1000)
cache_sizes = st.sampled_from([1, 3, 200_000])


def make_event(
    mid: str,
    kind: str,
    ts: int,
    *,
    user: str | None = None,
    anon: str | None = None,
    previous: str | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    name: str = "Product Viewed",
    properties: dict[str, Any] | None = None,
) -> Event:
    """An event as :func:`momently.events.normalise` would store it."""
    traits = traits or {}
    context = dict(context or {})
    if traits and kind != "identify":
        context["traits"] = traits  # Segment puts the user's traits here on other calls
    return Event(
        message_id=mid,
        type=kind,
        timestamp=from_ms(ts),
        received_at=from_ms(ts),
        user_id=user,
        anonymous_id=anon,
        previous_id=previous if kind == "alias" else None,
        group_id="g1" if kind == "group" else None,
        event=name if kind == "track" else None,
        traits=traits if kind == "identify" else {},
        context=context,
        properties=properties or {},
    )


@st.composite
def extras(
    draw: st.DrawFn, *, emails: Sequence[str], phones: Sequence[str], devices: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Traits and context an event may carry: identifiers, traits, a device, consent."""
    traits: dict[str, Any] = {}
    context: dict[str, Any] = {}
    if len(emails) > 0 and draw(st.booleans()):
        email = draw(st.sampled_from(emails))
        traits["email"] = draw(st.sampled_from([email, email.upper(), f"  {email} "]))
    if len(phones) > 0 and draw(st.booleans()):
        phone = draw(st.sampled_from(phones))
        traits["phone"] = draw(st.sampled_from([phone, phone.replace(" ", "-")]))
    for key in draw(st.lists(st.sampled_from(["plan", "name", "age"]), unique=True, max_size=2)):
        traits[key] = draw(st.sampled_from(["free", "pro", 30, 2**64, None, ["x", {"y": 1.5}]]))
    if len(devices) > 0 and draw(st.booleans()):
        device: dict[str, Any] = {"id": draw(st.sampled_from(devices))}
        for field, values in (
            ("model", ["iPhone15,2", "Pixel 8"]),
            ("type", ["ios", "android"]),
            ("token", ["tok-1", "tok-2"]),
            ("manufacturer", ["Apple", "Google"]),
        ):
            if draw(st.booleans()):
                device[field] = draw(st.sampled_from(values))
        if draw(st.booleans()):
            device["os"] = {"name": draw(st.sampled_from(["iOS", "Android"]))}
        context["device"] = device
    if draw(st.booleans()):
        context["timezone"] = draw(st.sampled_from(["Europe/Paris", "America/New_York"]))
    if draw(st.booleans()):
        context["locale"] = draw(st.sampled_from(["fr-FR", "en-US"]))
    if draw(st.booleans()):
        context["location"] = {
            "latitude": draw(st.sampled_from([48.85, 40.71])),
            "longitude": draw(st.sampled_from([2.35, -74.0])),
        }
    if draw(st.booleans()):
        context["consent"] = {"categoryPreferences": {"email": draw(st.booleans())}}
    return traits, context


@st.composite
def peaceful_events(draw: st.DrawFn) -> list[Event]:
    """Events whose identifiers never conflict: each person's ids are their own, and a
    person has at most one userId, so every connected group of ids has at most one."""
    people = draw(st.lists(st.booleans(), min_size=1, max_size=4))  # has a userId?
    events = []
    for index in range(draw(st.integers(min_value=1, max_value=12))):
        p = draw(st.integers(min_value=0, max_value=len(people) - 1))
        user = f"u{p}" if people[p] else None
        anons = [f"a{p}.{k}" for k in range(3)]
        kind = draw(st.sampled_from(KINDS if user else KINDS[:-1]))
        traits, context = draw(
            extras(
                emails=[f"p{p}.{k}@example.com" for k in range(2)],
                phones=[f"+33 6 00 00 0{p} {k}0" for k in range(2)],
                devices=[f"d{p}.{k}" for k in range(2)],
            )
        )
        ts = draw(ticks)
        mid = f"m{index}"
        if kind == "alias":
            events.append(
                make_event(mid, kind, ts, user=user, previous=draw(st.sampled_from(anons)))
            )
            continue
        with_user = user is not None and draw(st.booleans())
        anon = draw(st.sampled_from(anons)) if not with_user or draw(st.booleans()) else None
        events.append(
            make_event(
                mid,
                kind,
                ts,
                user=user if with_user else None,
                anon=anon,
                traits=traits,
                context=context,
                name=draw(st.sampled_from(["Product Viewed", "Unsubscribed", "Subscribed"])),
                properties={"channel": "email"},
            )
        )
    return events


@st.composite
def unruly_events(draw: st.DrawFn, *, users: Sequence[str] = ("u0", "u1", "u2")) -> list[Event]:
    """Events over a small shared pool of identifiers: shared tablets, reused
    anonymousIds, emails on two accounts, aliases between known users."""
    anons = ["a0", "a1", "a2", "a3"]
    events = []
    for index in range(draw(st.integers(min_value=1, max_value=14))):
        kind = draw(st.sampled_from(KINDS if users else KINDS[:-1]))
        traits, context = draw(
            extras(
                emails=["e0@example.com", "e1@example.com"],
                phones=["+1 555 0100", "+1 555 0101"],
                devices=["d0", "d1", "d2"],
            )
        )
        ts = draw(ticks)
        mid = f"m{index}"
        if kind == "alias":
            user = draw(st.sampled_from(users))
            previous = draw(st.sampled_from([*users, *anons]))
            events.append(make_event(mid, kind, ts, user=user, previous=previous, context=context))
            continue
        maybe = draw(st.none() | st.sampled_from(users)) if users else None
        anon = draw(st.sampled_from(anons)) if maybe is None or draw(st.booleans()) else None
        events.append(
            make_event(mid, kind, ts, user=maybe, anon=anon, traits=traits, context=context)
        )
    return events


def batched(events: Sequence[Event], cuts: Sequence[int]) -> list[list[Event]]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(events)}), len(events)]
    return [list(events[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def cut_points(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(min_value=0, max_value=max(n, 1)), max_size=4)


def ingest(
    events: Sequence[Event], cuts: Sequence[int] = (), cache_size: int = 200_000
) -> MemoryStore:
    store = MemoryStore()
    engine = Engine(store, cache_size=cache_size)
    for batch in batched(events, cuts):
        engine.ingest(batch)
    return store


def no_owner(key: IdentityKey) -> None:
    return None


def named_keys(event: Event) -> list[list[IdentityKey]]:
    """The identifiers an event named, each as the forms it may be stored under: an
    alias's previousId is a userId if one was known when it came, else an anonymousId."""
    forms = [[key] for key in identity_keys(event, no_owner)]
    previous = event.previous_id
    if event.type == "alias" and previous is not None and previous != event.anonymous_id:
        forms = [f for f in forms if f != [("anonymous_id", previous)]]
        forms.append([("anonymous_id", previous), ("user_id", previous)])
    return forms


Partition = dict[frozenset[IdentityKey], dict[str, Any]]


def describe(store: MemoryStore, events: Sequence[Event]) -> Partition:
    """Each customer as its set of identifiers and its profile, less its (order-given) id."""
    members: dict[str, set[IdentityKey]] = {}
    for event in events:
        for key in identity_keys(event, no_owner):  # no alias names a userId here
            owner = store.owner(key)
            assert owner is not None, f"{key} has no owner"
            members.setdefault(owner, set()).add(key)
    assert store.stats()["customers"] == len(members)
    found: Partition = {}
    for customer, keys in members.items():
        profile = store.profile(customer)
        assert profile is not None
        shown = profile.to_json()
        del shown["customerId"], shown["mergedFrom"]
        found[frozenset(keys)] = shown
    return found


def components(events: Sequence[Event]) -> list[tuple[frozenset[IdentityKey], list[Event]]]:
    """Union-find over the identifiers each event names together: the expected customers."""
    parent: dict[IdentityKey, IdentityKey] = {}

    def find(key: IdentityKey) -> IdentityKey:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for event in events:
        keys = identity_keys(event, no_owner)
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    groups: dict[IdentityKey, tuple[set[IdentityKey], list[Event]]] = {}
    for event in events:
        root = find(identity_keys(event, no_owner)[0])
        named, members = groups.setdefault(root, (set(), []))
        named.update(identity_keys(event, no_owner))
        members.append(event)
    return [(frozenset(named), members) for named, members in groups.values()]


# (a) Without conflicts, the result does not depend on arrival order or batching.


@given(st.data())
def test_without_conflicts_order_and_batching_do_not_matter(data: st.DataObject) -> None:
    events = data.draw(peaceful_events(), label="events")
    reference = describe(ingest(events), events)

    shuffled = data.draw(st.permutations(events), label="order")
    cuts = data.draw(cut_points(len(events)), label="cuts")
    cache_size = data.draw(cache_sizes, label="cache_size")
    assert describe(ingest(shuffled, cuts, cache_size), events) == reference


@given(peaceful_events())
def test_without_conflicts_customers_are_the_connected_groups_of_identifiers(
    events: list[Event],
) -> None:
    found = describe(ingest(events), events)
    expected = components(events)
    assert set(found) == {keys for keys, _ in expected}
    for keys, members in expected:
        shown = found[keys]
        assert shown["counts"] == dict(sorted(Counter(e.type for e in members).items()))
        users = {e.user_id for e in members if e.user_id is not None}
        assert len(users) <= 1
        assert shown["userId"] == (users.pop() if users else None)
        all_traits = [(e.timestamp_ms, e.message_id, event_traits(e)) for e in members]
        emails = {e for _, _, t in all_traits if (e := normal_email(t.get("email")))}
        phones = {p for _, _, t in all_traits if (p := normal_phone(t.get("phone")))}
        assert shown["addresses"]["email"] == sorted(emails)
        assert shown["addresses"]["phone"] == sorted(phones)
        latest: dict[str, Any] = {}
        for _, _, traits in sorted(all_traits, key=lambda t: (t[0], t[1])):
            latest.update(traits)
        assert shown["traits"] == dict(sorted(latest.items()))
        assert shown["firstSeen"] == min(e.timestamp_ms for e in members)
        assert shown["lastSeen"] == max(e.timestamp_ms for e in members)


# (b) Whatever arrives, two known users never share a customer.


def check_invariants(store: MemoryStore, events: Sequence[Event]) -> None:
    log = store.read_log(0, 10_000)
    assert len({r.event.message_id for r in log}) == len(log)
    assert {r.event.message_id for r in log} == {e.message_id for e in events}
    live: dict[str, Profile] = {}
    for record in log:
        customer = store.canonical(record.customer_id)
        assert customer is not None, f"{record.customer_id} canonicalises to nothing"
        profile = store.profile(customer)
        assert profile is not None, f"{record.customer_id} canonicalises to dead {customer}"
        assert profile.customer_id == customer
        live[customer] = profile
        seen = store.customer_events(customer, record.seq - 1, 1)
        assert [r.seq for r in seen] == [record.seq]
    assert store.stats()["customers"] == len(live)
    assert sum(sum(p.counts.values()) for p in live.values()) == len(log)

    for event in events:
        for forms in named_keys(event):
            owners = [o for key in forms if (o := store.owner(key)) is not None]
            assert owners, f"{forms[0]} has no owner"
            for owner in owners:
                assert owner in live, f"{forms[0]} points at {owner}, which has no profile"
    for customer, profile in live.items():
        for kind, value in store.identities(customer):
            if kind == "user_id":
                assert profile.user_id == value, f"{customer} owns userId {value}"
        if profile.user_id is not None:
            assert store.owner(("user_id", profile.user_id)) == customer


@given(st.data())
def test_two_known_users_never_share_a_customer(data: st.DataObject) -> None:
    events = data.draw(unruly_events(), label="events")
    cuts = data.draw(cut_points(len(events)), label="cuts")
    store = ingest(events, cuts, data.draw(cache_sizes, label="cache_size"))
    check_invariants(store, events)
    users = {e.user_id for e in events if e.user_id is not None}
    owners = [store.owner(("user_id", u)) for u in users]
    assert len(set(owners)) == len(users)


@given(st.data())
def test_batching_cache_size_and_replay_do_not_change_the_result(data: st.DataObject) -> None:
    """The same log in the same order gives the same store, ids included: a replay
    rebuilds it exactly, however it is cut into commits and however small the caches."""
    events = data.draw(unruly_events(), label="events")
    reference = ingest(events)
    again = ingest(
        events,
        data.draw(cut_points(len(events)), label="cuts"),
        data.draw(cache_sizes, label="cache_size"),
    )
    assert again.read_log(0, 10_000) == reference.read_log(0, 10_000)
    for record in reference.read_log(0, 10_000):
        customer = reference.canonical(record.customer_id)
        assert again.canonical(record.customer_id) == customer
        assert customer is not None
        assert again.profile(customer) == reference.profile(customer)
        assert again.identities(customer) == reference.identities(customer)

    replayed = ingest([r.event for r in reference.read_log(0, 10_000)])
    assert replayed.read_log(0, 10_000) == reference.read_log(0, 10_000)


@given(unruly_events())
def test_a_duplicate_message_changes_nothing(events: list[Event]) -> None:
    store = MemoryStore()
    engine = Engine(store)
    engine.ingest(events)
    before = (store.read_log(0, 10_000), store.stats())
    result = engine.ingest(events)
    assert (result.accepted, result.duplicates) == (0, len(events))
    assert (store.read_log(0, 10_000), store.stats()) == before


# (c) Merging profiles is symmetric, and folding does not depend on order or split.


def fold(customer_id: str, events: Sequence[Event]) -> Profile:
    profile = new_profile(customer_id, events[0])
    for event in events:
        profile = apply_event(profile, event)
    return profile


def up_to_id(profile: Profile) -> Profile:
    """The profile with what differs by which side won a merge taken out."""
    return msgspec.structs.replace(
        profile,
        customer_id="",
        created=(0, ""),
        merged_from=sorted({*profile.merged_from, profile.customer_id}),
    )


# Profiles that may be merged: they never hold two different userIds.
one_user_events = unruly_events(users=("u0",))


@given(one_user_events, one_user_events)
def test_merge_profiles_is_commutative(left: list[Event], right: list[Event]) -> None:
    right = [msgspec.structs.replace(e, message_id="r" + e.message_id) for e in right]
    a, b = fold("c_a", left), fold("c_b", right)
    ab, ba = merge_profiles(a, b), merge_profiles(b, a)
    assert ab.customer_id == "c_a"
    assert ba.customer_id == "c_b"
    assert up_to_id(ab) == up_to_id(ba)
    assert ab.created == ba.created == min(a.created, b.created)


@given(st.data())
def test_folding_ignores_order_and_how_the_events_were_split(data: st.DataObject) -> None:
    events = data.draw(one_user_events, label="events")
    whole = up_to_id(fold("c", events))
    shuffled = data.draw(st.permutations(events), label="order")
    assert up_to_id(fold("c", shuffled)) == whole

    parts = batched(shuffled, data.draw(cut_points(len(events)), label="cuts"))
    profiles = [fold(f"c{i}", part) for i, part in enumerate(parts)]
    merged = profiles[0]
    for other in profiles[1:]:
        merged = merge_profiles(merged, other)
    merged = msgspec.structs.replace(merged, merged_from=[], customer_id="c")
    assert up_to_id(merged) == whole


@given(one_user_events, one_user_events, one_user_events)
def test_merge_profiles_is_associative(
    first: list[Event], second: list[Event], third: list[Event]
) -> None:
    tag = [
        (p, [msgspec.structs.replace(e, message_id=p + e.message_id) for e in es])
        for p, es in (("x", first), ("y", second), ("z", third))
    ]
    a, b, c = (fold("c_" + p, es) for p, es in tag)
    left = merge_profiles(merge_profiles(a, b), c)
    right = merge_profiles(a, merge_profiles(b, c))
    assert up_to_id(left) == up_to_id(right)
