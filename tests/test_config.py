from __future__ import annotations

from pathlib import Path

import pytest

from momently.config import Settings
from momently.errors import ConfigError
from momently.store import open_store
from momently.store.sqlite import SqliteStore


@pytest.mark.parametrize(("setting", "pragma"), [("FULL", 2), ("NORMAL", 1)])
def test_synchronous_setting_reaches_sqlite(tmp_path: Path, setting: str, pragma: int) -> None:
    settings = Settings(data_dir=tmp_path, synchronous=setting)
    store = open_store(settings.store_url)
    assert isinstance(store, SqliteStore)
    try:
        assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == pragma
    finally:
        store.close()


def test_write_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTLY_WRITE_KEYS", "a, b,c")
    monkeypatch.setenv("MOMENTLY_ADMIN_KEY", "adm")
    settings = Settings()
    assert settings.write_keys == ("a", "b", "c")
    assert settings.admin_key == "adm"
    assert Settings(write_keys=("x",)).write_keys == ("x",)  # flags win


def test_unknown_store_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no store backend"):
        open_store("redis://localhost")
