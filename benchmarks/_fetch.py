"""Public reference data for the benchmarks, fetched once with pip and cached.

The cache (``benchmarks/.cache``) is ignored by git and kept between runs, so
only the first run needs the package registry.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def pip_download(target: Path, requirement: str, extra: Sequence[str] = ()) -> Path | None:
    """``target`` (a file in its cache folder), downloaded with ``pip download --no-deps``
    on first use; None if pip cannot fetch it."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *extra,
        requirement,
        "-d",
        str(target.parent),
    ]
    print("fetching:", " ".join(command[2:]), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not target.is_file():
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
        return None
    return target
