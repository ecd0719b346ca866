"""``momently evaluate`` over a real data directory: models beside baselines, decisions' value."""

from __future__ import annotations

from pathlib import Path

import pytest

from momently.cli import main
from momently.clock import FakeClock
from momently.engine import Engine
from momently.moments.detector import MomentDetector
from momently.moments.playbook import load_playbook
from momently.predict.synthetic import population
from momently.runtime.stage import MomentStage
from momently.store.moments_sqlite import SqliteMomentStore
from momently.store.sqlite import SqliteStore


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory the engine wrote: a synthetic population's events, moments, decisions."""
    path = tmp_path_factory.mktemp("evaluate")
    stream = population(30, days=5, seed=4)
    events = [e for _, e in stream.events]
    store = SqliteStore(path / "momently.db", synchronous="OFF")
    moments = SqliteMomentStore(path / "moments.db", synchronous="OFF")
    clock = FakeClock(events[-1].timestamp_ms)
    Engine(store).ingest(events)
    stage = MomentStage(store, moments, MomentDetector(load_playbook()), clock)
    stage.catch_up()
    moments.close()
    store.close()
    return path


def test_models_are_printed_beside_their_baselines(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "models (prequential" in out
    assert "propensity" in out and "baseline" in out
    assert "rocAuc" in out or "logLoss" in out or "hitAt" in out
    assert "decisions:" in out


def test_a_candidate_policy_is_evaluated(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("levers: {cart-reminder: 2.0}\nexploration: 0.1\n")
    assert main(["evaluate", "--data-dir", str(data_dir), "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "decisions:" in out


def test_bad_arguments_get_a_clear_error(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("levers: {x: not-a-number}\n")
    assert main(["evaluate", "--data-dir", str(data_dir), "--policy", str(bad)]) == 2
    assert "levers" in capsys.readouterr().err
