"""`fsbill payments unmatched|list|apply`: what the payment gateways sent, and applying by hand what
could not be matched to an account (docs/PAYMENTS.md)."""

from __future__ import annotations

import argparse

from fsbill.cli.common import actor, add_actor_option, emit, load, open_store, positive_int, table
from fsbill.clock import Clock
from fsbill.db import payments
from fsbill.instant import iso

STATUSES = ("pending", "credited", "refunded", "duplicate", "unmatched", "applied", "rejected", "invalid", "ignored")


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    pay = subparsers.add_parser("payments", help="payment gateway notifications (Stripe, PayPal)")
    sub = pay.add_subparsers(dest="payments_command", metavar="ACTION", parser_class=type(pay))
    sub.required = True
    unmatched = sub.add_parser(
        "unmatched",
        parents=[parent],
        help="verified payments that could not be applied (no such account, another currency, closed)",
    )
    unmatched.set_defaults(func=_unmatched)
    listing = sub.add_parser("list", parents=[parent], help="every notification received, oldest first")
    listing.add_argument("--status", choices=STATUSES, help="only those with this outcome")
    listing.add_argument("--limit", type=positive_int, help="at most N")
    listing.set_defaults(func=_list)
    apply = sub.add_parser(
        "apply",
        parents=[parent],
        help="apply an unmatched notification to the account you name (once, audited)",
    )
    apply.add_argument("id", type=positive_int, help="the notification's ID (fsbill payments unmatched)")
    apply.add_argument("--account", required=True, metavar="CODE", help="the account to credit")
    add_actor_option(apply)
    apply.set_defaults(func=_apply)


def _rows(notices: list[payments.NoticeView]) -> str:
    if not notices:
        return "none"
    return table(
        [
            [
                n.id,
                iso(n.received_us),
                n.provider,
                n.status,
                n.kind or "-",
                n.identity or "-",
                n.account or "-",
                "-" if n.amount is None else f"{n.amount} {n.currency}",
                n.reason,
            ]
            for n in notices
        ],
        ["ID", "RECEIVED", "GATEWAY", "STATUS", "KIND", "PAYMENT", "ACCOUNT", "AMOUNT", "WHY"],
    )


def _unmatched(args: argparse.Namespace) -> int:
    notices = payments.unmatched(open_store(load(args)))
    emit(args, [n.as_json() for n in notices], lambda: _rows(notices))
    return 0


def _list(args: argparse.Namespace) -> int:
    notices = payments.notices(open_store(load(args)), args.status, args.limit)
    emit(args, [n.as_json() for n in notices], lambda: _rows(notices))
    return 0


def _apply(args: argparse.Namespace) -> int:
    who = actor(args)
    outcome = payments.apply_unmatched(open_store(load(args)), args.id, args.account, who, Clock().now_us())
    emit(args, outcome.as_json() | {"account": args.account, "actor": who}, f"notification {args.id}: {outcome.detail}")
    return 0
