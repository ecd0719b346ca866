"""The playbook as users meet it: the example loads, the schema is published, and a bad
playbook stops the server before it starts, naming the file, line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from momently.cli import main
from momently.moments.loader import PlaybookError
from momently.moments.playbook import load_playbook, playbook_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "playbook.schema.json"


def test_the_example_playbook_loads_with_every_detector_on() -> None:
    playbook = load_playbook()
    assert len(playbook.moments) >= 30
    assert {p.id for p in playbook.places} >= {"store-12"}
    assert {j.name for j in playbook.journeys} == {"clear-braces", "toaster"}
    detectors = playbook.detectors
    assert all(d.enabled for d in (detectors.intent, detectors.friction, detectors.place))
    assert detectors.intent.expiry == 14 * 3_600_000  # durations are milliseconds once loaded


def test_the_published_schema_file_is_current() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == playbook_schema(), (
        "docs/playbook.schema.json is stale: "
        "run `momently playbook schema > docs/playbook.schema.json`"
    )


def test_bad_playbook_names_file_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text("moments:\n  - name: x\n    kind: buy\n    cooldwn: 1h\n    when: {event: A}\n")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path)
    assert str(caught.value).startswith(f"{path}:4:")
    assert "did you mean 'cooldown'" in str(caught.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    one = "  - {name: x, kind: buy, when: {event: A}}\n"
    path.write_text("moments:\n" + one + one)
    with pytest.raises(PlaybookError, match="moment name used more than once: x"):
        load_playbook(path)


def test_serve_refuses_to_start_on_a_bad_playbook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "book.yaml"
    path.write_text("moments:\n  - name: x\n    kind: joy\n    when: {event: A}\n")
    data = tmp_path / "data"
    code = main(["serve", "--playbook", str(path), "--write-key", "k", "--data-dir", str(data)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}:3:" in err and "kind" in err
    assert not (data / "momently.db").exists()  # nothing started, nothing written


def test_playbook_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playbook", "check"]) == 0
    assert "moments" in capsys.readouterr().out
    path = tmp_path / "book.yaml"
    path.write_text("places:\n  - {id: s, circle: {lat: 91, lon: 0, radius_m: 10}}\n")
    assert main(["playbook", "check", str(path)]) == 1
    assert f"{path}:2:" in capsys.readouterr().err
