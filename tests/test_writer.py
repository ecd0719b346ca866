"""The group-commit writer when the store fails to commit."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from momently.engine import Engine
from momently.errors import Unavailable
from momently.events import Event, decode_message, normalise
from momently.runtime.writer import Writer
from momently.store.memory import MemoryStore
from momently.types import Changes
from tests.conftest import WRITE_KEY, App


def event(message_id: str) -> Event:
    data = f'{{"type":"track","userId":"u-{message_id}","event":"e","messageId":"{message_id}"}}'
    return normalise(decode_message(data.encode()), received_ms=0, source="s", raw_size=len(data))


class FailingDisk(MemoryStore):
    """A memory store whose commit fails (like a full disk) when it holds a poisoned id,
    and whose first commit waits until released, so later submissions queue up."""

    def __init__(self, poisoned: str) -> None:
        super().__init__()
        self.poisoned = poisoned
        self.first_commit_started = threading.Event()
        self.release_first_commit = threading.Event()
        self.commits: list[list[str]] = []

    def commit(self, records: Sequence[tuple[str, Event]], changes: Changes) -> list[int]:
        ids = [e.message_id for _, e in records]
        if not self.first_commit_started.is_set():
            self.first_commit_started.set()
            assert self.release_first_commit.wait(timeout=30)
        self.commits.append(ids)
        if self.poisoned in ids:
            raise OSError("disk full")
        return super().commit(records, changes)


def test_a_failed_commit_fails_only_its_own_submission() -> None:
    store = FailingDisk(poisoned="bad")
    writer = Writer(Engine(store))
    try:
        first = writer.submit([event("a")])
        assert store.first_commit_started.wait(timeout=30)
        good = writer.submit([event("b"), event("c")])
        bad = writer.submit([event("bad")])
        store.release_first_commit.set()
        assert first.result(timeout=30).accepted == 1
        assert good.result(timeout=30).accepted == 2
        with pytest.raises(Unavailable):
            bad.result(timeout=30)
    finally:
        writer.close()
    # grouped first, then each submission on its own after the group failed
    assert store.commits == [["a"], ["b", "c", "bad"], ["b", "c"], ["bad"]]
    assert store.known_messages(["a", "b", "c", "bad"]) == {"a", "b", "c"}
    assert writer.pending == 0


def test_a_failed_commit_answers_503_with_retry_after(app: App) -> None:
    engine = app.client.app.state.writer.engine  # type: ignore[attr-defined]

    def broken(groups: object) -> object:
        raise OSError("disk full")

    engine.ingest_groups = broken
    answer = app.client.post("/v1/track", auth=(WRITE_KEY, ""), json={"userId": "u1", "event": "e"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"] == "Unavailable"
    assert app.event_count() == 0


def test_busy_while_events_wait_and_just_after_a_commit() -> None:
    """The moment stage gives way while ``busy()``: events queued, or a commit ended less
    than ``quiet_seconds`` ago (on the writer's injected clock)."""
    now = [100.0]
    store = FailingDisk(poisoned="never")
    writer = Writer(Engine(store), quiet_seconds=0.5, monotonic=lambda: now[0])
    try:
        assert not writer.busy()  # nothing committed yet
        first = writer.submit([event("a")])
        assert store.first_commit_started.wait(timeout=30)
        assert writer.busy()  # queued: the commit is under way
        store.release_first_commit.set()
        assert first.result(timeout=30).accepted == 1
        assert writer.pending == 0
        assert writer.busy()  # committed at 100.0, still within 0.5 s
        now[0] = 100.49
        assert writer.busy()
        now[0] = 100.5
        assert not writer.busy()
    finally:
        writer.close()
