"""`fsbill rates import|lookup|quote|list`: rate decks from the operator's side."""

from __future__ import annotations

import argparse

from fsbill.cli.common import emit, load, open_store, parse_instant, positive_int, table
from fsbill.cli.deckimport import add_options, import_options, report, run_import, source
from fsbill.clock import Clock
from fsbill.core.grant import affordable_s
from fsbill.core.money import Money
from fsbill.core.rating import FOREVER_S, Rate, billed_seconds, cost, normalize_number
from fsbill.db import ledger
from fsbill.db import rates as dbrates
from fsbill.errors import InvalidInput, NotFound
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    rates = subparsers.add_parser("rates", help="rate decks: import, look up, quote, list")
    sub = rates.add_subparsers(dest="rates_command", metavar="ACTION", parser_class=type(rates))
    sub.required = True

    imp = sub.add_parser("import", parents=[parent], help="import a CSV rate deck into a tariff (all or nothing)")
    imp.add_argument("tariff")
    imp.add_argument("file", help="CSV with a header; required columns prefix,rate (see docs); '-' reads stdin")
    add_options(imp, "tariff's")
    imp.set_defaults(func=_import)

    lookup = sub.add_parser("lookup", parents=[parent], help="the rate a number gets in a tariff")
    lookup.add_argument("tariff")
    lookup.add_argument("number")
    lookup.add_argument("--at", type=parse_instant, metavar="ISO8601", help="call start (default: now)")
    lookup.set_defaults(func=_lookup)

    quote = sub.add_parser(
        "quote", parents=[parent], help="what a call would cost an account, and how long its money lasts"
    )
    quote.add_argument("account")
    quote.add_argument("number")
    quote.add_argument("--seconds", type=positive_int, required=True, help="answered duration to price")
    quote.add_argument("--at", type=parse_instant, metavar="ISO8601", help="call start (default: now)")
    quote.set_defaults(func=_quote)

    lst = sub.add_parser("list", parents=[parent], help="a tariff's rates, by prefix")
    lst.add_argument("tariff")
    lst.add_argument("--prefix", help="only prefixes starting with these digits")
    lst.add_argument("--limit", type=positive_int, help="at most this many rows")
    lst.set_defaults(func=_list)


# -- import -------------------------------------------------------------------------------------
def _import(args: argparse.Namespace) -> int:
    settings = load(args)
    store = open_store(settings)
    options = import_options(args, settings)
    result = run_import(
        args, lambda progress: dbrates.import_deck(store, args.tariff, source(args), progress=progress, **options)
    )
    report(args, settings, result, result.tariff, result.as_json())
    return 0


# -- lookup and quote ------------------------------------------------------------------------------
def _increments(rate: Rate) -> str:
    text = f"{rate.initial_increment_s}/{rate.increment_s}"
    return f"{text} min {rate.min_duration_s}s" if rate.min_duration_s else text


def _band(rate: Rate) -> str | None:
    parts = []
    if rate.weekdays is not None:
        parts.append("days " + "".join(str(d) for d in sorted(rate.weekdays)))
    if rate.time_from_min is not None and rate.time_to_min is not None:
        parts.append(
            f"{rate.time_from_min // 60:02d}:{rate.time_from_min % 60:02d}-"
            f"{rate.time_to_min // 60:02d}:{rate.time_to_min % 60:02d}"
        )
    return " ".join(parts) or None


def _rate_json(rate: Rate) -> dict:
    return {
        "prefix": rate.prefix,
        "rate": str(rate.rate),
        "connect_fee": str(rate.connect_fee),
        "initial_increment_s": rate.initial_increment_s,
        "increment_s": rate.increment_s,
        "min_duration_s": rate.min_duration_s,
        "description": rate.description,
        "effective_from": iso(rate.effective_from_us),
        "effective_until": iso(rate.effective_until_us),
        "band": _band(rate),
    }


def _find(
    store: object, tariff: str, number_text: str, at_us: int, international_prefix: str
) -> tuple[str, Rate | None]:
    number = normalize_number(number_text, international_prefix)
    return number, dbrates.lookup_rate(store, tariff, number, at_us)  # type: ignore[arg-type]


def _no_rate(number: str, tariff: str, at_us: int) -> int:
    """No rate for the number: 'not found', like an unknown account or tariff (exit 3)."""
    raise NotFound(f"no rate for {number} in tariff {tariff} at {iso(at_us)}")


def _lookup(args: argparse.Namespace) -> int:
    settings = load(args)
    store = open_store(settings)
    at_us = args.at if args.at is not None else Clock().now_us()
    number, rate = _find(store, args.tariff, args.number, at_us, settings.international_prefix)
    if rate is None:
        return _no_rate(number, args.tariff, at_us)
    data = {"number": number, **_rate_json(rate)}
    text = (
        f"{number}: prefix {rate.prefix} {rate.description!s}".rstrip()
        + f"\n  rate {rate.rate}/min  connect fee {rate.connect_fee}  increments {_increments(rate)}"
        + (f"\n  band {_band(rate)}" if _band(rate) else "")
    )
    emit(args, data, text)
    return 0


def _quote(args: argparse.Namespace) -> int:
    settings = load(args)
    store = open_store(settings)
    account = ledger.get_account(store, args.account)
    at_us = args.at if args.at is not None else Clock().now_us()
    number, rate = _find(store, account.tariff, args.number, at_us, settings.international_prefix)
    if rate is None:
        return _no_rate(number, account.tariff, at_us)
    if args.seconds > FOREVER_S:
        raise InvalidInput(f"--seconds must be at most {FOREVER_S}")
    price = cost(rate, args.seconds)
    available = account.available
    lasts_s = affordable_s(rate, available)
    unlimited = rate.rate == Money(0) and lasts_s == FOREVER_S
    data = {
        "account": account.code,
        "currency": account.currency,
        "number": number,
        "prefix": rate.prefix,
        "rate": str(rate.rate),
        "seconds": args.seconds,
        "billed_s": billed_seconds(rate, args.seconds),
        "cost": str(price),
        "available": str(available),
        "max_seconds": None if unlimited else lasts_s,
    }
    lasts = "without limit (free destination)" if unlimited else f"{lasts_s} s ({_clock(lasts_s)})"
    text = (
        f"{number} via prefix {rate.prefix} at {rate.rate}/min ({_increments(rate)}): "
        f"{args.seconds} s bills {data['billed_s']} s, costs {price} {account.currency}\n"
        f"available {available} {account.currency} lasts {lasts}"
    )
    emit(args, data, text)
    return 0


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


# -- list ---------------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    if args.prefix is not None and not (args.prefix.isdigit() and args.prefix.isascii()):
        raise InvalidInput(f"--prefix must be digits, got {args.prefix!r}")
    store = open_store(load(args))
    rows = dbrates.list_rates(store, args.tariff, args.prefix, args.limit)
    emit(
        args,
        [_rate_json(r) for r in rows],
        lambda: table(
            [
                [r.prefix, r.rate, r.connect_fee, _increments(r), _validity(r), _band(r) or "", r.description]
                for r in rows
            ],
            ["PREFIX", "RATE/MIN", "FEE", "INCREMENTS", "VALID", "BAND", "DESCRIPTION"],
        ),
    )
    return 0


def _validity(rate: Rate) -> str:
    if rate.effective_from_us is None and rate.effective_until_us is None:
        return "always"
    return f"{iso(rate.effective_from_us) or '...'} to {iso(rate.effective_until_us) or '...'}"
