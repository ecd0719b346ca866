"""The decision's search shortcuts give what the plain definitions give: rounding, calendar
cap spans, and the explanation of what bound when caps, quiet hours and gaps close slots."""

from __future__ import annotations

import struct
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from momently.decide.arbitrate import Arbiter
from momently.decide.constraints import Contact, Contacts, calendar_span, cap_window
from momently.decide.numbers import rounded
from momently.decide.signals import Signals
from momently.decide.spec import CapSpec
from tests.decide.factories import HOUR, MONDAY_NY, moment, profile, spec

# Zones whose days are not all 24 h: DST at 02:00 or at midnight, half hours, a skipped day.
ZONES = ("America/New_York", "America/Santiago", "Asia/Kolkata", "Pacific/Apia", "UTC")
START = int(datetime(2011, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
END = int(datetime(2027, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)


def same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


@given(st.floats(allow_nan=False), st.sampled_from([4, 6]))
def test_rounded_is_round_bit_for_bit(x: float, digits: int) -> None:
    assert same(rounded(x, digits), round(x, digits))


@given(
    st.integers(-(10**9), 10**9),
    st.sampled_from([0.0, 0.5, 0.4999999999999, 0.5000000000001, 1e-12]),
    st.sampled_from([4, 6]),
    st.booleans(),
)
def test_rounded_near_halves_and_zeros(whole: int, frac: float, digits: int, neg: bool) -> None:
    x = (whole + frac) / 10**digits
    x = -x if neg else x
    assert same(rounded(x, digits), round(x, digits))
    tiny = (-1e-9 if neg else 1e-9) * frac
    assert same(rounded(tiny, digits), round(tiny, digits))


@given(
    st.lists(st.integers(START, END), min_size=1, max_size=30),
    st.sampled_from(ZONES),
    st.sampled_from(["day", "week"]),
)
def test_calendar_spans_remembered_are_the_spans_computed(
    times: list[int], zone: str, per: str
) -> None:
    cap = CapSpec(max=1, per=per)
    tz = ZoneInfo(zone)
    for at in times:
        assert calendar_span(cap, at, tz) == cap_window(cap, at, tz)
        start, end = cap_window(cap, at, tz)
        # days and weeks follow one another: the next span starts where this one ends
        assert start <= at < end
        assert cap_window(cap, end, tz)[0] == end


def test_what_closes_slots_is_explained() -> None:
    """A 24-hour moment at 18:00 with one email sent at 17:30: the email cap (1 a day)
    closes email today, the one-hour gap closes now, quiet hours close the night."""
    arbiter = Arbiter(spec(holdout=0.0, arbitration={"exploration": 0.0}))
    at = MONDAY_NY + 18 * HOUR
    contacts = Contacts()
    contacts.reserve(Contact(at - HOUR // 2, "email", "sorry", "d0"), arbiter.keep_ms)
    # no push token: the toasters fall back from push to email
    who = profile(household=5, push=False)
    decision = arbiter.decide(moment(at, ttl=24 * HOUR), who, Signals(), contacts, at)
    assert decision.bound == [
        "address: push: no address for this customer",
        "cap: all offers on email: 1 of 1 per day already",
    ]
    family = next(c for c in decision.candidates if c.offer == "family-toaster")
    # Not tonight (cap, gap, quiet hours): tomorrow at 08:00, when quiet hours end.
    assert family.channel == "email"
    assert family.channel_reason == "fallback from push (address)"
    assert family.send_at_ms == MONDAY_NY + 32 * HOUR
    assert decision.action == "schedule" and decision.offer == "family-toaster"
    assert set(family.parts) == {
        "relevance",
        "propensity",
        "value",
        "receptivity",
        "left",
        "affinity",
        "context",
        "fatigue_cost",
    }
    # With the moment ending before quiet hours do, every slot is closed: the last
    # constraint met is the candidate's reason.
    short = arbiter.decide(moment(at, ttl=4 * HOUR), who, Signals(), contacts, at)
    assert short.action == "silent"
    family = next(c for c in short.candidates if c.offer == "family-toaster")
    assert family.refused is not None
    assert family.refused.split(":")[0] in ("cap", "quiet_hours", "min_gap")
    assert short.reasons[0] == "every fitting offer is ruled out by a constraint"
