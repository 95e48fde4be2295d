"""`fsbill report margin|quality`: what the operator (or, with `--account`, a reseller over its
subtree) earned per vendor, account or prefix, and how each vendor answers. CSV (default) or JSON
(`--format json` or `--json`)."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from fsbill.cli.common import load, open_store, parse_instant
from fsbill.db import reports
from fsbill.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    report = subparsers.add_parser("report", help="reports over settled calls: margin, vendor quality")
    sub = report.add_subparsers(dest="report_command", metavar="ACTION", parser_class=type(report))
    sub.required = True
    margin = sub.add_parser("margin", parents=[parent], help="cost, vendor cost and margin of vendor-carried calls")
    margin.add_argument(
        "--by", choices=reports.MARGIN_GROUPS, help="group by (default: vendor; with --account: account)"
    )
    margin.add_argument(
        "--account",
        metavar="CODE",
        help="a reseller's margin over its subtree's calls, in its currency (docs/RESELLERS.md)",
    )
    quality = sub.add_parser("quality", parents=[parent], help="per vendor: attempts, answered, ASR, ACD")
    quality.add_argument("--by", choices=("vendor",), default="vendor")
    for p in (margin, quality):
        p.add_argument("--since", type=parse_instant, metavar="ISO8601", help="calls that started at or after")
        p.add_argument("--until", type=parse_instant, metavar="ISO8601", help="calls that started before")
        p.add_argument("--format", choices=("csv", "json"), help="csv (default) or json; --json means json")
    margin.set_defaults(func=_margin)
    quality.set_defaults(func=_quality)


def _check(args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        if args.format not in (None, "json"):
            raise InvalidInput(f"--json conflicts with --format {args.format} (use one of them)")
        args.format = "json"
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise InvalidInput("--until must be after --since")


def _write(args: argparse.Namespace, rows: list[dict], fields: list[str]) -> None:
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _margin(args: argparse.Namespace) -> int:
    _check(args)
    store = open_store(load(args))
    if args.account is not None:
        by = args.by or "account"
        of = reports.reseller_margin(store, args.account, by, args.since, args.until)
        fields = [by, "currency", "calls", "billed_s", "cost", "margin", "no_rate_calls"]
        _write(args, [r.as_json(by) for r in of], fields)
        missing = sum(r.no_rate_calls for r in of)
        if missing and args.format != "json":  # said on stderr too: the CSV stays machine-readable
            print(
                f"note: {missing} call(s) have no margin: the level below paid in another currency and no "
                "exchange rate was set when they settled ('fsbill fx set')",
                file=sys.stderr,
            )
        return 0
    by = args.by or "vendor"
    rows = reports.margin(store, by, args.since, args.until)
    fields = [by, "currency", "calls", "billed_s", "cost", "vendor_cost", "margin"]
    _write(args, [r.as_json(by) for r in rows], fields)
    return 0


def _quality(args: argparse.Namespace) -> int:
    _check(args)
    rows = reports.quality(open_store(load(args)), args.since, args.until)
    _write(args, [r.as_json() for r in rows], ["vendor", "attempts", "answered", "failed", "asr", "acd_s", "billsec"])
    return 0
