"""Arbitration: the hard constraints hold on any stream of moments; timing, channel, holdouts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from momently.decide.arbitrate import Arbiter
from momently.decide.constraints import (
    Contact,
    Contacts,
    cap_window,
    in_quiet_hours,
    local_minutes,
    quiet_until,
)
from momently.decide.holdout import in_holdout
from momently.decide.records import Decision
from momently.decide.signals import HOURS_PER_WEEK, Signals, hour_of_week
from momently.decide.spec import CapSpec, QuietHours
from tests.decide.factories import DAY, HOUR, MONDAY_NY, NY, moment, profile, spec


def evening(peak_hour: int = 20) -> Signals:
    """Receptive only at ``peak_hour`` local time, every day."""
    curve = tuple(0.6 if h % 24 == peak_hour else 0.02 for h in range(HOURS_PER_WEEK))
    return Signals(propensity=0.3, receptivity=curve)


def apply(decision: Decision, contacts: Contacts, arbiter: Arbiter) -> None:
    """Reserve the decision's send as the runtime does (held-out ones too)."""
    if decision.action != "silent" and decision.send_at_ms is not None:
        contacts.reserve(
            Contact(decision.send_at_ms, decision.channel or "", decision.offer or "", "x"),
            arbiter.keep_ms,
        )


# -- scenarios -------------------------------------------------------------------------------


def test_the_evening_receptive_customer_is_scheduled_for_the_evening() -> None:
    arbiter = Arbiter(spec(holdout=0.0))
    at = MONDAY_NY + 9 * HOUR  # 09:00 local
    decision = arbiter.decide(moment(at, ttl=20 * HOUR), profile(), evening(), Contacts(), at)
    assert decision.action == "schedule"
    assert decision.send_at_ms == MONDAY_NY + 20 * HOUR
    assert hour_of_week(decision.send_at_ms, NY) % 24 == 20
    assert any("receptivity" in r for r in decision.reasons)


def test_unless_the_moment_expires_first() -> None:
    arbiter = Arbiter(spec(holdout=0.0))
    at = MONDAY_NY + 9 * HOUR
    decision = arbiter.decide(moment(at, ttl=3 * HOUR), profile(), evening(), Contacts(), at)
    assert decision.action in ("send", "schedule")
    assert decision.send_at_ms is not None and decision.send_at_ms < at + 3 * HOUR


def test_offers_follow_the_customer_family_or_student() -> None:
    arbiter = Arbiter(spec(holdout=0.0, arbitration={"exploration": 0.0}))
    at = MONDAY_NY + 12 * HOUR
    family = arbiter.decide(moment(at), profile(household=5), Signals(), Contacts(), at)
    student = arbiter.decide(moment(at), profile(household=1), Signals(), Contacts(), at)
    assert family.offer == "family-toaster"
    assert student.offer == "student-toaster"
    refused = {c.offer: c.refused for c in family.candidates}
    assert "profile conditions" in (refused["student-toaster"] or "")


def test_an_offer_for_a_place_answers_moments_at_that_place_only() -> None:
    here = {
        "id": "doughnuts-here",
        "value": 12,
        "for": {"moments": ["place.enter"], "places": ["store-12"]},
        "messages": {"push": {"body": "Hot doughnuts"}},
    }
    arbiter = Arbiter(spec(offers=[here]))
    at = MONDAY_NY + 12 * HOUR
    signals = Signals(propensity=0.3)
    for place, fits in (("store-12", True), ("station-kx", False), (None, False)):
        m = moment(at, kind="go", name="place.enter")
        if place is not None:
            m = msgspec.structs.replace(m, details={"place": place})
        decision = arbiter.decide(m, profile(), signals, Contacts(), at)
        assert (decision.offer == "doughnuts-here") is fits, (place, decision.reasons)
        if not fits:
            assert decision.candidates[0].refused == "eligibility: for places store-12"


def test_in_app_when_the_app_is_open_now() -> None:
    arbiter = Arbiter(spec(holdout=0.0, arbitration={"exploration": 0.0}))
    at = MONDAY_NY + 12 * HOUR
    open_now = Signals(active_device="phone-1")
    upset, who = moment(at, kind="friction"), profile(cid="c9")
    decision = arbiter.decide(upset, who, open_now, Contacts(), at)
    assert (decision.channel, decision.action, decision.device) == ("in_app", "send", "phone-1")
    closed = arbiter.decide(upset, who, Signals(), Contacts(), at)
    assert closed.channel == "email"


def test_a_fallback_channel_when_the_first_is_unreachable() -> None:
    arbiter = Arbiter(spec(holdout=0.0, arbitration={"exploration": 0.0}))
    at = MONDAY_NY + 12 * HOUR
    decision = arbiter.decide(moment(at), profile(push=False), Signals(), Contacts(), at)
    assert decision.channel == "email"
    chosen = next(c for c in decision.candidates if c.offer == decision.offer)
    assert chosen.channel_reason is not None


def test_sms_needs_an_opt_in_and_the_channel_preference_counts() -> None:
    arbiter = Arbiter(spec(holdout=0.0, arbitration={"exploration": 0.0}))
    at = MONDAY_NY + 12 * HOUR
    prefers_sms = Signals(channel_affinity={"sms": 0.9, "push": 0.05})
    no_opt_in = arbiter.decide(moment(at), profile(household=1), prefers_sms, Contacts(), at)
    assert no_opt_in.channel == "push"
    opted_in = profile(household=1, consent={"sms:marketing": True})
    assert arbiter.decide(moment(at), opted_in, prefers_sms, Contacts(), at).channel == "sms"


def test_an_opted_out_customer_gets_silence_with_the_reason() -> None:
    arbiter = Arbiter(spec(holdout=0.0))
    at = MONDAY_NY + 12 * HOUR
    out = profile(consent={"all:marketing": False})
    decision = arbiter.decide(moment(at), out, Signals(), Contacts(), at)
    assert decision.action == "silent"
    assert any(b.startswith("opt_out") for b in decision.bound)


def test_high_fatigue_means_silence() -> None:
    arbiter = Arbiter(spec(holdout=0.0))
    at = MONDAY_NY + 12 * HOUR
    tired = Signals(fatigue=0.9)
    decision = arbiter.decide(moment(at), profile(), tired, Contacts(), at)
    assert decision.action == "silent"
    assert "silent" in decision.reasons[0]


def test_an_expired_moment_is_let_go() -> None:
    arbiter = Arbiter(spec())
    at = MONDAY_NY + 12 * HOUR
    decision = arbiter.decide(moment(at, ttl=HOUR), profile(), Signals(), Contacts(), at + HOUR)
    assert decision.action == "silent" and "expired" in decision.reasons[0]


def test_a_decision_is_replayed_identically() -> None:
    arbiter = Arbiter(spec())
    at = MONDAY_NY + 12 * HOUR
    args = (moment(at), profile(), Signals(), Contacts(), at)
    assert arbiter.decide(*args) == arbiter.decide(*args)


def test_a_bad_decision_section_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="no channel named 'fax'"):
        spec(offers=[{"id": "x", "messages": {"fax": {"body": "hi"}}}])
    with pytest.raises(ValidationError, match="unknown fallback"):
        spec(channels=[{"name": "push", "kind": "push", "fallback": "pigeon"}], offers=[])
    with pytest.raises(ValidationError, match="not a time"):
        QuietHours(start="25:00")


# -- constraints in isolation ------------------------------------------------------------------


def test_quiet_hours_wrap_past_midnight_and_end_in_local_time() -> None:
    quiet = QuietHours(start="21:00", end="08:00")
    assert in_quiet_hours(quiet, 23 * 60) and in_quiet_hours(quiet, 7 * 60 + 59)
    assert not in_quiet_hours(quiet, 8 * 60) and not in_quiet_hours(quiet, 20 * 60 + 59)
    zone = ZoneInfo(NY)
    late = MONDAY_NY + 22 * HOUR
    assert quiet_until(quiet, late, zone) == MONDAY_NY + DAY + 8 * HOUR


def test_a_calendar_day_cap_counts_the_customers_own_day() -> None:
    zone = ZoneInfo("Asia/Tokyo")
    at = int(datetime(2026, 11, 30, 23, 30, tzinfo=zone).timestamp() * 1000)
    start, end = cap_window(CapSpec(max=1, per="day"), at, zone)
    assert start == int(datetime(2026, 11, 30, tzinfo=zone).timestamp() * 1000)
    assert end - start == DAY


def test_holdout_is_stable_and_at_the_configured_share() -> None:
    members = [in_holdout(f"c{i}", 0.1, "global") for i in range(20_000)]
    share = sum(members) / len(members)
    assert 0.09 < share < 0.11
    assert members == [in_holdout(f"c{i}", 0.1, "global") for i in range(20_000)]
    # independent of an offer's own holdout
    both = sum(1 for i in range(20_000) if members[i] and in_holdout(f"c{i}", 0.2, "sorry")) / len(
        members
    )
    assert 0.01 < both < 0.03


def test_a_held_out_decision_is_logged_not_sent() -> None:
    arbiter = Arbiter(spec(holdout=0.5))
    at = MONDAY_NY + 12 * HOUR
    decisions = [
        arbiter.decide(moment(at, cid=f"h{i}"), profile(cid=f"h{i}"), Signals(), Contacts(), at)
        for i in range(200)
    ]
    held = [d for d in decisions if d.holdout == "global"]
    assert 60 < len(held) < 140
    assert all(d.status == "held_out" and d.offer is not None for d in held)


# -- properties over random streams ----------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.integers(0, 14 * DAY),  # when, from Monday 00:00 New York
        st.sampled_from(["buy", "know", "friction", "go"]),
        st.integers(0, 3),  # customer
        st.floats(0.0, 1.0),  # confidence
        st.sampled_from([HOUR, 6 * HOUR, DAY]),
    ),
    min_size=1,
    max_size=60,
)
consents = st.sampled_from(
    [{}, {"all:marketing": False}, {"email:marketing": False}, {"sms:marketing": True}]
)


@settings(max_examples=150)
@given(events, st.lists(consents, min_size=4, max_size=4), st.sampled_from([NY, "Asia/Tokyo"]))
def test_no_constraint_is_ever_broken(
    stream: list[tuple[int, str, int, float, int]], consent: list[dict[str, bool]], tz: str
) -> None:
    arbiter = Arbiter(spec(arbitration={"exploration": 0.3}))
    quiet = QuietHours(start="21:00", end="08:00")
    zone = ZoneInfo(tz)
    contacts = {c: Contacts() for c in range(4)}
    profiles = {
        c: profile(f"p{c}", household=2 + 2 * (c % 2), tz=tz, consent=consent[c]) for c in range(4)
    }
    sent: dict[int, list[tuple[int, str, str]]] = {c: [] for c in range(4)}
    for offset, kind, c, confidence, ttl in sorted(stream):
        at = MONDAY_NY + offset
        m = moment(at, kind=kind, cid=f"p{c}", confidence=confidence, ttl=ttl)
        decision = arbiter.decide(m, profiles[c], Signals(), contacts[c], at)
        assert 0 < decision.probability <= 1
        if decision.action == "silent":
            continue
        assert decision.send_at_ms is not None and at <= decision.send_at_ms < m.expires_ms
        channel = decision.channel or ""
        refused = consent[c].get("all:marketing") is False or (
            consent[c].get(f"{channel}:marketing") is False
        )
        assert not refused, "sent to an opted-out customer"
        assert channel != "sms" or consent[c].get("sms:marketing") is True
        assert not in_quiet_hours(quiet, local_minutes(decision.send_at_ms, zone))
        apply(decision, contacts[c], arbiter)
        sent[c].append((decision.send_at_ms, channel, decision.offer or ""))
    for messages in sent.values():
        for at, channel, offer in messages:
            start, end = cap_window(CapSpec(max=2, per="day"), at, zone)
            assert sum(1 for t, _, _ in messages if start <= t < end) <= 2
            if channel == "email":
                assert sum(1 for t, ch, _ in messages if start <= t < end and ch == "email") <= 1
            if offer == "family-toaster":
                ws, we = cap_window(CapSpec(max=1, per="week"), at, zone)
                assert sum(1 for t, _, o in messages if ws <= t < we and o == offer) <= 1
            assert all(t == at or abs(t - at) >= HOUR for t, _, _ in messages)
