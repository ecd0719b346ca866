"""Off-policy evaluation of momently's own decisions: what would another setting have earned?

Every logged decision keeps its scored candidates and the exact probability
with which its action was picked, and the log holds what came of it (an
engagement naming the decision). A candidate *policy* here is a change of the
levers a brand pulls — offer priorities, offers switched off, exploration,
the margin a send must beat silence by — applied to the scores the logged
decisions computed. For each logged round it gives a distribution over the
round's actions (the offers that were allowed, and silence), and
:func:`momently.measure.ope.evaluate` turns the rounds into IPS,
self-normalised IPS and doubly robust estimates with bootstrap intervals.

What it cannot see: an offer the logging policy never let through (refused by
a constraint, or scoring below silence, so explored with probability 0) has
no support, and IPS gives it nothing; DR falls back on the reward model there.

>>> policy = PolicyChange(levers={"cart-reminder": 2.0})
>>> policy.model_dump()["levers"]
{'cart-reminder': 2.0}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from momently.decide.arbitrate import SILENCE
from momently.decide.records import Decision
from momently.events import Event
from momently.measure.ope import Estimate, Logs, evaluate

REWARDING: Final = frozenset(
    {
        "Email Link Clicked",
        "Link Clicked",
        "Message Clicked",
        "Push Notification Tapped",
        "In-App Message Clicked",
        "SMS Link Clicked",
        "Order Completed",
    }
)


class PolicyChange(BaseModel):
    """A candidate policy, as changes to the logged one's levers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levers: dict[str, float] = Field({}, description="offer id -> multiplier of its score")
    disabled: tuple[str, ...] = Field((), description="offers never chosen")
    exploration: float = Field(0.0, ge=0, le=1)
    min_score: float = 0.0


@dataclass(frozen=True, slots=True)
class Round:
    """One logged decision as a bandit round: its actions, the one taken, its reward."""

    actions: tuple[str, ...]  # silence first, then the allowed offers
    scores: tuple[float, ...]  # the logged score of each (silence: 0)
    taken: int
    probability: float
    reward: float


def rewards(decisions: Sequence[Decision], events: Iterable[Event], window_ms: int) -> list[float]:
    """1.0 for a decision whose send was followed by an engagement naming it in time."""
    due = {d.decision_id: (d.send_at_ms or d.at_ms) for d in decisions}
    earned: set[str] = set()
    for event in events:
        if event.type != "track" or event.event not in REWARDING:
            continue
        named = event.properties.get("decision_id") or event.properties.get("decisionId")
        if isinstance(named, str) and named in due:
            if due[named] <= event.timestamp_ms <= due[named] + window_ms:
                earned.add(named)
    return [1.0 if d.decision_id in earned else 0.0 for d in decisions]


def rounds(decisions: Sequence[Decision], earned: Sequence[float]) -> list[Round]:
    """The logged decisions that a policy could have changed, as rounds.

    Held-out decisions are left out (nothing was sent, so no reward could be
    observed), and so are decisions with no allowed offer (every policy stays
    silent there, so they cannot tell policies apart).
    """
    out = []
    for decision, reward in zip(decisions, earned, strict=True):
        if decision.holdout is not None:
            continue
        allowed = [c for c in decision.candidates if c.refused is None and c.offer != SILENCE]
        if not allowed:
            continue
        actions = (SILENCE, *(c.offer for c in allowed))
        scores = (0.0, *(c.score for c in allowed))
        taken = 0 if decision.action == "silent" else actions.index(decision.offer or "")
        out.append(Round(actions, scores, taken, decision.probability, reward))
    return out


def distribution(round_: Round, policy: PolicyChange) -> list[float]:
    """What ``policy`` would have done in this round: a probability per action."""
    beating = []
    for i, (action, score) in enumerate(zip(round_.actions, round_.scores, strict=True)):
        if i == 0 or action in policy.disabled:
            continue
        changed = score * policy.levers.get(action, 1.0)
        if changed > policy.min_score:
            beating.append((changed, action, i))
    probs = [0.0] * len(round_.actions)
    if not beating:
        probs[0] = 1.0
        return probs
    beating.sort(key=lambda b: (-b[0], b[1]))
    n = len(beating)
    for rank, (_, _, i) in enumerate(beating):
        probs[i] = policy.exploration / n + (1.0 - policy.exploration if rank == 0 else 0.0)
    return probs


def estimate(
    logged: Sequence[Round],
    policy: PolicyChange,
    *,
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS, DM and DR estimates of ``policy``'s reward per round, with intervals.

    Rounds have different action sets, so actions are aligned by position with
    silence at 0 and padded with zero-probability slots; the reward model is the
    mean logged reward of each offer (silence earns nothing).
    """
    if not logged:
        raise ValueError("no logged decisions with an allowed offer to evaluate on")
    width = max(len(r.actions) for r in logged)
    dist = np.zeros((len(logged), width))
    model = np.zeros((len(logged), width))
    means = _offer_means(logged)
    for row, round_ in enumerate(logged):
        dist[row, : len(round_.actions)] = distribution(round_, policy)
        for col, action in enumerate(round_.actions):
            model[row, col] = means.get(action, 0.0)
    logs = Logs(
        action=[r.taken for r in logged],
        reward=[r.reward for r in logged],
        pscore=[r.probability for r in logged],
    )
    return evaluate(
        logs, dist, model, estimators=("dm", "ips", "snips", "dr"), n_boot=n_boot, seed=seed
    )


def _offer_means(logged: Sequence[Round]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for round_ in logged:
        action = round_.actions[round_.taken]
        if action != SILENCE:
            totals.setdefault(action, []).append(round_.reward)
    return {a: float(np.mean(v)) for a, v in totals.items()}
