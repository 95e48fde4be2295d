"""`fsbill topup`, `fsbill adjust`, `fsbill ledger`: operators moving money, and its history."""

from __future__ import annotations

import argparse

from fsbill.cli.common import (
    actor,
    add_actor_option,
    amount,
    emit,
    load,
    open_store,
    parse_instant,
    positive_int,
    table,
)
from fsbill.clock import Clock
from fsbill.db import funding, ledger
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    top = subparsers.add_parser("topup", parents=[parent], help="credit an account (idempotent with --reference)")
    top.add_argument("code")
    top.add_argument("amount", type=amount, help="positive exact amount, e.g. 10.50")
    top.add_argument(
        "--reference",
        help="payment reference: the same reference and amount credit once; the same reference with "
        "another amount is refused (exit 2)",
    )
    top.add_argument("--note", default="")
    top.set_defaults(func=_topup)
    adj = subparsers.add_parser("adjust", parents=[parent], help="signed correction of a balance (ledgered)")
    adj.add_argument("code")
    adj.add_argument("amount", type=amount, help="signed exact amount, e.g. -2.00")
    adj.add_argument("--reason", required=True)
    adj.add_argument("--reference", help="as for topup: the same reference and amount apply once")
    adj.add_argument(
        "--force",
        action="store_true",
        help="apply a debit even if it leaves less than nothing available, or adjust a closed account "
        "(correcting its books; written to the audit trail)",
    )
    add_actor_option(adj)
    adj.set_defaults(func=_adjust)
    fnd = subparsers.add_parser(
        "fund", parents=[parent], help="move money from an account's parent (its reseller) to it"
    )
    fnd.add_argument("code", help="the account to fund; its parent pays")
    fnd.add_argument("amount", type=amount, help="positive exact amount, e.g. 25.00")
    fnd.add_argument(
        "--reference", required=True, help="names this funding: the same reference and amount move money once"
    )
    fnd.set_defaults(func=_fund)
    led = subparsers.add_parser("ledger", parents=[parent], help="an account's balance movements")
    led.add_argument("code")
    led.add_argument("--since", type=parse_instant, metavar="ISO8601")
    led.add_argument("--limit", type=positive_int, help="only the latest N movements (still printed oldest first)")
    led.set_defaults(func=_ledger)


def _topup(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    result = ledger.topup(store, args.code, args.amount, Clock().now_us(), reference=args.reference, note=args.note)
    entry = result.entry
    data = entry.as_json() | {"applied": result.applied}
    if result.applied:
        text = f"credited {entry.amount} to {args.code}; balance {entry.balance_after}"
    else:
        text = f"reference {args.reference} was already credited ({entry.amount} at {iso(entry.created_us)}); nothing added"
    emit(args, data, text)
    return 0


def _adjust(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    result = ledger.adjust_result(
        store,
        args.code,
        args.amount,
        args.reason,
        Clock().now_us(),
        force=args.force,
        reference=args.reference,
        actor=actor(args),
    )
    entry = result.entry
    if result.applied:
        text = f"adjusted {args.code} by {entry.amount}; balance {entry.balance_after}"
    else:
        text = f"reference {args.reference} was already applied ({entry.amount} at {iso(entry.created_us)}); nothing changed"
    emit(args, entry.as_json() | {"applied": result.applied}, text)
    return 0


def _fund(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    result = funding.fund(store, args.code, args.amount, Clock().now_us(), reference=args.reference)
    data = {"parent": result.parent.as_json(), "child": result.child.as_json(), "applied": result.applied}
    if result.applied:
        text = (
            f"moved {result.child.amount} from {result.parent.account} (balance {result.parent.balance_after}) "
            f"to {result.child.account} (balance {result.child.balance_after})"
        )
        if result.child.amount != -result.parent.amount:  # across currencies: docs/RESELLERS.md
            text = f"{text}; {result.child.note}"
    else:
        text = f"reference {args.reference} already funded {result.child.account} with {result.child.amount}; nothing moved"
    emit(args, data, text)
    return 0


def _ledger(args: argparse.Namespace) -> int:
    entries = ledger.ledger(open_store(load(args)), args.code, args.since, args.limit)
    emit(
        args,
        [e.as_json() for e in entries],
        lambda: table(
            [
                [
                    iso(e.created_us),
                    e.kind,
                    f"{e.amount}",
                    f"{e.balance_after}",
                    e.reference or e.call_uuid or "",
                    e.note,
                ]
                for e in entries
            ],
            ["TIME", "KIND", "AMOUNT", "BALANCE", "REFERENCE/CALL", "NOTE"],
        ),
    )
    return 0
