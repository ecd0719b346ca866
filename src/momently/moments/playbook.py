"""The playbook: places, journeys, moment definitions and detector settings.

Loaded from YAML by :func:`load_playbook`; a bad playbook fails at load with
the file, line and reason (:class:`~momently.moments.loader.PlaybookError`),
so the server never starts half-configured. Without a file, the example
playbook shipped with the package is loaded, so the built-in detectors work
out of the box. ``momently playbook schema`` prints the JSON Schema.
"""

from __future__ import annotations

import functools
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from momently.decide.spec import DecideSpec
from momently.moments.friction import FrictionSettings
from momently.moments.geo import GeoSettings, PlaceSpec
from momently.moments.intent import IntentSettings
from momently.moments.journeys import JourneySpec
from momently.moments.loader import json_schema, load_file, load_text
from momently.moments.routines import RoutineSettings
from momently.moments.rules import MomentDef
from momently.moments.spec import Duration, SpecModel

EXAMPLE = "example.yaml"


class WorldSettings(SpecModel):
    """World events (``POST /api/world-events``) and who they reach."""

    enabled: bool = True


class Detectors(SpecModel):
    """Settings of the built-in detectors; each can be switched off."""

    intent: IntentSettings = IntentSettings()
    friction: FrictionSettings = FrictionSettings()
    place: GeoSettings = GeoSettings()
    routine: RoutineSettings = RoutineSettings()
    world: WorldSettings = WorldSettings()
    cooldown: Duration = Field(
        default="15m",
        validate_default=True,
        description="per customer, between two moments of one detector about one subject",
    )


class Playbook(SpecModel):
    """A brand's playbook: what momently watches for and what it knows of places."""

    version: Literal[1] = 1
    name: str = "playbook"
    places: tuple[PlaceSpec, ...] = ()
    journeys: tuple[JourneySpec, ...] = ()
    moments: tuple[MomentDef, ...] = ()
    detectors: Detectors = Detectors()
    decide: DecideSpec = Field(
        DecideSpec(), description="offers, channels, caps, quiet hours, holdouts, arbitration"
    )

    @model_validator(mode="after")
    def _unique(self) -> Playbook:
        for what, names in (
            ("place id", [p.id for p in self.places]),
            ("journey name", [j.name for j in self.journeys]),
            ("moment name", [m.name for m in self.moments]),
        ):
            twice = sorted(n for n, count in Counter(names).items() if count > 1)
            if twice:
                raise ValueError(f"{what} used more than once: {', '.join(twice)}")
        return self


def load_playbook(path: str | Path | None = None) -> Playbook:
    """The playbook at ``path``, or the example shipped with momently."""
    if path is not None:
        return load_file(Playbook, path)
    return _example()


@functools.cache
def _example() -> Playbook:
    # Frozen once loaded, so one copy serves every engine in the process.
    text = resources.files("momently.playbooks").joinpath(EXAMPLE).read_text("utf-8")
    return load_text(Playbook, text, source=f"momently/playbooks/{EXAMPLE}")


def playbook_schema() -> dict[str, Any]:
    """The playbook's JSON Schema (draft 2020-12)."""
    return json_schema(Playbook)
