"""Scenarios whose truth is known, on synthetic streams and fake time only."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from momently.events import Event
from momently.predict import Predictor, PredictState
from momently.predict.localtime import hour_of_week
from momently.predict.replay import replay
from momently.predict.settings import DAY, HOUR, MINUTE
from momently.predict.synthetic import START, event, population, profile
from momently.state.profile import Profile

NEW_YORK = ZoneInfo("America/New_York")


def local(day: int, hour: int, minute: int = 0, tz: ZoneInfo = NEW_YORK) -> int:
    """Milliseconds of a local wall-clock time, ``day`` days after 2026-03-09."""
    moment = datetime(2026, 3, 9 + day, hour, minute, tzinfo=tz)
    return int(moment.timestamp() * 1000)


def run(
    events: list[tuple[str, Event]], profiles: dict[str, Profile], until: int | None = None
) -> tuple[Predictor, dict[str, PredictState]]:
    predictor = Predictor()
    events = sorted(events, key=lambda ce: (ce[1].timestamp_ms, ce[1].message_id))
    last = events[-1][1].timestamp_ms
    states = replay(predictor, events, profiles, until_ms=until or last)
    return predictor, states


def crowd(customers: int = 30, days: int = 21) -> list[tuple[str, Event]]:
    """Others, who answer at noon UTC on email: the population the prior comes from."""
    out: list[tuple[str, Event]] = []
    for c in range(customers):
        cid = f"other{c}"
        for day in range(days):
            for hour in (9, 12, 18):
                at = START + 7 * DAY + day * DAY + hour * HOUR
                out.append((cid, event("Email Delivered", at, cid)))
                if hour == 12:
                    out.append((cid, event("Email Opened", at + 10 * MINUTE, cid)))
    return out


def test_a_customer_who_opens_at_8_pm_in_new_york_gets_8_pm() -> None:
    events = crowd()
    for day in range(21):
        for hour in (9, 13, 17, 20):
            at = local(day, hour)
            events.append(("ny", event("Email Delivered", at, "ny")))
            if hour == 20:
                events.append(("ny", event("Email Opened", at + 7 * MINUTE, "ny")))
    profiles = {"ny": profile("ny", "America/New_York")}
    predictor, states = run(events, profiles)
    found = predictor.predictions(states["ny"], profiles["ny"], local(21, 8))
    assert found.receptivity.best_hour() == 20
    assert found.engage_at(local(22, 20, 30)) > 2 * found.engage_at(local(22, 9, 30))
    best = found.receptivity.best_time(local(21, 8), local(22, 8))
    assert datetime.fromtimestamp(best / 1000, NEW_YORK).hour == 20
    # The crowd answers at noon UTC; its own curve says so, the New Yorker's does not.
    others = predictor.predictions(states["other0"], None, local(21, 8))
    assert others.receptivity.best_hour() == 12


def test_organic_evening_sessions_alone_give_the_evening() -> None:
    events = [
        ("ny", event("Application Opened", local(day, 20, 5), "ny", device="phone"))
        for day in range(14)
    ]
    profiles = {"ny": profile("ny", "America/New_York")}
    predictor, states = run(events, profiles)
    assert (
        predictor.predictions(states["ny"], profiles["ny"], local(14, 9)).receptivity.best_hour()
        == 20
    )


def test_attention_runs_on_across_the_hours_edge() -> None:
    # Sessions just before nine in the evening: at nine, when a message sent "now" lands
    # three minutes after the latest, the customer reads above the population's hour and
    # their own average; ten less; the hour of the sessions higher still.
    events = crowd() + [
        ("ny", event("Application Opened", local(day, 20, 58), "ny", device="phone"))
        for day in range(5)
    ]
    profiles = {"ny": profile("ny", "America/New_York")}
    predictor, states = run(events, profiles)
    now = local(4, 21, 1)  # Friday, three minutes after that evening's session
    curve = predictor.predictions(states["ny"], profiles["ny"], now).receptivity
    week = curve.weekly()
    nine, ten = hour_of_week(now, "America/New_York"), hour_of_week(now + HOUR, "America/New_York")
    assert week[nine] > curve.population.rate(nine)
    assert week[nine] > sum(week) / len(week) and week[nine] > week[ten]
    assert curve.at(now - 2 * MINUTE) > week[nine]  # the hour of the sessions, higher still
    # Each hour of the day read alone, the hour past the edge is only the population's.
    alone = dataclasses.replace(curve, neighbour_weight=0.0)
    assert alone.at(now) == pytest.approx(curve.population.rate(nine), abs=1e-15)
    assert alone.at(now) < curve.at(now) == week[nine]


def test_a_new_customer_gets_the_population_curve() -> None:
    predictor, _ = run(crowd(), {})
    fresh = predictor.predictions(PredictState(), None, START + 30 * DAY)
    assert fresh.receptivity.best_hour() == 12
    assert 0.0 < fresh.engage_now < 1.0


def _channels(answers: str) -> tuple[Predictor, dict[str, PredictState]]:
    events: list[tuple[str, Event]] = []
    for day in range(14):
        at = START + day * DAY + 10 * HOUR
        events.append(("c", event("Email Delivered", at, "c")))
        events.append(("c", event("Push Notification Received", at + HOUR, "c")))
        opened = "Push Notification Tapped" if answers == "push" else "Email Opened"
        events.append(
            ("c", event(opened, at + (HOUR if answers == "push" else 0) + 5 * MINUTE, "c"))
        )
    return run(events, {})


@pytest.mark.parametrize("answers", ["push", "email"])
def test_a_customer_who_ignores_one_channel_and_answers_another_gets_that_one(
    answers: str,
) -> None:
    predictor, states = _channels(answers)
    found = predictor.predictions(states["c"], None, START + 15 * DAY)
    ignored = "email" if answers == "push" else "push"
    assert found.best_channel == answers
    assert found.channels[answers] > 0.5 > found.channels[ignored]


def _contact(cid: str, per_day: int, days: int, quits_after: int | None) -> list[tuple[str, Event]]:
    out: list[tuple[str, Event]] = []
    sent = 0
    for day in range(days):
        for i in range(per_day):
            at = START + day * DAY + (8 + 2 * i) * HOUR
            out.append((cid, event("Email Delivered", at, cid)))
            sent += 1
            if quits_after is not None and sent >= quits_after:
                out.append((cid, event("Unsubscribed", at + 30 * MINUTE, cid)))
                return out
        if day % 3 == 0:
            out.append((cid, event("Email Opened", START + day * DAY + 8 * HOUR + MINUTE, cid)))
    return out


def test_customers_who_quit_under_pressure_raise_fatigue_for_others_under_pressure() -> None:
    calm = [e for c in range(20) for e in _contact(f"calm{c}", 1, 20, None)]
    # Six messages a day; each of these quits after 18 to 21 of them.
    quit = [e for c in range(20) for e in _contact(f"hot{c}", 6, 4, 6 * 3 + c % 4)]
    before, _ = run(calm, {}, until=START + 25 * DAY)
    after, _ = run(calm + quit, {}, until=START + 25 * DAY)
    at = START + DAY + 19 * HOUR  # after a second day of it

    def risk(model: Predictor, per_day: int) -> float:
        state = PredictState()
        replay(model, _contact("probe", per_day, 2, None), {}, {"probe": state})
        return model.predictions(state, None, at).fatigue

    pressed = risk(after, 6)
    assert pressed > 0.5
    assert pressed > 10 * risk(before, 6)  # the quitters raised it
    assert pressed > 10 * risk(after, 1)  # for those under pressure, not for everyone


def test_buyers_outscore_browsers_and_the_metrics_beat_the_base_rate() -> None:
    stream = population(400, days=21, seed=11)
    predictor, states = run(stream.events, stream.profiles)
    reports = {r.name: r for r in predictor.metrics()}
    for name in ("propensity", "fatigue"):
        assert reports[name].metrics["rocAuc"] > 0.75
        assert reports[name].metrics["logLoss"] < reports[name].baseline["logLoss"]
    now = stream.events[-1][1].timestamp_ms
    # A cart opened minutes ago against one product view a week ago.
    hot, cold = PredictState(), PredictState()
    replay(
        predictor,
        [
            ("h", event("Product Viewed", now - 10 * MINUTE, "h")),
            ("h", event("Product Added", now - 5 * MINUTE, "h")),
        ],
        {},
        {"h": hot},
    )
    replay(predictor, [("k", event("Product Viewed", now - 7 * DAY, "k"))], {}, {"k": cold})
    assert (
        predictor.predictions(hot, None, now).propensity
        > predictor.predictions(cold, None, now).propensity
    )


def test_next_need_follows_the_funnel_and_the_customers_own_interests() -> None:
    events: list[tuple[str, Event]] = []
    for c in range(30):
        at = START + c * HOUR
        for i, name in enumerate(("Product Viewed", "Product Added", "Checkout Started")):
            cat = {"category": "toasters"} if name != "Checkout Started" else {}
            events.append((f"c{c}", event(name, at + i * MINUTE, f"c{c}", properties=cat)))
        events.append((f"c{c}", event("Order Completed", at + 4 * MINUTE, f"c{c}")))
    for i in range(3):
        shoe = event(
            "Product Viewed", START + DAY + i * MINUTE, "s", properties={"category": "shoes"}
        )
        events.append(("s", shoe))
    predictor, states = run(events, {})
    after_add = PredictState()
    replay(predictor, [("n", event("Product Added", START + 2 * DAY, "n"))], {}, {"n": after_add})
    found = predictor.predictions(after_add, None, START + 2 * DAY)
    assert found.next_touchpoints[0][0] == "Checkout Started"
    assert len(found.next_touchpoints) == predictor.settings.top_k
    shopper = predictor.predictions(states["s"], None, START + 2 * DAY)
    assert shopper.next_categories[0][0] == "shoes"  # theirs, though the crowd's is toasters
    report = {r.name: r for r in predictor.metrics()}["next_touchpoint"]
    assert report.metrics["hitAt3"] > report.baseline["hitAt3"] - 0.05


def test_the_device_in_use_now_and_the_favourite_one() -> None:
    events = [
        ("d", event("Application Opened", START + i * DAY, "d", device="tablet")) for i in range(5)
    ]
    events.append(("d", event("Product Viewed", START + 5 * DAY, "d", device="phone")))
    predictor, states = run(events, {})
    now = START + 5 * DAY + 5 * MINUTE
    found = predictor.predictions(states["d"], None, now)
    assert found.active_device == "phone"
    assert next(iter(found.devices)) == "tablet"
    assert predictor.predictions(states["d"], None, now + HOUR).active_device is None


def test_the_synthetic_population_is_recovered() -> None:
    stream = population(300, days=28, seed=4)
    predictor, states = run(stream.events, stream.profiles)
    now = stream.events[-1][1].timestamp_ms
    hours = channels = counted = 0
    for cid, truth in stream.truth.items():
        state = states[cid]
        if sum(n for n, _ in state.channels.values()) < 20:
            continue  # opted out early: too little to go on
        found = predictor.predictions(state, stream.profiles[cid], now)
        counted += 1
        hours += found.receptivity.best_hour() == truth.hour
        channels += found.best_channel == truth.channel
    assert counted > 100
    assert hours / counted > 0.8
    assert channels / counted > 0.7  # a channel answered only near their hour: noisier
