"""`fsbill account add|show|list|set|cli add|cli remove|suspend|resume|close`."""

from __future__ import annotations

import argparse

from fsbill.cli.common import (
    actor,
    add_actor_option,
    amount,
    emit,
    load,
    non_negative_int,
    open_store,
    positive_int,
    table,
)
from fsbill.clock import Clock
from fsbill.core import recharge
from fsbill.core.money import Money
from fsbill.db import bundles as dbbundles
from fsbill.db import guards as dbguards
from fsbill.db import ledger, management
from fsbill.db import notices as dbnotices
from fsbill.db.audit import Change
from fsbill.errors import InvalidInput
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    account = subparsers.add_parser("account", help="prepaid accounts")
    sub = account.add_subparsers(dest="account_command", metavar="ACTION", parser_class=type(account))
    sub.required = True
    add = sub.add_parser("add", parents=[parent], help="create an account")
    add.add_argument("code", help="the account code (what the dialplan sets as fsbill_account / accountcode)")
    add.add_argument("--tariff", required=True)
    add.add_argument(
        "--parent", metavar="CODE", help="the reseller it is created under (docs/RESELLERS.md; at most 5 levels)"
    )
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
    add_actor_option(add)
    add.set_defaults(func=_add)
    guard = sub.add_parser(
        "guard",
        parents=[parent],
        help="fraud guards: spend caps, destination rules, max rate, calls per minute (docs/FRAUD.md)",
        description="Set the account's own fraud guards; without options, show them. Each option takes a "
        "value, `none` (the tariff's default applies again) or `off` (no guard, whatever the tariff says).",
    )
    guard.add_argument("code")
    add_guard_options(guard)
    add_actor_option(guard)
    guard.set_defaults(func=_guard)
    show = sub.add_parser("show", parents=[parent], help="balance, reserved, available, live calls and guards")
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
        add_actor_option(p)
        p.set_defaults(func=_set_status, status=status)
    set_ = sub.add_parser(
        "set", parents=[parent], help="change an account's credit limit, channel limit, tariff, email"
    )
    set_.add_argument("code")
    set_.add_argument(
        "--credit-limit",
        type=amount,
        help="how far below zero the balance may go (lower: refused if it leaves "
        "less than nothing available, unless --force)",
    )
    set_.add_argument("--max-channels", type=non_negative_int, help="simultaneous calls (0 = no limit); new calls only")
    set_.add_argument("--tariff", help="another tariff (another currency only with a zero balance and no live call)")
    set_.add_argument("--email", help="contact address ('none' clears it); notices are mailed there")
    add_low_balance_option(set_, on_account=True)
    set_.add_argument(
        "--auto-recharge",
        metavar="AMOUNT",
        help="ask the payment side for AMOUNT when available falls under --below (a recharge.requested "
        "notice, docs/NOTICES.md); 'none' turns it off",
    )
    set_.add_argument("--below", metavar="LEVEL", help="with --auto-recharge: the level of available")
    set_.add_argument(
        "--max-per-day",
        type=positive_int,
        metavar="N",
        help=f"with --auto-recharge: at most N requests a day (default {recharge.DEFAULT_MAX_PER_DAY})",
    )
    set_.add_argument(
        "--force", action="store_true", help="apply a lower credit limit even if it leaves less than nothing available"
    )
    add_actor_option(set_)
    add_guard_options(set_)  # the fraud guards (docs/FRAUD.md), as `account guard` sets them
    set_.set_defaults(func=_set)
    cli = sub.add_parser("cli", help="the caller ids that identify an account")
    csub = cli.add_subparsers(dest="account_cli_command", metavar="ACTION", parser_class=type(account))
    csub.required = True
    for verb, text in (("add", "map a caller id to the account"), ("remove", "unmap a caller id from the account")):
        c = csub.add_parser(verb, parents=[parent], help=text)
        c.add_argument("code")
        c.add_argument("number", help="the caller id, digits (a leading + is dropped)")
        add_actor_option(c)
        c.set_defaults(func=_cli, add=verb == "add")
    close = sub.add_parser(
        "close", parents=[parent], help="close the account for good: no calls, no top-ups; ledger and CDRs kept"
    )
    close.add_argument("code")
    close.add_argument(
        "--force",
        action="store_true",
        help="close despite live calls or a balance (moved out by a ledger entry of kind close)",
    )
    add_actor_option(close)
    close.set_defaults(func=_close)


def add_low_balance_option(parser: argparse.ArgumentParser, on_account: bool) -> None:
    default = "'none' = the tariff's default, 'off' = no level" if on_account else "'none' clears them"
    parser.add_argument(
        "--low-balance",
        metavar="LEVELS",
        help=f"low-balance levels on what is available, e.g. 10.00,2.00: a balance.low notice when it falls "
        f"under one (docs/NOTICES.md); {default}",
    )


def low_balance_text(what: str, v: dbnotices.LevelsView) -> str:
    shown = ",".join(str(level) for level in v.levels) or "none"
    source = f" (from the {v.source})" if v.source and v.source != v.entity else ""
    return changes_text(what, v.changes) + f"\nlow balance  {shown}{source}"


GUARD_OPTIONS = (
    ("--daily-cap", "daily_cap_micros", "A", "most the account may spend a day (tariff's time zone)"),
    ("--monthly-cap", "monthly_cap_micros", "A", "most the account may spend a calendar month"),
    ("--block", "block_prefixes", "P,P", "destination prefixes refused (longest prefix wins)"),
    ("--allow", "allow_prefixes", "P,P", "allow-list mode: only these destination prefixes may be called"),
    ("--max-rate", "max_rate_micros", "PRICE", "refuse destinations dearer than this per minute"),
    ("--max-calls-per-minute", "max_calls_per_minute", "N", "new calls allowed per minute, across nodes"),
)


def add_guard_options(parser: argparse.ArgumentParser) -> None:
    for flag, column, metavar, text in GUARD_OPTIONS:
        parser.add_argument(flag, dest=f"guard_{column}", metavar=metavar, help=text + "; none or off")


def guard_changes(args: argparse.Namespace) -> dict[str, str]:
    return {
        column: getattr(args, f"guard_{column}")
        for _, column, _, _ in GUARD_OPTIONS
        if getattr(args, f"guard_{column}") is not None
    }


def describe_guards(g: dbguards.GuardsView) -> str:
    e, cur = g.effective, g.currency

    def line(label: str, column: str, value: object) -> str:
        source = g.source(column)
        if value in (None, ()):
            value = "off" if source == "account" else "none"
        return f"{label:<12} {value}" + (f" (from the {source})" if source else "")

    def money(m: Money | None) -> str | None:
        return None if m is None else f"{m} {cur}"

    return "\n".join(
        [
            line("daily cap", "daily_cap_micros", money(e.daily_cap)),
            line("monthly cap", "monthly_cap_micros", money(e.monthly_cap)),
            line("blocked", "block_prefixes", ",".join(e.block) or None),
            line("allowed only", "allow_prefixes", ",".join(e.allow) or None),
            line("max rate", "max_rate_micros", None if e.max_rate is None else f"{e.max_rate} {cur}/min"),
            line("calls/minute", "max_calls_per_minute", e.max_calls_per_minute),
            f"spent today  {g.spent_today} {cur} (this month {g.spent_this_month} {cur}; {g.timezone}, "
            "holds of live calls included)",
        ]
    )


def describe(a: ledger.AccountView) -> str:
    lines = [
        f"account      {a.code} ({a.status})",
        f"tariff       {a.tariff}",
    ]
    if a.parent:
        lines.append(f"parent       {a.parent}")
    lines += [
        f"balance      {a.balance} {a.currency}",
        f"credit limit {a.credit_limit} {a.currency}",
        f"reserved     {a.reserved} {a.currency}",
        f"available    {a.available} {a.currency}",
    ]
    if a.arrears:
        lines.append(f"arrears      {a.arrears} {a.currency} (paid first by the next money in)")
    lines += [
        f"live calls   {a.live_channels}" + (f" of {a.max_channels}" if a.max_channels else ""),
    ]
    if a.email:
        lines.append(f"email        {a.email}")
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
        actor=actor(args),
        parent=args.parent,
    )
    under = f" under {a.parent}" if a.parent else ""
    emit(args, a.as_json(), f"account {a.code} created on tariff {a.tariff}{under}")
    return 0


def _show(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    a = ledger.get_account(store, args.code)
    g = dbguards.account_guards(store, args.code, Clock().now_us())
    low = dbnotices.levels_of(store, "account", args.code)
    ar = management.auto_recharge_of(store, args.code)
    levels = ",".join(str(level) for level in low.levels) or "none"
    recharging = recharge.describe(ar.settings) or "off"
    if ar.failures:
        recharging += f" ({ar.failures} failed in a row)"
    held = dbbundles.balances(store, args.code, Clock().now_us())  # bundles of minutes (docs/BUNDLES.md)
    bundles = "".join(
        f"bundle {b.bundle}  {b.remaining_s} s left ({b.held_s} s held by live calls) until {iso(b.period_end_us)}\n"
        for b in held
    )
    emit(
        args,
        a.as_json() | low.as_json() | ar.as_json() | {"guards": g.as_json()} | _bundles_json(held),
        lambda: describe(a) + f"\nlow balance  {levels}\nauto-recharge  {recharging}\n" + bundles + describe_guards(g),
    )
    return 0


def _bundles_json(held: list[dbbundles.BalanceView]) -> dict:
    return {"bundles": [b.as_json() for b in held]} if held else {}


def _guard(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    changes = guard_changes(args)
    g = dbguards.set_account_guards(store, args.code, changes, Clock().now_us(), actor=actor(args))
    head = f"account {g.account}: guards in force"
    if changes:
        head = changes_text(f"account {g.account}", g.changes)
    data = {"account": g.account} | g.as_json() | {"changes": changes_json(g.changes)}
    emit(args, data, lambda: head + "\n" + describe_guards(g))
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
    r = management.set_account_status(open_store(load(args)), args.code, args.status, Clock().now_us(), actor(args))
    emit(args, r.account.as_json(), f"account {r.account.code} is {r.account.status}")
    return 0


def changes_json(changes: tuple[Change, ...]) -> list[dict]:
    return [{"field": c.field, "old": c.old, "new": c.new} for c in changes]


def changes_text(what: str, changes: tuple[Change, ...]) -> str:
    if not changes:
        return f"{what}: nothing changed (every value was already as asked)"
    return "\n".join(f"{what}: {c.field} {_shown(c.old)} -> {_shown(c.new)}" for c in changes)


def _shown(value: str | None) -> str:
    return "(none)" if value is None else value


def _set(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    guards = guard_changes(args)
    attributes = (args.credit_limit, args.max_channels, args.tariff, args.email)
    out: dict = {}
    text = ""
    recharging = args.auto_recharge is not None
    if args.auto_recharge is None and (args.below is not None or args.max_per_day is not None):
        raise InvalidInput("--below and --max-per-day go with --auto-recharge AMOUNT")
    settings = recharge.parse_settings(args.auto_recharge, args.below, args.max_per_day) if recharging else None
    if (not guards and args.low_balance is None and not recharging) or any(v is not None for v in attributes):
        r = management.set_account(
            store,
            args.code,
            Clock().now_us(),
            actor(args),
            credit_limit=args.credit_limit,
            max_channels=args.max_channels,
            tariff=args.tariff,
            email=args.email,
            force=args.force,
        )
        a = r.account
        text = changes_text(f"account {a.code}", r.changes)
        if r.changes and a.available.is_negative():
            text += f"\navailable is now {a.available} {a.currency}: live calls keep what they hold and get no more"
        if a.max_channels and a.live_channels > a.max_channels:
            text += f"\n{a.live_channels} live calls exceed the new limit of {a.max_channels}: it applies to new calls"
        out = a.as_json() | {"changes": changes_json(r.changes)}
    if guards:
        g = dbguards.set_account_guards(store, args.code, guards, Clock().now_us(), actor=actor(args))
        done = [*out.get("changes", []), *changes_json(g.changes)]
        out = out | {"account": g.account, "guards": g.as_json(), "changes": done}
        text = (text + "\n" if text else "") + changes_text(f"account {g.account}", g.changes) + "\n"
        text += describe_guards(g)
    if args.low_balance is not None:  # notices (docs/NOTICES.md), audited like the rest
        v = dbnotices.set_levels(store, "account", args.code, args.low_balance, Clock().now_us(), actor=actor(args))
        done = [*out.get("changes", []), *changes_json(v.changes)]
        out = out | {"account": args.code} | v.as_json() | {"changes": done}
        text = (text + "\n" if text else "") + low_balance_text(f"account {args.code}", v)
    if recharging:
        ar = management.set_auto_recharge(store, args.code, settings, Clock().now_us(), actor(args))
        done = [*out.get("changes", []), *changes_json(ar.changes)]
        out = out | {"account": args.code} | ar.as_json() | {"changes": done}
        text = (text + "\n" if text else "") + changes_text(f"account {args.code}", ar.changes)
        text += f"\nauto-recharge  {recharge.describe(ar.settings) or 'off'}"
    emit(args, out, text)
    return 0


def _cli(args: argparse.Namespace) -> int:
    r = management.account_cli(open_store(load(args)), args.code, args.number, args.add, Clock().now_us(), actor(args))
    a = r.account
    if args.add:
        text = f"caller id {args.number.strip().lstrip('+')} " + ("mapped to" if r.changes else "already maps to")
        text += f" account {a.code}"
    else:
        text = f"caller id {args.number.strip().lstrip('+')} removed from account {a.code}"
    emit(args, a.as_json() | {"changes": changes_json(r.changes)}, text)
    return 0


def _close(args: argparse.Namespace) -> int:
    r = management.close_account(open_store(load(args)), args.code, Clock().now_us(), actor(args), force=args.force)
    a = r.account
    text = f"account {a.code} closed"
    if r.entry is not None:
        text += f"; {r.entry.amount} {a.currency} ledgered as kind close, balance {r.entry.balance_after}"
    if a.live_channels:
        text += f"; {a.live_channels} live call(s) finish what they hold ({a.reserved} {a.currency}), no extension"
    data = a.as_json() | {"changes": changes_json(r.changes), "entry": r.entry.as_json() if r.entry else None}
    emit(args, data, text)
    return 0
