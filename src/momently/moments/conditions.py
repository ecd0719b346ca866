"""Conditions on an event and the customer's profile, declared in the playbook.

A condition names the event it applies to and, optionally, predicates on
dotted paths into the event (``properties.price``, ``context.device.type``)
and into the profile (``traits.plan``, ``consent.email.marketing``)::

    when:
      event: [Product Viewed, Product Added]
      where:
        - {path: properties.price, op: ">=", value: 100}
      profile:
        - {path: traits.household_size, op: ">=", value: 4}

All parts must hold. Conditions compile once, at load, into plain functions:
the hot path does no parsing and no regex compilation.

>>> cond = Condition.model_validate({"event": "Order Completed"})
>>> test = compile_condition(cond)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from momently.events import Event
from momently.moments.spec import SpecModel
from momently.state.profile import Profile

Op = Literal[
    "==", "!=", ">", ">=", "<", "<=", "in", "not_in", "contains", "exists", "missing",
    "matches", "starts_with",
]  # fmt: skip
Test = Callable[[Event, Profile | None], bool]
_MISSING: Final = object()
_NUMERIC_OPS: Final = frozenset({">", ">=", "<", "<="})
_EVENT_ROOTS: Final = frozenset(
    {
        "type", "event", "name", "category", "userId", "anonymousId", "properties", "traits",
        "context", "integrations", "source",
    }
)  # fmt: skip
_PROFILE_ROOTS: Final = frozenset(
    {
        "traits", "consent", "timezone", "locale", "userId", "emails", "phones", "push_tokens",
        "devices", "counts", "first_seen", "last_seen",
    }
)  # fmt: skip


class Predicate(SpecModel):
    """One test of the value at ``path``; ``value`` is what it is compared with."""

    path: str = Field(min_length=1, max_length=200)
    op: Op = "=="
    value: Any = None

    @model_validator(mode="after")
    def _check_value(self) -> Predicate:
        if self.op in _NUMERIC_OPS and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"op {self.op!r} compares numbers; value must be a number")
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list as value")
        if self.op in ("matches", "starts_with") and not isinstance(self.value, str):
            raise ValueError(f"op {self.op!r} needs a string as value")
        if self.op == "matches":
            try:
                re.compile(self.value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return self


class Condition(SpecModel):
    """What an event must be, and what must hold of it and of the customer's profile."""

    event: str | tuple[str, ...] | None = Field(
        None, description="track event name(s), or page/screen name(s)"
    )
    type: str | tuple[str, ...] | None = Field(None, description="message type(s): track, page…")
    where: tuple[Predicate, ...] = ()
    profile: tuple[Predicate, ...] = ()

    @field_validator("where")
    @classmethod
    def _event_paths(cls, value: tuple[Predicate, ...]) -> tuple[Predicate, ...]:
        for predicate in value:
            root = predicate.path.split(".", 1)[0]
            if root not in _EVENT_ROOTS:
                raise ValueError(
                    f"event path {predicate.path!r} must start with one of "
                    + ", ".join(sorted(_EVENT_ROOTS))
                )
        return value

    @field_validator("profile")
    @classmethod
    def _profile_paths(cls, value: tuple[Predicate, ...]) -> tuple[Predicate, ...]:
        for predicate in value:
            root = predicate.path.split(".", 1)[0]
            if root not in _PROFILE_ROOTS:
                raise ValueError(
                    f"profile path {predicate.path!r} must start with one of "
                    + ", ".join(sorted(_PROFILE_ROOTS))
                )
        return value

    def names(self) -> frozenset[str] | None:
        """The event names this condition can match, or None for any."""
        if self.event is None:
            return None
        return frozenset((self.event,) if isinstance(self.event, str) else self.event)


def _dig(value: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def event_value(event: Event, path: str) -> Any:
    """The value at a dotted path in an event, or :data:`_MISSING`.

    >>> from momently.events import from_ms
    >>> e = Event(message_id="m", type="track", timestamp=from_ms(0), received_at=from_ms(0),
    ...           event="Order Completed", properties={"revenue": 12})
    >>> event_value(e, "properties.revenue")
    12
    """
    root, _, rest = path.partition(".")
    top: Any
    if root == "userId":
        top = event.user_id
    elif root == "anonymousId":
        top = event.anonymous_id
    else:
        top = getattr(event, root, _MISSING)
    if top is None or top is _MISSING:
        return _MISSING
    return _dig(top, rest.split(".")) if rest else top


def profile_value(profile: Profile | None, path: str) -> Any:
    """The value at a dotted path in a profile (``traits.plan``, ``consent.email``…)."""
    if profile is None:
        return _MISSING
    root, _, rest = path.partition(".")
    top: Any
    if root == "traits":
        key, _, deeper = rest.partition(".")
        stamped = profile.traits.get(key)
        if stamped is None:
            return _MISSING
        return _dig(stamped.value, deeper.split(".")) if deeper else stamped.value
    if root == "consent":
        consent = profile.consent.get(rest)
        return _MISSING if consent is None else consent.granted
    if root in ("timezone", "locale"):
        stamped_field = getattr(profile, root)
        return _MISSING if stamped_field is None else stamped_field.value
    if root == "userId":
        top = profile.user_id
    elif root == "devices":
        top = {k: {"type": d.type, "os": d.os} for k, d in profile.devices.items()}
    else:
        top = getattr(profile, root)
    if top is None:
        return _MISSING
    return _dig(top, rest.split(".")) if rest else top


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _compare(predicate: Predicate) -> Callable[[Any], bool]:
    op, want = predicate.op, predicate.value
    if op == "exists":
        return lambda v: v is not _MISSING
    if op == "missing":
        return lambda v: v is _MISSING
    if op == "==":
        return lambda v: v is not _MISSING and v == want
    if op == "!=":
        return lambda v: v is _MISSING or v != want
    if op in _NUMERIC_OPS:
        bound = float(want)
        compare: Callable[[float, float], bool] = {
            ">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__
        }[op]  # fmt: skip

        def numeric(v: Any) -> bool:
            number = _number(v)
            return number is not None and compare(number, bound)

        return numeric
    if op == "in":
        return lambda v: v is not _MISSING and _hashable_in(v, want)
    if op == "not_in":
        return lambda v: v is _MISSING or not _hashable_in(v, want)
    if op == "contains":
        needle = want.lower() if isinstance(want, str) else want

        def contains(v: Any) -> bool:
            if isinstance(v, str) and isinstance(needle, str):
                return needle in v.lower()
            return isinstance(v, list | dict) and needle in v

        return contains
    if op == "starts_with":
        return lambda v: isinstance(v, str) and v.startswith(want)
    pattern = re.compile(want)
    return lambda v: isinstance(v, str) and pattern.search(v) is not None


def _hashable_in(value: Any, choices: list[Any]) -> bool:
    return any(value == choice for choice in choices)


def _name_of(event: Event) -> str | None:
    return event.event if event.type == "track" else event.name


def compile_condition(condition: Condition) -> Test:
    """A fast test of one condition, built once at load."""
    names = condition.names()
    types = (
        None
        if condition.type is None
        else frozenset((condition.type,) if isinstance(condition.type, str) else condition.type)
    )
    on_event = [(p.path, _compare(p)) for p in condition.where]
    on_profile = [(p.path, _compare(p)) for p in condition.profile]

    def test(event: Event, profile: Profile | None) -> bool:
        if names is not None and _name_of(event) not in names:
            return False
        if types is not None and event.type not in types:
            return False
        for path, check in on_event:
            if not check(event_value(event, path)):
                return False
        return all(check(profile_value(profile, path)) for path, check in on_profile)

    return test


def compile_profile_test(predicates: Sequence[Predicate]) -> Callable[[Profile | None], bool]:
    """A fast test of predicates on the profile alone (offer eligibility uses it).

    >>> test = compile_profile_test([Predicate(path="traits.plan", op="==", value="pro")])
    >>> test(None)
    False
    """
    Condition(profile=tuple(predicates))  # the same path checks as in a condition
    checks = [(p.path, _compare(p)) for p in predicates]

    def test(profile: Profile | None) -> bool:
        return all(check(profile_value(profile, path)) for path, check in checks)

    return test
