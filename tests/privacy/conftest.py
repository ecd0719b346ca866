"""Privacy fixtures: the wired engine of the delivery tests (SQLite in a data dir, a fake
clock, the stage and outbox driven by hand) and a loopback HTTP recorder."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from momently.clock import FakeClock
from momently.config import Settings
from momently.moments.playbook import Playbook
from momently.web.app import create_app
from tests.conftest import ADMIN_KEY, START, WRITE_KEY
from tests.deliver.servers import Recorder, http_server
from tests.deliver.test_wiring import PUBLIC, Rig, RigFactory


@pytest.fixture
def http() -> Iterator[Recorder]:
    with http_server() as recorder:
        yield recorder


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[RigFactory]:
    """Engines on SQLite in a data dir (the same dir again is a restart); ``settings``
    are more of :class:`Settings` (``retention_days``)."""
    rigs: list[Rig] = []

    def make(
        *,
        book: Playbook | None = None,
        environ: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        **settings: Any,
    ) -> Rig:
        config = Settings(
            data_dir=data_dir or tmp_path / f"app{len(rigs)}",
            write_keys=(WRITE_KEY,),
            admin_key=ADMIN_KEY,
            synchronous="NORMAL",
            public_url=PUBLIC,
            **settings,
        )
        clock = FakeClock(START)
        app = create_app(
            config, clock=clock, playbook=book, environ=environ or {}, delivery_worker=False
        )
        client = TestClient(app)
        client.__enter__()
        app.state.privacy.close()  # no retention thread: the tests call tick() themselves
        rig = Rig(client, clock, config.data_dir, {"Authorization": f"Bearer {ADMIN_KEY}"})
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if rig.client.app is not None:
            rig.close()
