"""`fsbill fx set|list`: exchange rates between the currencies of a reseller tree (fsbill.db.fx,
docs/RESELLERS.md "Currencies")."""

from __future__ import annotations

import argparse

from fsbill.cli.common import actor, add_actor_option, emit, load, open_store, table
from fsbill.clock import Clock
from fsbill.db import fx as dbfx
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    fx = subparsers.add_parser("fx", help="exchange rates between the levels of a reseller tree")
    sub = fx.add_subparsers(dest="fx_command", metavar="ACTION", parser_class=type(fx))
    sub.required = True
    set_ = sub.add_parser(
        "set", parents=[parent], help="1 FROM = RATE TO (exact decimal; also used the other way by division)"
    )
    set_.add_argument("source", metavar="FROM", help="ISO 4217 code, e.g. USD")
    set_.add_argument("target", metavar="TO", help="ISO 4217 code, e.g. RUB")
    set_.add_argument("rate", metavar="RATE", help="exact decimal, e.g. 90.1234 (no exponent, no comma)")
    add_actor_option(set_)
    set_.set_defaults(func=_set)
    lst = sub.add_parser("list", parents=[parent], help="every rate set")
    lst.set_defaults(func=_list)


def _set(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    v = dbfx.set_rate(store, args.source, args.target, args.rate, Clock().now_us(), actor=actor(args))
    emit(args, v.as_json(), f"1 {v.source} = {v.rate} {v.target}")
    return 0


def _list(args: argparse.Namespace) -> int:
    rates = dbfx.list_rates(open_store(load(args)))
    emit(
        args,
        [r.as_json() for r in rates],
        lambda: table(
            [[r.source, r.target, r.rate, iso(r.updated_us)] for r in rates], ["FROM", "TO", "RATE", "UPDATED"]
        ),
    )
    return 0
