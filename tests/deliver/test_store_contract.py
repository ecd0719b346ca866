"""One contract, run against every outbox store."""

from __future__ import annotations

import pytest

from momently.deliver.records import Entry
from momently.deliver.types import OutboxStore
from tests.deliver.conftest import START
from tests.deliver.fakes import message


def entry(decision: str, *, due: int = START, customer: str = "c1", channel: str = "hook") -> Entry:
    msg = message(decision, channel, customer)
    return Entry(
        key=msg.key,
        decision_id=decision,
        customer_id=customer,
        channel=channel,
        state="pending",
        due_ms=due,
        send_at_ms=due,
        created_ms=START,
        updated_ms=START,
        message=msg,
    )


def test_put_is_idempotent_on_the_key(store: OutboxStore) -> None:
    first, created = store.put(entry("de-1"))
    again, created_again = store.put(entry("de-1", due=START + 999))
    assert created and not created_again and again == first
    assert again.due_ms == START
    assert store.get(first.key) == first
    assert store.counts()["pending"] == 1


def test_claim_takes_due_entries_in_due_order_once(store: OutboxStore) -> None:
    store.put(entry("de-late", due=START + 10))
    store.put(entry("de-early", due=START + 5))
    store.put(entry("de-future", due=START + 1_000))
    got = store.claim(now_ms=START + 10, lease_ms=100, limit=10, worker="w")
    assert [e.decision_id for e in got] == ["de-early", "de-late"]
    assert all(e.state == "claimed" and e.claims == 1 and not e.recovered for e in got)
    assert all(e.due_ms == START + 110 and e.worker == "w" for e in got)
    assert store.claim(now_ms=START + 10, lease_ms=100, limit=10, worker="w2") == []
    assert store.next_due_ms() == START + 110


def test_claim_respects_limit_and_channels(store: OutboxStore) -> None:
    store.put(entry("de-1", channel="a"))
    store.put(entry("de-2", channel="b"))
    store.put(entry("de-3", channel="b"))
    assert [e.channel for e in store.claim(now_ms=START, lease_ms=1, limit=5, worker="w",
                                           channels={"a"})] == ["a"]  # fmt: skip
    assert len(store.claim(now_ms=START, lease_ms=1, limit=1, worker="w", channels={"b"})) == 1
    assert store.next_due_ms({"a"}) == START + 1


def test_an_expired_lease_is_claimed_again_as_recovered(store: OutboxStore) -> None:
    store.put(entry("de-1"))
    (first,) = store.claim(now_ms=START, lease_ms=100, limit=1, worker="crashed")
    assert store.claim(now_ms=START + 99, lease_ms=100, limit=1, worker="w2") == []
    (second,) = store.claim(now_ms=START + 100, lease_ms=100, limit=1, worker="w2")
    assert second.recovered and second.claims == 2 and second.worker == "w2"
    # The crashed worker's claim is fenced off: it can no longer finish or release.
    assert not store.finish(first.key, first.claims, state="sent", now_ms=START + 101)
    assert not store.release(first.key, 1, due_ms=START, attempts=1, reason="x", now_ms=START)
    assert store.finish(second.key, 2, state="sent", now_ms=START + 101, provider="p",
                        provider_message_id="id-1")  # fmt: skip
    done = store.get(first.key)
    assert done is not None and done.state == "sent" and done.provider_message_id == "id-1"
    assert store.next_due_ms() is None


def test_release_puts_back_with_attempts_and_reason(store: OutboxStore) -> None:
    store.put(entry("de-1"))
    (got,) = store.claim(now_ms=START, lease_ms=100, limit=1, worker="w")
    assert store.release(got.key, got.claims, due_ms=START + 500, attempts=1, reason="503",
                         now_ms=START)  # fmt: skip
    back = store.get(got.key)
    assert back is not None and back.state == "pending" and back.attempts == 1
    assert back.reason == "503" and back.due_ms == START + 500
    assert store.claim(now_ms=START + 499, lease_ms=100, limit=1, worker="w") == []
    assert len(store.claim(now_ms=START + 500, lease_ms=100, limit=1, worker="w")) == 1


def test_finish_refuses_a_live_state(store: OutboxStore) -> None:
    store.put(entry("de-1"))
    (got,) = store.claim(now_ms=START, lease_ms=100, limit=1, worker="w")
    with pytest.raises(ValueError, match="final state"):
        store.finish(got.key, got.claims, state="pending", now_ms=START)


def test_cancel_by_decision_and_by_customer(store: OutboxStore) -> None:
    store.put(entry("de-1", customer="c1"))
    store.put(entry("de-2", customer="c1", due=START + 10_000))
    store.put(entry("de-3", customer="c2"))
    store.put(entry("de-4", customer="c1"))
    (inflight,) = store.claim(now_ms=START, lease_ms=100, limit=1, worker="w")
    assert inflight.decision_id == "de-1"
    cancelled = store.cancel(now_ms=START + 1, reason="opted out", customer_id="c1")
    assert sorted(e.decision_id for e in cancelled) == ["de-2", "de-4"]
    assert all(e.state == "cancelled" and e.reason == "opted out" for e in cancelled)
    # The in-flight send is its worker's to finish; once its lease runs out it is cancellable.
    assert store.cancel(now_ms=START + 100, reason="bought", decision_id="de-1")[0].state == (
        "cancelled"
    )
    assert store.cancel(now_ms=START, reason="again", decision_id="de-2") == []
    assert store.counts() == {"pending": 1, "claimed": 0, "sent": 0, "dead": 0, "cancelled": 3}
    with pytest.raises(ValueError, match="decision_id or a customer_id"):
        store.cancel(now_ms=START, reason="all")


def test_entries_filters(store: OutboxStore) -> None:
    store.put(entry("de-1", customer="c1"))
    store.put(entry("de-2", customer="c2"))
    assert [e.decision_id for e in store.entries(customer_id="c2")] == ["de-2"]
    assert [e.decision_id for e in store.entries(decision_id="de-1")] == ["de-1"]
    assert len(store.entries(state="pending")) == 2
    assert store.entries(state="sent") == []
    assert len(store.entries(limit=1)) == 1


def test_message_round_trips(store: OutboxStore) -> None:
    put = entry("de-1")
    store.put(put)
    (got,) = store.claim(now_ms=START, lease_ms=1, limit=1, worker="w")
    assert got.message == put.message


def test_claim_breaks_due_ties_by_key(store: OutboxStore) -> None:
    for decision in ("de-1", "de-2", "de-3", "de-4"):
        store.put(entry(decision))
    got = store.claim(now_ms=START, lease_ms=1, limit=4, worker="w")
    assert [e.key for e in got] == sorted(e.key for e in got)
