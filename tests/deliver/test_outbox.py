"""The outbox's behaviour on a fake clock: retries, dead letters, limits, failover, schedule."""

from __future__ import annotations

from momently.clock import FakeClock
from momently.deliver.errors import PermanentSendError, RetryableSendError
from momently.deliver.outbox import Outbox
from momently.deliver.policy import Health, RateLimit, RetryPolicy
from momently.deliver.records import Entry
from momently.deliver.types import OutboxStore
from tests.deliver.conftest import START, StoreFactory
from tests.deliver.fakes import ScriptedChannel, message


def outbox(
    store: OutboxStore, clock: FakeClock, *providers: ScriptedChannel, **kw: object
) -> Outbox:
    return Outbox(store, clock, {"hook": providers}, **kw)  # type: ignore[arg-type]


def test_enqueue_then_send_once(store: OutboxStore, clock: FakeClock) -> None:
    heard: list[Entry] = []
    p1 = ScriptedChannel()
    box = outbox(store, clock, p1, listener=heard.append)
    box.enqueue(message("de-1"))
    box.enqueue(message("de-1"))  # a replay: same key, nothing new
    tally = box.run_once()
    assert (tally.claimed, tally.sent) == (1, 1)
    assert len(p1.sent) == 1
    assert box.run_once().claimed == 0
    (done,) = heard
    assert done.state == "sent" and done.provider == "p1" and done.provider_message_id == "p1-1"


def test_retries_back_off_then_dead_letter(store: OutboxStore, clock: FakeClock) -> None:
    failures = [RetryableSendError("503 unavailable") for _ in range(3)]
    p1 = ScriptedChannel(script=failures)
    retry = RetryPolicy(max_attempts=3, base_ms=1_000, jitter=0.5)
    box = outbox(store, clock, p1, retry=retry, health=Health(threshold=100))
    entry = box.enqueue(message("de-1"))
    delays = []
    for attempt in (1, 2):
        assert box.run_once().retried == 1
        got = store.get(entry.key)
        assert got is not None and got.attempts == attempt and got.reason == "p1: 503 unavailable"
        delays.append(got.due_ms - clock.now_ms())
        assert delays[-1] == retry.delay_ms(entry.key, attempt)
        clock.advance(delays[-1] - 1)
        assert box.run_once().claimed == 0  # not due a millisecond early
        clock.advance(1)
    assert 500 <= delays[0] < 1_000 and 1_000 <= delays[1] < 2_000
    assert box.run_once().dead == 1
    dead = store.get(entry.key)
    assert dead is not None and dead.state == "dead"
    assert dead.reason == "gave up after 3 attempts: p1: 503 unavailable"
    assert p1.calls == 3 and p1.sent == []


def test_jitter_is_repeatable_and_spread(clock: FakeClock) -> None:
    policy = RetryPolicy()
    assert policy.delay_ms("msg_a", 3) == RetryPolicy().delay_ms("msg_a", 3)
    assert len({policy.delay_ms(f"msg_{i}", 3) for i in range(50)}) > 40
    assert RetryPolicy(cap_ms=5_000, base_ms=1_000, jitter=0).delay_ms("k", 30) == 5_000


def test_retry_after_from_the_provider_is_honoured(store: OutboxStore, clock: FakeClock) -> None:
    p1 = ScriptedChannel(script=[RetryableSendError("429", retry_after_ms=60_000)])
    box = outbox(store, clock, p1, retry=RetryPolicy(base_ms=10))
    entry = box.enqueue(message("de-1"))
    box.run_once()
    got = store.get(entry.key)
    assert got is not None and got.due_ms == START + 60_000


def test_permanent_error_is_dead_at_once(store: OutboxStore, clock: FakeClock) -> None:
    p1 = ScriptedChannel(script=[PermanentSendError("550 no such user")])
    box = outbox(store, clock, p1)
    entry = box.enqueue(message("de-1"))
    assert box.run_once().dead == 1
    got = store.get(entry.key)
    assert got is not None and (got.state, got.reason) == ("dead", "p1: 550 no such user")


def test_an_adapter_bug_is_retried_not_fatal(store: OutboxStore, clock: FakeClock) -> None:
    class Broken(ScriptedChannel):
        def send(self, message):  # type: ignore[no-untyped-def]
            raise KeyError("oops")

    box = outbox(store, clock, Broken())
    entry = box.enqueue(message("de-1"))
    assert box.run_once().retried == 1
    got = store.get(entry.key)
    assert got is not None and got.reason == "p1: KeyError: 'oops'"


def test_rate_limit_defers_without_counting_attempts(store: OutboxStore, clock: FakeClock) -> None:
    p1 = ScriptedChannel()
    box = outbox(store, clock, p1, limits={"p1": RateLimit(per_second=2, burst=2)})
    for i in range(5):
        box.enqueue(message(f"de-{i}"))
    tally = box.run_once()
    assert (tally.sent, tally.deferred) == (2, 3)
    assert all(e.attempts == 0 for e in store.entries(state="pending"))
    assert box.next_due_ms() == START + 500
    clock.advance(500)
    assert box.run_once().sent == 1
    clock.advance(1_000)
    assert box.run_once().sent == 2
    assert len(p1.sent) == 5


def test_failover_to_the_second_provider(store: OutboxStore, clock: FakeClock) -> None:
    down = [RetryableSendError("connection refused") for _ in range(10)]
    p1, p2 = ScriptedChannel("p1", script=down), ScriptedChannel("p2")
    box = outbox(store, clock, p1, p2, health=Health(threshold=2, cooldown_ms=30_000))
    for i in range(4):
        box.enqueue(message(f"de-{i}"))
    assert box.run_once().sent == 4
    assert len(p2.sent) == 4 and p1.calls == 2  # p1 skipped once it counts as failing
    clock.advance(30_000)
    p1.script.clear()  # p1 is back: after the cool-down it gets a trial send
    box.enqueue(message("de-9"))
    box.run_once()
    assert [m.decision_id for m in p1.sent] == ["de-9"]


def test_no_failover_when_the_first_may_have_sent(store: OutboxStore, clock: FakeClock) -> None:
    p1 = ScriptedChannel("p1", script=[RetryableSendError("read timeout", maybe_sent=True)])
    p2 = ScriptedChannel("p2")
    box = outbox(store, clock, p1, p2)
    entry = box.enqueue(message("de-1"))
    assert box.run_once().retried == 1
    assert p2.calls == 0
    clock.advance(60_000)
    box.run_once()
    got = store.get(entry.key)
    assert got is not None and got.provider == "p1" and len(p1.sent) == 1


def test_all_providers_failing_waits_for_the_cooldown(store: OutboxStore, clock: FakeClock) -> None:
    p1 = ScriptedChannel("p1", script=[RetryableSendError("down")] * 5)
    box = outbox(store, clock, p1, health=Health(threshold=1, cooldown_ms=10_000))
    box.enqueue(message("de-1"))
    box.run_once()
    entry = box.enqueue(message("de-2"))
    assert box.run_once().deferred == 1
    got = store.get(entry.key)
    assert got is not None and got.due_ms == START + 10_000 and got.attempts == 0


def test_scheduled_send_waits_and_survives_restart(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    p1 = ScriptedChannel()
    box = outbox(store_factory(), clock, p1)
    box.enqueue(message("de-1"), send_at_ms=START + 3_600_000)
    assert box.run_once().claimed == 0
    assert box.next_due_ms() == START + 3_600_000
    clock.advance(3_599_999)
    restarted = outbox(store_factory(), clock, p1)
    assert restarted.run_once().claimed == 0
    clock.advance(1)
    assert restarted.run_once().sent == 1


def test_cancel_by_decision_or_customer(store: OutboxStore, clock: FakeClock) -> None:
    heard: list[Entry] = []
    p1 = ScriptedChannel()
    box = outbox(store, clock, p1, listener=heard.append)
    later = START + 60_000
    box.enqueue(message("de-1", customer="c1"), send_at_ms=later)
    box.enqueue(message("de-2", customer="c1"), send_at_ms=later)
    box.enqueue(message("de-3", customer="c2"), send_at_ms=later)
    assert len(box.cancel(decision_id="de-3", reason="bought already")) == 1
    assert len(box.cancel(customer_id="c1", reason="opted out")) == 2
    clock.advance(60_000)
    assert box.run_once().claimed == 0 and p1.sent == []
    assert sorted((e.decision_id, e.reason) for e in heard) == [
        ("de-1", "opted out"),
        ("de-2", "opted out"),
        ("de-3", "bought already"),
    ]


def test_expired_moment_is_not_sent(store: OutboxStore, clock: FakeClock) -> None:
    p1 = ScriptedChannel()
    box = outbox(store, clock, p1)
    entry = box.enqueue(message("de-1"), send_at_ms=START + 1_000, expires_ms=START + 500)
    clock.advance(1_000)
    assert box.run_once().cancelled == 1
    got = store.get(entry.key)
    assert got is not None and got.reason == "expired before it could be sent" and p1.sent == []


def test_record_failure_is_dead_with_reason(store: OutboxStore, clock: FakeClock) -> None:
    heard: list[Entry] = []
    box = outbox(store, clock, ScriptedChannel(), listener=heard.append)
    entry = box.record_failure(
        key="msg_x", decision_id="de-1", customer_id="c1", channel="hook", reason="render: boom"
    )
    assert entry.state == "dead" and heard == [entry]
    box.record_failure(
        key="msg_x", decision_id="de-1", customer_id="c1", channel="hook", reason="render: boom"
    )
    assert heard == [entry]  # a replay records nothing new
    assert box.run_once().claimed == 0


def test_unknown_channel_is_dead(store: OutboxStore, clock: FakeClock) -> None:
    box = outbox(store, clock, ScriptedChannel())
    entry = box.enqueue(message("de-1", channel="carrier-pigeon"))
    box.run_once()
    got = store.get(entry.key)
    assert got is not None and got.reason == "no provider for channel carrier-pigeon"


def test_channel_workers_take_only_their_channels(store: OutboxStore, clock: FakeClock) -> None:
    hook, mail = ScriptedChannel("hook-p"), ScriptedChannel("mail-p")
    box = Outbox(store, clock, {"hook": [hook], "mail": [mail]})
    box.enqueue(message("de-1", channel="hook"))
    box.enqueue(message("de-2", channel="mail"))
    assert box.run_once(channels={"mail"}).sent == 1
    assert len(mail.sent) == 1 and hook.sent == []
