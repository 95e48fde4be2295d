"""`fsbill audit`: the management changes, latest first (fsbill.db.audit)."""

from __future__ import annotations

import argparse

from fsbill.cli.common import emit, load, open_store, positive_int, table
from fsbill.db import audit
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "audit", parents=[parent], help="who changed which account, tariff or vendor, when, from what to what"
    )
    p.add_argument(
        "--entity",
        metavar="KIND[:NAME]",
        help="only account, tariff or vendor changes, or one of them (e.g. account:1001)",
    )
    p.add_argument("--limit", type=positive_int, help="the latest N changes")
    p.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    entity, subject = audit.parse_entity(args.entity) if args.entity else (None, None)
    rows = audit.entries(open_store(load(args)), entity, subject, args.limit)
    emit(
        args,
        [r.as_json() for r in rows],
        lambda: table(
            [
                [iso(r.created_us), r.actor, r.action, f"{r.entity} {r.subject}", r.field, _shown(r.old), _shown(r.new)]
                for r in rows
            ],
            ["TIME", "ACTOR", "ACTION", "WHAT", "FIELD", "OLD", "NEW"],
        ),
    )
    return 0


def _shown(value: str | None) -> str:
    return "-" if value is None else value
