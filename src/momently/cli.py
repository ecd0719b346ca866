"""The ``momently`` command."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from momently import __version__
from momently.config import Settings
from momently.errors import ConfigError
from momently.moments.loader import PlaybookError


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
    serve.add_argument("--store", help="store URL, e.g. sqlite:///var/momently.db")
    serve.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        help="SQLite durability: FULL survives power loss, NORMAL only a crash (default FULL)",
    )
    serve.add_argument("--playbook", help="playbook YAML file (default: the example playbook)")
    playbook = commands.add_parser("playbook", help="check a playbook or print its JSON Schema")
    playbook_commands = playbook.add_subparsers(dest="playbook_command", required=True)
    check = playbook_commands.add_parser("check", help="load a playbook and report its problems")
    check.add_argument("file", nargs="?", help="playbook YAML file (default: the example)")
    playbook_commands.add_parser("schema", help="print the playbook's JSON Schema")
    evaluate = commands.add_parser(
        "evaluate", help="replay a log: the models' prequential metrics and the decisions' value"
    )
    evaluate.add_argument("--data-dir", default="data", help="the data directory to evaluate")
    evaluate.add_argument("--policy", help="YAML of lever changes to evaluate off-policy")
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


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


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
        )  # fmt: skip
        if (value := getattr(args, name, None)) is not None
    }
    if "write_keys" in given:
        given["write_keys"] = tuple(given["write_keys"])
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


def serve(settings: Settings) -> None:
    import uvicorn

    from momently.web.app import create_app

    if not settings.write_keys:
        raise ConfigError("no write key: pass --write-key KEY or set MOMENTLY_WRITE_KEYS")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    _tune_gc()
    print(f"momently {__version__} listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "playbook":
        return playbook_command(args)
    if args.command == "evaluate":
        try:
            return evaluate_command(args)
        except (ConfigError, ValidationError, OSError, yaml_error()) as error:
            print(f"momently: {error}", file=sys.stderr)
            return 2
    try:
        settings = settings_from(args)
        if args.command == "serve":
            serve(settings)
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
