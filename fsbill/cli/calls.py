"""`fsbill calls` (live calls and what they hold) and `fsbill cdr export`."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from fsbill import cdr_format
from fsbill.cli.common import emit, load, open_store, parse_instant, table
from fsbill.db import calls as dbcalls
from fsbill.db import ledger
from fsbill.db.cdr_export import iter_cdrs
from fsbill.errors import InvalidInput
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    calls = subparsers.add_parser("calls", parents=[parent], help="live calls on every node and what each holds")
    calls.add_argument("--account")
    calls.set_defaults(func=_calls)
    cdr = subparsers.add_parser("cdr", help="call detail records")
    sub = cdr.add_subparsers(dest="cdr_command", metavar="ACTION", parser_class=type(cdr))
    sub.required = True
    export = sub.add_parser("export", parents=[parent], help="write CDRs to stdout")
    export.add_argument("--account")
    export.add_argument("--since", type=parse_instant, metavar="ISO8601", help="calls that started at or after")
    export.add_argument("--until", type=parse_instant, metavar="ISO8601", help="calls that started before")
    export.add_argument(
        "--format",
        choices=("csv", "json", "jsonl"),
        help="csv (default), json (one array) or jsonl (one object per line, streamed); "
        "--json means json and conflicts with any other --format",
    )
    export.set_defaults(func=_export)


def _known_account(store: object, code: str | None) -> None:
    """An unknown --account is 'not found' (exit 3), as in `ledger`, not an empty result."""
    if code:
        ledger.get_account(store, code)  # type: ignore[arg-type]


def _calls(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    _known_account(store, args.account)
    live = dbcalls.live_calls(store, args.account)
    emit(
        args,
        [cdr_format.live_record(c) for c in live],
        lambda: (
            table(
                [
                    [
                        c.uuid,
                        c.visit,
                        c.account,
                        c.node,
                        c.destination,
                        c.prefix,
                        f"{c.rate}",
                        c.granted_s,
                        f"{c.held}",
                        f"{c.debited}",
                        iso(c.answered_us) or "ringing",
                    ]
                    for c in live
                ],
                [
                    "UUID",
                    "VISIT",
                    "ACCOUNT",
                    "NODE",
                    "DESTINATION",
                    "PREFIX",
                    "RATE",
                    "GRANTED_S",
                    "HELD",
                    "DEBITED",
                    "ANSWERED",
                ],
            )
            if live
            else "no live calls"
        ),
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise InvalidInput("--until must be after --since")
    if getattr(args, "json", False):
        if args.format not in (None, "json"):
            raise InvalidInput(f"--json conflicts with --format {args.format} (use one of them)")
        args.format = "json"
    store = open_store(load(args))
    _known_account(store, args.account)
    rows = iter_cdrs(store, account=args.account, since_us=args.since, until_us=args.until)
    out = sys.stdout
    if args.format == "json":  # one array, written as it is read
        out.write("[")
        for n, data in enumerate(cdr_format.records(rows)):
            out.write(("," if n else "") + "\n  " + json.dumps(data))
        out.write("\n]\n")
    elif args.format == "jsonl":
        for data in cdr_format.records(rows):
            out.write(json.dumps(data, separators=(",", ":")) + "\n")
    else:
        writer = csv.DictWriter(out, fieldnames=list(cdr_format.FIELDS), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow(cdr_format.csv_cells(r))
    return 0
