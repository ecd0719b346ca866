"""Shared builders for the decide tests: a decision section, profiles and moments."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from momently.decide.spec import DecideSpec
from momently.moments.model import Moment
from momently.state.profile import Consent, Profile, Stamped

HOUR = 3_600_000
DAY = 24 * HOUR
# Monday 2026-11-30 00:00 in New York
MONDAY_NY = int(datetime(2026, 11, 30, tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)
NY = "America/New_York"

SPEC: dict[str, Any] = {
    "channels": [
        {"name": "push", "kind": "push", "cost": 0.001, "fallback": "email"},
        {"name": "email", "kind": "email", "cost": 0.002, "long_content": True},
        {"name": "sms", "kind": "sms", "cost": 0.05, "opt_in": True},
        {"name": "in_app", "kind": "in_app"},
    ],
    "offers": [
        {
            "id": "family-toaster",
            "value": 40,
            "for": {
                "kinds": ["buy", "know"],
                "profile": [{"path": "traits.household_size", "op": ">=", "value": 4}],
            },
            "messages": {"push": {"body": "Four slots"}, "email": {"body": "Four slots"}},
            "caps": [{"max": 1, "per": "week"}],
        },
        {
            "id": "student-toaster",
            "value": 15,
            "for": {
                "kinds": ["buy", "know"],
                "profile": [{"path": "traits.household_size", "op": "<", "value": 4}],
            },
            "messages": {"push": {"body": "Cheap"}, "sms": {"body": "Cheap"}},
        },
        {
            "id": "sorry",
            "value": 20,
            "for": {"kinds": ["friction"]},
            "messages": {"email": {"body": "Sorry"}, "in_app": {"body": "Sorry"}},
            "holdout": 0.2,
        },
    ],
    "caps": [{"max": 2, "per": "day"}, {"max": 1, "per": "day", "channel": "email"}],
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    "min_gap": "1h",
    "holdout": 0.1,
    "arbitration": {"exploration": 0.1, "fatigue_cost": 5},
}


def spec(**changes: Any) -> DecideSpec:
    return DecideSpec.model_validate({**SPEC, **changes})


def profile(
    cid: str = "c1",
    *,
    household: int = 5,
    tz: str = NY,
    consent: dict[str, bool] | None = None,
    email: bool = True,
    push: bool = True,
    phone: bool = True,
) -> Profile:
    return Profile(
        customer_id=cid,
        created=(0, "m0"),
        traits={"household_size": Stamped(household, 0, "m0")},
        emails=["a@example.com"] if email else [],
        phones=["+15555550100"] if phone else [],
        push_tokens=["tok"] if push else [],
        timezone=Stamped(tz, 0, "m0"),
        consent={
            k: Consent(granted=v, source="test", ts=0, mid="m0") for k, v in (consent or {}).items()
        },
    )


def moment(
    at: int,
    *,
    kind: str = "buy",
    cid: str = "c1",
    name: str = "toaster-search",
    ttl: int = 6 * HOUR,
    confidence: float = 0.9,
) -> Moment:
    return Moment(
        moment_id=f"mo-{cid}-{name}-{at}",
        customer_id=cid,
        kind=kind,  # type: ignore[arg-type]
        name=name,
        confidence=confidence,
        at_ms=at,
        expires_ms=at + ttl,
        trigger=f"m-{at}",
        source="test",
    )
