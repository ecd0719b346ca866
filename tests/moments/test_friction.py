"""The friction detector: emoji-aware sentiment with VADER's pitfalls fixed, errors, ratings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from momently.moments.friction import (
    CHUNK_WORDS,
    EMOJI_VALENCE,
    Friction,
    FrictionSettings,
    SentimentScorer,
    assess_event,
)
from tests.moments.factories import T0, page, track

DEFAULTS = FrictionSettings()
FULL_STOP = "refund hasn't arrived. not happy :("
_SCORER = SentimentScorer()  # built once: it reads VADER's lexicon files


@pytest.fixture
def scorer() -> SentimentScorer:
    return _SCORER


def post(text: str, name: str = "Social Post", **properties: Any) -> Any:
    return track(name, T0, properties={"text": text, **properties})


def assess(scorer: SentimentScorer, event: Any, **overrides: Any) -> Friction | None:
    return assess_event(scorer, DEFAULTS.model_copy(update=overrides), event)


# -- the pitfalls -------------------------------------------------------------


@pytest.mark.parametrize("text", ["😡", "🤬", "the delivery is late again 😡", "my parcel 🤬🤬"])
def test_angry_emoji_score_negative_where_plain_vader_reads_nothing(
    scorer: SentimentScorer, text: str
) -> None:
    assert scorer.plain_compound(text) == 0.0
    assert scorer.compound(text) <= DEFAULTS.threshold


@pytest.mark.parametrize("emoji", sorted(EMOJI_VALENCE))
def test_every_revalued_emoji_reads_negative_on_its_own(
    scorer: SentimentScorer, emoji: str
) -> None:
    assert scorer.compound(emoji) < 0
    assert scorer.compound(f"my order 😐 {emoji}") < 0


def test_negation_no_longer_leaks_across_a_full_stop(scorer: SentimentScorer) -> None:
    # Plain VADER still shows the pitfall, so the fix is what changes the score.
    assert scorer.plain_compound(FULL_STOP) > 0.5
    assert scorer.compound(FULL_STOP) < -0.5
    found = assess(scorer, post(FULL_STOP, "Support Message"))
    assert found is not None
    assert (found.reason, found.score) == ("sentiment", scorer.compound(FULL_STOP))


def test_negation_inside_a_sentence_still_works(scorer: SentimentScorer) -> None:
    assert scorer.compound("the toaster is good") > 0
    assert scorer.compound("the toaster is not good") < 0
    assert scorer.compound("the toaster is not bad") > 0


def test_an_emoticon_is_not_negated_by_the_words_before_it(scorer: SentimentScorer) -> None:
    assert scorer.plain_compound("not happy :(") > DEFAULTS.threshold  # ":(" flipped by "not"
    assert scorer.compound("not happy :(") < scorer.compound("not happy") < 0


def test_emoji_glued_to_a_word_count_the_same(scorer: SentimentScorer) -> None:
    assert scorer.compound("my toaster broke😩") == scorer.compound("my toaster broke 😩")
    assert scorer.compound("so angry😡😡") == scorer.compound("so angry 😡 😡")


# -- sentiment moments ----------------------------------------------------------


def test_broken_toaster_post_is_friction(scorer: SentimentScorer) -> None:
    found = assess(scorer, post("My toaster broke and I have no idea what to buy 😩"))
    assert found is not None
    assert (found.reason, found.detail) == ("sentiment", "negative sentiment")
    assert found.score <= DEFAULTS.threshold
    assert 0.5 <= found.confidence <= 1.0


def test_sick_with_a_sad_emoji_is_friction(scorer: SentimentScorer) -> None:
    found = assess(scorer, post("I'm sick 😢"))
    assert found is not None and found.reason == "sentiment"


@pytest.mark.parametrize(
    "text",
    [
        "Just got my new toaster, love it 😍",
        "Best breakfast ever! Thanks @toastco :)",
        "Order arrived on Tuesday.",
        "Heading to the store later",
        "not bad at all, works fine",
        "",
    ],
)
def test_positive_and_neutral_posts_are_not_friction(scorer: SentimentScorer, text: str) -> None:
    assert assess(scorer, post(text)) is None
    assert assess(scorer, post(text, "Support Message")) is None


def test_confidence_grows_as_the_score_falls(scorer: SentimentScorer) -> None:
    mild = assess(scorer, post("the app is a bit annoying"))
    strong = assess(scorer, post("Worst service ever. I hate this app, it is awful and broken 🤬"))
    assert mild is not None and strong is not None
    assert mild.score > strong.score
    assert mild.confidence < strong.confidence <= 1.0


def test_threshold_comes_from_the_settings(scorer: SentimentScorer) -> None:
    event = post("the app is a bit annoying")
    score = scorer.compound("the app is a bit annoying")
    assert assess(scorer, event, threshold=score) is not None
    assert assess(scorer, event, threshold=score - 0.01) is None


# -- errors and ratings ---------------------------------------------------------


@pytest.mark.parametrize("name", DEFAULTS.error_events)
def test_error_events_are_friction(scorer: SentimentScorer, name: str) -> None:
    found = assess(scorer, track(name, T0, properties={"order_id": "o-1"}))
    assert found == Friction("error", -1.0, 0.9, name)


def test_a_track_event_carrying_an_error_is_friction(scorer: SentimentScorer) -> None:
    event = track("Form Submitted", T0, properties={"error_code": "E42"})
    found = assess(scorer, event)
    assert found is not None
    assert (found.reason, found.score, found.detail) == ("error", -1.0, "Form Submitted")
    assert found.confidence < 0.9  # less certain than a named failure event
    assert assess(scorer, event, error_properties=()) is None


@pytest.mark.parametrize("value", [None, False, "", "  ", "false", 0])
def test_an_empty_error_property_is_not_friction(scorer: SentimentScorer, value: Any) -> None:
    assert assess(scorer, track("Form Submitted", T0, properties={"error": value})) is None


def test_low_rating_is_friction_whatever_the_text(scorer: SentimentScorer) -> None:
    text = "The toaster arrived on Monday."
    one_star = assess(scorer, post(text, "Review Posted", rating=1))
    assert one_star is not None
    assert (one_star.reason, one_star.detail) == ("rating", "rating 1")
    assert one_star.score == scorer.compound(text) == 0.0
    two_star = assess(scorer, post(text, "Review Posted", rating="2"))
    assert two_star is not None and two_star.detail == "rating 2"
    assert 0.0 <= two_star.confidence < one_star.confidence <= 1.0
    assert assess(scorer, post(text, "Review Posted", rating=3)) is None
    assert assess(scorer, post(text, "Review Posted", rating=1), low_rating=0) is None


def test_a_rating_without_text_still_counts(scorer: SentimentScorer) -> None:
    event = track("Review Posted", T0, properties={"rating": 1, "product_id": "p1"})
    found = assess(scorer, event)
    assert found is not None and found.reason == "rating"


@pytest.mark.parametrize("rating", [True, "one", float("nan"), None, [1]])
def test_a_rating_that_is_not_a_number_is_ignored(scorer: SentimentScorer, rating: Any) -> None:
    assert assess(scorer, post("Arrived today.", "Review Posted", rating=rating)) is None


def test_a_negative_review_with_a_good_rating_is_still_friction(scorer: SentimentScorer) -> None:
    found = assess(scorer, post("Broke after two days. Terrible 😡", "Review Posted", rating=4))
    assert found is not None and found.reason == "sentiment"


# -- what is not read -----------------------------------------------------------


def test_events_without_text_or_error_are_not_friction(scorer: SentimentScorer) -> None:
    assert assess(scorer, page("Home", T0)) is None
    assert assess(scorer, track("Product Viewed", T0, properties={"product_id": "p1"})) is None
    # A text property on an event that is not a text event is not read.
    assert assess(scorer, track("Product Viewed", T0, properties={"text": "awful 😡"})) is None
    assert assess(scorer, track("Social Post", T0, properties={"text": 42})) is None
    assert assess(scorer, track("Social Post", T0)) is None


def test_disabled_detector_finds_nothing(scorer: SentimentScorer) -> None:
    assert assess(scorer, track("Payment Failed", T0), enabled=False) is None
    assert assess(scorer, post("awful 😡"), enabled=False) is None


def test_long_text_is_capped(scorer: SentimentScorer) -> None:
    filler = "The parcel came on Tuesday and the box was brown. " * 12
    complaint = "Then my toaster broke and it is useless, I hate it 😡"
    assert len(filler) > DEFAULTS.max_chars
    # The scorer itself reads everything ...
    assert scorer.compound(filler + complaint) <= DEFAULTS.threshold
    # ... the detector only the head, so a complaint past the cap is not read.
    assert assess(scorer, post(complaint + " " + filler)) is not None
    assert assess(scorer, post(filler + complaint)) is None
    assert assess(scorer, post(complaint), max_chars=12) is None  # reads "Then my" only
    assert assess(scorer, post(complaint), max_chars=len(complaint)) is not None


def test_text_longer_than_a_chunk_keeps_its_complaint(scorer: SentimentScorer) -> None:
    story = "I ordered a toaster on Monday and it came on Friday with the box open. "
    text = story * 2 + "It does not work at all. Really disappointed 😞"
    assert len(text.split()) > CHUNK_WORDS
    assert len(text) <= DEFAULTS.max_chars
    found = assess(scorer, post(text, "Support Message"))
    assert found is not None and found.reason == "sentiment"


@settings(deadline=None, max_examples=60)
@given(st.text(max_size=300))
def test_compound_is_a_score_in_range_for_any_text(text: str) -> None:
    value = _SCORER.compound(text)
    assert -1.0 <= value <= 1.0


# -- settings -------------------------------------------------------------------


def test_settings_defaults_load() -> None:
    assert DEFAULTS.enabled is True
    assert DEFAULTS.threshold == -0.3
    assert DEFAULTS.text_events == ("Social Post", "Support Message", "Review Posted")
    assert "Payment Failed" in DEFAULTS.error_events
    assert DEFAULTS.low_rating == 2
    assert DEFAULTS.expiry == 6 * 3_600_000


def test_settings_parse_and_reject() -> None:
    loaded = FrictionSettings.model_validate({"threshold": -0.5, "expiry": "2h", "max_chars": 280})
    assert (loaded.threshold, loaded.expiry, loaded.max_chars) == (-0.5, 7_200_000, 280)
    with pytest.raises(ValidationError):
        FrictionSettings.model_validate({"threshhold": -0.5})
    with pytest.raises(ValidationError):
        FrictionSettings.model_validate({"threshold": -2})
    with pytest.raises(ValidationError):
        FrictionSettings.model_validate({"max_chars": 0})
