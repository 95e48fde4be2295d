"""`fsbill`: argument parsing, dispatch and the error contract (one line, non-zero, no traceback)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from fsbill import __version__
from fsbill.errors import DatabaseUnavailable, FsbillError, NotFound

# Each module exposes register(subparsers, parent) and adds the top-level commands listed with
# it; the order is the order of `fsbill --help`. Only the module of the command being run is
# imported, so `fsbill account show` loads the database code and not the server, the emulator or
# the metrics; `fsbill --help`, an unknown command and a module listed here without its commands
# import them all (slower, never wrong). tests/test_cli_commands.py checks the table.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "fsbill.cli.database": ("db",),
    "fsbill.cli.tariffs": ("tariff",),
    "fsbill.cli.rates": ("rates",),
    "fsbill.cli.vendors": ("vendor", "route"),
    "fsbill.cli.accounts": ("account",),
    "fsbill.cli.money_movements": ("topup", "adjust", "fund", "ledger"),
    "fsbill.cli.fx": ("fx",),
    "fsbill.cli.plans": ("plan", "subscribe", "unsubscribe", "subscriptions", "charges"),
    "fsbill.cli.bundles": ("bundle",),
    "fsbill.cli.dids": ("did",),
    "fsbill.cli.payments": ("payments",),
    "fsbill.cli.audit": ("audit",),
    "fsbill.cli.notices": ("notices",),
    "fsbill.cli.recharges": ("recharge",),
    "fsbill.cli.api": ("api",),
    "fsbill.cli.calls": ("calls", "cdr"),
    "fsbill.cli.reports": ("report",),
    "fsbill.cli.serve": ("serve",),
    "fsbill.cli.switches": ("switches",),
    "fsbill.cli.simulate": ("simulate",),
    "fsbill.cli.bench": ("bench",),
    "fsbill.cli.configuration": ("config",),
}

# The commands that run greenlets over sockets: gevent patches the standard library before their
# module (and the PostgreSQL driver, which only cooperates when imported after) is imported. The
# others use one greenlet and skip the patching (0.2 s of a short command's start).
COOPERATIVE = frozenset({"serve", "simulate", "switches", "bench"})

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


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command `argv` names (its first word that is no top-level option), or None
    (none given, or `--help`/`--version` before it)."""
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            next(args, None)
        elif arg.startswith("--config=") or arg == "--json":
            continue
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def _modules_for(command: str | None) -> list[str]:
    for name, commands in COMMAND_MODULES.items():
        if command in commands:
            return [name]
    return list(COMMAND_MODULES)


def cooperate() -> None:
    """gevent's patched standard library, once (before the sockets and the database driver)."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone when the table knows its module."""
    from fsbill.cli.common import add_common_options, common_parser

    parser = _Parser(prog="fsbill", description="Real-time prepaid enforcer for FreeSWITCH.")
    parser.add_argument("--version", action="version", version=f"fsbill {__version__}")
    add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    parent = common_parser()
    for name in _modules_for(command):
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
    command = command_of(argv)
    if command in COOPERATIVE:
        cooperate()
    import logging

    parser = build_parser(command)
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
