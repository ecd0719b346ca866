"""Crashes between the outbox write, the send and its acknowledgement.

* written, not sent: sent exactly once after the restart;
* claimed, then the worker died before sending: sent once when the lease runs out;
* sent, not acknowledged: sent again with the same idempotency key, which the
  receiver dedupes (webhook-id); for SMS, which has no key, the channel can be
  declared ``at_most_once`` to drop rather than resend.

The first two and the last run for real: a child process is SIGKILLed.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from momently.clock import FakeClock
from momently.deliver.channels.webhook import WebhookChannel, WebhookSettings
from momently.deliver.message import OutboundMessage, SendResult
from momently.deliver.outbox import Outbox
from momently.deliver.store_sqlite import SqliteOutboxStore
from momently.deliver.types import Channel
from tests.deliver.conftest import START
from tests.deliver.fakes import ScriptedChannel, message
from tests.deliver.servers import Recorder

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Stands for the process dying: nothing below the send gets to run."""


class CrashAfterSend:
    def __init__(self, inner: Channel) -> None:
        self.inner, self.name, self.dedupes = inner, inner.name, inner.dedupes

    def send(self, message: OutboundMessage) -> SendResult:
        self.inner.send(message)
        raise Crash

    def close(self) -> None:
        self.inner.close()


def delivered_ids(http: Recorder) -> list[str]:
    return [r.headers["webhook-id"] for r in http.requests]


def run_child(db: Path, http: Recorder, mode: str) -> None:
    child = subprocess.run(
        [sys.executable, "-m", "tests.deliver.crash_child", str(db), http.url, SECRET,
         str(START), mode],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def restarted(db: Path, http: Recorder, clock: FakeClock) -> tuple[Outbox, WebhookChannel]:
    hook = WebhookChannel(WebhookSettings(url=http.url, secret=SECRET, allow_private=True), clock)
    return Outbox(SqliteOutboxStore(db), clock, {"hook": [hook]}, lease_ms=60_000), hook


@pytest.mark.slow
@pytest.mark.integration
def test_killed_after_write_before_send(tmp_path: Path, http: Recorder, clock: FakeClock) -> None:
    run_child(tmp_path / "outbox.db", http, "before-send")
    assert http.requests == []
    box, hook = restarted(tmp_path / "outbox.db", http, clock)
    try:
        assert box.run_once().sent == 1
        clock.advance(3_600_000)
        assert box.run_once().claimed == 0
    finally:
        hook.close()
        box.store.close()
    assert delivered_ids(http) == [message("de-crash").key]


@pytest.mark.slow
@pytest.mark.integration
def test_killed_after_send_before_ack(tmp_path: Path, http: Recorder, clock: FakeClock) -> None:
    run_child(tmp_path / "outbox.db", http, "after-send")
    assert len(http.requests) == 1
    box, hook = restarted(tmp_path / "outbox.db", http, clock)
    try:
        assert box.run_once().claimed == 0  # the dead worker's lease still holds
        clock.advance(60_000)
        tally = box.run_once()
        assert tally.sent == 1
        entry = box.store.get(message("de-crash").key)
        assert entry is not None and entry.state == "sent" and entry.claims == 2
    finally:
        hook.close()
        box.store.close()
    ids = delivered_ids(http)
    assert ids == [message("de-crash").key] * 2  # one duplicate, with the same webhook-id
    assert len(set(ids)) == 1  # ...so a receiver that dedupes on webhook-id acts once


def test_claimed_then_crashed_before_send(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "outbox.db"
    provider = ScriptedChannel()
    with SqliteOutboxStore(db) as store:
        Outbox(store, clock, {"hook": [provider]}).enqueue(message("de-1"))
        store.claim(now_ms=clock.now_ms(), lease_ms=60_000, limit=10, worker="dead")
    with SqliteOutboxStore(db) as store:
        box = Outbox(store, clock, {"hook": [provider]}, lease_ms=60_000)
        assert box.run_once().claimed == 0
        clock.advance(60_000)
        assert box.run_once().sent == 1
        clock.advance(600_000)
        assert box.run_once().claimed == 0
    assert len(provider.sent) == 1


@pytest.mark.parametrize("at_most_once", [False, True])
def test_sms_has_no_key_so_choose(tmp_path: Path, clock: FakeClock, at_most_once: bool) -> None:
    db = tmp_path / "outbox.db"
    sms = ScriptedChannel("twilio", dedupes=False)
    with SqliteOutboxStore(db) as store:
        box = Outbox(store, clock, {"sms": [CrashAfterSend(sms)]})
        box.enqueue(message("de-1", channel="sms"))
        with pytest.raises(Crash):
            box.run_once()
    clock.advance(300_000)
    with SqliteOutboxStore(db) as store:
        box = Outbox(store, clock, {"sms": [sms]}, at_most_once={"sms"} if at_most_once else ())
        box.run_once()
        entry = store.get(message("de-1", channel="sms").key)
    assert entry is not None
    if at_most_once:
        assert entry.state == "dead" and "outcome unknown" in entry.reason
        assert len(sms.sent) == 1
    else:
        assert entry.state == "sent" and len(sms.sent) == 2  # the documented duplicate
