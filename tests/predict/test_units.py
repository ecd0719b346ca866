"""The predict package piece by piece: vocabulary, decay, time zones, bounds, settings."""

from __future__ import annotations

import doctest
import importlib
import pickle
import pkgutil
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import momently.predict
from momently.errors import ConfigError
from momently.events import Event, from_ms
from momently.moments.records import ModelSnapshot
from momently.predict import Predictor, PredictSettings, PredictState, propensity
from momently.predict.affinity import ChannelAffinity
from momently.predict.curve import ReceptivityCurve
from momently.predict.decay import bump, read
from momently.predict.localtime import hour_of_week
from momently.predict.next_need import NextNeed, in_top_k, top_k
from momently.predict.population import Population
from momently.predict.predictions import ANSWERS
from momently.predict.receptivity import Receptivity, customer_x
from momently.predict.replay import replay
from momently.predict.settings import DAY, HOUR, MINUTE
from momently.predict.signals import CHANNELS, read_signal
from momently.predict.synthetic import START, event, population
from momently.predict.types import Features

MODULES = sorted(m.name for m in pkgutil.iter_modules(momently.predict.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"momently.predict.{name}")
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0


def _raw(kind: str, **fields: object) -> Event:
    return Event(
        message_id="m",
        type=kind,
        timestamp=from_ms(0),
        received_at=from_ms(0),
        **fields,  # type: ignore[arg-type]
    )


def test_the_vocabulary() -> None:
    assert read_signal(event("Email Delivered", 0, "c"), "Order Completed").kind == "exposure"
    generic = event("Message Delivered", 0, "c", properties={"channel": "Web-Push"})
    assert read_signal(generic, "Order Completed").channel == "web_push"
    unknown = event("Message Delivered", 0, "c", properties={"channel": "pigeon"})
    assert read_signal(unknown, "Order Completed").kind == "system"
    assert read_signal(event("Unsubscribed", 0, "c"), "Order Completed").kind == "optout"
    assert read_signal(event("Location Updated", 0, "c"), "Order Completed").kind == "system"
    assert read_signal(event("Order Completed", 0, "c"), "Order Completed").kind == "conversion"
    assert read_signal(event("Order Completed", 0, "c"), "Subscription Started").kind == "action"
    opened = read_signal(event("Application Opened", 0, "c", device="d9"), "Order Completed")
    assert (opened.kind, opened.channel, opened.device) == ("engagement", None, "d9")
    viewed = event("Product Viewed", 0, "c", properties={"category": " shoes "})
    assert (read_signal(viewed, "x").activity, read_signal(viewed, "x").category) == (
        "view",
        "shoes",
    )
    page = read_signal(_raw("page", name="Home"), "Order Completed")
    assert (page.touchpoint, page.device, page.activity) == ("Page Viewed", "web", "view")
    assert read_signal(_raw("identify", traits={"a": 1}), "Order Completed").kind == "system"
    long = read_signal(event("x" * 500, 0, "c"), "Order Completed")
    assert long.touchpoint is not None and len(long.touchpoint) == 64


@given(st.lists(st.integers(0, 10 * DAY), min_size=1, max_size=30), st.randoms())
def test_decayed_counts_do_not_depend_on_arrival_order(times: list[int], rng: object) -> None:
    taus = (float(HOUR), float(DAY))
    ordered: list[float] = []
    at = 0
    for t in sorted(times):
        at = bump(ordered, at, t, taus, 1)
    shuffled = list(times)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    mixed: list[float] = []
    at2 = 0
    for t in shuffled:
        at2 = bump(mixed, at2, t, taus, 1)
    later = 11 * DAY
    assert read(mixed, at2, later, taus) == pytest.approx(read(ordered, at, later, taus))


ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Adelaide"]


@given(st.integers(1_700_000_000_000, 1_900_000_000_000), st.sampled_from(ZONES))
def test_hour_of_week_is_the_local_hour_across_daylight_saving(ms: int, tz: str) -> None:
    local = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(tz))
    assert hour_of_week(ms, tz) == local.weekday() * 24 + local.hour


@pytest.mark.parametrize("tz", ["America/St_Johns", "Australia/Lord_Howe", "Europe/London"])
def test_hour_of_week_is_the_local_hour_on_every_quarter_hour_of_a_changeover_day(tz: str) -> None:
    # The offset is cached per UTC day; the days the clocks change take another path.
    zone = ZoneInfo(tz)
    year = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    changeovers = 0
    for day in range(366):
        start = year + day * DAY
        offsets = {
            datetime.fromtimestamp(ms / 1000, tz=zone).utcoffset()
            for ms in (start, start + DAY - 1)
        }
        quarters = range(96) if len(offsets) > 1 else (day % 96,)
        changeovers += len(offsets) > 1
        for quarter in quarters:
            for ms in (start + quarter * 15 * MINUTE, start + (quarter + 1) * 15 * MINUTE - 1):
                local = datetime.fromtimestamp(ms / 1000, tz=zone)
                assert hour_of_week(ms, tz) == local.weekday() * 24 + local.hour, (tz, ms)
    assert changeovers == 2


def test_an_unknown_time_zone_is_utc() -> None:
    assert hour_of_week(START, "Mars/Olympus_Mons") == hour_of_week(START, "UTC")
    assert hour_of_week(START, None) == hour_of_week(START, "UTC")


def test_best_time_lands_on_a_local_whole_hour_in_a_half_hour_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    counts = {d * 24 + 20: (5, 5) for d in range(7)}
    curve = ReceptivityCurve("Asia/Kolkata", counts, Receptivity().population(), 4.0, 2.0, 0.5)
    best = curve.best_time(START + 7 * MINUTE, START + DAY)
    local = datetime.fromtimestamp(best / 1000, tz=kolkata)
    assert (local.hour, local.minute, local.second) == (20, 0, 0)
    assert curve.best_time(START, START + 30 * MINUTE) == START  # no whole hour inside
    assert len(curve.weekly()) == 168 and len(curve.daily()) == 24
    assert curve.weekly()[20] == pytest.approx(curve.hour_rate(20))


def test_the_week_is_each_hours_rate() -> None:
    population = Receptivity()
    for hour in range(0, 168, 5):
        population.learn_one({"hour": hour}, hour % 3 == 0)
    counts = {20: (4, 3), 44: (2, 0), 7: (1, 1), 167: (3, 1)}
    w = population.neighbour_weight
    curve = ReceptivityCurve("UTC", counts, population.population(), 4.0, 2.0, w)
    week = curve.weekly()
    assert week == pytest.approx([curve.hour_rate(h) for h in range(168)], abs=1e-15)
    assert week[100] == population.population().rate(100)  # no evidence at or beside it
    # around 20:00: 44 (Tuesday 20:00) whole, 167 (Sunday 23:00) is not beside it
    x: Features = {"hour": 20, "n": 4, "k": 3, "day_n": 2, "day_k": 0}
    assert population.customer_rate(20, counts) == population.predict_proba_one(x)[True]
    assert customer_x(counts, 20, w) == x
    # around 08:00: 7 (Monday 07:00) at the neighbours' weight
    x = {"hour": 8, "n": 0, "k": 0, "day_n": w * 1, "day_k": w * 1}
    assert customer_x(counts, 8, w) == x
    assert population.customer_rate(8, counts) == population.predict_proba_one(x)[True]
    assert week[8] == pytest.approx(population.customer_rate(8, counts), abs=1e-15)


@given(
    st.dictionaries(
        st.integers(0, 167), st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=40
    ),
    st.sampled_from([1.0, 2.0, 4.0, 0.5, 3.0, 2.5, 0.1]),
    st.sampled_from([4.0, 1.0, 7.5]),
    st.sampled_from([0.5, 0.0, 0.25, 1.0, 0.3]),
)
def test_the_week_is_each_hours_rate_bit_for_bit(
    counts: dict[int, tuple[int, int]], hour_strength: float, day_strength: float, w: float
) -> None:
    # The week skips hs * x / hs when hour_strength is a power of two (at least 1): the
    # same bits as the rate of each hour worked out alone, for powers of two and not,
    # with the neighbours' weight or without.
    population = Receptivity()
    for hour in range(0, 168, 5):
        population.learn_one({"hour": hour}, hour % 3 == 0)
    rates = population.population().rates
    curve = ReceptivityCurve("UTC", counts, population.population(), day_strength, hour_strength, w)
    ds, hs = day_strength, hour_strength

    def whole(day: int, i: int) -> int:  # trials (0) or wins (1) at an hour of the day
        return sum(counts[o][i] for o in range(day % 24, 168, 24) if o in counts)

    expected = []
    for h in range(168):
        dn = whole(h, 0) + w * (whole(h - 1, 0) + whole(h + 1, 0))
        dk = whole(h, 1) + w * (whole(h - 1, 1) + whole(h + 1, 1))
        if not dn and not dk:
            expected.append(rates[h])  # the population's rate, as before
        elif h in counts:
            expected.append(curve.hour_rate(h))
        else:  # the day's posterior, as it was worked out before: hs * day / hs
            expected.append(hs * ((min(dk, dn) + ds * rates[h]) / (dn + ds)) / hs)
    assert curve.weekly() == tuple(expected)


def test_channel_rates_at_once_match_one_at_a_time() -> None:
    model = ChannelAffinity()
    for i in range(50):
        model.learn_one({"channel": CHANNELS[i % 5]}, i % 3 == 0)
    counts = {"push": (10, 7), "email": (4, 0)}
    rates = model.rates(counts)
    for channel in CHANNELS:
        sent, engaged = counts.get(channel, (0, 0))
        assert rates[channel] == pytest.approx(model.rate(channel, sent, engaged))
    model.learn_one({"channel": "carrier-pigeon"}, True)  # not a channel: not learned
    assert "carrier-pigeon" not in model.trials


def test_next_need_stays_bounded() -> None:
    model = NextNeed(max_tokens=20, max_contexts=30, max_successors=4)
    for i in range(2_000):
        model.learn_one({"last": f"t{i % 50}", "prev": f"t{(i * 7) % 50}"}, f"t{(i * 3) % 50}")
    assert len(model.counts) <= 20
    assert len(model.successors) <= 30
    assert all(len(s) <= 4 for s in model.successors.values())
    scores = model.scores("t1", "t7", {"t2": 1.0})
    ranked = [t for t, _ in top_k(scores, 3)]
    assert all(in_top_k(scores, t, 3) == (t in ranked) for t in scores)


@given(
    st.dictionaries(
        st.text("abcde", min_size=1, max_size=2),
        st.sampled_from((0.0, 0.1, 0.2, 0.3)) | st.floats(0.0, 1.0),
        max_size=30,
    ),
    st.integers(1, 6),
)
def test_top_k_is_the_full_sort_by_probability_then_name(scores: dict[str, float], k: int) -> None:
    # top_k sorts by name only the tokens at least as good as the k-th best; the answer
    # must be the whole candidates' sort's, ties (equal probabilities) broken by name.
    total = sum(scores.values())
    expected = sorted(scores.items(), key=lambda tp: (-tp[1], tp[0]))[:k]
    assert top_k(scores, k) == ([(t, p / total) for t, p in expected] if total > 0 else [])


@given(st.lists(st.integers(0, 9), min_size=1, max_size=120))
def test_next_need_scores_with_its_caches_as_without(tokens: list[int]) -> None:
    model = NextNeed(candidates=3)
    history: list[str] = []
    for i in tokens:
        token = f"t{i}"
        last = history[-1] if history else None
        prev = history[-2] if len(history) > 1 else None
        model.learn_next(last, prev, token)
        history.append(token)
        if i % 2:
            model.popular(2)  # a ranking read between updates, as the live tracker does
        own = {t: 1.0 for t in history[-3:]}
        cached = model.scores(token, last, own)
        fresh = pickle.loads(pickle.dumps(model))  # the caches are not pickled
        assert cached == fresh.scores(token, last, own)


kinds = st.sampled_from(
    [
        "Product Viewed",
        "Product Added",
        "Order Completed",
        "Email Delivered",
        "Push Notification Received",
        "Email Opened",
        "Application Opened",
        "Unsubscribed",
    ]
)


@given(st.lists(st.tuples(kinds, st.integers(0, 3 * HOUR), st.integers(0, 20)), max_size=300))
def test_customer_state_stays_bounded(steps: list[tuple[str, int, int]]) -> None:
    predictor = Predictor()
    state = PredictState()
    s = predictor.settings
    at = START
    for name, gap, device in steps:
        at += gap
        cat = {"category": f"cat{device}"}
        predictor.on_event(
            "c", state, event(name, at, "c", properties=cat, device=f"d{device}"), None
        )
    assert len(state.snapshots) <= s.max_snapshots
    assert len(state.contact.pending) <= s.max_fatigue_snapshots
    assert len(state.exposures) <= s.max_exposures
    assert len(state.devices) <= s.max_devices
    assert len(state.touchpoints) <= s.history and len(state.categories) <= s.history
    assert len(state.hours) <= 168 and set(state.channels) <= set(CHANNELS)
    body = msgspec.msgpack.encode(state)  # bytes, not ==: an unscored prediction is NaN
    assert msgspec.msgpack.encode(msgspec.msgpack.decode(body, type=PredictState)) == body


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="horizon_ms"):
        PredictSettings(horizon_ms=-1)
    with pytest.raises(ConfigError, match="conversion_event"):
        PredictSettings(conversion_event="")
    with pytest.raises(ConfigError, match="response_window_ms"):
        PredictSettings(response_window_ms=2 * DAY, attribution_window_ms=DAY)


def test_a_custom_conversion_event_and_horizon_change_the_version() -> None:
    default = Population(PredictSettings()).versions
    custom = Population(PredictSettings(conversion_event="Trial Started")).versions
    assert default["propensity"] != custom["propensity"]
    assert default["receptivity"] == custom["receptivity"]


def test_restore_skips_what_it_cannot_use() -> None:
    population = Population(PredictSettings())
    good = population.snapshot(everything=True)
    assert set(good) == set(population.slots)
    fresh = Population(PredictSettings())
    restored = fresh.restore(
        {
            **good,
            "propensity": ModelSnapshot(good["propensity"].version, b"not a pickle"),
            "fatigue": ModelSnapshot(good["fatigue"].version, pickle.dumps("not a slot")),
            "unknown": ModelSnapshot("unknown/v1", b""),
        }
    )
    assert sorted(restored) == sorted(set(good) - {"propensity", "fatigue"})


def test_the_classifiers_fast_path_answers_as_river_does() -> None:
    model = propensity.propensity_model()
    stream = population(40, days=5, seed=3)
    states = replay(Predictor(), stream.events, stream.profiles)
    rows = [propensity.values(s.activity, START + 5 * DAY) for s in states.values()]
    for i, row in enumerate(rows * 3):
        model.learn_one(dict(zip(propensity.FEATURES, row, strict=True)), i % 3 == 0)
        x = rows[(i * 7) % len(rows)]
        expected = model.predict_proba_one(dict(zip(propensity.FEATURES, x, strict=True)))
        assert model.proba_values(x, propensity.FEATURES) == pytest.approx(
            expected[True], abs=1e-12
        )
    clone = pickle.loads(pickle.dumps(model))
    assert clone.proba_values(rows[0], propensity.FEATURES) == model.proba_values(
        rows[0], propensity.FEATURES
    )


@given(st.lists(st.floats(-50.0, 50.0), min_size=3, max_size=3))
def test_a_clipped_fast_prediction_answers_as_river_does(x: list[float]) -> None:
    model = propensity.propensity_model()
    names = ("a", "b", "c")
    for i in range(30):
        model.learn_one({"a": i % 3, "b": (i * 7) % 5 / 5, "c": float(i % 2)}, i % 4 == 0)
    expected = model.predict_proba_one(dict(zip(names, x, strict=True)))[True]
    assert model.proba_values(x, names) == pytest.approx(expected, abs=1e-12)


def test_predictions_are_worked_out_when_read_and_kept() -> None:
    predictor = Predictor()
    state = PredictState()
    added = event("Product Added", START, "c", properties={"category": "toasters"})
    predictor.on_event("c", state, added, None)
    found = predictor.predictions(state, None, START + MINUTE)
    first = found.next_categories
    assert first[0][0] == "toasters"
    assert found.next_categories is first  # kept, not worked out again
    assert found.best_channel == max(found.channels, key=lambda c: found.channels[c])
    predictor.on_event("c", state, event("Product Viewed", START + MINUTE, "c"), None)
    assert found.next_categories is first
    later = predictor.predictions(state, None, START + 2 * MINUTE).everything()
    assert vars(later).keys() >= set(ANSWERS)  # all worked out, none left to read


def test_everything_gives_each_answer_as_reading_it_does() -> None:
    stream = population(40, days=3, seed=5)
    predictor = Predictor()
    states = replay(predictor, stream.events, stream.profiles)
    now = stream.events[-1][1].timestamp_ms
    for customer, state in list(states.items())[:15]:
        profile = stream.profiles.get(customer)
        together = predictor.predictions(state, profile, now).everything()
        one_by_one = predictor.predictions(state, profile, now)
        for name in ANSWERS:
            assert vars(together)[name] == getattr(one_by_one, name), name
        partly = predictor.predictions(state, profile, now)
        read = partly.next_touchpoints
        assert partly.everything().next_touchpoints is read  # what was read is kept


def test_a_new_brand_starts_from_the_priors_not_from_a_coin_toss() -> None:
    predictor = Predictor()
    found = predictor.predictions(PredictState(), None, START)
    settings = predictor.settings
    assert found.propensity == pytest.approx(settings.propensity_prior)
    assert found.fatigue == pytest.approx(settings.fatigue_prior)
    # After its burn-in a model answers alone; its first predictions were not scored.
    slot = predictor.population.slots["propensity"]
    for i in range(settings.prior_labels):
        slot.model.learn_one({"purchases": float(i % 2)}, i % 2 == 1)
        slot.updates += 1
    x = propensity.features(PredictState().activity, START)
    assert predictor.probability("propensity", list(x.values())) == pytest.approx(
        slot.model.predict_proba_one(x)[True], abs=1e-12
    )
    assert slot.tracker.report() == {"labels": 0.0}
