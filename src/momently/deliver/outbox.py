"""The outbox: every send written durably first, then sent by channel workers.

A send's life::

    enqueue ─► pending ──claim──► claimed ──send ok──► sent
                  ▲                  │ ├──permanent error / out of attempts──► dead
                  └── retry/defer ───┘ └──expired──► cancelled
    cancel(decision or customer) moves pending entries to cancelled.

The key of an entry is the send's idempotency key (decision id + channel), so
enqueueing the same decision again — a replay, a retry of the caller — is a
no-op. A worker's claim carries a lease; if the worker dies, the lease runs
out and another claim takes the entry over (``recovered``). Whether that may
duplicate a send depends on the provider: see :mod:`momently.deliver.channels`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from momently.clock import Clock
from momently.deliver.errors import PermanentSendError, SendError
from momently.deliver.message import OutboundMessage
from momently.deliver.policy import Health, RateLimit, RetryPolicy, TokenBucket
from momently.deliver.records import Entry, State
from momently.deliver.types import Channel, OutboxStore

Listener = Callable[[Entry], None]


@dataclass
class Tally:
    """What one pass of a worker did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    deferred: int = 0
    dead: int = 0
    cancelled: int = 0
    lost_claims: int = 0  # finished by another worker after our lease ran out


class Outbox:
    """Sends through ``routes``: channel name -> its providers, in failover order.

    ``at_most_once`` names channels where a send whose outcome a crash left
    unknown is dropped (dead) rather than resent when the provider cannot dedupe.
    ``listener`` hears every entry that reaches a final state.
    """

    def __init__(
        self,
        store: OutboxStore,
        clock: Clock,
        routes: Mapping[str, Sequence[Channel]],
        *,
        retry: RetryPolicy | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        health: Health | None = None,
        lease_ms: int = 300_000,
        batch: int = 20,
        worker: str = "worker",
        at_most_once: Collection[str] = (),
        listener: Listener | None = None,
    ) -> None:
        if lease_ms <= 0 or batch <= 0:
            raise ValueError("lease_ms and batch must be positive")
        self.store = store
        self.clock = clock
        self.routes = {name: tuple(providers) for name, providers in routes.items()}
        self.retry = retry or RetryPolicy()
        self.health = health or Health()
        self.buckets = {name: TokenBucket(limit, clock) for name, limit in (limits or {}).items()}
        self.lease_ms = lease_ms
        self.batch = batch
        self.worker = worker
        self.at_most_once = frozenset(at_most_once)
        self.listener = listener

    def enqueue(
        self,
        message: OutboundMessage,
        *,
        send_at_ms: int | None = None,
        expires_ms: int | None = None,
    ) -> Entry:
        """Write a send durably; due now or at ``send_at_ms``. Idempotent on the key."""
        now = self.clock.now_ms()
        due = max(now, send_at_ms) if send_at_ms is not None else now
        stored, _ = self.store.put(
            Entry(
                key=message.key,
                decision_id=message.decision_id,
                customer_id=message.customer_id,
                channel=message.channel,
                state="pending",
                due_ms=due,
                send_at_ms=due,
                expires_ms=expires_ms,
                created_ms=now,
                updated_ms=now,
                message=message,
            )
        )
        return stored

    def record_failure(
        self, *, key: str, decision_id: str, customer_id: str, channel: str, reason: str
    ) -> Entry:
        """Write a send that could not be made (a template failed) as dead, with the reason."""
        now = self.clock.now_ms()
        entry = Entry(
            key=key,
            decision_id=decision_id,
            customer_id=customer_id,
            channel=channel,
            state="dead",
            due_ms=now,
            send_at_ms=now,
            created_ms=now,
            updated_ms=now,
            reason=reason,
        )
        stored, created = self.store.put(entry)
        if created and self.listener is not None:
            self.listener(stored)
        return stored

    def cancel(
        self, *, reason: str, decision_id: str | None = None, customer_id: str | None = None
    ) -> list[Entry]:
        """Cancel the pending sends of a decision or of a customer (opted out, bought)."""
        done = self.store.cancel(
            now_ms=self.clock.now_ms(),
            reason=reason,
            decision_id=decision_id,
            customer_id=customer_id,
        )
        for entry in done:
            self._tell(entry)
        return done

    def next_due_ms(self, channels: Collection[str] | None = None) -> int | None:
        return self.store.next_due_ms(channels)

    def run_once(self, channels: Collection[str] | None = None) -> Tally:
        """Claim what is due (on ``channels``, or all), send it, record the outcomes."""
        tally = Tally()
        claimed = self.store.claim(
            now_ms=self.clock.now_ms(),
            lease_ms=self.lease_ms,
            limit=self.batch,
            worker=self.worker,
            channels=channels,
        )
        tally.claimed = len(claimed)
        for entry in claimed:
            self._process(entry, tally)
        return tally

    def _tell(self, entry: Entry) -> None:
        if self.listener is not None:
            self.listener(entry)

    def _finish(
        self, entry: Entry, tally: Tally, state: State, reason: str = "", **sent: str
    ) -> None:
        now = self.clock.now_ms()
        done = self.store.finish(
            entry.key, entry.claims, state=state, now_ms=now, reason=reason, **sent
        )
        if not done:
            tally.lost_claims += 1
            return
        setattr(tally, state, getattr(tally, state) + 1)
        if self.listener is not None:
            self.listener(self.store.get(entry.key) or entry)

    def _release(self, entry: Entry, tally: Tally, due_ms: int, attempts: int, why: str) -> None:
        now = self.clock.now_ms()
        done = self.store.release(
            entry.key, entry.claims, due_ms=due_ms, attempts=attempts, reason=why, now_ms=now
        )
        if done:
            if attempts > entry.attempts:
                tally.retried += 1
            else:
                tally.deferred += 1
        else:
            tally.lost_claims += 1

    def _process(self, entry: Entry, tally: Tally) -> None:
        now = self.clock.now_ms()
        if entry.message is None:
            return self._finish(entry, tally, "dead", "no message to send")
        if entry.expires_ms is not None and now >= entry.expires_ms:
            return self._finish(entry, tally, "cancelled", "expired before it could be sent")
        providers = self.routes.get(entry.channel, ())
        if not providers:
            return self._finish(entry, tally, "dead", f"no provider for channel {entry.channel}")
        healthy = [p for p in providers if not self.health.failing(p.name, now)]
        if not healthy:
            wake = min(self.health.open_until(p.name) for p in providers)
            return self._release(entry, tally, wake, entry.attempts, "all providers failing")
        if entry.recovered and entry.channel in self.at_most_once and not healthy[0].dedupes:
            why = "a crash left the outcome unknown and the provider cannot dedupe; not resent"
            return self._finish(entry, tally, "dead", why)
        error: SendError | None = None
        retry_after = 0
        for provider in healthy:
            wait = self.buckets[provider.name].take() if provider.name in self.buckets else 0
            if wait:
                if error is None:
                    why = f"{provider.name}: rate limited"
                    return self._release(entry, tally, now + wait, entry.attempts, why)
                break
            try:
                result = provider.send(entry.message)
            except PermanentSendError as exc:
                return self._finish(entry, tally, "dead", f"{provider.name}: {exc.reason}")
            except SendError as exc:
                error = exc
                retry_after = max(retry_after, getattr(exc, "retry_after_ms", None) or 0)
            except Exception as exc:  # an adapter bug must not kill the worker
                error = SendError(f"{type(exc).__name__}: {exc}", maybe_sent=True)
            else:
                self.health.succeeded(provider.name)
                return self._finish(
                    entry,
                    tally,
                    "sent",
                    provider=result.provider,
                    provider_message_id=result.message_id,
                )
            error.reason = f"{provider.name}: {error.reason}"
            self.health.failed(provider.name, self.clock.now_ms())
            if error.maybe_sent:
                break  # the provider may have it: fail over only when it surely did not
        assert error is not None
        attempts = entry.attempts + 1
        if attempts >= self.retry.max_attempts:
            why = f"gave up after {attempts} attempts: {error.reason}"
            return self._finish(entry, tally, "dead", why)
        due = self.clock.now_ms() + max(self.retry.delay_ms(entry.key, attempts), retry_after)
        return self._release(entry, tally, due, attempts, error.reason)
