"""momently itself on the simulator: the real engine decides, simulated customers answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from momently.cli import main
from momently.decide.records import DecisionQuery
from momently.moments.playbook import load_playbook
from momently.simulate import NoMessages, Population, compare
from momently.simulate.engine_policy import (
    DEPARTMENTS,
    EnginePolicy,
    category_of,
    with_catalogue,
    without_holdouts,
)


def test_the_harness_keeps_the_only_holdout() -> None:
    playbook = without_holdouts(load_playbook())
    assert playbook.decide.holdout == 0.0
    assert all(o.holdout == 0.0 for o in playbook.decide.offers)
    assert load_playbook().decide.holdout > 0  # the shipped playbook is not changed


def test_the_catalogue_adds_one_offer_per_department_and_maps_it_back() -> None:
    example = load_playbook()
    playbook = with_catalogue(example)
    added = playbook.decide.offers[len(example.decide.offers) :]
    assert [o.id for o in added] == [f"shop-{d}" for d in DEPARTMENTS]
    for offer, department in zip(added, DEPARTMENTS, strict=True):
        assert offer.target.categories == (department,) and offer.value > 0
        assert category_of(offer.id) == department
    assert with_catalogue(playbook) == playbook  # nothing added twice
    assert category_of("family-toaster") == "toasters" and category_of("sorry-voucher") == "*"
    assert category_of("shop-nowhere") == "*"
    # the toaster offers speak to kitchen searches only, not to every buying moment
    toasters = [o for o in example.decide.offers if o.id.endswith("-toaster")]
    assert toasters and all(o.target.categories == ("kitchen-appliances",) for o in toasters)


def test_the_engine_decides_and_the_simulated_customers_answer() -> None:
    policy = EnginePolicy()
    silent, engine = compare([NoMessages(), policy], Population(60, seed=5), days=3)
    assert silent.delivered == 0
    assert engine.requested > 0 and engine.delivered > 0, engine
    assert policy.refused == 0
    decisions = policy.stage.decided
    assert decisions >= engine.requested  # silence is decided too, and not requested
    # the simulated customers' answers came back into the engine as events
    names = {r.event.event for r in policy.store.read_log(0, 1_000_000)}
    assert names & {"Push Notification Tapped", "Email Opened", "Order Completed"}
    # and so did what a sender learns from its providers: one "Message Sent" per delivery
    sent = [r for r in policy.store.read_log(0, 1_000_000) if r.event.event == "Message Sent"]
    assert len(sent) == engine.delivered


def test_a_batch_of_events_decides_as_one_event_at_a_time_does() -> None:
    """Taking a minute of events in one go only delays sends; a batch of one is the old way."""
    people = Population(40, seed=2)
    one, batched = EnginePolicy(batch_ms=0), EnginePolicy()
    a, b = compare([one, batched], people, days=2)
    assert a.requested > 0 and b.requested > 0
    # the same moments are decided; the models may differ a little on timing only
    assert abs(a.requested - b.requested) <= max(3, a.requested // 5), (a, b)


def test_momently_simulate_prints_the_comparison_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    assert main(["simulate", "--customers", "40", "--days", "2", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    for policy in ("no-messages", "batch-and-blast", "event-triggers", "momently"):
        assert policy in out
    assert "true effect of momently" in out
    page = report.read_text()
    assert page.startswith("<!doctype html") and "<svg" in page and "momently" in page
    assert main(["simulate", "--customers", "0"]) == 2


def test_an_evening_search_is_answered_the_next_morning_not_in_quiet_hours() -> None:
    """The shipped playbook keeps an intent moment for 14 hours, so a search made after
    quiet hours begin (21:30) is answered once they end (08:00), instead of expiring."""
    policy = EnginePolicy(batch_ms=0)
    evening = datetime(2026, 3, 3, 22, 30, tzinfo=UTC)  # London is on UTC in early March
    who = {"userId": "u-1", "context": {"timezone": "Europe/London"}}
    policy.on_event(
        {**who, "type": "identify", "messageId": "m-1", "timestamp": evening.isoformat(),
         "traits": {"email": "ann@example.com", "first_name": "Ann"}}
    )  # fmt: skip
    sends = policy.on_event(
        {**who, "type": "track", "event": "Products Searched", "messageId": "m-2",
         "timestamp": (evening + timedelta(seconds=30)).isoformat(),
         "properties": {"query": "puffer jacket sale"}}
    )  # fmt: skip
    decisions = policy.stage.moments.decisions(DecisionQuery(customer_id=None, limit=10))
    intent = [d for d in decisions if d.moment_name.startswith("intent.")]
    assert intent, decisions
    decision = intent[0]
    assert decision.action == "schedule", decision.reasons
    assert decision.send_at_ms is not None
    at = datetime.fromtimestamp(decision.send_at_ms / 1000, UTC)
    assert at.date() == evening.date() + timedelta(days=1) and 8 <= at.hour < 21, at
    assert [s.send_at for s in sends] == [decision.send_at_ms]


def test_a_research_search_leaves_the_department_offer_for_the_buying_one() -> None:
    """Department offers answer buying moments only: a research search ("know") is mostly
    curiosity, and answering it spent the offer's one message a week, so the customer's
    buying search that followed found the offer capped and went unanswered."""
    policy = EnginePolicy(batch_ms=0)
    morning = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday; London is on UTC
    who = {"userId": "u-1", "context": {"timezone": "Europe/London"}}
    policy.on_event(
        {**who, "type": "identify", "messageId": "m-1", "timestamp": morning.isoformat(),
         "traits": {"email": "ann@example.com", "first_name": "Ann"}}
    )  # fmt: skip

    def search(message_id: str, after: timedelta, query: str) -> list[str]:
        sends = policy.on_event(
            {**who, "type": "track", "event": "Products Searched", "messageId": message_id,
             "timestamp": (morning + after).isoformat(), "properties": {"query": query}}
        )  # fmt: skip
        return [s.offer_id for s in sends]

    assert search("m-2", timedelta(seconds=30), "best puffer jacket for winter") == []
    decisions = policy.stage.moments.decisions(DecisionQuery(customer_id=None, limit=10))
    know = [d for d in decisions if d.moment_name == "intent.know"]
    assert know and know[0].action == "silent", know
    assert "offers are not for know moments" in " ".join(know[0].reasons), know[0].reasons
    assert search("m-3", timedelta(hours=2), "puffer jacket sale") == ["shop-fashion"]
