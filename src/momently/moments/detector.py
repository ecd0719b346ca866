"""All detectors together: one event (or one timer) in, a customer's moments out.

The detector is pure: it takes a customer's :class:`CustomerState`, their
profile and an event, and returns the new state and the moments found, in a
fixed order — journeys, places and routines, intent, friction, then the
playbook's definitions in playbook order. Time comes only from the event and
from the ``now_ms`` a timer is fired with, so replaying the log gives the
same moments with the same ids.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from momently.decide.step import DecideState
from momently.events import Event
from momently.moments import geo, geofence, routines
from momently.moments.friction import SentimentScorer, assess_event
from momently.moments.intent import IntentModel, event_intent
from momently.moments.journeys import JourneyProgress, JourneyState, JourneyTracker, StageChange
from momently.moments.model import Moment, MomentKind, moment_id
from momently.moments.playbook import Playbook
from momently.moments.rules import Firing, RuleSet, RulesState
from momently.moments.world import Recipient, WorldEvent
from momently.predict.state import PredictState
from momently.state.profile import Profile

MAX_INTERESTS: Final = 32
_INTEREST_EVENTS: Final = frozenset(
    {"Product Viewed", "Product Added", "Product Clicked", "Products Searched", "Checkout Started"}
)


class CustomerState(msgspec.Struct, omit_defaults=True):
    """Everything the moment stage remembers about one customer; bounded in size."""

    rules: RulesState = msgspec.field(default_factory=RulesState)
    geo: geofence.GeoState = msgspec.field(default_factory=geofence.GeoState)
    routine: routines.RoutineState = msgspec.field(default_factory=routines.RoutineState)
    journeys: JourneyState = msgspec.field(default_factory=JourneyState)
    cooldowns: dict[str, int] = {}  # detector moment key -> when it last fired
    position: tuple[float, float, int] | None = None  # lat, lon, ms
    interests: dict[str, int] = {}  # "product:ID" / "category:NAME" -> last seen ms
    topics: list[str] = []
    predict: PredictState = msgspec.field(default_factory=PredictState)  # the online models'
    decide: DecideState = msgspec.field(default_factory=DecideState)  # contacts, pending


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(CustomerState)


def encode_state(state: CustomerState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> CustomerState:
    return _state_decoder.decode(data)


@dataclass(slots=True)
class Detection:
    """What one step found: moments, journey stage changes, and moments held back."""

    moments: list[Moment] = field(default_factory=list)
    stages: list[StageChange] = field(default_factory=list)
    journeys: list[tuple[str, str]] = field(default_factory=list)  # (customer, journey) changed
    cooled: int = 0  # moments suppressed by a cooldown


def _device(event: Event) -> dict[str, Any]:
    device = event.context.get("device")
    if not isinstance(device, dict):
        return {}
    return {k: device[k] for k in ("id", "type") if isinstance(device.get(k), str)}


def _location(event: Event) -> tuple[float, float, float] | None:
    """A usable GPS fix from ``context.location``: in range, accuracy 0 when not given."""
    fix = geofence.fix_from_context(event.context)
    if fix is None:
        return None
    lat, lon, accuracy = fix
    accuracy = 0.0 if accuracy is None else accuracy
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= accuracy < 1e6):
        return None
    return lat, lon, accuracy


def _mark(progress: JourneyProgress) -> tuple[int, int, str, int]:
    """Enough of a journey's progress to tell whether an event changed it."""
    return (progress.run, progress.updated_ms, progress.stage, len(progress.path))


def _timezone(profile: Profile | None) -> str | None:
    if profile is None or profile.timezone is None:
        return None
    value = profile.timezone.value
    return value if isinstance(value, str) else None


@functools.cache
def packaged_intent_model() -> IntentModel:
    """The intent model trained on the packaged set, once per process (training is
    deterministic, and the detector only reads it)."""
    return IntentModel.trained()


@functools.cache
def sentiment_scorer() -> SentimentScorer:
    """One scorer per process: building VADER's lexicon is the slow part."""
    return SentimentScorer()


class MomentDetector:
    """The playbook's definitions and the built-in detectors, compiled once."""

    def __init__(
        self,
        playbook: Playbook,
        *,
        intent: IntentModel | None = None,
        sentiment: SentimentScorer | None = None,
    ) -> None:
        self.playbook = playbook
        settings = playbook.detectors
        self.rules = RuleSet(playbook.moments)
        self.places = geo.PlaceIndex(playbook.places, settings.place)
        self.journeys = JourneyTracker(playbook.journeys)
        self.intent = intent
        if self.intent is None and settings.intent.enabled:
            self.intent = packaged_intent_model()
        self.sentiment = sentiment
        if self.sentiment is None and settings.friction.enabled:
            self.sentiment = sentiment_scorer()

    # -- building moments ---------------------------------------------------

    def _snapshot(self, state: CustomerState, device: dict[str, Any]) -> dict[str, Any]:
        snapshot: dict[str, Any] = {}
        inside = sorted(state.geo.inside)
        if inside:
            snapshot["places"] = inside
        if device:
            snapshot["device"] = device
        stages = {
            name: progress.stage
            for name, progress in sorted(state.journeys.progress.items())
            if progress.completed_ms is None or progress.stage
        }
        if stages:
            snapshot["journeys"] = stages
        return snapshot

    def _detected(
        self,
        found: Detection,
        state: CustomerState,
        customer_id: str,
        *,
        kind: MomentKind,
        name: str,
        subject: str,
        confidence: float,
        at_ms: int,
        expires_in: int,
        trigger: str,
        device: dict[str, Any],
        details: dict[str, Any],
    ) -> None:
        """Add a built-in detector's moment unless its cooldown holds it back."""
        key = f"{name}|{subject}"
        cooldown = self.playbook.detectors.cooldown
        last = state.cooldowns.get(key)
        if last is not None and 0 <= at_ms - last < cooldown:
            found.cooled += 1
            return
        state.cooldowns = {k: t for k, t in state.cooldowns.items() if at_ms - t < cooldown}
        state.cooldowns[key] = at_ms
        found.moments.append(
            Moment(
                moment_id=moment_id(customer_id, key, trigger),
                customer_id=customer_id,
                kind=kind,
                name=name,
                confidence=round(confidence, 4),
                at_ms=at_ms,
                expires_ms=at_ms + expires_in,
                trigger=trigger,
                source=name.split(".", 1)[0],
                context=self._snapshot(state, device),
                details=details,
            )
        )

    def _fired(
        self, customer_id: str, state: CustomerState, firing: Firing, device: dict[str, Any]
    ) -> Moment:
        spec = firing.definition
        return Moment(
            moment_id=moment_id(customer_id, spec.name, firing.trigger),
            customer_id=customer_id,
            kind=spec.kind,
            name=spec.name,
            confidence=spec.confidence,
            at_ms=firing.at_ms,
            expires_ms=firing.at_ms + spec.expires_in,
            trigger=firing.trigger,
            source="playbook",
            context=self._snapshot(state, device),
            details=firing.details,
        )

    # -- events -------------------------------------------------------------

    def on_event(
        self, customer_id: str, state: CustomerState, event: Event, profile: Profile | None
    ) -> Detection:
        """Everything one event means for this customer; ``state`` is updated in place."""
        ts = event.timestamp_ms
        found = self.on_time(customer_id, state, profile, ts)
        device = _device(event)
        before = {n: _mark(p) for n, p in state.journeys.progress.items()}
        state.journeys, stages = self.journeys.on_event(state.journeys, event, profile)
        found.stages.extend(stages)
        found.journeys.extend(
            (customer_id, name)
            for name, progress in state.journeys.progress.items()
            if before.get(name) != _mark(progress)
        )
        name = event.event if event.type == "track" else event.name
        if name == "Location Updated":
            self._on_fix(found, customer_id, state, event, profile, device)
        elif name == "Beacon Sighted":
            self._on_beacon(found, customer_id, state, event, device)
        self._remember_interest(state, event)
        self._on_text(found, customer_id, state, event, device)
        state.rules, firings, cooled = self.rules.on_event(state.rules, event, profile)
        found.cooled += cooled
        found.moments.extend(self._fired(customer_id, state, f, device) for f in firings)
        return found

    def _on_fix(
        self,
        found: Detection,
        customer_id: str,
        state: CustomerState,
        event: Event,
        profile: Profile | None,
        device: dict[str, Any],
    ) -> None:
        fix = _location(event)
        if fix is None:
            return
        lat, lon, accuracy = fix
        ts = event.timestamp_ms
        if state.position is None or ts >= state.position[2]:
            state.position = (lat, lon, ts)
        settings = self.playbook.detectors
        if settings.place.enabled and len(self.places):
            state.geo, moves = geofence.on_fix(self.places, state.geo, lat, lon, accuracy, ts)
            self._place_moments(found, customer_id, state, moves, event.message_id, device)
        if settings.routine.enabled:
            state.routine, signals = routines.on_fix(
                settings.routine, state.routine, lat, lon, accuracy, ts, _timezone(profile)
            )
            self._routine_moments(found, customer_id, state, signals, event.message_id, device)

    def _on_beacon(
        self,
        found: Detection,
        customer_id: str,
        state: CustomerState,
        event: Event,
        device: dict[str, Any],
    ) -> None:
        sighting = geofence.sighting_from_properties(event.properties)
        if not self.playbook.detectors.place.enabled or sighting is None:
            return
        uuid, major, minor = sighting
        state.geo, moves = geofence.on_beacon(
            self.places, state.geo, uuid, major, minor, event.timestamp_ms
        )
        self._place_moments(found, customer_id, state, moves, event.message_id, device)

    def _place_moments(
        self,
        found: Detection,
        customer_id: str,
        state: CustomerState,
        moves: list[geofence.PlaceTransition],
        trigger: str,
        device: dict[str, Any],
    ) -> None:
        settings = self.playbook.detectors.place
        for move in moves:
            place = self.places.place(move.place_id)
            self._detected(
                found,
                state,
                customer_id,
                kind="context",
                name=f"place.{move.kind}",
                subject=move.place_id,
                confidence=0.9 if move.via == "beacon" else 0.8,
                at_ms=move.at_ms,
                expires_in=settings.expiry,
                trigger=f"{trigger}:{move.place_id}",
                device=device,
                details={"place": move.place_id, "placeKind": place.kind, "via": move.via},
            )

    def _routine_moments(
        self,
        found: Detection,
        customer_id: str,
        state: CustomerState,
        signals: list[routines.RoutineSignal],
        trigger: str,
        device: dict[str, Any],
    ) -> None:
        settings = self.playbook.detectors.routine
        for signal in signals:
            details: dict[str, Any] = {"place": signal.label}
            if signal.usual_ms is not None:
                details["usualMs"] = signal.usual_ms
            self._detected(
                found,
                state,
                customer_id,
                kind="context",
                name=f"routine.{signal.kind}",
                subject=signal.label,
                confidence=signal.confidence,
                at_ms=signal.at_ms,
                expires_in=settings.expiry,
                trigger=f"{trigger}:{signal.label}",
                device=device,
                details=details,
            )

    def _remember_interest(self, state: CustomerState, event: Event) -> None:
        name = event.event if event.type == "track" else None
        if name == "Subscribed" or name == "Unsubscribed":
            topic = event.properties.get("topic")
            if isinstance(topic, str) and topic:
                topics = [t for t in state.topics if t != topic]
                state.topics = [*topics, topic][-MAX_INTERESTS:] if name == "Subscribed" else topics
            return
        if name not in _INTEREST_EVENTS:
            return
        ts = event.timestamp_ms
        for key, value in (
            ("product", event.properties.get("product_id")),
            ("category", event.properties.get("category")),
        ):
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                state.interests[f"{key}:{value}"] = max(
                    ts, state.interests.get(f"{key}:{value}", 0)
                )
        if len(state.interests) > MAX_INTERESTS:
            keep = sorted(state.interests.items(), key=lambda kv: (kv[1], kv[0]))[-MAX_INTERESTS:]
            state.interests = dict(keep)

    def _on_text(
        self,
        found: Detection,
        customer_id: str,
        state: CustomerState,
        event: Event,
        device: dict[str, Any],
    ) -> None:
        settings = self.playbook.detectors
        ts = event.timestamp_ms
        if self.intent is not None and settings.intent.enabled:
            intent = event_intent(self.intent, event)
            if intent is not None and intent.confidence >= settings.intent.min_confidence:
                details: dict[str, Any] = {"text": intent.text[:200]}
                if intent.category is not None:
                    details["category"] = intent.category
                    state.interests[f"category:{intent.category}"] = ts
                self._detected(
                    found,
                    state,
                    customer_id,
                    kind=intent.kind,  # type: ignore[arg-type]
                    name=f"intent.{intent.kind}",
                    subject=intent.category or "",
                    confidence=intent.confidence,
                    at_ms=ts,
                    expires_in=settings.intent.expiry,
                    trigger=event.message_id,
                    device=device,
                    details=details,
                )
        if self.sentiment is not None and settings.friction.enabled:
            friction = assess_event(self.sentiment, settings.friction, event)
            if friction is not None:
                self._detected(
                    found,
                    state,
                    customer_id,
                    kind="friction",
                    name=f"friction.{friction.reason}",
                    subject=friction.detail,
                    confidence=friction.confidence,
                    at_ms=ts,
                    expires_in=settings.friction.expiry,
                    trigger=event.message_id,
                    device=device,
                    details={"score": round(friction.score, 4), "cue": friction.detail},
                )

    # -- timers -------------------------------------------------------------

    def next_due(self, state: CustomerState, profile: Profile | None, now_ms: int) -> int | None:
        """When this customer's next timer (absence, dwell, beacon exit, routine) is due."""
        settings = self.playbook.detectors
        candidates = [self.rules.next_due(state.rules)]
        if settings.place.enabled:
            candidates.append(geofence.next_due_ms(self.places, state.geo))
        if settings.routine.enabled:
            candidates.append(
                routines.next_due_ms(settings.routine, state.routine, now_ms, _timezone(profile))
            )
        due = [c for c in candidates if c is not None]
        return min(due) if due else None

    def on_time(
        self, customer_id: str, state: CustomerState, profile: Profile | None, now_ms: int
    ) -> Detection:
        """Fire what time has made due by ``now_ms``; ``state`` is updated in place."""
        found = Detection()
        settings = self.playbook.detectors
        trigger = "timer"
        if settings.place.enabled:
            state.geo, moves = geofence.on_time(self.places, state.geo, now_ms)
            for move in moves:
                self._place_moments(found, customer_id, state, [move], f"timer:{move.at_ms}", {})
        if settings.routine.enabled:
            state.routine, signals = routines.on_time(
                settings.routine, state.routine, now_ms, _timezone(profile)
            )
            for signal in signals:
                self._routine_moments(
                    found, customer_id, state, [signal], f"{trigger}:{signal.at_ms}", {}
                )
        state.rules, firings, cooled = self.rules.on_time(state.rules, now_ms)
        found.cooled += cooled
        found.moments.extend(self._fired(customer_id, state, f, {}) for f in firings)
        return found

    def place_center(self, place_id: str) -> tuple[float, float] | None:
        """Where a world event "near" a playbook place is centred; None for beacon-only places."""
        place = self.places.get(place_id)
        if place is None or not place.has_area:
            return None
        if place.circle is not None:
            return place.circle.lat, place.circle.lon
        min_lat, min_lon, max_lat, max_lon = place.bbox()
        return (min_lat + max_lat) / 2, (min_lon + max_lon) / 2

    # -- world events -------------------------------------------------------

    def world_moments(
        self, event: WorldEvent, recipients: list[Recipient], at_ms: int
    ) -> list[Moment]:
        """One context moment per customer a world event reaches."""
        expires = at_ms + event.expires_in
        return [
            Moment(
                moment_id=moment_id(r.customer_id, f"world.{event.name}", f"world:{event.id}"),
                customer_id=r.customer_id,
                kind="context",
                name=f"world.{event.name}",
                confidence=1.0,
                at_ms=at_ms,
                expires_ms=expires,
                trigger=f"world:{event.id}",
                source="world",
                details={"worldEvent": event.id, "reasons": list(r.reasons), **event.properties},
            )
            for r in recipients
        ]
