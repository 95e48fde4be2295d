"""`fsbill tariff add|list|set|close`."""

from __future__ import annotations

import argparse

from fsbill.cli.accounts import (
    add_guard_options,
    add_low_balance_option,
    changes_json,
    changes_text,
    guard_changes,
    low_balance_text,
)
from fsbill.cli.common import actor, add_actor_option, emit, load, non_negative_int, open_store, table
from fsbill.clock import Clock
from fsbill.core.money import RoundingMethod, RoundingRule
from fsbill.db import guards as dbguards
from fsbill.db import ledger, management
from fsbill.db import notices as dbnotices
from fsbill.db.audit import Change
from fsbill.db.vendors import DECK_PREFIX as VENDOR_DECK_PREFIX
from fsbill.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    tariff = subparsers.add_parser("tariff", help="tariffs (a currency, a rounding rule and a rate deck)")
    sub = tariff.add_subparsers(dest="tariff_command", metavar="ACTION", parser_class=type(tariff))
    sub.required = True
    add = sub.add_parser("add", parents=[parent], help="create a tariff")
    add.add_argument("name")
    add.add_argument("--currency", default="EUR", help="ISO 4217 code (default EUR)")
    add.add_argument(
        "--decimals",
        type=non_negative_int,
        default=4,
        help="a call's cost is rounded to this many decimals (default 4)",
    )
    add.add_argument(
        "--rounding",
        choices=[m.value for m in RoundingMethod],
        default=RoundingMethod.HALF_UP.value,
        help="how a call's cost is rounded, once, at the end (default half_up)",
    )
    add.add_argument("--timezone", default="UTC", help="IANA zone for time-of-day bands (default UTC)")
    add.add_argument(
        "--owner",
        metavar="CODE",
        help="the reseller account it belongs to: only accounts under it may have it (docs/RESELLERS.md)",
    )
    add_actor_option(add)
    add.set_defaults(func=_add)
    guard = sub.add_parser(
        "guard",
        parents=[parent],
        help="default fraud guards for the tariff's accounts (docs/FRAUD.md)",
        description="Set the default fraud guards of the tariff's accounts (an account's own setting, "
        "`fsbill account guard`, wins); without options, show them. `none` or `off` clears one.",
    )
    guard.add_argument("name")
    add_guard_options(guard)
    add_actor_option(guard)
    guard.set_defaults(func=_guard)
    lst = sub.add_parser("list", parents=[parent], help="list tariffs")
    lst.set_defaults(func=_list)
    set_ = sub.add_parser("set", parents=[parent], help="change a tariff's rounding rule or time zone (new calls)")
    set_.add_argument("name")
    set_.add_argument("--decimals", type=non_negative_int, help="a call's cost is rounded to this many decimals")
    set_.add_argument("--rounding", choices=[m.value for m in RoundingMethod], help="how a call's cost is rounded")
    set_.add_argument("--timezone", help="IANA zone for time-of-day bands (and the day of daily caps)")
    add_actor_option(set_)
    add_guard_options(set_)  # the default fraud guards of its accounts (docs/FRAUD.md)
    add_low_balance_option(set_, on_account=False)  # the default levels of its accounts (docs/NOTICES.md)
    set_.set_defaults(func=_set)
    close = sub.add_parser("close", parents=[parent], help="give the tariff to no more accounts (those on it keep it)")
    close.add_argument("name")
    add_actor_option(close)
    close.set_defaults(func=_close)


def _json(t: ledger.TariffView) -> dict:
    return {
        "name": t.name,
        "currency": t.currency,
        "decimals": t.rounding.decimals,
        "rounding": t.rounding.method.value,
        "timezone": t.timezone,
        "rates": t.rate_count,
        "status": t.status,
        "owner": t.owner or None,
    }


def _add(args: argparse.Namespace) -> int:
    if args.name.startswith(VENDOR_DECK_PREFIX):
        raise InvalidInput(
            f"tariff names starting with {VENDOR_DECK_PREFIX!r} hold vendors' cost decks (fsbill vendor add)"
        )
    store = open_store(load(args))
    rule = RoundingRule(args.decimals, RoundingMethod(args.rounding))
    t = ledger.create_tariff(
        store, args.name, args.currency, Clock().now_us(), rule, args.timezone, actor=actor(args), owner=args.owner
    )
    emit(
        args,
        _json(t),
        f"tariff {t.name} created ({t.currency}, {rule.decimals} decimals {rule.method.value}, {t.timezone})",
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    # vendors' cost decks are tariffs too, listed by `fsbill vendor list`
    tariffs = [t for t in ledger.list_tariffs(open_store(load(args))) if not t.name.startswith(VENDOR_DECK_PREFIX)]
    emit(
        args,
        [_json(t) for t in tariffs],
        lambda: table(
            [
                [
                    t.name,
                    t.currency,
                    f"{t.rounding.decimals} {t.rounding.method.value}",
                    t.timezone,
                    t.rate_count,
                    t.status,
                ]
                for t in tariffs
            ],
            ["NAME", "CURRENCY", "ROUNDING", "TIMEZONE", "RATES", "STATUS"],
        ),
    )
    return 0


def _set(args: argparse.Namespace) -> int:
    attributes = any(v is not None for v in (args.decimals, args.rounding, args.timezone))
    if guard_changes(args) and not attributes and args.low_balance is None:
        return _guard(args)
    guarded: tuple[Change, ...] = ()
    if guard_changes(args):  # the guards first, then the attributes (each its own transaction)
        guarded = dbguards.set_tariff_guards(
            open_store(load(args)), args.name, guard_changes(args), Clock().now_us(), actor=actor(args)
        ).changes
    low: dbnotices.LevelsView | None = None
    if args.low_balance is not None:  # its accounts' default low-balance levels (docs/NOTICES.md)
        low = dbnotices.set_levels(
            open_store(load(args)), "tariff", args.name, args.low_balance, Clock().now_us(), actor=actor(args)
        )
    if attributes or (low is None and not guarded):
        r = management.set_tariff(
            open_store(load(args)),
            args.name,
            Clock().now_us(),
            actor(args),
            decimals=args.decimals,
            rounding=args.rounding,
            timezone=args.timezone,
        )
        tariff, changed = r.tariff, r.changes
    else:
        tariff, changed = ledger.get_tariff(open_store(load(args)), args.name), ()
    done = (*guarded, *(low.changes if low else ()), *changed)
    data = _json(tariff) | (low.as_json() if low else {}) | {"changes": changes_json(done)}
    text = changes_text(f"tariff {tariff.name}", done)
    if low is not None:
        text += "\n" + low_balance_text(f"tariff {tariff.name}", low).splitlines()[-1]
    emit(args, data, text)
    return 0


def _close(args: argparse.Namespace) -> int:
    r = management.close_tariff(open_store(load(args)), args.name, Clock().now_us(), actor(args))
    text = f"tariff {r.tariff.name} closed: it is given to no more accounts"
    if r.accounts:
        text += f"; {r.accounts} open account(s) keep it (move them with 'fsbill account set CODE --tariff T')"
    emit(args, _json(r.tariff) | {"changes": changes_json(r.changes), "accounts": r.accounts}, text)
    return 0


def _guard(args: argparse.Namespace) -> int:
    changes = guard_changes(args)
    t = dbguards.set_tariff_guards(open_store(load(args)), args.name, changes, Clock().now_us(), actor=actor(args))
    g = t.defaults

    def text() -> str:
        def show(value: object, unit: str = "") -> str:
            return "none" if value in (None, ()) else f"{value}{unit}"

        cur = f" {t.currency}"
        return "\n".join(
            [
                (changes_text(f"tariff {t.tariff}", t.changes) + "\n" if changes else "")
                + f"tariff {t.tariff}: default guards in force ({t.timezone})",
                f"daily cap    {show(g.daily_cap, cur)}",
                f"monthly cap  {show(g.monthly_cap, cur)}",
                f"blocked      {show(','.join(g.block) or None)}",
                f"allowed only {show(','.join(g.allow) or None)}",
                f"max rate     {show(g.max_rate, cur + '/min')}",
                f"calls/minute {show(g.max_calls_per_minute)}",
            ]
        )

    emit(args, t.as_json() | {"changes": changes_json(t.changes)}, text)
    return 0
