"""`fsbill`: argument parsing, dispatch and the error contract (one line, non-zero, no traceback)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence

from fsbill import __version__
from fsbill.errors import FsbillError

# Each module exposes register(subparsers, parent); order is the order of `fsbill --help`.
COMMAND_MODULES = (
    "fsbill.cli.database",
    "fsbill.cli.tariffs",
    "fsbill.cli.rates",
    "fsbill.cli.vendors",
    "fsbill.cli.accounts",
    "fsbill.cli.money_movements",
    "fsbill.cli.calls",
    "fsbill.cli.reports",
    "fsbill.cli.serve",
    "fsbill.cli.switches",
    "fsbill.cli.simulate",
    "fsbill.cli.bench",
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, as for every other bad input
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from fsbill.cli.common import add_common_options, common_parser

    parser = _Parser(prog="fsbill", description="Real-time prepaid enforcer for FreeSWITCH.")
    parser.add_argument("--version", action="version", version=f"fsbill {__version__}")
    add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    parent = common_parser()
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if name.endswith(".simulate"):
            module.register(subparsers)
            _adopt_parent(subparsers, "simulate", parent)
        else:
            module.register(subparsers, parent)
    return parser


def _adopt_parent(subparsers: argparse._SubParsersAction, name: str, parent: argparse.ArgumentParser) -> None:
    sub = subparsers.choices.get(name)
    if sub is None:
        return
    have = {opt for action in sub._actions for opt in action.option_strings}
    for action in parent._actions:
        if action.option_strings and not set(action.option_strings) & have:
            sub._add_action(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except FsbillError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if os.environ.get("FSBILL_DEBUG"):
            raise
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {exc} (set FSBILL_DEBUG=1 for details)\n")
        return 1
