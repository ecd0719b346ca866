"""Run the benchmarks: ``make bench``, or ``python benchmarks/run.py [--quick] [NAME ...]``.

Each benchmark module has a ``main(argv) -> int`` that measures, prints its
figures with the ratios against a baseline measured in the same run, and
returns non-zero only when it could not measure. Names pick some of them
(``ingest``, ``moments``, ``intent``, ``friction``, ``world``, ``decide``,
``ope``, ``bandit``, ``deliver``, ``moment_to_send``, ``cdnow``,
``predict``, ``simulate``, ``distributed``, ``postgres``, ``partition_reads``); none runs all.
``fuzz`` (over 100,000 generated cases) and ``soak`` (30 minutes, or
``--crash-cycles N``) are long, and run only when named.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = (
    "ingest",
    "moments",
    "intent",
    "friction",
    "world",
    "decide",
    "ope",
    "bandit",
    "deliver",
    "moment_to_send",
    "cdnow",
    "predict",
    "simulate",
    "distributed",
    "postgres",
    "partition_reads",
)
OPT_IN = ("fuzz", "soak")  # long: only when named


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    chosen = [a for a in args if a in BENCHMARKS + OPT_IN] or list(BENCHMARKS)
    flags = [a for a in args if a not in BENCHMARKS + OPT_IN]
    status = 0
    for name in chosen:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench_{name}")
        status |= module.main(flags)
        print(f"   ({time.perf_counter() - started:.0f} s)\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
