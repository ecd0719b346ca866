"""``momently keys create|list|revoke``: the key table of a data directory, or, with
``--store postgresql://…`` (the ingest nodes' ``--store``), distributed mode's key
table in PostgreSQL (:mod:`momently.store.postgres.keys`).

A running server sees a new or revoked key at its next request; nothing restarts.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from momently.auth.keys import FILE, KINDS, SCOPES, Key, KeyStore, KeyTable
from momently.clock import Clock, SystemClock
from momently.errors import ConfigError


def add_parser(commands: Any) -> None:
    """Add ``keys`` and its subcommands to the ``momently`` parser."""
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key; it is shown once, here")
    _where(create)
    create.add_argument(
        "--kind", choices=KINDS, default="admin", help="write: ingestion only; admin: the API"
    )
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        choices=SCOPES,
        help="an admin key's scope (repeatable): read, write, privacy",
    )
    create.add_argument("--source", help="a write key's source name, stamped on its events")
    create.add_argument("--rate", type=float, help="requests per second (default: the server's)")
    create.add_argument("--burst", type=int, help="requests at once above the rate")
    create.add_argument("--json", action="store_true", help="print JSON")
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    _where(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id, as `momently keys list` shows it")
    _where(revoke)


def _where(parser: Any) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default="data", help="the server's data directory")
    where.add_argument(
        "--store",
        help="distributed mode: the ingest nodes' --store (postgresql://…?schema=p{partition});"
        " the keys live in that database's key schema (p{partition} -> pkeys)",
    )


def _open(args: argparse.Namespace) -> KeyTable:
    """The key table the arguments name; ConfigError if there is none to read."""
    if args.store:
        import psycopg

        from momently.store.postgres.keys import PostgresKeyStore, key_table_url

        url = key_table_url(args.store)
        try:
            return PostgresKeyStore(url)
        except psycopg.Error as error:  # the pool's timeout is an OperationalError too
            raise ConfigError(f"could not open the key table: {error}") from None
    data = Path(args.data_dir)
    if args.keys_command != "create" and not (data / FILE).is_file():
        raise ConfigError(f"no key table in {data}: create a key first")
    data.mkdir(parents=True, exist_ok=True)
    return KeyStore(data / FILE)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _line(key: Key) -> str:
    what = (
        f"source={key.source}" if key.kind == "write" else "scopes=" + ",".join(sorted(key.scopes))
    )
    rate = f"rate={key.rate:g}/s" if key.rate is not None else "rate=default"
    state = f"revoked {_when(key.revoked_ms)}" if key.revoked_ms is not None else "active"
    return (
        f"{key.id}  {key.kind:<5}  {what:<28}  {key.hint}…  {rate}  "
        f"created {_when(key.created_ms)}  {state}"
    )


def keys_command(args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Run ``momently keys …``; ConfigError for bad arguments."""
    clock = clock or SystemClock()
    store = _open(args)
    try:
        if args.keys_command == "create":
            key, token = store.create(
                args.kind,
                now_ms=clock.now_ms(),
                scopes=args.scopes or (),
                source=args.source,
                rate=args.rate,
                burst=args.burst,
            )
            if args.json:
                print(json.dumps({**key.to_json(), "key": token}))
            else:
                print(_line(key))
                print(token)
                print("this key is shown only once: store it now", file=sys.stderr)
        elif args.keys_command == "list":
            keys = store.list()
            if args.json:
                print(json.dumps([k.to_json() for k in keys]))
            else:
                for key in keys:
                    print(_line(key))
        else:
            key = store.revoke(args.id, now_ms=clock.now_ms())
            print(_line(key))
    finally:
        store.close()
    return 0
