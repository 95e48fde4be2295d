"""`fsbill recharge list|failed`: auto-recharge requests (docs/NOTICES.md "Auto-recharge")."""

from __future__ import annotations

import argparse

from fsbill.cli.common import actor, add_actor_option, emit, load, open_store, table
from fsbill.clock import Clock
from fsbill.core.recharge import MAX_FAILURES
from fsbill.db import recharge as dbrecharge
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    rch = subparsers.add_parser("recharge", help="auto-recharge requests: list them, report a failed charge")
    sub = rch.add_subparsers(dest="recharge_command", metavar="ACTION", parser_class=type(rch))
    sub.required = True
    lst = sub.add_parser("list", parents=[parent], help="requests, oldest first, with their state")
    lst.add_argument("code", nargs="?", metavar="ACCOUNT", help="only this account's")
    lst.set_defaults(func=_list)
    failed = sub.add_parser(
        "failed",
        parents=[parent],
        help=f"the payment side could not charge the card for KEY (after {MAX_FAILURES} in a row, "
        "requests stop until a credit arrives)",
    )
    failed.add_argument("code", metavar="ACCOUNT")
    failed.add_argument("key", metavar="KEY", help="the request's key (rch_...), from its recharge.requested notice")
    add_actor_option(failed)
    failed.set_defaults(func=_failed)


def _list(args: argparse.Namespace) -> int:
    found = dbrecharge.list_recharges(open_store(load(args)), args.code)

    def text() -> str:
        if not found:
            return "no recharge requests"
        rows = [
            [r.key, iso(r.created_us), r.account, f"{r.amount} {r.currency}", r.status, iso(r.closed_us) or "-"]
            for r in found
        ]
        return table(rows, ["KEY", "TIME", "ACCOUNT", "AMOUNT", "STATUS", "CLOSED"])

    emit(args, [r.as_json() for r in found], text)
    return 0


def _failed(args: argparse.Namespace) -> int:
    r = dbrecharge.fail(open_store(load(args)), args.code, args.key, Clock().now_us(), actor(args))
    if not r.changed:
        text = f"recharge {r.request.key} on account {args.code} was already reported failed; nothing changed"
    else:
        text = f"recharge {r.request.key} on account {args.code} failed ({r.failures} in a row)"
    if r.stopped:
        text += f"; requests stop until a credit arrives ({MAX_FAILURES} failures in a row)"
    emit(args, r.request.as_json() | {"failures": r.failures, "stopped": r.stopped, "changed": r.changed}, text)
    return 0
