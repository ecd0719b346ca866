"""A process that writes a send to the outbox and is killed (SIGKILL) at a chosen point.

python -m tests.deliver.crash_child DB URL SECRET NOW_MS (before-send|after-send)
"""

from __future__ import annotations

import os
import signal
import sys

from momently.clock import FakeClock
from momently.deliver.channels.webhook import WebhookChannel, WebhookSettings
from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.outbox import Outbox
from momently.deliver.store_sqlite import SqliteOutboxStore
from tests.deliver.fakes import message


class DieAfterSend:
    """Sends for real, then the process dies before the outbox can record it."""

    def __init__(self, inner: WebhookChannel) -> None:
        self.inner = inner
        self.name = inner.name
        self.dedupes = inner.dedupes

    def send(self, message: OutboundMessage) -> SendResult:
        self.inner.send(message)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.inner.close()


def main(db: str, url: str, secret: str, now_ms: str, mode: str) -> None:
    clock = FakeClock(int(now_ms))
    store = SqliteOutboxStore(db)
    hook = WebhookChannel(WebhookSettings(url=url, secret=secret, allow_private=True), clock)
    box = Outbox(store, clock, {"hook": [DieAfterSend(hook)]}, lease_ms=60_000)
    box.enqueue(message("de-crash"))
    if mode == "before-send":
        os.kill(os.getpid(), signal.SIGKILL)
    box.run_once()
    raise AssertionError("the child should have died")


if __name__ == "__main__":
    main(*sys.argv[1:])
