"""Settings: built once at start-up from flags and the environment, then frozen.

The environment is read here and nowhere else (``MOMENTLY_*`` variables).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything ``momently serve`` can be told; flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="MOMENTLY_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    write_keys: Annotated[tuple[str, ...], NoDecode] = ()
    admin_key: str | None = None
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="browser origins allowed to call the API (CORS), e.g. https://shop.example"
    )
    rate_limit: float | None = Field(
        None, gt=0, description="requests per second per key, for keys without a limit of their own"
    )
    store: str | None = Field(None, description="store URL; default sqlite in data_dir")
    synchronous: str = Field("FULL", pattern="^(FULL|NORMAL|OFF)$")
    max_pending_events: int = Field(100_000, ge=1)
    playbook: Path | None = Field(None, description="playbook file; default: the example")
    moment_store: str | None = Field(None, description="moment store URL; default beside the log")
    retention_days: float | None = Field(
        None, gt=0, le=36_500, description="delete raw events older than this many days"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+",
        description="the server's URL as customers reach it, for tracking links; "
        "default http://{host}:{port}",
    )

    @field_validator("write_keys", "cors_origins", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("write_keys")
    @classmethod
    def _keys_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not k or k != k.strip() for k in value):
            raise ValueError("write keys may not be blank or padded with spaces")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^\s/]+", origin):
                raise ValueError(f"a CORS origin is scheme://host[:port] or *, not {origin!r}")
        return value

    @property
    def public_base_url(self) -> str:
        """Where tracking links point: ``public_url``, or this server's own address."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def store_url(self) -> str:
        """The store's URL; the default SQLite file carries the ``synchronous`` setting."""
        if self.store:
            return self.store
        path = (self.data_dir / "momently.db").resolve()
        return f"sqlite:///{path}?synchronous={self.synchronous}"

    @property
    def _shared_store(self) -> str | None:
        """A store URL the moment store and the outbox share with the log: memory (nothing
        durable) or PostgreSQL (one database holds them all, in tables of their own)."""
        if self.store and self.store.startswith(("memory:", "postgresql:", "postgres:")):
            return self.store
        return None

    @property
    def moment_store_url(self) -> str:
        """The moment store's URL: the log's memory or PostgreSQL, else a SQLite file."""
        if self.moment_store:
            return self.moment_store
        if self._shared_store is not None:
            return self._shared_store
        path = (self.data_dir / "moments.db").resolve()
        return f"sqlite:///{path}?synchronous={self.synchronous}"

    @property
    def outbox_store_url(self) -> str:
        """The outbox's URL: the log's memory or PostgreSQL, else a SQLite file."""
        if self._shared_store is not None:
            return self._shared_store
        path = (self.data_dir / "outbox.db").resolve()
        return f"sqlite:///{path}?synchronous={self.synchronous}"
