"""The offer catalog compiled once per playbook: what each offer is for, and what the
bandit knows of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from momently.decide.bandit import StaticFeatures
from momently.decide.spec import OfferSpec
from momently.moments.conditions import compile_profile_test
from momently.moments.model import Moment
from momently.state.profile import Profile

ProfileTest = Callable[[Profile | None], bool]


def offer_features(offer: OfferSpec) -> dict[str, float]:
    """What the bandit knows of an offer: its id, pillars and purpose."""
    features = {f"offer={offer.id}": 1.0, f"purpose={offer.purpose}": 1.0}
    for pillar in offer.pillars:
        features[f"pillar={pillar}"] = 1.0
    return features


@dataclass(frozen=True, slots=True)
class Offer:
    """One offer, with what every decision asks of it worked out in advance."""

    spec: OfferSpec
    eligible: ProfileTest | None  # its profile conditions, if any
    features: StaticFeatures  # hashed once for the bandit
    channels: tuple[str, ...]  # those it has a message for, in order
    marketing: bool
    worth: float  # value × priority
    refusals: tuple[str, str, str, str]  # why it does not fit: kinds, moments, categories, places
    plain: bool  # fits every moment of its kinds: no names, categories, places, stages, profile

    @classmethod
    def of(cls, spec: OfferSpec, tests: dict[str, ProfileTest] | None = None) -> Offer:
        """Compile an offer; offers with the same profile conditions share one test
        (in ``tests``), so a decision runs it once."""
        target = spec.target
        eligible = None
        if target.profile:
            key = repr(target.profile)
            if tests is None or key not in tests:
                eligible = compile_profile_test(target.profile)
                if tests is not None:
                    tests[key] = eligible
            else:
                eligible = tests[key]
        return cls(
            spec=spec,
            eligible=eligible,
            features=StaticFeatures(offer_features(spec)),
            channels=spec.channels,
            marketing=spec.purpose == "marketing",
            worth=spec.value * spec.priority,
            refusals=(
                f"for {'/'.join(target.kinds)} moments, not ",
                f"for moments {', '.join(target.moments)}",
                f"for categories {', '.join(target.categories)}",
                f"for places {', '.join(target.places)}",
            ),
            plain=not (
                target.moments or target.categories or target.places or target.stages or eligible
            ),
        )

    def why_not(
        self, moment: Moment, profile: Profile | None, tested: dict[ProfileTest, bool]
    ) -> str | None:
        """Why the offer does not fit the moment, or None when it does (``tested``: the
        profile tests run so far in this decision, and their results)."""
        target = self.spec.target
        if target.kinds and moment.kind not in target.kinds:
            return self.refusals[0] + moment.kind
        if target.moments and moment.name not in target.moments:
            return self.refusals[1]
        if target.categories and moment.details.get("category") not in target.categories:
            return self.refusals[2]
        if target.places and moment.details.get("place") not in target.places:
            return self.refusals[3]
        if target.stages:
            stages = moment.context.get("journeys", {})
            for journey, wanted in target.stages.items():
                if not isinstance(stages, dict) or stages.get(journey) not in wanted:
                    return f"for {journey} stages {', '.join(wanted)}"
        test = self.eligible
        if test is not None:
            passed = tested.get(test)
            if passed is None:
                passed = tested[test] = test(profile)
            if not passed:
                return "customer does not match the offer's profile conditions"
        return None
