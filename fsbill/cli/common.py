"""What every sub-command shares: settings, the database, output in text or JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fsbill.core.money import Money
from fsbill.errors import InvalidInput
from fsbill.instant import parse_iso

if TYPE_CHECKING:  # imported where used: parsing the command line needs neither
    from fsbill.config import Settings
    from fsbill.db import Store


def load(args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings of every command, found the same way for all: `--config PATH`, else
    $FSBILL_CONFIG, else the defaults; `overrides` (a command's own options) win over the file.
    No command reads a setting any other way."""
    from fsbill.config import load_settings

    return load_settings(getattr(args, "config", None), overrides)


def open_store(settings: Settings) -> Store:
    """The configured database, migrated first when `auto_migrate` is on (the default)."""
    from fsbill.db import Store

    store = Store(
        settings.database,
        pool_size=settings.pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        sqlite_synchronous=settings.sqlite_synchronous,
    )
    if settings.auto_migrate:
        store.upgrade()
    return store


def emit(args: argparse.Namespace, data: Any, text: str | Callable[[], str]) -> None:
    """Print `data` as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2, sort_keys=False, default=_json_default)
        sys.stdout.write("\n")
    else:
        out = text() if callable(text) else text
        if out:
            print(out)


def _json_default(value: Any) -> Any:
    if isinstance(value, Money):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def amount(text: str) -> Money:
    """argparse type for amounts: exact decimal strings only."""
    try:
        return Money.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_actor_option(parser: argparse.ArgumentParser) -> None:
    """--actor on every command that changes what the audit trail records."""
    parser.add_argument("--actor", metavar="NAME", help="who makes the change, for the audit trail (default: $USER)")


def actor(args: argparse.Namespace) -> str:
    """Who is making a change: --actor, else the login name ($USER), else `cli`."""
    given = (getattr(args, "actor", None) or "").strip()
    if given:
        if len(given) > 64 or any(ord(ch) < 32 for ch in given):
            raise InvalidInput(f"--actor must be 1-64 printable characters, got {given!r}")
        return given
    return os.environ.get("USER", "").strip() or "cli"


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def parse_instant(text: str) -> int:
    """argparse type: ISO 8601 (naive = UTC) or a date, as epoch microseconds. fsbill's own
    message (argparse would say only "invalid parse_instant value")."""
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def table(rows: Sequence[Sequence[object]], headers: list[str]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return "\n".join(lines)


def common_parser() -> argparse.ArgumentParser:
    """Options every sub-command accepts (attached as a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_common_options(parent, argparse.SUPPRESS)
    return parent


def add_common_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """--config and --json, accepted before the sub-command (`fsbill --config X db upgrade`) and
    after it. Sub-commands use SUPPRESS so that their absence does not erase a value given
    before the sub-command."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="YAML config file (default: $FSBILL_CONFIG, else built-in defaults)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="machine-readable output; amounts are strings",
    )
