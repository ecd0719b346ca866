"""Drive a :class:`Predictor` over a stream of events, as the moment stage does.

Events go to ``on_event`` in order; pending labels of customers who have gone
quiet are learned through ``on_time`` once the stream's event time (less a
lateness allowance) has passed them, from one heap of due times — the same
discipline as the stage's timers, without a store. Used by the models' tests
and benchmark, and to evaluate the models on a recorded log.

>>> from momently.predict.synthetic import population
>>> stream = population(5, days=3, seed=2)
>>> predictor = Predictor()
>>> states = replay(predictor, stream.events, stream.profiles)
>>> sorted(states) == sorted(stream.profiles)
True
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from momently.events import Event
from momently.predict.predictor import Predictor
from momently.predict.state import PredictState
from momently.state.profile import Profile


def replay(
    predictor: Predictor,
    events: Iterable[tuple[str, Event]],
    profiles: Mapping[str, Profile],
    states: dict[str, PredictState] | None = None,
    *,
    lateness_ms: int = 0,
    until_ms: int | None = None,
) -> dict[str, PredictState]:
    """Feed ``(customer, event)`` pairs to ``predictor``; returns every customer's state.

    With ``until_ms``, labels due by then are learned after the last event.
    """
    states = {} if states is None else states
    timers: list[tuple[int, str]] = []
    watermark = 0

    def fire(until: int) -> None:
        while timers and timers[0][0] <= until:
            due, customer = heapq.heappop(timers)
            state = states[customer]
            if predictor.next_due(state) != due:
                continue  # superseded: a later event moved this customer's timer
            predictor.on_time(customer, state, until)
            schedule(customer, state)

    def schedule(customer: str, state: PredictState) -> None:
        due = predictor.next_due(state)
        if due is not None:
            heapq.heappush(timers, (due, customer))

    for customer, event in events:
        watermark = max(watermark, event.timestamp_ms)
        fire(watermark - lateness_ms)
        state = states.get(customer)
        if state is None:
            state = states[customer] = PredictState()
        before = predictor.next_due(state)
        predictor.on_event(customer, state, event, profiles.get(customer))
        if predictor.next_due(state) != before:
            schedule(customer, state)
    if until_ms is not None:
        fire(until_ms)
    return states
