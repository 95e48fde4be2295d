"""`fsbill vendor add|list|show|set|suspend|resume|close|rates import` and `fsbill route show`."""

from __future__ import annotations

import argparse

from fsbill.cli.accounts import changes_json, changes_text
from fsbill.cli.common import actor, add_actor_option, emit, load, non_negative_int, open_store, parse_instant, table
from fsbill.cli.deckimport import add_options, import_options, report, run_import, source
from fsbill.clock import Clock
from fsbill.core.money import RoundingMethod, RoundingRule
from fsbill.core.rating import normalize_number
from fsbill.core.routing import REASON_TEXT, Route, choose
from fsbill.db import ledger, management
from fsbill.db import rates as dbrates
from fsbill.db import vendors as dbvendors
from fsbill.errors import NotFound
from fsbill.instant import iso


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    vendor = subparsers.add_parser("vendor", help="vendors (carriers): their cost decks, limits and state")
    sub = vendor.add_subparsers(dest="vendor_command", metavar="ACTION", parser_class=type(vendor))
    sub.required = True

    add = sub.add_parser("add", parents=[parent], help="create a vendor with an empty cost deck")
    add.add_argument("name")
    add.add_argument(
        "--dial-string",
        required=True,
        help="bridge target, '{destination}' is replaced by the number, e.g. 'sofia/gateway/NAME/{destination}'",
    )
    add.add_argument("--max-channels", type=non_negative_int, default=0, help="concurrent calls (0 = no limit)")
    add.add_argument("--weight", type=_int, default=0, help="among vendors of equal cost, higher is tried first")
    add.add_argument("--currency", default="EUR", help="ISO 4217 code of its deck (default EUR)")
    add.add_argument("--decimals", type=non_negative_int, default=4, help="its cost rounding (default 4)")
    add.add_argument(
        "--rounding",
        choices=[m.value for m in RoundingMethod],
        default=RoundingMethod.HALF_UP.value,
        help="how its cost of a call is rounded (default half_up)",
    )
    add.add_argument("--timezone", default="UTC", help="IANA zone of its deck's time bands (default UTC)")
    add_actor_option(add)
    add.set_defaults(func=_add)

    lst = sub.add_parser("list", parents=[parent], help="list vendors")
    lst.set_defaults(func=_list)

    show = sub.add_parser("show", parents=[parent], help="one vendor")
    show.add_argument("name")
    show.set_defaults(func=_show)

    for verb, status, text in (
        ("suspend", dbvendors.SUSPENDED, "take a vendor out of routing"),
        ("resume", dbvendors.ACTIVE, "put a suspended vendor back into routing"),
    ):
        p = sub.add_parser(verb, parents=[parent], help=text)
        p.add_argument("name")
        add_actor_option(p)
        p.set_defaults(func=_set_status, status=status, verb=verb)

    set_ = sub.add_parser("set", parents=[parent], help="change a vendor's dial string, weight, limit or deck rounding")
    set_.add_argument("name")
    set_.add_argument("--dial-string", help="bridge target, '{destination}' is replaced by the number")
    set_.add_argument("--weight", type=_int, help="among vendors of equal cost, higher is tried first")
    set_.add_argument("--max-channels", type=non_negative_int, help="concurrent calls (0 = no limit); new calls only")
    set_.add_argument("--decimals", type=non_negative_int, help="its cost rounding")
    set_.add_argument("--rounding", choices=[m.value for m in RoundingMethod], help="how its cost of a call is rounded")
    set_.add_argument("--timezone", help="IANA zone of its deck's time bands")
    add_actor_option(set_)
    set_.set_defaults(func=_set)

    close = sub.add_parser("close", parents=[parent], help="retire a vendor for good: never routed to again")
    close.add_argument("name")
    add_actor_option(close)
    close.set_defaults(func=_close)

    rates = sub.add_parser("rates", help="a vendor's cost deck")
    rsub = rates.add_subparsers(dest="vendor_rates_command", metavar="ACTION", parser_class=type(vendor))
    rsub.required = True
    imp = rsub.add_parser("import", parents=[parent], help="import a CSV cost deck (same format as tariffs)")
    imp.add_argument("name")
    imp.add_argument("file", help="CSV with a header; required columns prefix,rate (see docs); '-' reads stdin")
    add_options(imp, "vendor's")
    imp.set_defaults(func=_import)

    route = subparsers.add_parser("route", help="least-cost routing: what fsbill would do with a call")
    rsub2 = route.add_subparsers(dest="route_command", metavar="ACTION", parser_class=type(route))
    rsub2.required = True
    rshow = rsub2.add_parser(
        "show", parents=[parent], help="every vendor with a rate for a number: cost, sell, margin, usable or why not"
    )
    rshow.add_argument("account")
    rshow.add_argument("number")
    rshow.add_argument("--at", type=parse_instant, metavar="ISO8601", help="call start (default: now)")
    rshow.set_defaults(func=_route_show)


def _limit(v: dbvendors.VendorView) -> str:
    return f"{v.live_channels}/{v.max_channels}" if v.max_channels else f"{v.live_channels}/-"


def _add(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    v = dbvendors.create_vendor(
        store,
        args.name,
        args.dial_string,
        Clock().now_us(),
        max_channels=args.max_channels,
        weight=args.weight,
        currency=args.currency,
        rounding=RoundingRule(args.decimals, RoundingMethod(args.rounding)),
        timezone=args.timezone,
        actor=actor(args),
    )
    emit(args, v.as_json(), f"vendor {v.name} created ({v.currency}, dial string {v.dial_string})")
    return 0


def _list(args: argparse.Namespace) -> int:
    vendors = dbvendors.list_vendors(open_store(load(args)))
    emit(
        args,
        [v.as_json() for v in vendors],
        lambda: table(
            [
                [v.name, v.status, v.currency, _limit(v), str(v.weight), str(v.rate_count), v.dial_string]
                for v in vendors
            ],
            ["NAME", "STATUS", "CURRENCY", "CHANNELS", "WEIGHT", "RATES", "DIAL STRING"],
        ),
    )
    return 0


def _show_text(v: dbvendors.VendorView) -> str:
    return (
        f"vendor {v.name} ({v.status})\n"
        f"  dial string  {v.dial_string}\n"
        f"  currency     {v.currency}, {v.rounding.decimals} decimals {v.rounding.method.value}, {v.timezone}\n"
        f"  channels     {_limit(v)}\n"
        f"  weight       {v.weight}\n"
        f"  rates        {v.rate_count}"
    )


def _show(args: argparse.Namespace) -> int:
    v = dbvendors.get_vendor(open_store(load(args)), args.name)
    emit(args, v.as_json(), _show_text(v))
    return 0


def _set_status(args: argparse.Namespace) -> int:
    r = management.set_vendor_status(open_store(load(args)), args.name, args.status, Clock().now_us(), actor(args))
    emit(args, r.vendor.as_json(), f"vendor {r.vendor.name} {r.vendor.status}")
    return 0


def _set(args: argparse.Namespace) -> int:
    r = management.set_vendor(
        open_store(load(args)),
        args.name,
        Clock().now_us(),
        actor(args),
        dial_string=args.dial_string,
        weight=args.weight,
        max_channels=args.max_channels,
        decimals=args.decimals,
        rounding=args.rounding,
        timezone=args.timezone,
    )
    v = r.vendor
    text = changes_text(f"vendor {v.name}", r.changes)
    if v.max_channels and v.live_channels > v.max_channels:
        text += f"\n{v.live_channels} live calls exceed the new limit of {v.max_channels}: it applies to new calls"
    emit(args, v.as_json() | {"changes": changes_json(r.changes)}, text)
    return 0


def _close(args: argparse.Namespace) -> int:
    r = management.close_vendor(open_store(load(args)), args.name, Clock().now_us(), actor(args))
    v = r.vendor
    text = f"vendor {v.name} closed: never routed to again"
    if v.live_channels:
        text += f"; {v.live_channels} live call(s) on it finish there"
    emit(args, v.as_json() | {"changes": changes_json(r.changes)}, text)
    return 0


def _import(args: argparse.Namespace) -> int:
    settings = load(args)
    store = open_store(settings)
    options = import_options(args, settings)
    result = run_import(
        args, lambda progress: dbvendors.import_rates(store, args.name, source(args), progress=progress, **options)
    )
    data = result.as_json()
    data = {"vendor": data.pop("tariff"), **data}
    report(args, settings, result, f"vendor {result.tariff}", data)
    return 0


# -- route show ----------------------------------------------------------------------------------------
def route_json(route: Route) -> list[dict]:
    return [
        {
            "vendor": o.vendor,
            "prefix": o.prefix,
            "cost": str(o.cost),
            "sell": str(o.sell),
            "margin": str(o.margin),
            "usable": o.usable,
            "reason": o.reason or None,
            "why": REASON_TEXT.get(o.reason) if o.reason else None,
            "weight": o.weight,
            "dial_string": o.dial_string,
        }
        for o in route.options
    ]


def _route_show(args: argparse.Namespace) -> int:
    settings = load(args)
    store = open_store(settings)
    account = ledger.get_account(store, args.account)
    at_us = args.at if args.at is not None else Clock().now_us()
    number = normalize_number(args.number, settings.international_prefix)
    sell_rate = dbrates.lookup_rate(store, account.tariff, number, at_us)
    if sell_rate is None:  # 'not found', as `rates lookup` says it
        raise NotFound(f"no rate for {number} in tariff {account.tariff} at {iso(at_us)}")
    vendors = dbvendors.list_vendors(store, with_counts=False)
    rates = dbvendors.rates_for_number(store, vendors, number, at_us)
    route = choose(
        [rv for _, rv in dbvendors.offers(vendors, rates)], sell_rate, account.currency, number, settings.allow_loss
    )
    data = {
        "account": account.code,
        "number": number,
        "currency": account.currency,
        "at": iso(at_us),
        "sell_prefix": sell_rate.prefix,
        "routing": settings.routing,
        "allow_loss": settings.allow_loss,
        "reason": route.reason or None,
        "vendors": route_json(route),
    }

    def text() -> str:
        head = f"{number} for {account.code}: sells at prefix {sell_rate.prefix}, compared on a 60 s call"
        if route.reason:
            head += f" -> {route.reason}"
        rows = [
            [
                str(i + 1) if o.usable else "-",
                o.vendor,
                o.prefix,
                str(o.cost),
                str(o.sell),
                str(o.margin),
                "yes" if o.usable else f"no: {REASON_TEXT[o.reason]}",
            ]
            for i, o in enumerate(route.options)
        ]
        body = (
            table(rows, ["TRY", "VENDOR", "PREFIX", "COST", "SELL", "MARGIN", "USABLE"])
            if rows
            else "no vendor has a rate"
        )
        return head + "\n" + body

    emit(args, data, text)
    return 0
