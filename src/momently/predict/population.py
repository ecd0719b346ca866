"""The population models: one river estimator per model, its live metrics, and snapshots.

Each model sits in a :class:`Slot` with its prequential tracker and update
count; a slot is pickled whole (river objects pickle) into a
:class:`ModelSnapshot` stamped with the model's version. The version hashes
the estimator's hyperparameters and the feature schema, so a snapshot taken
under other settings is not restored into a model it does not fit: that
model starts afresh instead.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from momently.moments.records import ModelSnapshot
from momently.predict import fatigue, propensity
from momently.predict.affinity import ChannelAffinity
from momently.predict.evaluation import BinaryTracker, HitTracker, ModelReport
from momently.predict.next_need import NextNeed
from momently.predict.receptivity import Receptivity
from momently.predict.settings import PredictSettings
from momently.predict.types import Features, OnlineClassifier

log = logging.getLogger(__name__)

SCHEMA: Final = 1  # bump when the meaning of a model's inputs changes
MODELS: Final = (
    "propensity",
    "receptivity",
    "channel",
    "fatigue",
    "next_touchpoint",
    "next_category",
)

Tracker = BinaryTracker | HitTracker


@dataclass(eq=False)
class Slot:
    """One population model with its live metrics."""

    model: OnlineClassifier
    tracker: Tracker
    updates: int = 0


def factories(settings: PredictSettings) -> dict[str, tuple[Callable[[], OnlineClassifier], str]]:
    """Each model's factory and the schema its version covers (features, horizons)."""
    s = settings
    return {
        "propensity": (
            propensity.propensity_model,
            f"{','.join(propensity.FEATURES)};{s.conversion_event};{s.horizon_ms}",
        ),
        "receptivity": (Receptivity, f"{s.response_window_ms}"),
        "channel": (ChannelAffinity, f"{s.attribution_window_ms}"),
        "fatigue": (
            fatigue.fatigue_model,
            f"{','.join(fatigue.FEATURES)};{s.fatigue_horizon_ms}",
        ),
        "next_touchpoint": (NextNeed, ""),
        "next_category": (NextNeed, ""),
    }


def version_of(name: str, model: OnlineClassifier, schema: str) -> str:
    """``name/v<SCHEMA>.<hash>``: changes with the hyperparameters or the schema."""
    digest = hashlib.sha256(f"{model!r}|{schema}".encode()).hexdigest()[:10]
    return f"{name}/v{SCHEMA}.{digest}"


class Population:
    """All population models, their versions, and which changed since the last snapshot."""

    def __init__(self, settings: PredictSettings) -> None:
        self.slots: dict[str, Slot] = {}
        self.versions: dict[str, str] = {}
        for name, (factory, schema) in factories(settings).items():
            model = factory()
            tracker: Tracker = (
                HitTracker(settings.top_k, settings.score_every)
                if name.startswith("next_")
                else BinaryTracker()
            )
            self.slots[name] = Slot(model, tracker)
            self.versions[name] = version_of(name, model, schema)
        self.dirty: set[str] = set()

    def model(self, name: str) -> OnlineClassifier:
        return self.slots[name].model

    def learn(self, name: str, x: Features, y: Any) -> None:
        slot = self.slots[name]
        slot.model.learn_one(x, y)
        slot.updates += 1
        self.dirty.add(name)

    def learned(self, name: str) -> None:
        """Count one update a caller made to the model directly."""
        self.slots[name].updates += 1
        self.dirty.add(name)

    def snapshot(self, *, everything: bool = False) -> dict[str, ModelSnapshot]:
        """Pickled slots of the models changed since the last snapshot (or of all)."""
        names = sorted(self.slots) if everything else sorted(self.dirty)
        self.dirty.clear()
        return {
            name: ModelSnapshot(self.versions[name], pickle.dumps(self.slots[name], protocol=5))
            for name in names
        }

    def restore(self, snapshots: Mapping[str, ModelSnapshot]) -> list[str]:
        """Load the snapshots that match this population's versions; returns their names."""
        restored = []
        for name, snap in sorted(snapshots.items()):
            if name not in self.slots:
                continue
            if snap.version != self.versions[name]:
                log.warning(
                    "model %s: stored version %s is not %s; it starts afresh",
                    name,
                    snap.version,
                    self.versions[name],
                )
                continue
            try:
                # Our own store, written by this code: the bytes never come from a client.
                slot = pickle.loads(snap.body)  # noqa: S301
            except Exception:
                log.exception("model %s: snapshot unreadable; it starts afresh", name)
                continue
            if isinstance(slot, Slot):
                self.slots[name] = slot
                restored.append(name)
        self.dirty.difference_update(restored)
        return restored

    def reports(self) -> list[ModelReport]:
        return [
            ModelReport(
                name=name,
                version=self.versions[name],
                kind=str(slot.model),
                updates=slot.updates,
                metrics=slot.tracker.report(),
                baseline=slot.tracker.baseline(),
            )
            for name, slot in self.slots.items()
        ]
