"""`fsbill account add|show|list|suspend|resume`."""

from __future__ import annotations

import argparse

from fsbill.cli.common import amount, emit, load, non_negative_int, open_store, table
from fsbill.clock import Clock
from fsbill.core.money import Money
from fsbill.db import ledger


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    account = subparsers.add_parser("account", help="prepaid accounts")
    sub = account.add_subparsers(dest="account_command", metavar="ACTION", parser_class=type(account))
    sub.required = True
    add = sub.add_parser("add", parents=[parent], help="create an account")
    add.add_argument("code", help="the account code (what the dialplan sets as fsbill_account / accountcode)")
    add.add_argument("--tariff", required=True)
    add.add_argument(
        "--credit-limit", type=amount, default=Money(0), help="how far below zero the balance may go (default 0)"
    )
    add.add_argument(
        "--max-channels", type=non_negative_int, default=0, help="simultaneous calls allowed (default 0 = no limit)"
    )
    add.add_argument(
        "--cli",
        action="append",
        default=[],
        metavar="NUMBER",
        help="a caller id that identifies this account (repeatable)",
    )
    add.set_defaults(func=_add)
    show = sub.add_parser("show", parents=[parent], help="balance, reserved, available and live calls")
    show.add_argument("code")
    show.set_defaults(func=_show)
    lst = sub.add_parser("list", parents=[parent], help="all accounts")
    lst.set_defaults(func=_list)
    for name, status in (("suspend", "suspended"), ("resume", "active")):
        p = sub.add_parser(
            name,
            parents=[parent],
            help=f"mark the account {status} (new calls {'refused' if status == 'suspended' else 'allowed'})",
        )
        p.add_argument("code")
        p.set_defaults(func=_set_status, status=status)


def describe(a: ledger.AccountView) -> str:
    lines = [
        f"account      {a.code} ({a.status})",
        f"tariff       {a.tariff}",
        f"balance      {a.balance} {a.currency}",
        f"credit limit {a.credit_limit} {a.currency}",
        f"reserved     {a.reserved} {a.currency}",
        f"available    {a.available} {a.currency}",
        f"live calls   {a.live_channels}" + (f" of {a.max_channels}" if a.max_channels else ""),
    ]
    if a.clis:
        lines.append(f"caller ids   {', '.join(a.clis)}")
    return "\n".join(lines)


def _add(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    a = ledger.create_account(
        store,
        args.code,
        args.tariff,
        Clock().now_us(),
        credit_limit=args.credit_limit,
        max_channels=args.max_channels,
        clis=args.cli,
    )
    emit(args, a.as_json(), f"account {a.code} created on tariff {a.tariff}")
    return 0


def _show(args: argparse.Namespace) -> int:
    a = ledger.get_account(open_store(load(args)), args.code)
    emit(args, a.as_json(), lambda: describe(a))
    return 0


def _list(args: argparse.Namespace) -> int:
    accounts = ledger.list_accounts(open_store(load(args)))
    emit(
        args,
        [a.as_json() for a in accounts],
        lambda: table(
            [
                [
                    a.code,
                    a.status,
                    a.tariff,
                    f"{a.balance}",
                    f"{a.reserved}",
                    f"{a.available}",
                    a.currency,
                    a.live_channels,
                ]
                for a in accounts
            ],
            ["CODE", "STATUS", "TARIFF", "BALANCE", "RESERVED", "AVAILABLE", "CUR", "LIVE"],
        ),
    )
    return 0


def _set_status(args: argparse.Namespace) -> int:
    a = ledger.set_status(open_store(load(args)), args.code, args.status, Clock().now_us())
    emit(args, a.as_json(), f"account {a.code} is {a.status}")
    return 0
