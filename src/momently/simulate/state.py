"""What changes as a simulated customer lives: live needs, opt-outs, messages received.

The population is fixed; this is the part policies can move. A need a
message meets is resolved at the moment its order happens; events planned
for a need that is no longer live are never emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from momently.simulate.needs import NeedSpec


@dataclass(slots=True, eq=False)
class Need:
    """One need of one customer: when it arose, when it lapses, how far it got."""

    spec: NeedSpec
    arose_ms: int
    deadline_ms: int  # met elsewhere (or forgotten) from here on
    product: int  # the catalogue product it ends in
    stage: int = 0
    resolved_ms: int | None = None  # bought from the brand

    def live(self, ms: int) -> bool:
        """Whether the customer still wants it at ``ms`` and has not bought it."""
        if ms < self.arose_ms or ms >= self.deadline_ms:
            return False
        return self.resolved_ms is None or ms < self.resolved_ms


@dataclass(slots=True, eq=False)
class State:
    """The mutable part of one customer."""

    needs: list[Need] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    received: list[int] = field(default_factory=list)  # delivery times, the last week
    identified: int = 0  # bit per device that has logged in (as emitted)
    logins: int = 0  # bit per device whose login is planned
    messages: int = 0  # messages delivered, for decision ids
    injected: int = 0  # events injected, for their order

    def live_needs(self, ms: int) -> list[Need]:
        return [n for n in self.needs if n.live(ms)]

    def has_live(self, spec: NeedSpec, ms: int) -> bool:
        return any(n.spec is spec and n.live(ms) for n in self.needs)

    def prune(self, ms: int) -> None:
        """Forget needs that can no longer matter after ``ms``."""
        self.needs = [n for n in self.needs if n.deadline_ms > ms and n.resolved_ms is None]
