"""Type aliases and Protocols of the predict package; nothing else lives here."""

from __future__ import annotations

from typing import Any, Protocol

from river.base.typing import FeatureName

Features = dict[FeatureName, Any]
"""A river feature dict (river annotates ``x`` with hashable keys)."""


class OnlineClassifier(Protocol):
    """River's classifier protocol, which its pipelines follow too."""

    def learn_one(self, x: Features, y: Any) -> None: ...

    def predict_proba_one(self, x: Features) -> dict[Any, float]: ...
