"""Building blocks of the playbook's models: a strict base model and durations.

Every playbook section is a :class:`SpecModel`: unknown keys are an error
(a typo must not silently disable a rule) and a loaded playbook is frozen.

>>> parse_duration("30m")
1800000
>>> parse_duration(90)
90000
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

_UNITS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
MAX_DURATION_MS: Final = 1_000 * 365 * 86_400_000
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


class SpecModel(BaseModel):
    """Base of every playbook model: strict about unknown keys, frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def parse_duration(value: Any) -> int:
    """A duration in milliseconds from ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` or seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration may not be negative")
        return _bounded(value * 1000)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration such as '90s', '30m', '2h' or '1d'")
        return _bounded(float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError("a duration is a number of seconds or a string such as '30m'")


def _bounded(ms: float) -> int:
    # NaN, infinity or a span past any clock (found by fuzzing: int(inf) is an OverflowError,
    # which validation would not turn into a clear error)
    if not ms <= MAX_DURATION_MS:
        raise ValueError("a duration may not be longer than 1,000 years")
    return int(ms)


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "description": "seconds"},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d|w)$"},
            ]
        }
    ),
]
"""A duration in milliseconds, written in the playbook as ``"30m"`` or seconds."""
