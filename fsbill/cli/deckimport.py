"""The options and output `fsbill rates import` and `fsbill vendor rates import` share: how the
deck file is written (separator, decimal comma, column mapping, encoding), `--dry-run`, and the
progress bar. See docs/RATE-DECKS.md."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from fsbill.cli.common import emit, non_negative_int
from fsbill.config import Settings
from fsbill.core.deckdiff import DEFAULT_LIMIT, LISTED, DeckDiff
from fsbill.core.ratedeck import DELIMITERS, DeckFormat, check_encoding, parse_mapping
from fsbill.db.rates import ImportResult, Source


def _delimiter(text: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}
    value = named.get(text.lower(), text)
    if value not in DELIMITERS:
        raise argparse.ArgumentTypeError(f"expected one of , ; | tab, got {text!r}")
    return value


def add_options(imp: argparse.ArgumentParser, whose: str) -> None:
    """The import options of both commands (`whose`: "tariff's" or "vendor's")."""
    imp.add_argument("--replace", action="store_true", help=f"replace the {whose} whole deck instead of adding to it")
    imp.add_argument(
        "--allow-empty", action="store_true", help="with --replace: accept a file without rates (empties the deck)"
    )
    imp.add_argument(
        "--delimiter",
        type=_delimiter,
        metavar="CHAR",
        help="column separator: ',' ';' '|' or 'tab' (default: detected from the header)",
    )
    imp.add_argument(
        "--decimal-comma",
        action="store_true",
        help="amounts use a decimal comma (0,0125); needs a separator other than ','",
    )
    imp.add_argument(
        "--columns",
        action="append",
        metavar="FIELD=HEADER,...",
        help="the file's own column names, e.g. prefix=Code,rate='Rate/min'; fields not mapped are looked "
        "for under fsbill's names",
    )
    imp.add_argument(
        "--ignore-extra", action="store_true", help="skip columns that are neither mapped nor fsbill's (else refused)"
    )
    imp.add_argument(
        "--encoding", default="utf-8", help="the file's encoding (default utf-8; cp1252 and latin-1 are common)"
    )
    imp.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file and print what would change against the current deck; write nothing",
    )
    imp.add_argument(
        "--show",
        type=non_negative_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"with --dry-run: prefixes listed per kind of change (default {DEFAULT_LIMIT})",
    )


def deck_format(args: argparse.Namespace, settings: Settings) -> DeckFormat:
    return DeckFormat(
        delimiter=args.delimiter,
        decimal_comma=args.decimal_comma,
        columns=parse_mapping(args.columns) if args.columns else None,
        ignore_extra=args.ignore_extra,
        international_prefix=settings.international_prefix,
        encoding=check_encoding(args.encoding),
    )


def import_options(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Keyword arguments of fsbill.db.rates.import_deck from the command line."""
    return {
        "replace": args.replace,
        "allow_empty": args.allow_empty,
        "fmt": deck_format(args, settings),
        "dry_run": args.dry_run,
        "show": args.show,
    }


def source(args: argparse.Namespace) -> Source:
    """The file's path, or standard input's bytes for '-' (decoded in --encoding)."""
    return sys.stdin.buffer if args.file == "-" else args.file


class ProgressBar:
    """A one-line progress bar on stderr (only used when stderr is a terminal). It counts
    rows; without a known total (a deck read from standard input) it shows the count alone."""

    def __init__(self, total_rows: int | None) -> None:
        self.total = None if total_rows is None else max(1, total_rows)
        self.last_draw = 0.0

    def __call__(self, phase: str, done: int) -> None:
        now = time.monotonic()
        total = self.total
        if now - self.last_draw < 0.1 and (total is None or done < total):
            return
        self.last_draw = now
        label = "reading" if phase == "parse" else "storing"
        if total is None or phase == "store" and done > total:
            sys.stderr.write(f"\r{label} {done:,} rows")
        else:
            share = min(done, total) * 30 // total
            sys.stderr.write(f"\r{label} [{'#' * share}{'.' * (30 - share)}] {done:,}/{total:,} rows")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _count_rows(path: str) -> int:
    """Lines after the header: the rows the bar counts (blank lines aside)."""
    try:
        with open(path, "rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0
    return max(0, lines - 1)


def run_import(
    args: argparse.Namespace, work: Callable[[Callable[[str, int], None] | None], ImportResult]
) -> ImportResult:
    """`work(progress)` with a progress bar on a terminal."""
    bar: ProgressBar | None = None
    if sys.stderr.isatty():
        bar = ProgressBar(None if args.file == "-" else _count_rows(args.file))
    try:
        return work(bar)
    finally:
        if bar is not None:
            bar.close()


def _normalised_text(count: int, settings: Settings) -> str:
    if not count:
        return ""
    intl = settings.international_prefix
    written = f"'+' or '{intl}'" if intl else "'+'"
    return f"{count} prefix{'es' if count != 1 else ''} written with {written} stored without it"


def report(args: argparse.Namespace, settings: Settings, result: ImportResult, what: str, data: dict) -> None:
    """Print an import's (or a dry run's) outcome; `what` names the deck ('retail', 'vendor X')."""
    normalised = _normalised_text(result.normalised, settings)
    if result.changes is None:
        verb = "replaced the deck of" if result.replaced else "into"
        text = f"imported {result.imported} rates {verb} {what}" + (f" ({normalised})" if normalised else "")
        emit(args, data, text)
        return
    emit(args, data, lambda: _dry_run_text(result, result.changes, what, normalised))  # type: ignore[arg-type]


def _dry_run_text(result: ImportResult, diff: DeckDiff, what: str, normalised: str) -> str:
    how = "replacing the deck" if result.replaced else "adding to the deck"
    lines = [
        f"dry run, nothing written: {what} has {diff.rates_before} rates, would have {diff.rates_after} "
        f"({result.imported} rows read, {how})",
        ", ".join(f"{kind} {diff.counts[kind]}" for kind in diff.counts) + " (prefixes)",
    ]
    if normalised:
        lines.append(normalised)
    for kind in LISTED:
        shown = diff.listed[kind]
        if not shown:
            continue
        lines.append(f"{kind}:")
        width = max(len(c.prefix) for c in shown)
        for c in shown:
            if c.before is None or c.before == c.after:
                price = f"{c.after}"
            elif c.after is None:
                price = f"{c.before}"
            else:
                price = f"{c.before} -> {c.after}"
            lines.append(f"  {c.prefix:<{width}}  {price}  {c.description}".rstrip())
        more = diff.counts[kind] - len(shown)
        if more:
            lines.append(f"  ... and {more} more")
    return "\n".join(lines)
