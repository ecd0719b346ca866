"""A river-style conformance kit, run over every registered model.

River's own model-only checks (``river.checks.common``) plus checks on a
stream of the inputs each model really sees: clone, pickle round-trip, feature
order, unseen and missing features, predicting before learning, and that
predicting does not learn.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from river import base
from river.checks import common

from momently.predict import fatigue, propensity
from momently.predict.population import MODELS, factories
from momently.predict.settings import PredictSettings
from momently.predict.signals import CHANNELS
from momently.predict.types import Features, OnlineClassifier

TOKENS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened")
Sample = tuple[Features, Any]


def _binary(names: tuple[str, ...], rng: random.Random) -> Sample:
    x: Features = {name: rng.random() * 3 for name in names}
    return x, x[names[0]] + rng.gauss(0, 0.3) > 1.5


def _samples(name: str, seed: int = 0, n: int = 300) -> Iterator[Sample]:
    rng = random.Random(seed)
    for _ in range(n):
        if name == "propensity":
            yield _binary(propensity.FEATURES, rng)
        elif name == "fatigue":
            yield _binary(fatigue.FEATURES, rng)
        elif name == "receptivity":
            hour = rng.randrange(168)
            trials = rng.randrange(6)
            yield {"hour": hour, "n": trials, "k": rng.randrange(trials + 1)}, hour % 24 == 20
        elif name == "channel":
            channel = rng.choice(CHANNELS)
            yield {"channel": channel, "sent": 3, "engaged": 1}, channel == "push"
        else:
            last = rng.choice(TOKENS)
            x: Features = {"last": last, "prev": rng.choice(TOKENS), f"own:{TOKENS[0]}": 1.0}
            yield x, TOKENS[(TOKENS.index(last) + 1) % len(TOKENS)]


def _factory(name: str) -> Callable[[], OnlineClassifier]:
    return factories(PredictSettings())[name][0]


def _trained(name: str) -> OnlineClassifier:
    model = _factory(name)()
    for x, y in _samples(name):
        model.learn_one(x, y)
    return model


def _probe(name: str) -> list[Features]:
    return [x for x, _ in _samples(name, seed=99, n=40)]


def _proba(model: OnlineClassifier, xs: list[Features]) -> list[dict[Any, float]]:
    return [model.predict_proba_one(dict(x)) for x in xs]


@pytest.fixture(params=MODELS)
def name(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


MODEL_ONLY_CHECKS = [
    common.check_repr,
    common.check_str,
    common.check_clone_same_class,
    common.check_clone_is_idempotent,
    common.check_clone_changes_memory_addresses,
    common.check_init_default_params_are_not_mutable,
    common.check_pickling_supports_roundtrip,
    common.check_repr_roundtrips_clone,
    common.check_get_params_matches_signature,
]


@pytest.mark.parametrize("check", MODEL_ONLY_CHECKS, ids=lambda c: c.__name__)
def test_river_model_checks(name: str, check: Callable[[Any], None]) -> None:
    check(_factory(name)())


def test_is_a_river_classifier(name: str) -> None:
    model = _factory(name)()
    assert isinstance(model, base.Classifier)


def test_clone_is_untrained_and_independent(name: str) -> None:
    model = _trained(name)
    fresh = _factory(name)()
    clone = model.clone()  # type: ignore[attr-defined]
    probe = _probe(name)
    assert _proba(clone, probe) == _proba(fresh, probe)
    for x, y in _samples(name, seed=5, n=50):
        clone.learn_one(x, y)
    assert _proba(model, probe) == _proba(_trained(name), probe)


def test_pickle_round_trip_predicts_the_same(name: str) -> None:
    model = _trained(name)
    copy = pickle.loads(pickle.dumps(model))
    probe = _probe(name)
    assert _proba(copy, probe) == _proba(model, probe)
    for x, y in _samples(name, seed=3, n=50):  # and goes on learning the same
        model.learn_one(x, y)
        copy.learn_one(x, y)
    assert _proba(copy, probe) == _proba(model, probe)


def test_feature_order_does_not_matter(name: str) -> None:
    model = _trained(name)
    for x in _probe(name):
        shuffled = dict(sorted(x.items(), key=lambda kv: str(kv[0]), reverse=True))
        assert model.predict_proba_one(shuffled) == pytest.approx(model.predict_proba_one(x))


def test_unseen_and_missing_features_do_not_crash(name: str) -> None:
    model = _trained(name)
    for x in _probe(name):
        odd = dict(x)
        odd["never seen"] = 42.0
        odd.pop(next(iter(odd)))
        proba = model.predict_proba_one(odd)
        assert all(0.0 <= p <= 1.0 for p in proba.values())
        model.learn_one(odd, next(iter(_samples(name)))[1])
    model.predict_proba_one({})


def test_predicting_does_not_learn(name: str) -> None:
    model = _trained(name)
    probe = _probe(name)
    before = pickle.dumps(model)
    _proba(model, probe)
    for x in probe:
        model.predict_one(x)  # type: ignore[attr-defined]
    assert pickle.dumps(model) == before


def test_predicts_before_learning_and_sums_to_one(name: str) -> None:
    model = _factory(name)()
    for x in [*_probe(name)[:5], {}]:
        proba = model.predict_proba_one(x)
        assert not proba or sum(proba.values()) == pytest.approx(1.0)
    trained = _trained(name)
    for x in _probe(name):
        proba = trained.predict_proba_one(x)
        assert proba and sum(proba.values()) == pytest.approx(1.0)


def test_learns_the_signal_in_its_samples(name: str) -> None:
    model = _trained(name)
    hits = [model.predict_one(x) == y for x, y in _samples(name, seed=7, n=200)]  # type: ignore[attr-defined]
    assert sum(hits) / len(hits) > 0.6
