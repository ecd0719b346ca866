"""Delivery in the running engine: decisions into the outbox, out through the playbook's
providers, and what became of each send back into the log.

::

    stage commit ──on_decisions──► compose ──► outbox (SQLite) ──worker thread──► provider
         │                                        │
         └── cancelled (bought, opted out) ──►  cancel         sent / dead ──► Message Sent /
                                                                               Message Failed
                                                                               ──► writer (the log)

The stage calls :meth:`Delivery.on_decisions` after its commit, so a crash in
between leaves decisions the outbox never heard of: :meth:`Delivery.reconcile`
runs at start and submits the recent ones it lacks (the idempotency key makes
a second submit a no-op). Feedback (tracking hits, delivery outcomes) enters
through :class:`Ingest`, the same validation, dedupe and log as the tracking
API, so it reaches the moment stage like any event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from momently.clock import Clock
from momently.decide.records import Decision, DecisionQuery
from momently.decide.spec import DecideSpec, ProviderSpec
from momently.deliver.channels.inapp import InAppChannel, InAppHub
from momently.deliver.compose import Composer
from momently.deliver.compose import submit as submit_decision
from momently.deliver.message import idempotency_key
from momently.deliver.outbox import Outbox
from momently.deliver.policy import RateLimit
from momently.deliver.records import Entry
from momently.deliver.templates import Renderer
from momently.deliver.tracking import TrackingLinks
from momently.deliver.types import Channel, OutboxStore
from momently.deliver.worker import OutboxWorker
from momently.engine import IngestResult
from momently.errors import ConfigError
from momently.events import decode_message, from_ms, normalise
from momently.keyfile import kept_secret
from momently.metrics import Metrics
from momently.moments.model import Moment
from momently.moments.records import MomentQuery
from momently.runtime.stage import Decided
from momently.runtime.writer import Writer
from momently.types import MomentStore, Store

log = logging.getLogger(__name__)

RECONCILE_MS: Final = 48 * 3_600_000
SENDS: Final = ("send", "schedule")
SECRET_ENV: Final = "MOMENTLY_TRACKING_SECRET"  # noqa: S105 - the name of a variable
SECRET_FILE: Final = "tracking.secret"  # noqa: S105 - a file name


# -- configuration ------------------------------------------------------------------------


@dataclass
class Routes:
    """Per channel its providers in failover order, their rate limits, and the channels
    where a send a crash left unknown is dropped rather than resent."""

    routes: dict[str, list[Channel]] = field(default_factory=dict)
    limits: dict[str, RateLimit] = field(default_factory=dict)
    at_most_once: set[str] = field(default_factory=set)

    def close(self) -> None:
        for providers in self.routes.values():
            for provider in providers:
                provider.close()


def _secret(environ: Mapping[str, str], channel: str, name: str, variable: str) -> str:
    value = environ.get(variable)
    if not value:
        raise ConfigError(
            f"channel {channel}, provider {name}: environment variable {variable} is not set"
        )
    return value


def _provider(
    channel: str, name: str, spec: ProviderSpec, environ: Mapping[str, str], clock: Clock
) -> Channel:
    """One adapter; each adapter module (and its driver) is imported only when used."""
    found = {key: _secret(environ, channel, name, var) for key, var in spec.secrets().items()}
    if spec.type == "smtp":
        from momently.deliver.channels.smtp import SmtpChannel, SmtpSettings

        return SmtpChannel(
            SmtpSettings(
                host=spec.host, from_addr=spec.from_, port=spec.port, starttls=spec.starttls,
                implicit_tls=spec.implicit_tls, username=spec.username,
                password=found.get("password"), timeout_s=spec.timeout_s, name=name,
            ),
            clock,
        )  # fmt: skip
    if spec.type == "webhook":
        from momently.deliver.channels.webhook import WebhookChannel, WebhookSettings

        return WebhookChannel(
            WebhookSettings(
                spec.url, found["secret"], name=name, timeout_s=spec.timeout_s,
                allow_private=spec.allow_private_targets,
            ),
            clock,
        )  # fmt: skip
    if spec.type == "sms":
        from momently.deliver.channels.sms import SmsChannel, SmsSettings

        return SmsChannel(
            SmsSettings(
                account_sid=spec.account_sid, auth_token=found["auth_token"],
                from_number=spec.from_, messaging_service_sid=spec.messaging_service_sid,
                base_url=spec.base_url, name=name, timeout_s=spec.timeout_s,
                allow_private=spec.allow_private_targets,
            ),
            clock,
        )  # fmt: skip
    from momently.deliver.channels.webpush import WebPushChannel, WebPushSettings

    return WebPushChannel(
        WebPushSettings(
            vapid_private_key=found["vapid_private_key"], subject=spec.subject,
            ttl_s=spec.ttl_s, allowed_hosts=spec.allowed_hosts, name=name,
            allow_private=spec.allow_private_targets,
        ),
        clock,
    )  # fmt: skip


def build_routes(
    spec: DecideSpec, environ: Mapping[str, str], clock: Clock, hub: InAppHub
) -> Routes:
    """The outbox's routes from the playbook's channels; ConfigError names what is missing.

    ``in_app`` channels send through the in-process hub. A channel with no provider
    gets no route: its sends are recorded dead with the reason, not silently dropped.
    """
    out = Routes()
    try:
        for channel in spec.channels:
            if channel.kind == "in_app":
                out.routes[channel.name] = [InAppChannel(hub, clock, name=f"{channel.name}.hub")]
                continue
            providers: list[Channel] = []
            for name, provider in channel.named_providers():
                try:
                    providers.append(_provider(channel.name, name, provider, environ, clock))
                except ValueError as exc:  # the adapter refused a setting (a bad secret)
                    raise ConfigError(f"channel {channel.name}, provider {name}: {exc}") from exc
                if provider.rate is not None:
                    out.limits[name] = RateLimit(provider.rate.per_second, provider.rate.burst)
                if provider.type == "sms" and provider.at_most_once:
                    out.at_most_once.add(channel.name)
            if providers:
                out.routes[channel.name] = providers
    except BaseException:
        out.close()
        raise
    return out


def tracking_secret(environ: Mapping[str, str], data_dir: Path | None) -> bytes:
    """The key of tracking tokens: ``MOMENTLY_TRACKING_SECRET``, else one generated once
    and kept in ``data_dir`` (mode 0600); without a data dir (memory stores) a fresh one."""
    return kept_secret(
        environ,
        data_dir,
        env=SECRET_ENV,
        file=SECRET_FILE,
        broken="tracking secret; delete it to make a new one",
    )


# -- feedback into the log -------------------------------------------------------------------


class Ingest:
    """Events momently makes itself (tracking hits, delivery outcomes), put in the log the
    way the tracking API puts a client's: validated, stamped, deduped on ``messageId``."""

    def __init__(
        self, writer: Writer, store: Store, clock: Clock, metrics: Metrics | None = None
    ) -> None:
        self.writer = writer
        self.store = store
        self.clock = clock
        self.metrics = metrics

    def identity(self, customer_id: str) -> dict[str, str]:
        """The ids under which the log knows a customer, so the event resolves to them."""
        canonical = self.store.canonical(customer_id) or customer_id
        known = self.store.identities(canonical)
        for kind, name in (("user_id", "userId"), ("anonymous_id", "anonymousId")):
            for got, value in known:
                if got == kind:
                    return {name: value}
        return {}  # nothing to name them by: the event is refused, and that is logged

    def submit(self, body: dict[str, Any], *, source: str) -> Future[IngestResult]:
        """Validate and queue one Segment-shaped message; raises InvalidInput or Overloaded."""
        data = msgspec.json.encode(body)
        event = normalise(
            decode_message(data),
            received_ms=self.clock.now_ms(),
            source=source,
            raw_size=len(data),
        )
        future = self.writer.submit([event])
        if self.metrics is not None:
            future.add_done_callback(self._count)
        return future

    def now(self, body: dict[str, Any], *, source: str, timeout_s: float = 10.0) -> IngestResult:
        """Submit and wait until the event is committed to the log."""
        return self.submit(body, source=source).result(timeout_s)

    def _count(self, future: Future[IngestResult]) -> None:
        if self.metrics is not None and future.exception() is None:
            result = future.result()
            self.metrics.accepted.inc(result.accepted)
            self.metrics.duplicates.inc(result.duplicates)


def outcome_event(
    entry: Entry, now_ms: int, identity: Mapping[str, str], offer: str | None
) -> dict[str, Any] | None:
    """``Message Sent`` or ``Message Failed`` for a send that reached a final state."""
    if entry.state not in ("sent", "dead"):
        return None
    properties: dict[str, Any] = {
        "decision_id": entry.decision_id,
        "channel": entry.channel,
        "offer": offer,
        "attempts": entry.attempts,
    }
    if entry.message is not None:
        properties["kind"] = entry.message.kind
    if entry.state == "sent":
        properties.update(provider=entry.provider, provider_message_id=entry.provider_message_id)
    else:
        properties["reason"] = entry.reason
    return {
        "type": "track",
        "event": "Message Sent" if entry.state == "sent" else "Message Failed",
        # one event per send and outcome, however often the listener hears it
        "messageId": f"dlv-{entry.key}-{entry.state}",
        "timestamp": from_ms(now_ms).isoformat().replace("+00:00", "Z"),
        "properties": properties,
        "context": {"momently": {"customerId": entry.customer_id}},
        **identity,
    }


# -- the delivery side of the engine -------------------------------------------------------------


class Delivery:
    """The outbox and its worker, fed by the moment stage, reporting into the log.

    ``counts`` says what happened to decisions on their way out; nothing is skipped
    without a count and, in the outbox, a reason.
    """

    def __init__(
        self,
        spec: DecideSpec,
        outbox_store: OutboxStore,
        routes: Routes,
        *,
        store: Store,
        moments: MomentStore,
        clock: Clock,
        ingest: Ingest | None,
        links: TrackingLinks | None,
        idle_s: float = 1.0,
        reconcile_ms: int = RECONCILE_MS,
    ) -> None:
        self.spec = spec
        self.store = store
        self.moments = moments
        self.clock = clock
        self.ingest = ingest
        self.routes = routes
        self.reconcile_ms = reconcile_ms
        self.renderer = Renderer()
        self.composer = Composer(spec, self.renderer, links)
        self.outbox = Outbox(
            outbox_store,
            clock,
            routes.routes,
            limits=routes.limits,
            at_most_once=routes.at_most_once,
            listener=self._heard,
        )
        self.worker = OutboxWorker(self.outbox, idle_s=idle_s)
        self.counts: Counter[str] = Counter()
        self._behind = False  # a submit failed: reconcile before the next one
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- from the stage --------------------------------------------------------------

    def on_decisions(self, decided: Decided) -> None:
        """Submit new sends, then call off cancelled ones; never raises into the stage.

        A failure (the outbox's disk) is logged and counted, and the next call first
        reconciles, so the send is not lost for good while the process lives.
        """
        try:
            if self._behind:
                self.reconcile()
            with self.outbox.store.batch():  # one fsync for the step's sends, not one each
                for decision in decided.decisions:
                    self.submit(decision)
            for decision_id, reason in sorted(decided.cancelled.items()):
                done = self.outbox.cancel(decision_id=decision_id, reason=reason)
                self._count("cancelled", len(done))
        except Exception:
            self._behind = True
            self._count("submit_errors")
            log.exception("could not hand decisions to the outbox; will reconcile")
        else:
            self._behind = False
        self.worker.wake()

    def submit(self, decision: Decision) -> Entry | None:
        """Put one decision's send in the outbox (idempotent), or record why it cannot go."""
        if decision.action not in SENDS or decision.holdout is not None:
            return None
        if decision.status != "decided" or decision.channel is None:
            return None
        if decision.channel not in self.outbox.routes:
            self._count("unroutable")
            return self.outbox.record_failure(
                key=idempotency_key(decision.decision_id, decision.channel),
                decision_id=decision.decision_id,
                customer_id=decision.customer_id,
                channel=decision.channel,
                reason=f"no provider configured for channel {decision.channel}",
            )
        canonical = self.store.canonical(decision.customer_id) or decision.customer_id
        entry = submit_decision(
            self.outbox,
            self.composer,
            decision,
            self.store.profile(canonical),
            self._moment(decision),
        )
        if entry is not None:
            self._count("dead" if entry.state == "dead" else "submitted")
        return entry

    def _moment(self, decision: Decision) -> Moment | None:
        near = MomentQuery(
            customer_id=decision.customer_id,
            since_ms=decision.at_ms - 1,
            until_ms=decision.at_ms + 1,
            limit=200,
        )
        for query in (near, MomentQuery(customer_id=decision.customer_id, limit=1000)):
            for moment in self.moments.moments(query):
                if moment.moment_id == decision.moment_id:
                    return moment
        return None

    def reconcile(self, now_ms: int | None = None) -> int:
        """Submit the sends of recent decisions the outbox lacks; return how many.

        Decisions decided (not cancelled, not held out) to send or schedule within
        ``reconcile_ms`` of now are looked up by their idempotency key; the ones
        missing were committed by the stage but never reached the outbox.
        """
        now = self.clock.now_ms() if now_ms is None else now_ms
        made = 0
        before: tuple[int, str] | None = None
        page = 500
        while True:
            found = self.moments.decisions(
                DecisionQuery(
                    status="decided", since_ms=now - self.reconcile_ms, before=before, limit=page
                )
            )
            for decision in found:
                if decision.action not in SENDS or decision.holdout is not None:
                    continue
                key = idempotency_key(decision.decision_id, decision.channel or "")
                if self.outbox.store.get(key) is None and self.submit(decision) is not None:
                    made += 1
            if len(found) < page:
                break
            before = (found[-1].at_ms, found[-1].decision_id)
        self._count("reconciled", made)
        if made:
            log.warning("reconcile: %d decided sends were missing from the outbox", made)
            self.worker.wake()
        return made

    # -- outcomes --------------------------------------------------------------------

    def _heard(self, entry: Entry) -> None:
        """The outbox's listener: every send that reached a final state."""
        self._count(f"outcome.{entry.state}")
        if self.ingest is None or entry.state not in ("sent", "dead"):
            return
        offer = entry.message.data.get("offer") if entry.message is not None else None
        if offer is None:
            decision = self.moments.decision(entry.decision_id)
            offer = decision.offer if decision is not None else None
        try:
            body = outcome_event(
                entry, self.clock.now_ms(), self.ingest.identity(entry.customer_id), offer
            )
            if body is not None:
                future = self.ingest.submit(body, source="momently:delivery")
                future.add_done_callback(self._emitted)
        except Exception:
            self._count("emit_errors")
            log.exception("could not log the outcome of send %s", entry.key)

    def _emitted(self, future: Future[IngestResult]) -> None:
        if future.exception() is not None:
            self._count("emit_errors")
            log.error("an outcome event was not committed: %s", future.exception())

    def _count(self, what: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self.counts[what] += n

    # -- the worker thread ---------------------------------------------------------------

    def start(self) -> None:
        """Run the outbox worker in a thread with its own event loop."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=asyncio.run, args=(self.worker.run(),), name="momently-outbox", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker after its current pass (a send in flight finishes)."""
        self.worker.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.routes.close()
        self.outbox.store.close()

    def stats(self) -> dict[str, Any]:
        """The outbox by state, and what happened on the way there."""
        return {"outbox": self.outbox.store.counts(), **self.counters()}

    def count_reader(self) -> Callable[[], dict[str, int]]:
        """A reader of :attr:`counts` that does not keep this delivery, or the stores it
        reads, alive (for a worker that adds up the counts of partitions it let go)."""
        lock, counts = self._lock, self.counts

        def read() -> dict[str, int]:
            with lock:
                return dict(counts)

        return read

    def counters(self) -> dict[str, Any]:
        """This process's own counters of :meth:`stats` (``counts``, ``worker``), without
        the outbox (which distributed mode's workers share)."""
        with self._lock:
            counts = dict(self.counts)
        return {
            "counts": counts,
            "worker": {"passes": self.worker.passes, "errors": self.worker.errors},
        }


class DeliveryStats(Protocol):
    """What :class:`DeliveryCollector` reads: ``outbox`` (entries by state) and
    ``counts`` (what happened, by name), as :meth:`Delivery.stats` gives them."""

    def stats(self) -> dict[str, Any]: ...


class DeliveryCollector(Collector):
    """Prometheus: the outbox by state (read once per scrape) and the delivery counters
    (the embedded server's :class:`Delivery`, or a worker's senders and submitters)."""

    def __init__(self, delivery: DeliveryStats) -> None:
        self.delivery = delivery

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.delivery.stats()
        entries = GaugeMetricFamily(
            "momently_outbox_entries", "Outbox entries by state", labels=["state"]
        )
        for state, n in sorted(stats["outbox"].items()):
            entries.add_metric([state], n)
        yield entries
        counted = CounterMetricFamily(
            "momently_delivery", "Decisions and sends on their way out, by what happened",
            labels=["what"],
        )  # fmt: skip
        for what, n in sorted(stats["counts"].items()):
            counted.add_metric([what], n)
        yield counted
