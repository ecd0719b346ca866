"""``momently evaluate``: replay a data directory's log and say how good the models and
the decisions were — each figure beside a baseline measured in the same run.

* **Models**: a fresh :class:`~momently.predict.Predictor` is replayed over the
  whole log in order (test, then train: every prediction is scored before the
  event it predicts is learned, and a label only once its time has come), and
  each model's prequential metrics are printed beside its naive baseline
  (the global rate, the last value, the most popular next step).
* **Decisions**: the logged decisions and the engagements that name them give
  bandit rounds; the value of the logged policy and of a candidate policy
  (``--policy FILE``: lever changes, see :class:`PolicyChange`) is estimated
  with DM, IPS, SNIPS and DR, with bootstrap intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

import yaml

from momently.decide.records import Decision, DecisionQuery
from momently.events import Event
from momently.measure.offline import PolicyChange, estimate, rewards, rounds
from momently.predict import Predictor
from momently.predict.evaluation import ModelReport
from momently.predict.replay import replay
from momently.state.profile import Profile
from momently.types import MomentStore, Store

PAGE = 5_000
REWARD_WINDOW_MS = 72 * 3_600_000


def log_events(store: Store) -> Iterator[tuple[str, Event]]:
    """Every event in the log, in log order, with its canonical customer."""
    after = 0
    canonical: dict[str, str] = {}
    while True:
        page = store.read_log(after, PAGE)
        if not page:
            return
        for record in page:
            owner = canonical.get(record.customer_id)
            if owner is None:
                owner = canonical[record.customer_id] = (
                    store.canonical(record.customer_id) or record.customer_id
                )
            yield owner, record.event
        after = page[-1].seq


def evaluate_models(store: Store) -> list[ModelReport]:
    """Replay the log through fresh models; their prequential reports."""
    predictor = Predictor()
    # Profiles as they are now: traits such as the time zone rarely change, and the
    # models read only those; the events themselves are replayed in order.
    profiles = _LazyProfiles(store)
    replay(predictor, log_events(store), profiles, lateness_ms=predictor.settings.lateness_ms)
    return predictor.metrics()


class _LazyProfiles(Mapping[str, Profile]):
    """Customers' profiles, each fetched from the store the first time it is asked for."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: dict[str, Profile | None] = {}

    def __getitem__(self, key: str) -> Profile:
        if key not in self._seen:
            self._seen[key] = self._store.profile(key)
        found = self._seen[key]
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, v in self._seen.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for v in self._seen.values() if v is not None)


def all_decisions(moments: MomentStore) -> list[Decision]:
    found: list[Decision] = []
    before: tuple[int, str] | None = None
    while True:
        page = moments.decisions(DecisionQuery(before=before, limit=PAGE))
        if not page:
            return list(reversed(found))
        found.extend(page)
        before = (page[-1].at_ms, page[-1].decision_id)


def load_policy(path: str | Path) -> PolicyChange:
    """A candidate policy from a YAML file of lever changes."""
    data = yaml.safe_load(Path(path).read_text("utf-8")) or {}
    return PolicyChange.model_validate(data)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def report(store: Store, moments: MomentStore, policy: PolicyChange | None, out: TextIO) -> None:
    """Print the models' and the decisions' evaluation."""
    stats = store.stats()
    print(f"log: {stats['events']:,} events, {stats['customers']:,} customers", file=out)
    print("\nmodels (prequential: each prediction scored before its label is learned)", file=out)
    for model in evaluate_models(store):
        print(f"  {model.name} [{model.kind}] {model.updates:,} updates", file=out)
        names = sorted(set(model.metrics) | set(model.baseline))
        for name in names:
            mine = model.metrics.get(name, math.nan)
            base = model.baseline.get(name, math.nan)
            print(f"    {name:<14} model {_fmt(mine):>8}   baseline {_fmt(base):>8}", file=out)
    decisions = all_decisions(moments)
    print(f"\ndecisions: {len(decisions):,}", file=out)
    if not decisions:
        return
    earned = rewards(decisions, (e for _, e in log_events(store)), REWARD_WINDOW_MS)
    logged = rounds(decisions, earned)
    if not logged:
        print("  no decision had an allowed offer: nothing to evaluate", file=out)
        return
    mean = sum(r.reward for r in logged) / len(logged)
    print(f"  rounds with an allowed offer: {len(logged):,}; logged reward {mean:.4f}", file=out)
    candidates = {"greedy (no exploration)": PolicyChange()}
    if policy is not None:
        candidates["candidate (--policy)"] = policy
    for label, change in candidates.items():
        found = estimate(logged, change, n_boot=300)
        print(f"  {label}", file=out)
        for name, est in found.items():
            print(
                f"    {name:<6} {est.value:.4f}  [{est.low:.4f}, {est.high:.4f}]"
                f"  ({est.n_rounds:,} rounds)",
                file=out,
            )
