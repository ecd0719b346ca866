"""apply_events, the writer's one-pass fold of a run of events, against apply_event."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from momently.events import Event
from momently.state.profile import Profile, apply_event, apply_events, new_profile
from tests.test_identity_properties import BASE_MS, make_event, unruly_events


def one_by_one(profile: Profile, events: list[Event]) -> Profile:
    for event in events:
        profile = apply_event(profile, event)
    return profile


@given(unruly_events(), unruly_events())
def test_one_pass_fold_equals_folding_one_event_at_a_time(
    before: list[Event], run: list[Event]
) -> None:
    run = [msgspec.structs.replace(e, message_id="r" + e.message_id) for e in run]
    start = one_by_one(new_profile("c", (before or run)[0]), before)
    assert apply_events(start, run) == one_by_one(start, run)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5),  # seconds after BASE_MS
            st.sampled_from(["d1", "d2"]),
            st.sampled_from([None, "Pixel 8", "iPhone15,2"]),
            st.sampled_from([None, "tok-1", "tok-2"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_repeated_sightings_of_a_device_fold_as_one_at_a_time(
    sightings: list[tuple[int, str, str | None, str | None]],
) -> None:
    events = []
    for index, (second, device, model, token) in enumerate(sightings):
        info = {"id": device, "model": model, "token": token, "os": {"name": "Android"}}
        context = {"device": {k: v for k, v in info.items() if v is not None}}
        events.append(
            make_event(f"m{index}", "track", BASE_MS + second * 1000, anon="a", context=context)
        )
    start = new_profile("c", events[0])
    assert apply_events(start, events) == one_by_one(start, events)
    assert apply_events(start, events[:1]) == apply_event(start, events[0])
