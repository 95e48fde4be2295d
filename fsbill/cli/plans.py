"""`fsbill plan add|list`, `subscribe`, `unsubscribe`, `subscriptions`, `charges run`:
recurring charges (docs/PLANS.md)."""

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
from fsbill.core.plans import Period
from fsbill.db import charges as dbcharges
from fsbill.db import plans as dbplans
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    plan = subparsers.add_parser("plan", help="recurring fees: a DID rental, a PBX seat, a trunk (docs/PLANS.md)")
    sub = plan.add_subparsers(dest="plan_command", metavar="ACTION", parser_class=type(plan))
    sub.required = True
    add = sub.add_parser("add", parents=[parent], help="create a plan")
    add.add_argument("name")
    add.add_argument("--fee", type=amount, required=True, help="the fee per month, e.g. 5.00")
    add.add_argument(
        "--period",
        choices=[p.value for p in Period],
        required=True,
        help="monthly: charged in advance each calendar month; daily: a share of the monthly fee each day",
    )
    add.add_argument("--currency", default="EUR", help="ISO 4217 code (default EUR); must be the account's")
    add.add_argument(
        "--bundle",
        metavar="NAME",
        help="sell this bundle of minutes, renewed each period (docs/BUNDLES.md); --fee 0 makes it a free allowance",
    )
    add_actor_option(add)
    add.set_defaults(func=_plan_add)
    lst = sub.add_parser("list", parents=[parent], help="list plans")
    lst.set_defaults(func=_plan_list)

    s = subparsers.add_parser("subscribe", parents=[parent], help="subscribe an account to a plan")
    s.add_argument("account")
    s.add_argument("plan")
    s.add_argument("--quantity", type=positive_int, default=1, help="how many (the fee is multiplied); default 1")
    s.add_argument("--from", dest="start", type=parse_instant, metavar="ISO8601", help="when it starts (default now)")
    add_actor_option(s)
    s.set_defaults(func=_subscribe)

    u = subparsers.add_parser("unsubscribe", parents=[parent], help="end an account's subscription to a plan")
    u.add_argument("account")
    u.add_argument("plan")
    u.add_argument(
        "--at",
        type=parse_instant,
        metavar="ISO8601",
        help="when it ends (default now); the unused part of a charged period is credited",
    )
    add_actor_option(u)
    u.set_defaults(func=_unsubscribe)

    ls = subparsers.add_parser("subscriptions", parents=[parent], help="subscriptions (of one account)")
    ls.add_argument("account", nargs="?")
    ls.set_defaults(func=_subscriptions)

    ch = subparsers.add_parser("charges", help="recurring charges")
    chs = ch.add_subparsers(dest="charges_command", metavar="ACTION", parser_class=type(ch))
    chs.required = True
    run = chs.add_parser(
        "run",
        parents=[parent],
        help="post every charge and credit due (idempotent; cron may run it, `fsbill serve` does)",
    )
    run.add_argument("--now", type=parse_instant, metavar="ISO8601", help="charge as of this instant (default now)")
    run.add_argument(
        "--limit",
        type=positive_int,
        default=dbcharges.DEFAULT_LIMIT,
        help=f"post at most N (default {dbcharges.DEFAULT_LIMIT}); the next run continues",
    )
    run.add_argument("--node", default="cli", help="recorded on each charge (default cli)")
    run.set_defaults(func=_run)


def _plan_add(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    p = dbplans.create_plan(
        store, args.name, args.fee, args.period, args.currency, Clock().now_us(), actor=actor(args), bundle=args.bundle
    )
    sells = f", with bundle {p.bundle}" if p.bundle else ""
    emit(args, p.as_json(), f"plan {p.name} created: {p.fee} {p.currency} a month, charged {p.period.value}{sells}")
    return 0


def _plan_list(args: argparse.Namespace) -> int:
    plans = dbplans.list_plans(open_store(load(args)))
    emit(
        args,
        [p.as_json() for p in plans],
        lambda: table(
            [[p.name, f"{p.fee}", p.currency, p.period.value, p.subscriptions] for p in plans],
            ["PLAN", "FEE/MONTH", "CURRENCY", "PERIOD", "SUBSCRIPTIONS"],
        ),
    )
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    s = dbplans.subscribe(
        store, args.account, args.plan, Clock().now_us(), quantity=args.quantity, start_us=args.start, actor=actor(args)
    )
    emit(
        args,
        s.as_json(),
        f"{s.account} subscribes to {s.plan} x{s.quantity} from {iso(s.start_us)} "
        f"({s.fee} {s.currency} a month each, {s.period.value}); 'fsbill charges run' posts what is due",
    )
    return 0


def _unsubscribe(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    s = dbplans.unsubscribe(store, args.account, args.plan, Clock().now_us(), at_us=args.at, actor=actor(args))
    emit(
        args,
        s.as_json(),
        f"{s.account} unsubscribed from {s.plan} at {iso(s.end_us)}; "
        "the unused part of a charged period is credited by 'fsbill charges run' once that time has passed",
    )
    return 0


def _subscriptions(args: argparse.Namespace) -> int:
    subs = dbplans.subscriptions(open_store(load(args)), args.account)
    emit(
        args,
        [s.as_json() for s in subs],
        lambda: table(
            [
                [
                    s.account,
                    s.plan,
                    s.quantity,
                    f"{s.fee} {s.currency}",
                    s.period.value,
                    iso(s.start_us),
                    iso(s.end_us) or "-",
                    f"{s.charged}",
                ]
                for s in subs
            ],
            ["ACCOUNT", "PLAN", "QTY", "FEE/MONTH", "PERIOD", "FROM", "UNTIL", "CHARGED"],
        ),
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    now = args.now if args.now is not None else Clock().now_us()
    report = dbcharges.run_charges(store, now, node=args.node, limit=args.limit)
    data = report.as_json() | {"now": iso(now)}

    def text() -> str:
        def amounts(d: dict[str, str]) -> str:
            return ", ".join(f"{v} {k}" for k, v in d.items()) or "0"

        j = report.as_json()
        lines = [
            f"charges run at {iso(now)}: {report.charges} charges ({amounts(j['charged'])}), "
            f"{report.credits} credits ({amounts(j['credited'])}), {report.skipped} already posted",
        ]
        if j["arrears"]:
            lines.append(f"owed as arrears (not available now): {amounts(j['arrears'])}")
        if j["paid"]:
            lines.append(f"arrears paid: {amounts(j['paid'])}")
        if report.more:
            lines.append(f"stopped at --limit {args.limit}: run again to post the rest")
        return "\n".join(lines)

    emit(args, data, text)
    return 0
