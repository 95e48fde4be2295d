"""The CLI's error contract, through the real console script: one exit-code table for every
command (docs/COMMANDS.md "Exit codes"), one line on stderr, `{"error": ...}` under --json."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("fsbill")


ENV = {k: v for k, v in os.environ.items() if k not in ("FSBILL_CONFIG", "FSBILL_DEBUG")}


def _runner(workdir: Path):
    config = workdir / "fsbill.yaml"
    config.write_text(f"database: sqlite:///{workdir}/fsbill.db\n", encoding="utf-8")

    def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), *argv, "--config", str(config)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            input=stdin,
            cwd=workdir,
        )

    run.tmp = workdir
    return run


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> Path:
    """A tariff with a deck and an account, made once by the script; each test gets a copy."""
    workdir = tmp_path_factory.mktemp("books")
    run = _runner(workdir)
    deck = workdir / "deck.csv"
    deck.write_text("prefix,rate\n49,1.00\n", encoding="utf-8")
    assert run("tariff", "add", "retail").returncode == 0
    assert run("rates", "import", "retail", str(deck)).returncode == 0
    assert run("account", "add", "acme", "--tariff", "retail").returncode == 0
    return workdir / "fsbill.db"


@pytest.fixture
def fsbill(tmp_path, books):
    for path in books.parent.glob(books.name + "*"):  # the database and any -wal/-shm beside it
        shutil.copy2(path, tmp_path / path.name)
    return _runner(tmp_path)


def _one_json_error(p: subprocess.CompletedProcess, code: int) -> dict:
    assert p.returncode == code, (p.returncode, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    error = json.loads(lines[0])
    assert error["exit"] == code and error["error"]
    return error


# (argv, exit code, kind, words in the message): the same kind of failure, the same code.
CASES = [
    (["ledger", "nobody"], 3, "not_found", "no account 'nobody'"),
    (["calls", "--account", "nobody"], 3, "not_found", "no account 'nobody'"),
    (["cdr", "export", "--account", "nobody"], 3, "not_found", "no account 'nobody'"),
    (["account", "show", "nobody"], 3, "not_found", "no account 'nobody'"),
    (["topup", "nobody", "1.00"], 3, "not_found", "no account 'nobody'"),
    (["rates", "lookup", "retail", "331234"], 3, "not_found", "no rate for 331234"),
    (["rates", "quote", "acme", "331234", "--seconds", "10"], 3, "not_found", "no rate for 331234"),
    (["rates", "list", "wholesale"], 3, "not_found", "no tariff named 'wholesale'"),
    (["rates", "lookup", "retail", "49abc"], 2, "usage", "49abc"),
    (["topup", "acme", "1e3"], 2, "usage", "1e3"),
    (["tariff", "add", "retail"], 2, "usage", "already exists"),
    (["cdr", "export", "--since", "notadate"], 2, "usage", "not an ISO 8601 date/time: 'notadate'"),
    (["ledger", "acme", "--since", "notadate"], 2, "usage", "not an ISO 8601 date/time: 'notadate'"),
    (["ledger", "acme", "--limit", "-1"], 2, "usage", "positive whole number"),
    (["account", "frobnicate"], 2, "usage", "invalid choice"),
]


@pytest.mark.parametrize(("argv", "code", "kind", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_errors_are_json_under_json_with_one_exit_code_table(fsbill, argv, code, kind, says):
    error = _one_json_error(fsbill(*argv, "--json"), code)
    assert error["kind"] == kind and says in error["error"]
    plain = fsbill(*argv)
    assert plain.returncode == code and plain.stdout == ""
    assert plain.stderr.startswith("error: ") and len(plain.stderr.strip().splitlines()) == 1
    assert says in plain.stderr and "Traceback" not in plain.stderr


def test_json_before_the_subcommand_also_gives_json_errors(fsbill):
    error = _one_json_error(fsbill("--json", "ledger", "nobody"), 3)
    assert error["kind"] == "not_found"


def test_an_unreachable_database_is_exit_4(tmp_path):
    config = tmp_path / "pg.yaml"
    config.write_text("database: postgresql://nobody@127.0.0.1:1/nothing\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}
    p = subprocess.run(
        [str(SCRIPT), "account", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert _one_json_error(p, 4)["kind"] == "database"


def test_cdr_export_json_flag_means_json_and_refuses_another_format(fsbill):
    error = _one_json_error(fsbill("cdr", "export", "--format", "csv", "--json"), 2)
    assert "--json conflicts with --format csv" in error["error"]
    p = fsbill("cdr", "export", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = fsbill("cdr", "export", "--json", "--format", "json")
    assert p.returncode == 0 and json.loads(p.stdout) == []
