"""Simulated messages into momently's event model, exactly as ingestion would take them.

>>> from momently.simulate.population import Population
>>> from momently.simulate.world import World
>>> world = World(Population(3, seed=1))
>>> message = next(world.events_until(world.start_ms + 86_400_000))
>>> to_event(message).message_id == message["messageId"]
True
"""

from __future__ import annotations

import msgspec

from momently.events import Event, decode_message, normalise, to_ms
from momently.simulate.types import Message

_encode = msgspec.json.Encoder().encode


def to_event(
    message: Message, *, received_ms: int | None = None, source: str = "simulator"
) -> Event:
    """Decode and normalise ``message`` as the tracking API would.

    ``received_ms`` defaults to the message's own timestamp (a simulated
    ``receivedAt``). Raises :class:`momently.errors.InvalidMessage` if momently
    would refuse it.
    """
    data = _encode(message)
    raw = decode_message(data)
    if received_ms is None:
        received_ms = to_ms(raw.timestamp) if raw.timestamp is not None else 0
    return normalise(raw, received_ms=received_ms, source=source, raw_size=len(data))
