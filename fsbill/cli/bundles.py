"""`fsbill bundle add|list|show`: bundles of minutes, sold through a plan (docs/BUNDLES.md)."""

from __future__ import annotations

import argparse

from fsbill.cli.common import actor, add_actor_option, emit, load, non_negative_int, open_store, positive_int, table
from fsbill.clock import Clock
from fsbill.db import bundles as dbbundles


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    b = subparsers.add_parser(
        "bundle", help="bundles of minutes: seconds for some destinations each period, sold through a plan"
    )
    sub = b.add_subparsers(dest="bundle_command", metavar="ACTION", parser_class=type(b))
    sub.required = True
    add = sub.add_parser("add", parents=[parent], help="define a bundle (sell it with 'plan add --bundle NAME')")
    add.add_argument("name")
    add.add_argument("--seconds", type=positive_int, required=True, help="seconds given each period of its plan")
    add.add_argument(
        "--prefixes", metavar="P1,P2", help="the destinations it covers, longest prefix first (default: all)"
    )
    add.add_argument(
        "--rollover-max",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="at most N unused seconds carried into the next period (default 0)",
    )
    add.add_argument(
        "--increment", type=positive_int, default=1, metavar="S", help="a call's use is rounded up to S seconds (1)"
    )
    add_actor_option(add)
    add.set_defaults(func=_add)
    lst = sub.add_parser("list", parents=[parent], help="list bundles")
    lst.set_defaults(func=_list)
    show = sub.add_parser("show", parents=[parent], help="show one bundle and the plans that sell it")
    show.add_argument("name")
    show.set_defaults(func=_show)


def _describe(b: dbbundles.BundleView) -> str:
    covers = ",".join(b.prefixes) or "every destination"
    sold = ", ".join(b.plans) or "no plan yet"
    return (
        f"bundle {b.name}: {b.seconds} s a period for {covers}; rollover at most {b.rollover_max_s} s; "
        f"increment {b.increment_s} s; sold by {sold}"
    )


def _add(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    b = dbbundles.create_bundle(
        store,
        args.name,
        args.seconds,
        Clock().now_us(),
        prefixes=args.prefixes,
        rollover_max_s=args.rollover_max,
        increment_s=args.increment,
        actor=actor(args),
    )
    emit(
        args, b.as_json(), _describe(b) + f"\nsell it: fsbill plan add NAME --fee F --period monthly --bundle {b.name}"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    found = dbbundles.list_bundles(open_store(load(args)))
    emit(
        args,
        [b.as_json() for b in found],
        lambda: table(
            [
                [b.name, b.seconds, ",".join(b.prefixes) or "*", b.rollover_max_s, b.increment_s, ",".join(b.plans)]
                for b in found
            ],
            ["BUNDLE", "SECONDS", "PREFIXES", "ROLLOVER_MAX", "INCREMENT", "PLANS"],
        ),
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    b = dbbundles.show_bundle(open_store(load(args)), args.name)
    emit(args, b.as_json(), _describe(b))
    return 0
