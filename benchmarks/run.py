"""Run every benchmark: ``make bench``, or ``python benchmarks/run.py [--quick]``.

Each benchmark module has a ``main(argv) -> int`` that measures, prints its
figures with the ratios against a baseline measured in the same run, and
returns non-zero only when it could not measure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ingest  # noqa: E402 - found through the path set just above

BENCHMARKS: dict[str, Callable[[list[str] | None], int]] = {
    "ingest": bench_ingest.main,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    status = 0
    for name, bench in BENCHMARKS.items():
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        status |= bench(args)
        print(f"   ({time.perf_counter() - started:.0f} s)\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
