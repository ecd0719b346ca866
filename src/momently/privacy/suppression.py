"""Suppression: erased identities, kept only as keyed digests, refused at ingestion.

After an erasure the customer's identifiers must not be kept in the clear, yet a
client that replays old events (a mobile SDK's queue, a bulk import) must not
bring the customer back. So each identifier is kept as a keyed BLAKE2b digest of
``kind \\x00 value``: without the key (``MOMENTLY_PRIVACY_SECRET``, else a file
made once in the data directory) a digest says nothing about who it was.

>>> s = Suppression(b"k" * 32)
>>> s.add([s.digest(("email", "ann@example.com"))])
>>> s.suppressed([("email", "ann@example.com")]), s.suppressed([("email", "bob@example.com")])
(True, False)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from momently.errors import ConfigError
from momently.events import Event
from momently.identity import identity_keys
from momently.keyfile import kept_secret
from momently.state.profile import normal_email, normal_phone
from momently.types import IdentityKey

SECRET_ENV: Final = "MOMENTLY_PRIVACY_SECRET"  # noqa: S105 - the name of a variable
SECRET_FILE: Final = "privacy.secret"  # noqa: S105 - a file name


CACHE_SIZE: Final = 200_000  # identifiers whose verdict is remembered (then it starts afresh)


def _no_owner(key: IdentityKey) -> None:
    return None


def event_identities(event: Event) -> list[IdentityKey]:
    """Every identifier an event names; an alias's previousId as a userId and as an
    anonymousId, since either may be the one erased."""
    keys = identity_keys(event, _no_owner)
    if event.type == "alias" and event.previous_id is not None:
        keys.append(("user_id", event.previous_id))
    return keys


def _raw_identities(event: Event) -> list[tuple[str, Any]]:
    """The identifiers of :func:`event_identities` as the event holds them (an email not
    yet normalised): cheap to find, and the key of the verdict cache."""
    found: list[tuple[str, Any]] = []
    if event.user_id is not None:
        found.append(("user_id", event.user_id))
    if event.anonymous_id is not None:
        found.append(("anonymous_id", event.anonymous_id))
    if event.type == "alias" and event.previous_id is not None:
        found.append(("user_id", event.previous_id))
        found.append(("anonymous_id", event.previous_id))
    context = event.context
    device = context.get("device")
    if isinstance(device, dict) and device.get("id") not in (None, ""):
        found.append(("device_id", str(device["id"])))
    own = event.traits if event.type != "group" else {}
    shared = context.get("traits")
    for kind in ("email", "phone"):
        if kind in own:
            found.append((kind, own[kind]))
        elif isinstance(shared, dict) and kind in shared:
            found.append((kind, shared[kind]))
    return found


def _normal(kind: str, raw: Any) -> str | None:
    if kind == "email":
        return normal_email(raw)
    if kind == "phone":
        return normal_phone(raw)
    return raw if isinstance(raw, str) else None


class Suppression:
    """The digests of erased identities, and how many events they have turned away."""

    def __init__(self, key: bytes, digests: Iterable[str] = ()) -> None:
        if len(key) < 16:
            raise ConfigError("the privacy key must be at least 16 bytes long")
        self._key = hashlib.blake2b(key, digest_size=32).digest()  # blake2b keys: <= 64 bytes
        self._digests: frozenset[str] = frozenset(digests)
        self._lock = threading.Lock()
        self._verdicts: dict[tuple[str, Any], bool] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._digests)

    def digest(self, key: IdentityKey) -> str:
        kind, value = key
        data = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()

    def add(self, digests: Iterable[str]) -> None:
        with self._lock:  # readers see the old set or the new one, never a half-built one
            self._digests = self._digests | frozenset(digests)
            self._verdicts = {}  # an identifier found innocent may be erased now

    def suppressed(self, keys: Iterable[IdentityKey]) -> bool:
        """Whether any of these identifiers was erased."""
        digests = self._digests
        return bool(digests) and any(self.digest(k) in digests for k in keys)

    def drops(self, event: Event) -> bool:
        """Whether an event names an erased identity (counted when it does).

        With nothing erased this is one truth test; otherwise a dict lookup per
        identifier the event names, a digest only for an identifier not seen lately.
        """
        digests = self._digests
        if not digests:
            return False
        verdicts = self._verdicts
        for key in _raw_identities(event):
            try:
                verdict = verdicts.get(key)
            except TypeError:  # an unhashable trait value is no email or phone
                continue
            if verdict is None:
                value = _normal(key[0], key[1])
                verdict = value is not None and self.digest((key[0], value)) in digests
                if len(verdicts) >= CACHE_SIZE:
                    verdicts.clear()
                verdicts[key] = verdict
            if verdict:
                self.dropped += 1
                return True
        return False


def privacy_secret(environ: Mapping[str, str], data_dir: Path | None) -> bytes:
    """The suppression key: ``MOMENTLY_PRIVACY_SECRET``, else one made once and kept in
    ``data_dir`` (mode 0600); without a data dir (memory stores) a fresh one."""
    return kept_secret(
        environ,
        data_dir,
        env=SECRET_ENV,
        file=SECRET_FILE,
        broken="privacy key; restore it (erasures need it)",
    )
