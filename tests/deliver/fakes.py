"""Test doubles for delivery: a scripted channel and message factory."""

from __future__ import annotations

from collections.abc import Iterable

from momently.deliver.errors import SendError
from momently.deliver.message import OutboundMessage, SendResult, idempotency_key


def message(decision: str = "de-1", channel: str = "hook", customer: str = "c1") -> OutboundMessage:
    return OutboundMessage(
        key=idempotency_key(decision, channel),
        decision_id=decision,
        customer_id=customer,
        channel=channel,
        kind="webhook",
        to=customer,
        text="hello",
    )


class ScriptedChannel:
    """Sends succeed unless the script says otherwise: each item is raised in turn."""

    def __init__(
        self, name: str = "p1", *, dedupes: bool = True, script: Iterable[SendError] = ()
    ) -> None:
        self.name = name
        self.dedupes = dedupes
        self.script = list(script)
        self.sent: list[OutboundMessage] = []
        self.calls = 0

    def send(self, message: OutboundMessage) -> SendResult:
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        self.sent.append(message)
        return SendResult(provider=self.name, message_id=f"{self.name}-{len(self.sent)}")

    def close(self) -> None:
        pass
