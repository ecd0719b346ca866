"""Fuzzing at scale: the parser property tests and schemathesis, over 100,000 cases in all.

The same tests CI runs with a modest number of examples each
(``tests/test_parsers_fuzz.py``, ``tests/web/test_openapi_fuzz.py``), here with
``--scale`` times more (random seeds, no example database), each test's body
wrapped to count the cases it really ran. Printed per test: cases run, and the
outcome; then the total, the 5xx count (an HTTP test fails on the first one) and
the crash count (any exception but the documented ones fails its test).

Run ``python benchmarks/run.py fuzz [--quick]`` or ``python benchmarks/bench_fuzz.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests are the fuzzers

from hypothesis import HealthCheck, settings  # noqa: E402
from tests import test_parsers_fuzz as parsers  # noqa: E402
from tests.web import test_openapi_fuzz as openapi  # noqa: E402

# examples per test at --scale 1; about 104,000 cases in all with schemathesis
PLAN: dict[str, int] = {
    "test_body_pipeline_raises_only_invalid_input": 30_000,
    "test_junk_tokens_raise_token_error": 20_000,
    "test_tokens_verify_until_they_expire_and_any_change_breaks_them": 20_000,
    "test_templates_render_or_raise_render_error": 12_000,
    "test_a_damaged_playbook_loads_or_raises_playbook_error": 6_000,
    "test_http_bodies_never_5xx_and_refusals_write_nothing": 8_000,
    "test_tracking_routes_refuse_bad_tokens_without_writing": 4_000,
}
OPENAPI_EXAMPLES = 100  # per operation
PROGRESS = 1_000


def run_counted(test: Any, examples: int, **kwargs: Any) -> tuple[int, str]:
    """Run a Hypothesis test for ``examples`` examples; the cases run and the outcome."""
    calls = 0
    inner: Callable[..., None] = test.hypothesis.inner_test

    def counted(*args: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls % PROGRESS == 0:  # a run cut short still tells how far it got
            print(f"  ... {test.__name__}: {calls:,} cases, all passed", flush=True)
        inner(*args, **kw)

    test.hypothesis.inner_test = counted
    # the test's own settings, scaled up (a settings decorator cannot be applied twice)
    own = test._hypothesis_internal_use_settings  # noqa: SLF001
    test._hypothesis_internal_use_settings = settings(  # noqa: SLF001
        own,
        max_examples=examples,
        derandomize=False,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    try:
        test(**kwargs)
    except Exception as error:  # noqa: BLE001 - the failure is the result
        return calls, f"FAILED: {type(error).__name__}: {str(error)[:300]}"
    finally:
        test.hypothesis.inner_test = inner
        test._hypothesis_internal_use_settings = own  # noqa: SLF001
    return calls, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_fuzz", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a hundredth of the cases")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--only",
        help="run only these, with these counts: test=N,...,openapi=N (N per operation); "
        "several processes can split the plan between them",
    )
    args = parser.parse_args(argv)
    scale = args.scale / 100 if args.quick else args.scale
    plan = dict(PLAN, openapi=OPENAPI_EXAMPLES)
    if args.only:
        plan = {k: int(n) for k, _, n in (part.partition("=") for part in args.only.split(","))}
    total = failures = 0
    print(f"{'test':<66}{'cases':>9}{'s':>7}  outcome")
    with tempfile.TemporaryDirectory(prefix="momently-fuzz-") as work:
        with parsers.serving(Path(work) / "parsers") as served:
            for name, examples in plan.items():
                if name == "openapi":
                    continue
                test = getattr(parsers, name)
                kwargs = (
                    {"served": served}
                    if "served" in test.hypothesis.inner_test.__code__.co_varnames
                    else {}
                )
                started = time.perf_counter()
                calls, outcome = run_counted(test, max(1, int(examples * scale)), **kwargs)
                total += calls
                failures += outcome != "ok"
                print(f"{name:<66}{calls:>9,}{time.perf_counter() - started:>7.0f}  {outcome}",
                      flush=True)  # fmt: skip
        with parsers.serving(Path(work) / "openapi") as (app, _):
            if "openapi" not in plan:
                print(f"total: {total:,} generated cases; failed tests: {failures}")
                return 0
            started = time.perf_counter()
            calls, broken = openapi.fuzz_operations(app, max(1, int(plan["openapi"] * scale)))
            total += calls
            failures += len(broken)
            outcome = "ok" if not broken else f"FAILED: {sorted(broken)}"
            label = "schemathesis: every operation of /openapi.json"
            print(f"{label:<66}{calls:>9,}{time.perf_counter() - started:>7.0f}  {outcome}")
            for operation, why in broken.items():
                print(f"  {operation}: {why[:400]}")
    print(f"total: {total:,} generated cases; 5xx answers: 0 unless a test above failed; "
          f"failed tests: {failures}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
