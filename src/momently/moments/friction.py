"""Friction: complaints and distress in customers' words, and the errors they hit.

Text (``Social Post``, ``Support Message``, ``Review Posted``) is scored with
VADER (the maintained ``vaderSentiment`` library), with two of its known
pitfalls fixed from the outside, without touching its code:

* **Emoji it cannot read.** VADER replaces an emoji by its name and scores the
  words, so 😡 ("pouting face"), 🤬 ("face with symbols on mouth") or 👎 score 0,
  and 💔 ("broken heart") or 😔 ("pensive face") even score positive. Those
  emoji get a lexicon entry of their own (:data:`EMOJI_VALENCE`), valued
  against the lexicon's words for the same feeling.
* **Rules that leak across sentences.** VADER looks up to three words back
  for negations and boosters, across full stops: in "refund hasn't arrived.
  not happy :(" the *hasn't* of the first sentence negates *happy* a second
  time, and the *not* negates the ``:(``, so the text scores +0.6. Each
  sentence, emoticon and emoji is scored in isolation — separated by neutral
  barrier words that no rule looks through — and the compound is that of the
  summed valence, as VADER computes it for one sentence. The text scores −0.71.

Emoticons and emoji are isolated the same way: "not happy :(" is not a happy
frown. On the 4,200 human-rated tweets shipped with VADER (which hold no
emoji) the correlation with the human scores goes from 0.8722 to 0.8737 and
the 3-class macro F1 from 0.6898 to 0.6894 — one tweet, net, changes to the
wrong class; ``python benchmarks/bench_friction.py`` prints both side by side.

VADER is pure Python and its cost grows with the square of the words scored
together, so long texts are scored in chunks of whole sentences of at most
:data:`CHUNK_WORDS` words (summed the same way) and only the first
``max_chars`` characters of a text are read.

>>> scorer = SentimentScorer()
>>> scorer.plain_compound("refund hasn't arrived. not happy :(") > 0
True
>>> scorer.compound("refund hasn't arrived. not happy :(") < -0.5
True
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import Field
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer, normalize

from momently.events import Event
from momently.moments.spec import Duration, SpecModel

FrictionReason = Literal["sentiment", "error", "rating"]

# Valences on VADER's −4..+4 scale for distress emoji that its emoji map turns
# into words missing from (or misleading in) its lexicon. Each is pegged to a
# lexicon word for the same feeling: angry −2.3, furious −2.7, rage −2.6,
# disgust −2.9, gross −2.1, heartbroken −3.3, sad −2.1, sick −2.3, annoyed −1.6.
EMOJI_VALENCE: Final[Mapping[str, float]] = {
    "😡": -2.5,  # pouting face: 0 (angry)
    "😾": -2.3,  # pouting cat face: 0
    "🤬": -3.0,  # face with symbols on mouth (cursing): 0 (rage)
    "😤": -1.8,  # face with steam from nose: 0 (frustrated, sometimes triumph)
    "😩": -2.0,  # weary face: −0.27 from "weary", too mild to read as distress
    "🤮": -2.5,  # face vomiting: 0 (disgust)
    "🤢": -2.1,  # nauseated face: 0 (gross)
    "💔": -2.8,  # broken heart: +0.27, "heart" outweighs "broken" (heartbroken)
    "👎": -1.8,  # thumbs down: 0
    "😔": -1.5,  # pensive face: +0.08, "pensive" is positive in the lexicon
    "😥": -1.0,  # sad but relieved face: +0.33, the "but" weights "relieved"
    "😣": -1.5,  # persevering face: 0
    "😖": -1.8,  # confounded face: 0
    "😒": -1.5,  # unamused face: 0 (annoyed)
    "🙄": -1.3,  # face with rolling eyes: 0
    "🤦": -1.5,  # person facepalming: 0
    "🖕": -2.5,  # middle finger: 0
    "💩": -1.2,  # pile of poo: 0 (often playful, so mild)
    "🤒": -1.8,  # face with thermometer: 0 (sick)
    "🤕": -1.8,  # face with head-bandage: 0
    "🤧": -1.2,  # sneezing face: 0
}
CHUNK_WORDS: Final = 30
# Neutral and upper-case (so VADER's all-caps emphasis rule sees no change);
# three of them, because VADER's rules look at most three words back.
_BARRIER: Final = " Ⅹ Ⅹ Ⅹ "
_SENTENCE_ENDS: Final = (".", "!", "?", "…")
_CLOSERS: Final = "\"')]*»”’"
# Presentation selectors and joiners glue emoji into sequences; VADER reads
# emoji one code point at a time, so they only get in the way.
_INVISIBLE: Final = "\ufe0e\ufe0f\u200d"
_ALPHA: Final = 15  # the default of vaderSentiment.normalize, inverted in _valence
_MAX_COMPOUND: Final = 0.9999


class FrictionSettings(SpecModel):
    """Playbook section ``detectors.friction``."""

    enabled: bool = True
    # Compound at or below this is friction; -0.3 maximises F0.5 (precision
    # weighted over recall: a wrong "sorry" costs more than a missed one) on the
    # human-rated tweets, see benchmarks/bench_friction.py.
    threshold: float = Field(-0.3, ge=-1.0, le=1.0)
    text_events: tuple[str, ...] = ("Social Post", "Support Message", "Review Posted")
    error_events: tuple[str, ...] = (
        "Payment Failed",
        "Checkout Failed",
        "Application Crashed",
        "Product Out of Stock",
        "Order Cancelled",
        "Delivery Delayed",
    )
    # Any other track event carrying a truthy value under one of these keys is
    # an error the customer met; set to [] to count only the named events.
    error_properties: tuple[str, ...] = ("error", "error_code")
    low_rating: int = 2
    # Only the head of a text is read: VADER costs about 2 µs of CPU per
    # character here, and the detection budget is 1 ms per event (p99).
    max_chars: int = Field(500, ge=1)
    # A complaint is answered within hours or not at all.
    expiry: Duration = Field(default="6h", validate_default=True)


@dataclass(frozen=True, slots=True)
class Friction:
    """A moment of friction found in one event."""

    reason: FrictionReason
    score: float  # compound sentiment in [-1, 1]; -1.0 for errors
    confidence: float  # in [0, 1]
    detail: str  # the error event's name, or the cue that fired


class SentimentScorer:
    """VADER with momently's fixes; build once (it reads the lexicon files)."""

    def __init__(self) -> None:
        self._plain = SentimentIntensityAnalyzer()
        self._fixed = SentimentIntensityAnalyzer()
        for emoji, valence in EMOJI_VALENCE.items():
            # Without a map entry VADER keeps the emoji as a word of its own,
            # which the lexicon entry then scores like an emoticon.
            self._fixed.emojis.pop(emoji, None)
            self._fixed.lexicon[emoji] = valence
        # VADER reads emoji one code point at a time; spacing them out makes each
        # a word of its own. str.translate does it in C (a regex class of 3,500
        # emoji was slower than VADER itself).
        self._emoji = frozenset(e for e in (*self._fixed.emojis, *EMOJI_VALENCE) if len(e) == 1)
        self._spacing: dict[int, str | None] = {ord(e): f" {e} " for e in self._emoji}
        self._spacing.update(dict.fromkeys(map(ord, _INVISIBLE), None))
        self._emoticons = frozenset(k for k in self._fixed.lexicon if _is_emoticon(k))

    def plain_compound(self, text: str) -> float:
        """VADER's compound score, unmodified."""
        return float(self._plain.polarity_scores(text)["compound"])

    def compound(self, text: str) -> float:
        """Momently's compound score in [-1, 1]: emoji fixed, sentences scored apart."""
        compounds = [
            float(self._fixed.polarity_scores(_BARRIER.join(chunk))["compound"])
            for chunk in _chunks(self._segments(text))
        ]
        if len(compounds) <= 1:
            return compounds[0] if compounds else 0.0
        return round(float(normalize(sum(map(_valence, compounds)))), 4)

    def _segments(self, text: str) -> Iterator[list[str]]:
        """Sentences, emoticons and emoji of the text, each as a list of words."""
        text = text.translate(self._spacing)
        for line in text.splitlines():
            sentence: list[str] = []
            for word in line.split():
                if self._is_affect(word):
                    # An emoticon or emoji voices the writer's own feeling: no
                    # word before it negates it, and it ends what came before.
                    if sentence:
                        yield sentence
                        sentence = []
                    yield [word]
                    continue
                sentence.append(word)
                if word.rstrip(_CLOSERS).endswith(_SENTENCE_ENDS):
                    yield sentence
                    sentence = []
            if sentence:
                yield sentence

    def _is_affect(self, word: str) -> bool:
        if word in self._emoji:
            return True
        # The token as VADER's tokenizer keeps it: stripped of punctuation
        # unless that leaves two characters or fewer.
        stripped = word.strip(string.punctuation)
        key = word if len(stripped) <= 2 else stripped
        return key.lower() in self._emoticons


def assess_event(
    scorer: SentimentScorer, settings: FrictionSettings, event: Event
) -> Friction | None:
    """The friction in one event, or ``None``.

    Named error events come first, then a low review rating, then the text's
    sentiment; any other track event carrying an error property is an error.
    """
    if not settings.enabled or event.type != "track" or not event.event:
        return None
    name = event.event
    properties = event.properties
    if name in settings.error_events:
        # Certain that the error happened; not that the customer noticed it.
        return Friction("error", -1.0, 0.9, name)
    if name in settings.text_events:
        return _assess_text(scorer, settings, properties)
    for key in settings.error_properties:
        if _truthy(properties.get(key)):
            # A generic error flag says less than a named failure event does.
            return Friction("error", -1.0, 0.7, name)
    return None


def _assess_text(
    scorer: SentimentScorer, settings: FrictionSettings, properties: Mapping[str, Any]
) -> Friction | None:
    text = properties.get("text")
    score = scorer.compound(_capped(text, settings.max_chars)) if isinstance(text, str) else 0.0
    rating = _number(properties.get("rating"))
    if rating is not None and rating <= settings.low_rating:
        # One star reads as more certain than a rating right at the threshold.
        span = max(settings.low_rating - 1, 1)
        confidence = 0.8 + 0.15 * min(max((settings.low_rating - rating) / span, 0.0), 1.0)
        return Friction("rating", score, round(confidence, 4), f"rating {rating:g}")
    if score <= settings.threshold:
        # From 0.5 at the threshold to 1.0 at -1: how far past the line it is.
        room = 1.0 + settings.threshold
        depth = (settings.threshold - score) / room if room > 0 else 1.0
        return Friction("sentiment", score, round(0.5 + 0.5 * depth, 4), "negative sentiment")
    return None


def _chunks(segments: Iterator[list[str]]) -> Iterator[list[str]]:
    """Segments packed into chunks of at most CHUNK_WORDS words (long ones split)."""
    chunk: list[str] = []
    words = 0
    for segment in segments:
        for start in range(0, len(segment), CHUNK_WORDS):
            piece = segment[start : start + CHUNK_WORDS]
            if chunk and words + len(piece) > CHUNK_WORDS:
                yield chunk
                chunk, words = [], 0
            chunk.append(" ".join(piece))
            words += len(piece)
    if chunk:
        yield chunk


def _valence(compound: float) -> float:
    """The summed valence VADER normalised into this compound (its inverse)."""
    c = min(max(compound, -_MAX_COMPOUND), _MAX_COMPOUND)
    return c * math.sqrt(_ALPHA / (1.0 - c * c))


def _capped(text: str, max_chars: int) -> str:
    """The first max_chars characters, not ending in a cut word."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    if not text[max_chars].isspace() and len(head.split(maxsplit=1)) > 1:
        head = head.rsplit(maxsplit=1)[0]
    return head


def _is_emoticon(key: str) -> bool:
    """A lexicon entry made of punctuation, such as ``:(`` or ``</3``, not ``gr8``."""
    if not any(c in string.punctuation for c in key):
        return False
    return not key.replace("-", "").replace("'", "").replace(" ", "").isalnum()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip()) and value.strip().lower() not in {"false", "0", "none", "null"}
    return bool(value)
