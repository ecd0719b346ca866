"""The ``momently`` command."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from momently import __version__
from momently.auth.cli import add_parser as add_keys_parser
from momently.auth.cli import keys_command
from momently.config import Settings
from momently.distributed.command import add_worker_parser
from momently.errors import ConfigError
from momently.moments.loader import PlaybookError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from momently.ingest.parsepool import ParsePool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momently", description=__doc__)
    parser.add_argument("--version", action="version", version=f"momently {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the engine (embedded by default)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--data-dir", help="where the embedded store lives (default ./data)")
    serve.add_argument(
        "--write-key",
        action="append",
        dest="write_keys",
        help="a write key the tracking API accepts (repeatable; or MOMENTLY_WRITE_KEYS)",
    )
    serve.add_argument("--admin-key", help="bearer key of the admin API (or MOMENTLY_ADMIN_KEY)")
    serve.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        help="a browser origin allowed to call the API (repeatable; or MOMENTLY_CORS_ORIGINS)",
    )
    serve.add_argument(
        "--rate-limit",
        type=float,
        help="requests per second per key without its own limit (or MOMENTLY_RATE_LIMIT)",
    )
    serve.add_argument("--store", help="store URL, e.g. sqlite:///var/momently.db")
    serve.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        help="SQLite durability: FULL survives power loss, NORMAL only a crash (default FULL)",
    )
    serve.add_argument("--playbook", help="playbook YAML file (default: the example playbook)")
    serve.add_argument("--public-url", help="this server's address as links in messages use it")
    serve.add_argument(
        "--log",
        help="distributed mode: append to this NATS JetStream log (nats://host:port) instead"
        " of running the engine here; workers (momently worker) process it",
    )
    serve.add_argument(
        "--retention-days", type=float, help="delete raw events older than this (default: keep)"
    )
    demo = commands.add_parser(
        "demo", help="the engine with a simulated population in accelerated time, and the dashboard"
    )
    demo.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port to listen on (default 8000)")
    demo.add_argument("--data-dir", default="demo-data", help="an empty directory, or --fresh")
    demo.add_argument("--admin-key", help="bearer key of the admin API (default demo-admin-key)")
    demo.add_argument("--customers", type=int, default=2_000, help="simulated customers")
    demo.add_argument(
        "--speed", type=float, default=600.0, help="simulated seconds per real second"
    )
    demo.add_argument("--seed", type=int, default=1, help="the simulation's seed")
    demo.add_argument("--fresh", action="store_true", help="empty the data directory first")
    playbook = commands.add_parser("playbook", help="check a playbook or print its JSON Schema")
    playbook_commands = playbook.add_subparsers(dest="playbook_command", required=True)
    check = playbook_commands.add_parser("check", help="load a playbook and report its problems")
    check.add_argument("file", nargs="?", help="playbook YAML file (default: the example)")
    playbook_commands.add_parser("schema", help="print the playbook's JSON Schema")
    simulate = commands.add_parser(
        "simulate", help="compare momently with a brand's usual policies on a simulated population"
    )
    simulate.add_argument("--customers", type=int, default=1_000, help="simulated customers")
    simulate.add_argument("--days", type=int, default=14, help="simulated days")
    simulate.add_argument("--seed", type=int, default=1, help="the population's seed")
    simulate.add_argument("--holdout", type=float, default=0.1, help="global holdout share")
    simulate.add_argument("--report", help="write an HTML report with plots here")
    add_worker_parser(commands)
    evaluate = commands.add_parser(
        "evaluate", help="replay a log: the models' prequential metrics and the decisions' value"
    )
    evaluate.add_argument("--data-dir", default="data", help="the data directory to evaluate")
    evaluate.add_argument("--policy", help="YAML of lever changes to evaluate off-policy")
    add_keys_parser(commands)
    return parser


def playbook_command(args: argparse.Namespace) -> int:
    """``momently playbook check|schema``."""
    import json

    from momently.moments.playbook import load_playbook, playbook_schema

    if args.playbook_command == "schema":
        print(json.dumps(playbook_schema(), indent=2))
        return 0
    try:
        playbook = load_playbook(args.file)
    except PlaybookError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    print(
        f"ok: {len(playbook.moments)} moments, {len(playbook.places)} places,"
        f" {len(playbook.journeys)} journeys"
    )
    return 0


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags over environment over defaults, validated once."""
    given: dict[str, Any] = {
        name: value
        for name in (
            "host",
            "port",
            "data_dir",
            "write_keys",
            "admin_key",
            "store",
            "synchronous",
            "playbook",
            "public_url",
            "retention_days",
            "cors_origins",
            "rate_limit",
        )  # fmt: skip
        if (value := getattr(args, name, None)) is not None
    }
    if args.command == "demo":
        given.setdefault("admin_key", "demo-admin-key")
        given.setdefault("write_keys", ["demo-write-key"])
    for name in ("write_keys", "cors_origins"):
        if name in given:
            given[name] = tuple(given[name])
    return Settings(**given)


def _tune_gc() -> None:
    """Make the cycle collector cheap for a long-running ingest server.

    Every batch allocates thousands of short-lived containers that live just
    long enough to cross CPython's default threshold of 700, so the collector
    ran hundreds of times a second and its full passes rescanned the growing
    profile caches (a tenth of the server's time under load). Nothing on the
    ingest path makes reference cycles, so collecting less often only delays
    freeing the rare cycle; what start-up built is frozen out of the scans.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _tune_switching() -> None:
    """Hand the GIL round every millisecond instead of every five.

    The writer releases the GIL around each SQLite statement and fsync, and the
    moment stage, always with a backlog under load, takes it meanwhile; at the
    default 5 ms interval the writer then waited up to 5 ms for every one of
    the ten or so statements of a group commit, and end-to-end ingestion ran at
    about half the rate it reached at 1 ms (benchmarks/bench_ingest.py).
    """
    sys.setswitchinterval(0.001)


def serve(settings: Settings) -> None:
    from momently.web.app import create_app

    if not settings.write_keys:
        raise ConfigError("no write key: pass --write-key KEY or set MOMENTLY_WRITE_KEYS")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, environ=os.environ)
    parsers = _parse_pool(os.environ)
    app.state.tracking.parser = parsers
    _tune_gc()
    _tune_switching()
    print(f"momently {__version__} listening on http://{settings.host}:{settings.port}", flush=True)
    try:
        _run_server(app, settings)
    finally:
        if parsers is not None:
            parsers.close()


def _parse_pool(environ: Mapping[str, str]) -> ParsePool | None:
    """Worker processes that parse batches off the server's GIL (momently.ingest.parsepool):
    one per core but the server's own, at most 4; ``MOMENTLY_PARSE_WORKERS`` overrides
    (0: parse in the server process)."""
    from momently.ingest.parsepool import ParsePool

    given = environ.get("MOMENTLY_PARSE_WORKERS", "").strip()
    try:
        workers = int(given) if given else min(4, (os.cpu_count() or 1) - 1)
    except ValueError:
        raise ConfigError(f"MOMENTLY_PARSE_WORKERS must be a number, not {given!r}") from None
    return ParsePool(workers) if workers > 0 else None


def _run_server(app: FastAPI, settings: Settings) -> None:
    import uvicorn

    from momently.web.live import StreamClosingServer

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
    # Open live streams (a dashboard, an in-app page) end when shutdown begins; uvicorn
    # would otherwise wait for them before the lifespan's own shutdown runs.
    StreamClosingServer(config, [app.state.live.close, app.state.hub.close]).run()


def simulate_command(args: argparse.Namespace) -> int:
    """``momently simulate``: momently against batch-and-blast and plain triggers."""
    from momently.simulate import (
        BatchAndBlast,
        EventTriggers,
        NoMessages,
        Population,
        compare,
        true_effect,
        write_report,
    )
    from momently.simulate.engine_policy import EnginePolicy
    from momently.simulate.types import Policy

    if args.customers < 1 or args.days < 1 or not 0 < args.holdout < 1:
        raise ConfigError("--customers and --days must be positive, --holdout in (0, 1)")
    population = Population(args.customers, seed=args.seed)
    policies: list[Policy] = [NoMessages(), BatchAndBlast(), EventTriggers(), EnginePolicy()]
    results = compare(policies, population, days=args.days, holdout=args.holdout)
    silent = results[0]
    truth = {r.policy: true_effect(r, silent) for r in results[1:]}
    print(f"{args.customers:,} customers, {args.days} days, {args.holdout:.0%} holdout")
    head = f"{'policy':<16}{'messages':>9}{'opt-outs':>9}{'conv':>7}{'revenue':>11}"
    print(f"{head}  conv. lift [95% CI]")
    for r in results:
        c = r.conversion
        print(
            f"{r.policy:<16}{r.delivered:>9,}{r.opt_outs:>9,}{r.conversions:>7,}{r.revenue:>11,.0f}"
            f"  {c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
        )
    for name, (rate, revenue) in truth.items():
        print(f"  true effect of {name}: conversion {rate:+.4f}, revenue/customer {revenue:+.2f}")
    if args.report:
        path = write_report(args.report, results, truth=truth)
        print(f"report: {path}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """``momently evaluate --data-dir DIR [--policy FILE]``."""
    from pathlib import Path

    from momently.measure.evaluate import load_policy, report
    from momently.store import open_moment_store, open_store

    data = Path(args.data_dir)
    if not (data / "momently.db").is_file():
        raise ConfigError(f"no momently.db in {data}: nothing to evaluate")
    policy = load_policy(args.policy) if args.policy else None
    store = open_store(f"sqlite:///{(data / 'momently.db').resolve()}")
    moments = open_moment_store(f"sqlite:///{(data / 'moments.db').resolve()}")
    try:
        report(store, moments, policy, sys.stdout)
    finally:
        moments.close()
        store.close()
    return 0


def demo(settings: Settings, args: argparse.Namespace) -> None:
    """``momently demo``: the embedded engine, a simulated population, the dashboard."""
    import shutil
    import threading

    import uvicorn

    from momently.moments.playbook import load_playbook
    from momently.runtime.delivery import Routes
    from momently.runtime.demo import Feeder, ScaledClock, SimulatorChannel
    from momently.simulate import HOUR, Population, World
    from momently.store import open_store
    from momently.web.app import create_app
    from momently.web.live import StreamClosingServer

    if args.customers < 1 or args.speed <= 0:
        raise ConfigError("--customers must be at least 1 and --speed positive")
    data = settings.data_dir
    if (data / "momently.db").exists():
        if not args.fresh:
            raise ConfigError(f"{data} already holds a log: use an empty --data-dir, or --fresh")
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    world = World(Population(args.customers, seed=args.seed))
    lock = threading.Lock()
    # The simulated day starts at 07:00, when people reach for their phones.
    clock = ScaledClock(world.start_ms + 7 * HOUR, speed=args.speed)
    store = open_store(settings.store_url)

    def user_of(customer_id: str) -> str | None:
        canonical = store.canonical(customer_id) or customer_id
        return next((v for k, v in store.identities(canonical) if k == "user_id"), None)

    simulated = SimulatorChannel(world, lock, user_of)
    playbook = load_playbook(settings.playbook)
    routes = Routes(routes={c.name: [simulated] for c in playbook.decide.channels})
    app = create_app(
        settings, store=store, clock=clock, playbook=playbook, environ=os.environ, routes=routes
    )
    feeder = Feeder(world, lock, app.state.writer, clock)
    feeder.start()
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"momently demo: {args.customers:,} simulated customers at {args.speed:g}x\n"
        f"  dashboard  {url}/dashboard  (admin key: {settings.admin_key})\n"
        f"  API        {url}/docs",
        flush=True,
    )
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False
    )
    # The feeder stops first, while the writer it submits to is still open.
    closing = [feeder.stop, app.state.live.close, app.state.hub.close]
    try:
        StreamClosingServer(config, closing).run()
    finally:
        feeder.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "playbook":
        return playbook_command(args)
    if args.command == "simulate":
        try:
            return simulate_command(args)
        except (ConfigError, OSError) as error:
            print(f"momently: {error}", file=sys.stderr)
            return 2
    if args.command == "keys":
        try:
            return keys_command(args)
        except (ConfigError, OSError) as error:
            print(f"momently: {error}", file=sys.stderr)
            return 2
    if args.command == "evaluate":
        try:
            return evaluate_command(args)
        except (ConfigError, ValidationError, OSError, yaml.YAMLError) as error:
            print(f"momently: {error}", file=sys.stderr)
            return 2
    try:
        if args.command == "worker":
            from momently.distributed.command import worker_command

            return worker_command(args)
        settings = settings_from(args)
        if args.command == "serve" and args.log:
            from momently.distributed.command import serve_log

            return serve_log(settings, args.log)
        if args.command == "serve":
            serve(settings)
        elif args.command == "demo":
            demo(settings, args)
    except ValidationError as error:
        print(f"momently: bad settings:\n{error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        report = error.report() if isinstance(error, PlaybookError) else str(error)
        print(f"momently: {report}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
