"""Journeys: per-customer stage tracking across devices, and the funnel over many customers."""

from __future__ import annotations

import itertools
import random
import statistics
import textwrap
from collections import Counter
from typing import Any

import msgspec
import pytest
import yaml
from pydantic import ValidationError

from momently.events import Event, from_ms
from momently.moments import journeys
from momently.moments.journey_stats import JourneyRecord, JourneyReport, funnel, record_of
from momently.moments.journeys import (
    DEVICE_LIMIT,
    PATH_LIMIT,
    JourneySpec,
    JourneyState,
    JourneyTracker,
    StageChange,
)

T0 = 1_790_000_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
_counter = itertools.count()


def example_spec() -> JourneySpec:
    """The clear-braces journey shipped as the example in the module docstring."""
    doc = journeys.__doc__ or ""
    block = textwrap.dedent(doc.split("Example playbook section::", 1)[1])
    return JourneySpec.model_validate(yaml.safe_load(block)["journeys"][0])


def track(name: str, at: int, device: str | None = None, **properties: Any) -> Event:
    context = {"device": {"id": device, "type": "ios"}} if device else {}
    return Event(
        message_id=f"m{next(_counter)}",
        type="track",
        timestamp=from_ms(at),
        received_at=from_ms(at),
        user_id="c1",
        event=name,
        properties=properties,
        context=context,
    )


def page(name: str, at: int, device: str | None = None) -> Event:
    event = track("", at, device)
    return msgspec.structs.replace(event, type="page", event=None, name=name)


def search(query: str, at: int, device: str | None = None) -> Event:
    return track("Products Searched", at, device, query=query)


def small_spec(**extra: Any) -> JourneySpec:
    """learn → cost → purchase → share, each reached by a track event of its name; goal purchase."""
    extra.setdefault("goal", "purchase")
    stages = [
        {"name": n, "touchpoints": [{"name": f"{n}-tp", "when": {"event": n}}]}
        for n in ("learn", "cost", "purchase", "share")
    ]
    return JourneySpec.model_validate({"name": "small", "stages": stages, **extra})


def feed(
    tracker: JourneyTracker, events: list[Event], state: JourneyState | None = None
) -> tuple[JourneyState, list[StageChange]]:
    state = state or JourneyState()
    changes: list[StageChange] = []
    for event in events:
        state, emitted = tracker.on_event(state, event, None)
        changes.extend(emitted)
    return state, changes


# --- the example ------------------------------------------------------------------------------


def test_example_journey_in_the_docstring_is_a_valid_nine_stage_journey() -> None:
    spec = example_spec()
    assert spec.stage_names() == (
        "learn", "cost", "reviews", "before-after", "providers", "compare", "decide",
        "purchase", "share",
    )  # fmt: skip
    assert spec.goal == "purchase"
    assert spec.timeout == 90 * DAY


def test_weeks_long_clear_braces_journey_across_phone_tablet_and_laptop() -> None:
    tracker = JourneyTracker([example_spec()])
    events = [
        search("what are clear braces", T0, "phone"),
        track("Application Opened", T0 + DAY, "phone"),  # no touchpoint: nothing happens
        page("Clear Braces Options", T0 + DAY + HOUR, "phone"),
        search("clear braces cost", T0 + 3 * DAY, "tablet"),  # learn and cost match: cost wins
        page("Clear Braces Reviews", T0 + 6 * DAY, "tablet"),
        page("Before After Gallery", T0 + 9 * DAY, "laptop"),
        search("orthodontist near me", T0 + 12 * DAY, "laptop"),
        track("Contact Form Submitted", T0 + 16 * DAY, "phone"),
        page("Clear Braces Reviews", T0 + 17 * DAY, "laptop"),  # back to reviews
        track("Consultation Booked", T0 + 20 * DAY, "laptop"),
        track("Order Completed", T0 + 34 * DAY, "laptop", revenue=3900),
        track("Social Post", T0 + 41 * DAY, "phone", text="Loving my new smile!"),
    ]
    state, changes = feed(tracker, events)

    progress = state.progress["clear-braces"]
    assert tracker.stage_of(state, "clear-braces") == "share"
    assert progress.run == 1
    assert progress.entered == {
        "learn": T0,
        "cost": T0 + 3 * DAY,
        "reviews": T0 + 6 * DAY,
        "before-after": T0 + 9 * DAY,
        "providers": T0 + 12 * DAY,
        "compare": T0 + 16 * DAY,
        "decide": T0 + 20 * DAY,
        "purchase": T0 + 34 * DAY,
        "share": T0 + 41 * DAY,
    }
    assert progress.devices == ["phone", "tablet", "laptop"]
    assert progress.completed_ms == T0 + 34 * DAY
    assert progress.started_ms == T0
    assert progress.updated_ms == T0 + 41 * DAY
    assert progress.path == [
        "options-search", "options-page", "cost-search", "reviews-page", "gallery",
        "near-me-search", "contact-form", "reviews-page", "consultation", "order", "social-post",
    ]  # fmt: skip
    assert [(c.from_stage, c.to_stage, c.touchpoint, c.completed) for c in changes] == [
        (None, "learn", "options-search", False),
        ("learn", "cost", "cost-search", False),
        ("cost", "reviews", "reviews-page", False),
        ("reviews", "before-after", "gallery", False),
        ("before-after", "providers", "near-me-search", False),
        ("providers", "compare", "contact-form", False),
        ("compare", "decide", "consultation", False),
        ("decide", "purchase", "order", True),
        ("purchase", "share", "social-post", False),
    ]
    assert [c.at_ms for c in changes][-2:] == [T0 + 34 * DAY, T0 + 41 * DAY]
    # Stage times, as the funnel will read them: 14 days from deciding to buying.
    assert progress.entered["purchase"] - progress.entered["decide"] == 14 * DAY


def test_going_back_is_in_the_path_but_does_not_move_the_stage_back() -> None:
    tracker = JourneyTracker([small_spec()])
    state, _ = feed(tracker, [track("learn", T0), track("cost", T0 + DAY)])
    after, changes = tracker.on_event(state, track("learn", T0 + 2 * DAY), None)
    assert changes == []
    progress = after.progress["small"]
    assert (progress.stage, progress.stage_index) == ("cost", 1)
    assert progress.entered == {"learn": T0, "cost": T0 + DAY}
    assert progress.path == ["learn-tp", "cost-tp", "learn-tp"]
    assert progress.updated_ms == T0 + 2 * DAY
    # The state passed in is left as it was.
    assert state.progress["small"].path == ["learn-tp", "cost-tp"]


def test_a_customer_may_skip_straight_to_purchase() -> None:
    tracker = JourneyTracker([small_spec()])
    state, changes = feed(tracker, [track("learn", T0), track("purchase", T0 + HOUR)])
    assert tracker.stage_of(state, "small") == "purchase"
    assert state.progress["small"].entered == {"learn": T0, "purchase": T0 + HOUR}
    assert changes[-1] == StageChange(
        "small", 1, "learn", "purchase", T0 + HOUR, "purchase-tp", True
    )
    # A skipped stage touched afterwards is a step back, not an entry.
    state, changes = feed(tracker, [track("cost", T0 + 2 * HOUR)], state)
    assert changes == [] and "cost" not in state.progress["small"].entered


def test_without_skipping_only_the_next_stage_can_be_entered() -> None:
    tracker = JourneyTracker([small_spec(allow_skip=False)])
    state, changes = feed(tracker, [track("purchase", T0)])
    assert state.progress == {} and changes == []  # a run begins at the first stage
    state, changes = feed(tracker, [track("learn", T0 + 1), track("purchase", T0 + 2)])
    progress = state.progress["small"]
    assert progress.stage == "learn" and progress.path == ["learn-tp", "purchase-tp"]
    state, changes = feed(tracker, [track("cost", T0 + 3), track("purchase", T0 + 4)], state)
    assert state.progress["small"].entered == {"learn": T0 + 1, "cost": T0 + 3, "purchase": T0 + 4}
    assert changes[-1].completed


def test_a_goal_before_the_last_stage_completes_the_run_there() -> None:
    tracker = JourneyTracker([small_spec(goal="cost")])
    state, changes = feed(tracker, [track("learn", T0), track("share", T0 + DAY)])
    assert changes[-1].completed and state.progress["small"].completed_ms == T0 + DAY


def test_after_the_timeout_the_next_touchpoint_starts_run_two() -> None:
    tracker = JourneyTracker([small_spec(timeout="30d")])
    state, _ = feed(tracker, [track("learn", T0, "phone"), track("cost", T0 + DAY, "phone")])
    # Within the timeout: still run 1.
    state, _ = feed(tracker, [track("learn", T0 + 31 * DAY, "tablet")], state)
    assert state.progress["small"].run == 1
    # 30 days and a minute of silence: abandoned; the next touchpoint begins run 2.
    later = T0 + 61 * DAY + MINUTE
    state, changes = feed(tracker, [track("cost", later, "laptop")], state)
    progress = state.progress["small"]
    assert (progress.run, progress.stage, progress.started_ms) == (2, "cost", later)
    assert progress.entered == {"cost": later}
    assert progress.path == ["cost-tp"] and progress.devices == ["laptop"]
    assert changes == [StageChange("small", 2, None, "cost", later, "cost-tp", False)]
    # An event older than the run's last touchpoint by more than the timeout does nothing.
    same, changes = tracker.on_event(state, track("purchase", T0 + 2 * DAY), None)
    assert same is state and changes == []


def test_entries_do_not_depend_on_arrival_order_within_the_timeout() -> None:
    tracker = JourneyTracker([small_spec()])
    # In time order: learn, purchase (a skip), cost (a step back), learn again, share.
    touches = [("learn", 10), ("purchase", 20), ("cost", 30), ("learn", 40), ("share", 50)]
    expected = {"learn": T0 + 10, "purchase": T0 + 20, "share": T0 + 50}
    for order in itertools.permutations(touches):
        state, _ = feed(tracker, [track(name, T0 + at) for name, at in order])
        progress = state.progress["small"]
        assert progress.entered == expected, order
        assert (progress.stage, progress.completed_ms) == ("share", T0 + 20)
        assert (progress.started_ms, progress.updated_ms) == (T0 + 10, T0 + 50)


def test_one_event_can_move_several_journeys() -> None:
    other = small_spec().model_copy(update={"name": "other"})
    tracker = JourneyTracker([small_spec(), other])
    state, changes = feed(tracker, [track("learn", T0)])
    assert sorted(state.progress) == ["other", "small"]
    assert [c.journey for c in changes] == ["small", "other"]
    with pytest.raises(ValueError, match="duplicate journey name 'small'"):
        JourneyTracker([small_spec(), small_spec()])


def test_state_round_trips_through_msgspec_json() -> None:
    tracker = JourneyTracker([example_spec(), small_spec()])
    state, _ = feed(
        tracker,
        [search("clear braces price", T0, "phone"), track("learn", T0 + 1, "tablet")],
    )
    data = msgspec.json.encode(state)
    assert msgspec.json.decode(data, type=JourneyState) == state


def test_memory_per_customer_is_bounded() -> None:
    tracker = JourneyTracker([small_spec()])
    events = [
        track("learn" if i % 2 else "cost", T0 + i * MINUTE, f"d{i % 30}") for i in range(500)
    ]
    state, _ = feed(tracker, events)
    progress = state.progress["small"]
    assert len(progress.path) == PATH_LIMIT
    assert progress.path[-1] == "learn-tp"  # the latest are kept
    assert len(set(progress.devices)) == len(progress.devices) == DEVICE_LIMIT
    assert "d19" in progress.devices  # the device of the latest event is always there
    assert len(msgspec.json.encode(state)) < 2_000


# --- validation -------------------------------------------------------------------------------


def stage(name: str, *touchpoints: str) -> dict[str, Any]:
    return {"name": name, "touchpoints": [{"name": t, "when": {"event": t}} for t in touchpoints]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"stages": [stage("a", "x"), stage("a", "y")]}, "duplicate stage name 'a'"),
        ({"stages": [stage("a", "x"), stage("b", "x")]}, "duplicate touchpoint name 'x'"),
        ({"stages": [stage("a", "x")]}, "at least 2 stages, got 1"),
        ({"stages": [stage("a", "x"), stage("b")]}, "at least one touchpoint"),
        (
            {"stages": [stage("a", "x"), stage("b", "y")], "goal": "buy"},
            "goal 'buy' names no stage; stages are: a, b",
        ),
        ({"stages": [stage("a", "x"), stage("b", "y")], "timeout": 0}, "longer than 0"),
        ({"stages": [stage("a", "x"), stage("b", "y")], "timout": "1d"}, "timout"),
        ({"name": "Clear Braces", "stages": [stage("a", "x"), stage("b", "y")]}, "name"),
    ],
)
def test_a_bad_journey_is_rejected_with_a_clear_reason(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JourneySpec.model_validate({"name": "j", **spec})


# --- the funnel -------------------------------------------------------------------------------


def rec(customer: str, run: int = 1, done: int | None = None, **entered: int) -> JourneyRecord:
    return JourneyRecord(
        customer_id=customer,
        journey="small",
        run=run,
        entered={k: T0 + v for k, v in entered.items()},
        path=(),
        completed_ms=None if done is None else T0 + done,
        updated_ms=T0 + max(entered.values()),
    )


def test_funnel_by_hand() -> None:
    spec = small_spec(goal="purchase")
    records = [
        rec("a", learn=0, cost=10, purchase=40, share=50, done=40),
        rec("b", learn=0, cost=30),
        rec("c", learn=0),
        rec("d", learn=0, purchase=60, done=60),  # skipped cost
        rec("e", cost=0, purchase=20, done=20),  # started at cost
        rec("f", 1, learn=0),  # abandoned run 1 ...
        rec("f", 2, learn=1000, cost=1100),  # ... and got further in run 2
        JourneyRecord(
            customer_id="z",
            journey="other",
            run=1,
            entered={"learn": T0},
            path=(),
            completed_ms=None,
            updated_ms=T0,
        ),  # fmt: skip
    ]
    report = funnel(spec, records)
    assert (report.customers, report.runs, report.completed) == (6, 7, 3)
    assert report.conversion == 3 / 6
    assert report.median_ms_to_goal == 40  # a: 40, d: 60, e: 20
    rows = {s.name: s for s in report.stages}
    assert [rows[n].reached for n in ("learn", "cost", "purchase", "share")] == [6, 5, 3, 1]
    assert [rows[n].entered for n in ("learn", "cost", "purchase", "share")] == [5, 4, 3, 1]
    assert [rows[n].skipped for n in ("learn", "cost", "purchase", "share")] == [1, 1, 0, 0]
    assert rows["learn"].conversion is None
    assert rows["cost"].conversion == 5 / 6
    assert rows["purchase"].conversion == 3 / 5
    assert rows["share"].conversion == 1 / 3
    # learn→cost over a (10), b (30), f run 2 (100); cost→purchase over a (30), e (20).
    assert (rows["cost"].median_ms, rows["cost"].timed) == (30, 3)
    assert (rows["purchase"].median_ms, rows["purchase"].timed) == (25, 2)
    assert (rows["share"].median_ms, rows["share"].timed) == (10, 1)
    # Dropped off: c at learn; b and f at cost. Completed customers never drop off.
    assert [rows[n].drop_off for n in ("learn", "cost", "purchase", "share")] == [1, 2, 0, 0]
    assert rows["cost"].drop_off_rate == 2 / 5
    assert [(p.path, p.customers) for p in report.top_paths] == [
        ("learn>cost", 2),
        ("learn", 1),  # ties: in stage order, a path before its continuations
        ("learn>cost>purchase>share", 1),
        ("learn>purchase", 1),
        ("cost>purchase", 1),
    ]
    # The report is JSON for the API, and decodes back to the same report.
    encoded = msgspec.json.encode(report)
    assert msgspec.json.decode(encoded, type=JourneyReport) == report


def test_funnel_period_and_active_customers() -> None:
    spec = small_spec(timeout="1d")
    records = [
        rec("a", learn=0),
        rec("b", learn=DAY, cost=DAY + 12 * HOUR),
        rec("c", learn=2 * DAY),
    ]
    report = funnel(spec, records, since_ms=T0 + DAY, until_ms=T0 + 2 * DAY)
    assert report.customers == 1 and report.stages[1].drop_off == 1
    report = funnel(spec, records, as_of_ms=T0 + 2 * DAY + HOUR)
    # a went quiet two days ago: dropped off. b is 13 hours quiet, c 1 hour: still active.
    assert [s.drop_off for s in report.stages] == [1, 0, 0, 0]
    assert [s.active for s in report.stages] == [1, 1, 0, 0]
    assert funnel(spec, [], top_paths=0).top_paths == ()
    with pytest.raises(ValueError, match="top_paths"):
        funnel(spec, records, top_paths=-1)


def test_top_paths_are_ordered_the_same_whatever_the_record_order() -> None:
    spec = small_spec()
    records = [
        rec("a", learn=0, purchase=5),
        rec("b", cost=0),
        rec("c", learn=0),
        rec("d", learn=0, cost=1),
        rec("e", learn=0),
    ]
    expected = ["learn", "learn>cost", "learn>purchase", "cost"]
    for seed in range(10):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        report = funnel(spec, shuffled, top_paths=4)
        assert [p.path for p in report.top_paths] == expected
        assert report == funnel(spec, records, top_paths=4)


def simulate(seed: int, customers: int) -> tuple[JourneySpec, list[JourneyRecord]]:
    """Random customers wandering through the journey, runs and all, tracked for real."""
    spec = small_spec(goal="purchase", timeout="10d")
    tracker = JourneyTracker([spec])
    rng = random.Random(seed)
    names = spec.stage_names()
    records: list[JourneyRecord] = []
    for c in range(customers):
        at = T0 + rng.randrange(30 * DAY)
        state = JourneyState()
        stage = rng.choice([0, 0, 0, 1, 2])
        for _ in range(rng.randrange(1, 9)):
            at += rng.choice([MINUTE, HOUR, DAY, 3 * DAY, 12 * DAY])
            name = names[stage]
            # Mostly forward, sometimes back, sometimes a skip.
            stage = min(3, max(0, stage + rng.choice([-1, 0, 1, 1, 1, 2])))
            before = state.progress.get("small")
            state, _ = tracker.on_event(state, track(name, at), None)
            now = state.progress["small"]
            if before is not None and now.run != before.run:
                records.append(record_of(f"c{c}", before))
        records.append(record_of(f"c{c}", state.progress["small"]))
    return spec, records


def test_funnel_equals_a_brute_force_count() -> None:
    spec, records = simulate(seed=7, customers=400)
    report = funnel(spec, records, top_paths=100)
    names = list(spec.stage_names())

    def furthest(r: JourneyRecord) -> int:
        return max(names.index(s) for s in r.entered)

    # Brute force: for each customer, the run that got furthest, the earliest on a tie.
    best: dict[str, JourneyRecord] = {}
    for customer in {r.customer_id for r in records}:
        mine = [r for r in records if r.customer_id == customer]
        top = max(furthest(r) for r in mine)
        best[customer] = min((r for r in mine if furthest(r) == top), key=lambda r: r.run)
    chosen = list(best.values())
    assert report.customers == len(chosen) == 400
    assert report.runs == len(records) > 400  # some customers came back after the timeout
    done = [r for r in chosen if furthest(r) >= 2]
    assert report.completed == len(done)
    assert all((r.completed_ms is not None) == (furthest(r) >= 2) for r in records)
    for i, row in enumerate(report.stages):
        reached = [r for r in chosen if furthest(r) >= i]
        assert row.reached == len(reached)
        assert row.entered == sum(1 for r in chosen if names[i] in r.entered)
        if i:
            assert row.conversion == len(reached) / report.stages[i - 1].reached
            gaps = [
                r.entered[names[i]] - r.entered[names[i - 1]]
                for r in chosen
                if names[i] in r.entered and names[i - 1] in r.entered
            ]
            assert row.timed == len(gaps)
            assert row.median_ms == (statistics.median(gaps) if gaps else None)
        assert row.drop_off == sum(1 for r in chosen if furthest(r) == i and i < 2)
    paths = Counter(">".join(sorted(r.entered, key=r.entered.__getitem__)) for r in chosen)
    assert {p.path: p.customers for p in report.top_paths} == dict(paths)
    counts = [p.customers for p in report.top_paths]
    assert counts == sorted(counts, reverse=True)
