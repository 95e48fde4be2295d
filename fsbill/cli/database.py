"""`fsbill db upgrade|status`: the schema, owned by migrations/."""

from __future__ import annotations

import argparse

from fsbill.cli.common import emit, load
from fsbill.db import Store


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    db = subparsers.add_parser("db", help="database schema")
    sub = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(db))
    sub.required = True
    up = sub.add_parser("upgrade", parents=[parent], help="apply pending migrations (idempotent)")
    up.set_defaults(func=_upgrade)
    st = sub.add_parser("status", parents=[parent], help="list pending migrations")
    st.set_defaults(func=_status)


def _store(args: argparse.Namespace) -> Store:
    settings = load(args)
    return Store(settings.database, busy_timeout_ms=settings.sqlite_busy_timeout_ms)


def _upgrade(args: argparse.Namespace) -> int:
    store = _store(args)
    applied = store.upgrade()
    emit(args, {"applied": applied}, "\n".join(f"applied {name}" for name in applied) or "schema is up to date")
    return 0


def _status(args: argparse.Namespace) -> int:
    pending = _store(args).pending_migrations()
    emit(args, {"pending": pending}, "\n".join(f"pending {name}" for name in pending) or "schema is up to date")
    return 0
