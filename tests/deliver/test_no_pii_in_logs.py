"""No personal data in logs: every record logged (at DEBUG, by momently and the libraries
under it) during an ingest → decide → deliver flow, with failures on the way, is free of
the customer's identifiers, traits, event text and IP address."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from momently.events import from_ms
from tests.conftest import START, WRITE_KEY
from tests.deliver.servers import Recorder, Reply
from tests.deliver.test_webhook import SECRET as HOOK_SECRET
from tests.deliver.test_wiring import (  # noqa: F401 - the fixture is used by name
    RigFactory,
    hook_playbook,
    only,
    rig_factory_fixture,
)
from tests.ports import free_port

pytestmark = pytest.mark.integration

USER = "user-7781-zq"
EMAIL = "dana.quillfeather@example.com"
PHONE = "+447700900123"
NAME = "Quillfeather"
IP = "203.0.113.77"
TEXT = "parcel 55X9 never came and nobody answers 😡"
SECRETS = [USER, EMAIL, "7700900123", NAME, IP, "55X9", "Marigold Lane"]


def everything_logged(records: list[logging.LogRecord]) -> str:
    """All records as a handler would write them, tracebacks included; the test's own
    HTTP client (which logs the URLs *it* asks for, on http://testserver) left out."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(
        formatter.format(record)
        for record in records
        if "http://testserver/" not in record.getMessage()
    )


def test_an_ingest_and_deliver_flow_logs_no_personal_data(
    rig_factory: RigFactory, http: Recorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    down = f"http://127.0.0.1:{free_port()}/hooks"  # the primary fails to connect
    rig = rig_factory(
        book=hook_playbook(tmp_path, down, http.url + "/hooks"),
        environ={"HOOK_SECRET": HOOK_SECRET},
    )
    # the backup provider first fails, echoing the message back (as some providers do)
    http.script = [Reply(500, f"mailbox {EMAIL} rejected for {NAME}".encode())]
    context = {"ip": IP, "device": {"id": f"{USER}-phone", "type": "ios"}}
    identify = {
        "userId": USER,
        "traits": {"email": EMAIL, "phone": PHONE, "lastName": NAME, "street": "Marigold Lane"},
        "context": context,
        "timestamp": from_ms(START - 120_000).isoformat(),
    }
    assert rig.client.post("/v1/identify", json=identify, auth=(WRITE_KEY, "")).status_code == 200
    rig.track(USER, "Application Opened", START - 60_000, context=context)
    rig.track(USER, "Support Message", START, properties={"text": TEXT}, context=context)
    # rejected input that carries personal data is refused without logging it
    bad = {"userId": USER, "event": "", "properties": {"email": EMAIL}, "context": context}
    assert rig.client.post("/v1/track", json=bad, auth=(WRITE_KEY, "")).status_code == 400
    rig.settle()
    decision = only(rig.decisions(USER))
    assert decision["action"] == "send"
    rig.send_due()  # primary down, backup answers 500: retried later
    rig.clock.advance(3_600_000)
    assert rig.send_due().sent == 1
    assert len(http.requests) == 2
    assert only(rig.deliveries(customer=USER))["state"] == "sent"

    logged = everything_logged(caplog.records)
    assert caplog.records, "the flow logged nothing at all: the capture is not working"
    for secret in SECRETS:
        assert secret not in logged, f"{secret!r} appears in the logs"
