"""`fsbill did add|list|show|set|remove`: inbound numbers, whose owner pays for calls to them
(docs/DIDS.md)."""

from __future__ import annotations

import argparse

from fsbill.cli.common import actor, add_actor_option, amount, emit, load, non_negative_int, open_store, table
from fsbill.clock import Clock
from fsbill.core.did import ON_EMPTY
from fsbill.core.money import Money
from fsbill.db import dids as dbdids
from fsbill.errors import InvalidInput


def _increments(text: str) -> tuple[int, int]:
    try:
        return dbdids.parse_increments(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _options(p: argparse.ArgumentParser, adding: bool) -> None:
    p.add_argument("number", help="the number as FreeSWITCH sees it called (digits; a leading '+' is dropped)")
    p.add_argument("--account", required=adding, help="the owner: it pays for calls to the number")
    p.add_argument(
        "--dial-string",
        required=adding,
        metavar="STRING",
        help="where to bridge calls to the number, e.g. user/1000 or sofia/gateway/pbx/{destination}",
    )
    p.add_argument(
        "--rate",
        type=amount,
        metavar="PRICE_PER_MIN",
        help="what the owner pays per minute" + (" (default: none, free inbound)" if adding else ""),
    )
    p.add_argument("--connect-fee", type=amount, metavar="F", help="charged once a call connects (needs --rate)")
    p.add_argument(
        "--increments",
        type=_increments,
        metavar="INITIAL/NEXT",
        help="billing increments in seconds" + (" (default 1/1)" if adding else ""),
    )
    p.add_argument(
        "--on-empty",
        choices=ON_EMPTY,
        help="when the owner cannot pay or is suspended or closed: reject the call as configured "
        "(rejections.<reason>) or let it through unbilled" + (" (default reject)" if adding else ""),
    )
    p.add_argument(
        "--max-channels",
        type=non_negative_int,
        metavar="N",
        help="concurrent calls to the number, all nodes together (0 = no limit" + (", the default)" if adding else ")"),
    )
    add_actor_option(p)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    did = subparsers.add_parser("did", help="inbound numbers: the owner pays for calls to them (docs/DIDS.md)")
    sub = did.add_subparsers(dest="did_command", metavar="ACTION", parser_class=type(did))
    sub.required = True
    add = sub.add_parser("add", parents=[parent], help="add an inbound number")
    _options(add, adding=True)
    add.set_defaults(func=_add)
    st = sub.add_parser("set", parents=[parent], help="change an inbound number (only what is given)")
    _options(st, adding=False)
    st.add_argument("--free", action="store_true", help="drop the rate: free inbound")
    st.set_defaults(func=_set)
    lst = sub.add_parser("list", parents=[parent], help="list inbound numbers")
    lst.add_argument("--account", help="only this account's numbers")
    lst.set_defaults(func=_list)
    show = sub.add_parser("show", parents=[parent], help="show one inbound number")
    show.add_argument("number")
    show.set_defaults(func=_show)
    rm = sub.add_parser("remove", parents=[parent], help="remove an inbound number: calls to it are refused")
    rm.add_argument("number")
    add_actor_option(rm)
    rm.set_defaults(func=_remove)


def _describe(v: dbdids.DidView) -> str:
    d = v.did
    price = (
        "free inbound"
        if d.rate is None
        else f"{d.rate}/min, connect fee {d.connect_fee}, {d.initial_increment_s}/{d.increment_s}"
    )
    limit = f", at most {d.max_channels} calls" if d.max_channels else ""
    return f"{d.number} -> {d.dial_string}, paid by {v.account} ({price}; on empty: {d.on_empty}{limit})"


def _add(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    v = dbdids.add_did(
        store,
        args.number,
        args.account,
        args.dial_string,
        Clock().now_us(),
        rate=args.rate,
        connect_fee=args.connect_fee if args.connect_fee is not None else Money(0),
        increments=args.increments or (1, 1),
        on_empty=args.on_empty or "reject",
        max_channels=args.max_channels or 0,
        actor=actor(args),
    )
    emit(args, v.as_json(), f"number added: {_describe(v)}")
    return 0


def _set(args: argparse.Namespace) -> int:
    if args.free and (args.rate is not None or args.connect_fee is not None):
        raise InvalidInput("--free drops the rate: give either --free or --rate/--connect-fee, not both")
    store = open_store(load(args))
    v = dbdids.set_did(
        store,
        args.number,
        Clock().now_us(),
        account=args.account,
        dial_string=args.dial_string,
        rate=args.rate,
        free=args.free,
        connect_fee=args.connect_fee,
        increments=args.increments,
        on_empty=args.on_empty,
        max_channels=args.max_channels,
        actor=actor(args),
    )
    emit(args, v.as_json(), f"number changed: {_describe(v)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    views = dbdids.list_dids(open_store(load(args)), args.account)

    def text() -> str:
        rows = [
            [
                v.did.number,
                v.account,
                v.did.dial_string,
                "free" if v.did.rate is None else str(v.did.rate),
                v.did.on_empty,
                v.did.max_channels or "-",
            ]
            for v in views
        ]
        return table(rows, ["NUMBER", "ACCOUNT", "DIAL STRING", "RATE/MIN", "ON EMPTY", "MAX CHANNELS"])

    emit(args, [v.as_json() for v in views], text)
    return 0


def _show(args: argparse.Namespace) -> int:
    v = dbdids.get_did(open_store(load(args)), args.number)
    emit(args, v.as_json(), _describe(v))
    return 0


def _remove(args: argparse.Namespace) -> int:
    v = dbdids.remove_did(open_store(load(args)), args.number, Clock().now_us(), actor=actor(args))
    emit(args, v.as_json(), f"number {v.did.number} removed: calls to it are refused (unknown_did)")
    return 0
