"""`fsbill`: argument parsing, dispatch and the error contract (one line, non-zero, no traceback)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from fsbill import __version__
from fsbill.errors import DatabaseUnavailable, FsbillError, NotFound

# Each module exposes register(subparsers, parent); order is the order of `fsbill --help`.
COMMAND_MODULES = (
    "fsbill.cli.database",
    "fsbill.cli.tariffs",
    "fsbill.cli.rates",
    "fsbill.cli.vendors",
    "fsbill.cli.accounts",
    "fsbill.cli.money_movements",
    "fsbill.cli.fx",
    "fsbill.cli.plans",
    "fsbill.cli.bundles",
    "fsbill.cli.dids",
    "fsbill.cli.payments",
    "fsbill.cli.audit",
    "fsbill.cli.notices",
    "fsbill.cli.recharges",
    "fsbill.cli.api",
    "fsbill.cli.calls",
    "fsbill.cli.reports",
    "fsbill.cli.serve",
    "fsbill.cli.switches",
    "fsbill.cli.simulate",
    "fsbill.cli.bench",
    "fsbill.cli.configuration",
)

# The exit codes of every command (docs/COMMANDS.md "Exit codes" lists the same table).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in fsbill (the message says how to get the traceback)
EXIT_USAGE = 2  # bad arguments, bad input, bad config, a refused or conflicting operation
EXIT_NOT_FOUND = 3  # no such account, tariff or call; no rate for the number
EXIT_DATABASE = 4  # the database could not be reached or failed mid-operation
EXIT_SWITCH = 5  # `fsbill switches`: a configured switch could not be reached or refused the password
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_INTERNAL: "internal",
    EXIT_USAGE: "usage",
    EXIT_NOT_FOUND: "not_found",
    EXIT_DATABASE: "database",
    EXIT_SWITCH: "switch",
    EXIT_INTERRUPTED: "interrupted",
}

_json_errors = False  # set from argv before parsing, so argparse's own errors obey --json too


def fail(message: str, code: int) -> int:
    """Report one error: `error: ...` on stderr, or `{"error": ..., "kind": ..., "exit": ...}`
    (one line, on stderr) under --json. Returns `code`."""
    if _json_errors:
        line = json.dumps({"error": message, "kind": EXIT_CODES.get(code, "error"), "exit": code})
    else:
        line = f"error: {message}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    return code


def exit_code(exc: FsbillError) -> int:
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, DatabaseUnavailable):
        return EXIT_DATABASE
    return EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as for every other bad input
        raise SystemExit(fail(f"{message} (see '{self.prog} --help')", EXIT_USAGE))


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


def _wants_json(argv: Sequence[str]) -> bool:
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    global _json_errors
    argv = list(sys.argv[1:] if argv is None else argv)
    _json_errors = _wants_json(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except FsbillError as exc:
        return fail(str(exc), exit_code(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if os.environ.get("FSBILL_DEBUG"):
            raise
        return fail(f"internal error: {type(exc).__name__}: {exc} (set FSBILL_DEBUG=1 for details)", EXIT_INTERNAL)
