"""The command table of fsbill.cli.main: each command's module is the one that registers it, so
a command imports only its own module, and a short command on SQLite neither patches gevent nor
loads the server or the PostgreSQL driver."""

import argparse
import importlib
import subprocess
import sys

import pytest

from fsbill.cli.common import common_parser
from fsbill.cli.main import COMMAND_MODULES, COOPERATIVE, _Parser, build_parser, command_of


def test_each_module_registers_exactly_the_commands_listed_with_it():
    subparsers = _Parser(prog="fsbill").add_subparsers(dest="command", parser_class=_Parser)
    parent = common_parser()
    seen: set[str] = set()
    for name, commands in COMMAND_MODULES.items():
        module = importlib.import_module(name)
        if name.endswith(".simulate"):
            module.register(subparsers)
        else:
            module.register(subparsers, parent)
        added = set(subparsers.choices) - seen
        seen |= added
        assert added == set(commands), name
    assert COOPERATIVE <= seen


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


def test_one_command_gets_its_module_and_help_gets_all_in_the_table_order():
    assert _commands(build_parser("topup")) == ["topup", "adjust", "fund", "ledger"]
    everything = [c for commands in COMMAND_MODULES.values() for c in commands]
    assert _commands(build_parser(None)) == everything
    assert _commands(build_parser("no-such-command")) == everything


@pytest.mark.parametrize(
    "argv, command",
    [
        (["account", "show", "acme"], "account"),
        (["--config", "x.yaml", "--json", "account", "show"], "account"),
        (["--config=x.yaml", "db", "upgrade"], "db"),
        (["--json"], None),
        (["--help", "account"], None),
        (["--version"], None),
        ([], None),
        (["serve", "--config", "x.yaml"], "serve"),
    ],
)
def test_the_command_is_the_first_word_after_the_top_level_options(argv, command):
    assert command_of(argv) == command


def test_a_sqlite_command_imports_neither_the_server_nor_gevents_patches_nor_psycopg(tmp_path):
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/fsbill.db\n", encoding="utf-8")
    probe = (
        "import sys\n"
        "from gevent import monkey\n"
        "from fsbill.cli.main import main\n"
        f"code = main(['tariff', 'add', 'retail', '--config', {str(config)!r}])\n"
        "loaded = [m for m in ('fsbill.server', 'fsbill.enforcer', 'fsbill.metrics', 'greenswitch', 'fsbill.sim',"
        " 'psycopg') if m in sys.modules]\n"
        "print(code, monkey.is_module_patched('socket'), loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False []", out.stdout + out.stderr
