"""`fsbill notices list`: the outbox (docs/NOTICES.md)."""

from __future__ import annotations

import argparse

from fsbill.cli.common import emit, load, non_negative_int, open_store, table
from fsbill.db import notices as dbnotices
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    notices = subparsers.add_parser("notices", help="notices to accounts: low balance, suspension... (webhook, email)")
    sub = notices.add_subparsers(dest="notices_command", metavar="ACTION", parser_class=type(notices))
    sub.required = True
    lst = sub.add_parser("list", parents=[parent], help="notices, oldest first, with their delivery state")
    lst.add_argument("--pending", action="store_true", help="only those not delivered yet")
    lst.add_argument("--account", metavar="CODE", help="only this account's")
    lst.add_argument("--limit", type=non_negative_int, default=0, help="only the latest N (default: all)")
    lst.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    found = dbnotices.list_notices(
        open_store(load(args)), pending=args.pending, account=args.account, limit=args.limit or None
    )

    def text() -> str:
        if not found:
            return "no notices" + (" pending" if args.pending else "")
        rows = [
            [
                n.id,
                iso(n.created_us),
                n.kind,
                n.account or "-",
                n.status,
                n.webhook,
                n.email,
                n.attempts,
                n.last_error[:60] or "-",
            ]
            for n in found
        ]
        return table(rows, ["ID", "TIME", "KIND", "ACCOUNT", "STATUS", "WEBHOOK", "EMAIL", "ATTEMPTS", "LAST ERROR"])

    emit(args, [n.as_json() for n in found], text)
    return 0
