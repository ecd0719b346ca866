"""The contextual bandit: exact, consistent propensities; seeded draws; it learns; its
state survives a restart."""

from __future__ import annotations

import pickle

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from momently.decide.bandit import (
    Covariance,
    Features,
    LinearBandit,
    encode_actions,
    hash_features,
)

names = st.sampled_from([f"f{i}" for i in range(8)] + ["segment=family", "channel=push"])
features = st.dictionaries(names, st.floats(-3.0, 3.0), max_size=4)
covariances: st.SearchStrategy[Covariance] = st.sampled_from(["full", "diagonal"])


@st.composite
def bandits(draw: st.DrawFn) -> LinearBandit:
    covariance: Covariance = draw(covariances)
    return LinearBandit(
        alpha=draw(st.floats(0.0, 3.0)),
        l2=draw(st.floats(0.1, 10.0)),
        epsilon=draw(st.floats(0.0, 1.0)),
        temperature=draw(st.sampled_from([0.0, 0.1, 1.0])),
        covariance=covariance,
        bits=draw(st.integers(4, 8)),
        importance_weighting=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def train(bandit: LinearBandit, history: list[tuple[Features, Features, float, float]]) -> None:
    for context, action, reward, propensity in history:
        bandit.learn(context, action, reward, propensity)


histories = st.lists(
    st.tuples(features, features, st.floats(-1.0, 1.0), st.floats(0.01, 1.0)), max_size=15
)


@given(bandits(), histories, features, st.lists(features, min_size=1, max_size=6), st.text())
def test_probabilities_are_a_distribution_and_the_choice_logs_its_own(
    bandit: LinearBandit,
    history: list[tuple[Features, Features, float, float]],
    context: Features,
    actions: list[Features],
    key: str,
) -> None:
    train(bandit, history)
    probs = bandit.probabilities(context, actions)
    assert probs.shape == (len(actions),)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(probs >= bandit.epsilon / len(actions) - 1e-12)
    choice = bandit.choose(context, actions, key=key)
    assert 0 <= choice.index < len(actions)
    assert choice.probability > 0.0
    assert choice.probability == choice.probabilities[choice.index]
    assert np.array_equal(choice.probabilities, probs)  # what is logged is what was used
    assert np.array_equal(choice.expected, bandit.predict(context, actions))
    assert bandit.choose(context, actions, key=key).index == choice.index  # replay: same pick


def test_draws_follow_the_probabilities() -> None:
    bandit = LinearBandit(epsilon=0.3, seed=11)
    offers: list[Features] = [{"offer": float(i)} for i in range(4)]
    for _ in range(20):
        bandit.learn({}, offers[2], 1.0, 0.25)
        bandit.learn({}, offers[1], 0.0, 0.25)
    probs = bandit.probabilities({}, offers)
    n = 4000
    counts = np.bincount([bandit.choose({}, offers, key=i).index for i in range(n)], minlength=4)
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(counts / n - probs) <= 5 * se), (counts / n, probs)


def test_unkeyed_draws_are_seeded_and_counted_in_the_state() -> None:
    offers: list[Features] = [{"a": 1.0}, {"b": 1.0}, {"c": 1.0}]
    one, two = LinearBandit(epsilon=1.0, seed=5), LinearBandit(epsilon=1.0, seed=5)
    first = [one.choose({}, offers).index for _ in range(50)]
    assert first == [two.choose({}, offers).index for _ in range(50)]
    assert len(set(first)) == 3
    other = LinearBandit(epsilon=1.0, seed=6)
    assert first != [other.choose({}, offers).index for _ in range(50)]
    restored = LinearBandit.from_bytes(one.to_bytes())
    assert [restored.choose({}, offers).index for _ in range(20)] == [
        one.choose({}, offers).index for _ in range(20)
    ]


def test_exploration_shapes() -> None:
    offers: list[Features] = [{"a": 1.0}, {"b": 1.0}, {"c": 1.0}, {"d": 1.0}]
    untrained = LinearBandit(epsilon=0.0)
    assert untrained.probabilities({}, offers).tolist() == [0.25] * 4  # ties share
    uniform = LinearBandit(epsilon=1.0)
    uniform.learn({}, offers[0], 1.0, 1.0)
    assert uniform.probabilities({}, offers) == pytest.approx([0.25] * 4)
    greedy = LinearBandit(epsilon=0.2, alpha=0.0)
    greedy.learn({}, offers[3], 1.0, 1.0)
    assert greedy.probabilities({}, offers) == pytest.approx([0.05, 0.05, 0.05, 0.85])
    soft = LinearBandit(epsilon=0.0, alpha=0.0, temperature=0.5)
    soft.learn({}, offers[3], 1.0, 1.0)
    soft.learn({}, offers[0], -1.0, 1.0)
    p = soft.probabilities({}, offers)
    assert p[1] == pytest.approx(p[2])
    assert p[3] > p[1] > p[0] > 0.0
    assert LinearBandit().probabilities({}, [{"only": 1.0}]).tolist() == [1.0]


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learns_the_best_offer_for_each_segment(covariance: Covariance, seed: int) -> None:
    """Four segments, six offers; each segment has one offer at 60% and the rest at
    5-25%. Learning from its own choices, the bandit ends up choosing the best."""
    rng = np.random.default_rng(seed)
    segments, k = 4, 6
    ctr = rng.uniform(0.05, 0.25, (segments, k))
    best = rng.permutation(k)[:segments]
    ctr[np.arange(segments), best] = 0.6
    offers = encode_actions([{f"offer={a}": 1.0} for a in range(k)])
    bandit = LinearBandit(covariance=covariance, alpha=0.5, epsilon=0.05, seed=seed)
    hits = 0
    for t in range(3000):
        s = int(rng.integers(segments))
        context = {f"segment={s}": 1.0}
        choice = bandit.choose(context, offers)
        reward = float(rng.random() < ctr[s, choice.index])
        bandit.learn(context, {f"offer={choice.index}": 1.0}, reward, choice.probability)
        hits += t >= 2500 and choice.index == best[s]
    assert hits / 500 >= 0.85  # at most 0.95 + 0.05 / 6 with this epsilon
    for s in range(segments):
        assert int(np.argmax(bandit.predict({f"segment={s}": 1.0}, offers))) == best[s]


@given(bandits(), histories, features, st.lists(features, min_size=1, max_size=5))
def test_state_round_trips_through_bytes_and_pickle(
    bandit: LinearBandit,
    history: list[tuple[Features, Features, float, float]],
    context: Features,
    actions: list[Features],
) -> None:
    train(bandit, history)
    for restored in (
        LinearBandit.from_bytes(bandit.to_bytes()),
        pickle.loads(pickle.dumps(bandit)),  # noqa: S301 - our own bytes
    ):
        assert restored.n_updates == bandit.n_updates == len(history)
        assert np.array_equal(
            restored.probabilities(context, actions), bandit.probabilities(context, actions)
        )
        assert restored.to_bytes() == bandit.to_bytes()
        # Both keep learning the same way.
        restored.learn(context, actions[0], 1.0, 0.5)
        twin = LinearBandit.from_bytes(bandit.to_bytes())
        twin.learn(context, actions[0], 1.0, 0.5)
        assert restored.to_bytes() == twin.to_bytes()


def test_clone_is_fresh_with_the_same_hyperparameters() -> None:
    bandit = LinearBandit(alpha=0.3, epsilon=0.1, covariance="full", bits=10, seed=4)
    bandit.learn({"x": 1.0}, {"a": 1.0}, 1.0, 0.5)
    clone = bandit.clone()
    assert clone.n_updates == 0
    assert (clone.alpha, clone.epsilon, clone.covariance, clone.bits, clone.seed) == (
        0.3,
        0.1,
        "full",
        10,
        4,
    )
    assert clone.to_bytes() == LinearBandit(**bandit._params()).to_bytes()


def test_action_sets_and_hashed_features_score_like_dicts() -> None:
    bandit = LinearBandit(covariance="diagonal", bits=12)
    offers: list[Features] = [{"a": 1.0, "price": 2.5}, {"b": 1.0}, {"a": 1.0}]
    for i in range(30):
        bandit.learn({"seg": 1.0}, offers[i % 3], float(i % 2), 0.5)
    want = bandit.probabilities({"seg": 1.0}, offers)
    ctx = hash_features({"seg": 1.0})
    assert np.array_equal(bandit.probabilities(ctx, encode_actions(offers)), want)
    assert np.array_equal(bandit.probabilities(ctx, [hash_features(o) for o in offers]), want)


def test_feature_hashes_are_stable_across_processes() -> None:
    # blake2b, not the salted str.__hash__: the same name is the same weight after a restart.
    assert int(hash_features({"segment=family": 1.0}).hashes[1]) == 0x613A16E69F9D7240
    vector = hash_features({"segment=family": 2.0, "zero": 0.0})
    assert vector.values.tolist() == [1.0, 2.0]  # the bias first, zeros dropped
    assert len(vector.hashes) == 2


def test_importance_weighting_counts_rare_choices_more() -> None:
    plain = LinearBandit(alpha=0.0)
    weighted = LinearBandit(alpha=0.0, importance_weighting=True, max_weight=10.0)
    for bandit in (plain, weighted):
        bandit.learn({}, {"a": 1.0}, 1.0, 0.05)  # weight capped at 10
    offers: list[Features] = [{"a": 1.0}]
    assert weighted.predict({}, offers)[0] > plain.predict({}, offers)[0] > 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"covariance": "sparse"}, "covariance"),
        ({"bits": 0}, "bits"),
        ({"covariance": "diagonal", "bits": 25}, "bits"),
        ({"covariance": "full", "bits": 13}, "bits"),
        ({"alpha": -1.0}, "alpha"),
        ({"l2": 0.0}, "l2"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"temperature": -0.1}, "temperature"),
        ({"max_weight": 0.5}, "max_weight"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LinearBandit(**kwargs)  # type: ignore[arg-type]


def test_bad_calls_are_refused() -> None:
    bandit = LinearBandit(covariance="full", bits=6)
    with pytest.raises(ValueError, match="propensity"):
        bandit.learn({}, {"a": 1.0}, 1.0, 0.0)
    with pytest.raises(ValueError, match="propensity"):
        bandit.learn({}, {"a": 1.0}, 1.0, 1.01)
    with pytest.raises(ValueError, match="reward"):
        bandit.learn({}, {"a": 1.0}, float("nan"), 0.5)
    with pytest.raises(ValueError, match="no candidate"):
        bandit.choose({}, [])
    with pytest.raises(ValueError, match="not finite"):
        bandit.choose({"x": float("inf")}, [{"a": 1.0}])
    bandit.learn({"x": 1.0}, {"a": 1.0}, 1.0, 0.5)
    with pytest.raises(ValueError, match="overflowed"):
        bandit.choose({"x": 1e200}, [{"a": 1e200}])
    before = bandit.to_bytes()
    with pytest.raises(ValueError, match="too large"):
        bandit.learn({"x": 1e200}, {"a": 1e200}, 1.0, 0.5)
    assert bandit.to_bytes() == before
    state = msgspec.msgpack.decode(bandit.to_bytes())
    state["arrays"]["theta"] = state["arrays"]["theta"][:-8]
    with pytest.raises(ValueError, match="wrong size"):
        LinearBandit.from_bytes(msgspec.msgpack.encode(state))
    state["version"] = 99
    with pytest.raises(ValueError, match="version"):
        LinearBandit.from_bytes(msgspec.msgpack.encode(state))
