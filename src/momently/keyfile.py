"""A secret key given in the environment, else made once and kept in the data directory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from momently.errors import ConfigError


def kept_secret(
    environ: Mapping[str, str], data_dir: Path | None, *, env: str, file: str, broken: str
) -> bytes:
    """``environ[env]`` (at least 32 bytes), else the key in ``data_dir / file``, made once
    (mode 0600; another process making it first wins); without a data dir (memory stores)
    a fresh one. ``broken`` ends the error for a file that holds no usable key."""
    given = environ.get(env)
    if given is not None:
        if len(given.encode()) < 32:
            raise ConfigError(f"{env} must be at least 32 bytes long")
        return given.encode()
    if data_dir is None:
        return secrets.token_bytes(32)
    path = data_dir / file
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return kept_secret(environ, data_dir, env=env, file=file, broken=broken)
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
    if len(text) < 64:
        raise ConfigError(f"{path} holds no usable {broken}")
    return text.encode()
