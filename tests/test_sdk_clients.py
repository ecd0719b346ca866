"""The real client libraries against a real ``momently serve``.

``segment-analytics-python`` and ``rudder-sdk-python`` are used exactly as an
application would use them, pointed at the server: every message they send
must be stored exactly once and land in the right merged profile. The mobile
SDKs (analytics-kotlin, analytics-swift) are not Python, so their wire
behaviour is reproduced with httpx: settings fetch, then gzipped ``text/plain``
batches to ``/v1/b``, chunked, with the write key only in the body.

Every test runs twice: against the embedded ``momently serve``, and against
distributed mode (an ingest node, two workers, NATS JetStream and PostgreSQL:
``tests/distributed/e2e.py``) with the same assertions, but for one documented
difference: distributed mode partitions by ``userId``, else ``anonymousId``, and
does not move a visitor's anonymous history into their profile when they log
in (README, Distributed mode), so there a customer's history and counts hold
the events sent with their ``userId``, and a shared device's next anonymous
event stays with the anonymous id.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import rudderstack.analytics.client
import rudderstack.analytics.consumer
import segment.analytics.client
import segment.analytics.consumer

from momently.distributed.partition import partition_of
from tests.distributed.e2e import (
    MODES,
    AnyServer,
    DistributedServer,
    distributed_server,  # noqa: F401 (fixture)
    settle,
)

pytestmark = pytest.mark.integration

UPLOAD_SIZE = 10  # small batches, so the traffic below spans several of them


@pytest.fixture(params=MODES)
def server(request: pytest.FixtureRequest) -> AnyServer:
    """The embedded server, or an ingest node with two workers (distributed mode)."""
    if request.param == "embedded":
        made: AnyServer = request.getfixturevalue("server_factory")()
    else:
        made = request.getfixturevalue("distributed_server")
    return made


def split_at_login(server: AnyServer, users: list[str], anonymous: list[str]) -> bool:
    """Whether anonymous history stays apart from the user's (distributed mode).

    There the expectations hold when no anonymous id shares a partition with a user
    (in a shared one, that partition's identity resolution merges them as the embedded
    mode would): asserted, so that renaming an id cannot make them silently wrong.
    """
    if not isinstance(server, DistributedServer):
        return False
    places = {user: partition_of("u:" + user, server.partitions) for user in users}
    for anon in anonymous:
        assert partition_of("a:" + anon, server.partitions) not in places.values(), anon
    return True


# --- admin API helpers ----------------------------------------------------------------------


def admin_get(server: AnyServer, path: str, **params: str | int) -> httpx.Response:
    settle(server)  # distributed mode: once the workers have applied what was sent
    return httpx.get(server.url + path, headers=server.admin, params=params, timeout=10)


def profile_of(server: AnyServer, identifier: str) -> dict[str, Any]:
    answer = admin_get(server, f"/api/profiles/{identifier}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def events_of(server: AnyServer, customer: str) -> list[dict[str, Any]]:
    """All stored events of a customer, paging with a small limit to exercise the cursor."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"customer": customer, "limit": 7}
        if cursor is not None:
            params["cursor"] = cursor
        answer = admin_get(server, "/api/events", **params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        events.extend(page["events"])
        cursor = page["next"]
        if cursor is None:
            break
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "events are in log order"
    return events


def stored_count(server: AnyServer) -> int:
    answer = admin_get(server, "/api/stats")
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["events"]
    return count


def identities(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["kind"], i["value"]) for i in body["identities"]}


# --- the two Python client libraries --------------------------------------------------------


@dataclass
class Sdk:
    """One client library: how to build its client, and its consumer module (to observe)."""

    name: str
    client_class: Any
    consumer_module: Any
    traits_in_context: bool  # RudderStack puts identify traits in context.traits


SDKS = [
    Sdk("segment", segment.analytics.client.Client, segment.analytics.consumer, False),
    Sdk("segment-gzip", segment.analytics.client.Client, segment.analytics.consumer, False),
    Sdk("rudderstack", rudderstack.analytics.client.Client, rudderstack.analytics.consumer, True),
]


@dataclass
class Harness:
    """A client library's client pointed at the server, with its upload errors recorded."""

    client: Any
    errors: list[tuple[Exception, list[dict[str, Any]]]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)  # messages per upload, as the client sent
    sent: list[str] = field(default_factory=list)  # every messageId, in the order sent

    def send(self, method: str, **kwargs: Any) -> str:
        """Call ``client.<method>``; return the messageId the library gave the message."""
        queued, message = getattr(self.client, method)(**kwargs)
        assert queued, f"{method} was not queued"
        message_id: str = message["messageId"]
        self.sent.append(message_id)
        return message_id

    def flush(self) -> None:
        """Wait until the library has uploaded everything, stop its thread, check for errors."""
        self.client.flush()
        self.client.join()
        assert self.errors == [], f"the client failed to upload: {self.errors}"


def make_harness(
    sdk: Sdk, server: AnyServer, monkeypatch: pytest.MonkeyPatch, *, sync_mode: bool = False
) -> Harness:
    harness = Harness(client=None)

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        harness.errors.append((error, batch))

    real_post: Callable[..., Any] = sdk.consumer_module.post

    def observed_post(*args: Any, **kwargs: Any) -> Any:
        # Only watches: the library's own post does the upload, unchanged.
        harness.batches.append(len(kwargs["batch"]))
        return real_post(*args, **kwargs)

    monkeypatch.setattr(sdk.consumer_module, "post", observed_post)
    options: dict[str, Any] = {
        "host": server.url,
        "on_error": on_error,
        "sync_mode": sync_mode,
        "upload_size": UPLOAD_SIZE,
        "max_retries": 1,
        "timeout": 10,
    }
    if sdk.name == "segment-gzip":
        options["gzip"] = True
    harness.client = sdk.client_class(server.write_key, **options)
    return harness


@pytest.fixture(params=SDKS, ids=[s.name for s in SDKS])
def sdk(request: pytest.FixtureRequest) -> Sdk:
    chosen: Sdk = request.param
    return chosen


def test_every_message_stored_once_and_merged(
    sdk: Sdk, server: AnyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = make_harness(sdk, server, monkeypatch)
    p = sdk.name
    anon, anon2, anon3 = f"{p}-anon-a", f"{p}-anon-a2", f"{p}-anon-a3"
    user_u, user_v = f"{p}-user-u", f"{p}-user-v"
    email_u, email_v = f"ursula.{p}@example.com", f"victor.{p}@example.com"
    shared_device = f"{p}-shared-tablet"
    of_u: list[str] = []  # messageIds that must end up in U's history
    of_v: list[str] = []
    kinds_u: Counter[str] = Counter()
    # Distributed mode: U's history holds only what carried U's userId.
    split = split_at_login(server, [user_u, user_v], [anon, anon2, anon3])

    def u(kind: str, **kwargs: Any) -> None:
        message_id = harness.send(kind, **kwargs)
        if not split or kwargs.get("user_id") == user_u:
            of_u.append(message_id)
            kinds_u[kind] += 1

    # Anonymous browsing on the web...
    u("page", anonymous_id=anon, name="Home", properties={"path": "/"})
    for sku in range(12):
        u("track", anonymous_id=anon, event="Product Viewed", properties={"sku": f"sku-{sku}"})
    # ...then she signs up: identify joins the anonymous history to the user.
    u("identify", user_id=user_u, anonymous_id=anon, traits={"email": email_u, "name": "Ursula"})
    u("page", user_id=user_u, anonymous_id=anon, name="Account")
    # Another browser, anonymous, later joined by alias.
    for sku in range(6):
        u("track", anonymous_id=anon2, event="Product Viewed", properties={"sku": f"sku-{sku}"})
    u("alias", previous_id=anon2, user_id=user_u)
    # The family tablet: first U uses it...
    u("screen", user_id=user_u, name="Checkout", context={"device": {"id": shared_device}})
    # A group's traits describe the company, not the user.
    u(
        "group",
        user_id=user_u,
        group_id="acme",
        traits={"name": "Acme Inc", "email": "billing@acme.example", "plan": "enterprise"},
    )
    # ...then V logs in on the same tablet: a different user, never merged with U.
    of_v.append(
        harness.send(
            "identify",
            user_id=user_v,
            traits={"email": email_v, "name": "Victor"},
            context={"device": {"id": shared_device}},
        )
    )
    for n in range(3):
        of_v.append(
            harness.send(
                "track",
                user_id=user_v,
                event="Order Completed",
                properties={"order": n},
                context={"device": {"id": shared_device}},
            )
        )
    # The tablet's next anonymous event belongs to whoever used it last (in embedded
    # mode: distributed mode processes it in the anonymous id's partition).
    tablet_anonymous = harness.send(
        "track",
        anonymous_id=anon3,
        event="App Opened",
        context={"device": {"id": shared_device}},
    )
    if not split:
        of_v.append(tablet_anonymous)
    harness.flush()

    sent = harness.sent
    assert len(set(sent)) == len(sent), "the library gave every message its own id"
    assert sum(harness.batches) == len(sent), "every message went up through /v1/batch"
    assert max(harness.batches) > 1, f"multi-message batches were sent: {harness.batches}"

    # Every message is stored exactly once, in the history of the right customer.
    assert stored_count(server) == len(sent)
    history_u = events_of(server, user_u)
    history_v = events_of(server, user_v)
    assert Counter(e["messageId"] for e in history_u) == Counter(of_u)
    assert Counter(e["messageId"] for e in history_v) == Counter(of_v)
    assert [e["messageId"] for e in history_u] == of_u, "U's history is in the order sent"

    # U: one profile, whichever identifier finds it.
    profile_u = profile_of(server, user_u)
    customer_u = profile_u["customerId"]
    for identifier in (anon, anon2, email_u, customer_u):
        assert profile_of(server, identifier)["customerId"] == customer_u, identifier
    assert profile_u["userId"] == user_u
    assert profile_u["traits"]["email"] == email_u
    assert profile_u["traits"]["name"] == "Ursula"
    assert "plan" not in profile_u["traits"]
    assert profile_u["addresses"]["email"] == [email_u]
    assert profile_u["counts"] == dict(kinds_u)
    assert {
        ("user_id", user_u),
        ("anonymous_id", anon),
        ("anonymous_id", anon2),
        ("email", email_u),
    } <= identities(profile_u)
    assert admin_get(server, "/api/profiles/billing@acme.example").status_code == 404

    # V: a customer of its own, who now holds the shared tablet.
    profile_v = profile_of(server, user_v)
    customer_v = profile_v["customerId"]
    assert customer_v != customer_u
    assert customer_u not in profile_v["mergedFrom"] and customer_v not in profile_u["mergedFrom"]
    assert profile_v["userId"] == user_v
    assert profile_v["traits"]["email"] == email_v
    assert profile_v["traits"]["name"] == "Victor"
    assert profile_of(server, email_v)["customerId"] == customer_v
    assert ("device_id", shared_device) in identities(profile_v)
    if not split:
        assert profile_of(server, shared_device)["customerId"] == customer_v
        assert profile_of(server, anon3)["customerId"] == customer_v
        assert ("device_id", shared_device) not in identities(profile_u)
    else:
        # Each user's partition keeps the tablet with its user; the lookup answers with
        # the one seen last (V, unless the two used it within the same millisecond), and
        # the anonymous event after V made a profile of its own in its partition.
        assert profile_of(server, shared_device)["customerId"] in {customer_u, customer_v}
        assert profile_of(server, anon3)["customerId"] not in {customer_u, customer_v}

    # The identify events keep their traits where the admin API shows them.
    identify_v = next(e for e in history_v if e["type"] == "identify")
    assert identify_v["traits"] == {"email": email_v, "name": "Victor"}
    if sdk.traits_in_context:
        assert identify_v["context"]["traits"] == {"email": email_v, "name": "Victor"}
        assert identify_v.get("anonymousId") is None


def test_resent_message_id_is_stored_once(
    sdk: Sdk, server: AnyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = f"{sdk.name}-resender"
    # sync_mode: each call is one blocking upload that raises on any error.
    sync = make_harness(sdk, server, monkeypatch, sync_mode=True)
    first = {"user_id": user, "event": "Signed Up", "properties": {"plan": "pro"}}
    assert sync.send("track", message_id="dup-track", **first) == "dup-track"
    assert sync.send("track", message_id="dup-track", **first) == "dup-track"
    traits = {"email": f"{sdk.name}.resender@example.com"}
    sync.send("identify", user_id=user, traits=traits, message_id="dup-identify")
    sync.send("identify", user_id=user, traits=traits, message_id="dup-identify")

    # A batch that repeats a stored message beside a new one: only the new one is added.
    batched = make_harness(sdk, server, monkeypatch)
    batched.send("track", message_id="dup-track", **first)
    batched.send("track", user_id=user, event="Plan Chosen", message_id="fresh")
    batched.flush()

    history = events_of(server, user)
    assert [e["messageId"] for e in history] == ["dup-track", "dup-identify", "fresh"]
    assert history[0]["properties"] == {"plan": "pro"}
    assert stored_count(server) == 3
    assert profile_of(server, user)["counts"] == {"identify": 1, "track": 2}


# --- the mobile SDKs' wire behaviour --------------------------------------------------------


def chunks(data: bytes, size: int = 256) -> Iterator[bytes]:
    """A generator body, so httpx sends it with ``Transfer-Encoding: chunked``."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def iso(moment: datetime) -> str:
    """The timestamp format the mobile SDKs send: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mobile_message(kind: str, message_id: str, when: datetime, **fields: Any) -> dict[str, Any]:
    """A message shaped as analytics-kotlin builds it (empty userId while anonymous)."""
    return {
        "type": kind,
        "messageId": message_id,
        "anonymousId": "kotlin-anon-1",
        "userId": "",
        "timestamp": iso(when),
        "integrations": {},
        "context": {
            "library": {"name": "analytics-kotlin", "version": "1.16.0"},
            "device": {"id": "kotlin-device-1", "manufacturer": "Google", "model": "Pixel 8"},
            "os": {"name": "Android", "version": "14"},
            "app": {"name": "Shop", "version": "3.2.0", "build": "320"},
            "timezone": "Europe/Paris",
        },
        "_metadata": {"bundled": [], "unbundled": [], "bundledIds": []},
        **fields,
    }


def post_mobile_batch(
    server: AnyServer, messages: list[dict[str, Any]], sent_at: datetime, *, encoding_header: bool
) -> httpx.Response:
    envelope = {"batch": messages, "sentAt": iso(sent_at), "writeKey": server.write_key}
    body = gzip.compress(json.dumps(envelope).encode())
    headers = {"Content-Type": "text/plain", "User-Agent": "analytics-kotlin/1.16.0"}
    if encoding_header:
        headers["Content-Encoding"] = "gzip"
    answer = httpx.post(server.url + "/v1/b", content=chunks(body), headers=headers, timeout=10)
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert "authorization" not in answer.request.headers
    return answer


@pytest.mark.parametrize("encoding_header", [True, False], ids=["gzip-header", "gzip-magic"])
def test_mobile_sdk_settings_and_gzipped_batch(server: AnyServer, encoding_header: bool) -> None:
    settings = httpx.get(f"{server.url}/v1/projects/{server.write_key}/settings", timeout=10)
    assert settings.status_code == 200
    segment_io = settings.json()["integrations"]["Segment.io"]
    assert segment_io["apiHost"] == f"127.0.0.1:{server.port}/v1"
    assert segment_io["apiKey"] == server.write_key
    # The SDK then posts to https://{apiHost}/b; here the same server over plain HTTP.

    now = datetime.now(UTC)
    messages = [
        mobile_message("screen", "kt-1", now, name="Home", properties={}),
        mobile_message("track", "kt-2", now, event="Product Viewed", properties={"sku": "s1"}),
        mobile_message("track", "kt-3", now, event="Product Added", properties={"sku": "s1"}),
        mobile_message(
            "identify", "kt-4", now, userId="kotlin-user-1", traits={"email": "k@example.com"}
        ),
        mobile_message("track", "kt-5", now, userId="kotlin-user-1", event="Order Completed"),
    ]
    answer = post_mobile_batch(server, messages, now, encoding_header=encoding_header)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(messages)
    assert answer.json()["rejected"] == []

    history = events_of(server, "kotlin-device-1")
    if not split_at_login(server, ["kotlin-user-1"], ["kotlin-anon-1"]):
        assert [e["messageId"] for e in history] == ["kt-1", "kt-2", "kt-3", "kt-4", "kt-5"]
        assert history[0]["type"] == "screen" and history[0]["name"] == "Home"
    else:  # the device's user holds it: the events sent with the userId
        assert [e["messageId"] for e in history] == ["kt-4", "kt-5"]
    profile = profile_of(server, "kotlin-user-1")
    assert profile_of(server, "kotlin-anon-1")["customerId"] == profile["customerId"]
    assert profile["traits"]["email"] == "k@example.com"
    assert profile["timezone"] == "Europe/Paris"
    assert [d["id"] for d in profile["devices"]] == ["kotlin-device-1"]

    # The SDK retries a batch it is unsure of: same messageIds, stored once.
    again = post_mobile_batch(server, messages, now, encoding_header=encoding_header)
    assert again.status_code == 200, again.text
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == len(messages)
    assert stored_count(server) == len(messages)


def test_mobile_batch_timestamps_are_corrected_for_clock_skew(server: AnyServer) -> None:
    # The phone's clock is 25 years slow; the gaps it measured are still right.
    sent_at = datetime(2001, 1, 1, 0, 0, 10, tzinfo=UTC)
    messages = [
        mobile_message("track", "skew-1", sent_at - timedelta(milliseconds=4750), event="A"),
        mobile_message("track", "skew-2", sent_at - timedelta(hours=2), event="B"),
        mobile_message("track", "skew-3", sent_at, event="C"),
    ]
    before = datetime.now(UTC)
    answer = post_mobile_batch(server, messages, sent_at, encoding_header=True)
    after = datetime.now(UTC)
    assert answer.status_code == 200, answer.text

    stored = {e["messageId"]: e for e in events_of(server, "kotlin-anon-1")}
    gaps = {"skew-1": timedelta(milliseconds=4750), "skew-2": timedelta(hours=2)}
    gaps["skew-3"] = timedelta(0)
    received_at = {datetime.fromisoformat(e["receivedAt"]) for e in stored.values()}
    assert len(received_at) == 1, "one batch, one receivedAt"
    (received,) = received_at
    assert before - timedelta(milliseconds=1) <= received <= after
    for message in messages:
        event = stored[message["messageId"]]
        # timestamp = receivedAt - (sentAt - timestamp)
        assert datetime.fromisoformat(event["timestamp"]) == received - gaps[event["messageId"]]
        assert datetime.fromisoformat(event["originalTimestamp"]) == datetime.fromisoformat(
            message["timestamp"]
        )
        assert datetime.fromisoformat(event["sentAt"]) == sent_at
