"""The `fsbill` command for operators: db, tariff, account, topup, adjust, ledger; text and --json;
bad input is one line on stderr, a non-zero exit, no traceback and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_rig import Cli as BaseCli

from fsbill.cli.main import main


class Cli(BaseCli):
    def ok(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert code == 0, err
        assert err == ""
        return out

    def json(self, *argv: str):
        return json.loads(self.ok(*argv, "--json"))

    def fails(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert code != 0, out
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error:")
        return lines[0]


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "fsbill.yaml"
    path.write_text(f"database: '{url}'\n", encoding="utf-8")
    return path


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    return Cli(capsys, _config(tmp_path, f"sqlite:///{tmp_path}/x.db"))


@pytest.fixture
def ready(cli):
    """A migrated database with tariff `retail` and account `1001`."""
    cli.ok("db", "upgrade")
    cli.ok("tariff", "add", "retail")
    cli.ok("account", "add", "1001", "--tariff", "retail")
    return cli


def ledger_rows(cli, code="1001"):
    return cli.json("ledger", code)


# -- db, tariff ------------------------------------------------------------------------------------
def test_db_upgrade_then_up_to_date(cli):
    assert "applied 0001_initial" in cli.ok("db", "upgrade")
    assert cli.ok("db", "upgrade").strip() == "schema is up to date"
    assert cli.json("db", "upgrade") == {"applied": []}
    assert cli.json("db", "status") == {"pending": []}


def test_tariff_add_and_list(cli):
    assert cli.ok("tariff", "add", "retail").strip() == "tariff retail created (EUR, 4 decimals half_up, UTC)"
    t = cli.json(
        "tariff",
        "add",
        "wholesale",
        "--currency",
        "usd",
        "--decimals",
        "2",
        "--rounding",
        "up",
        "--timezone",
        "America/New_York",
    )
    assert t == {
        "name": "wholesale",
        "currency": "USD",
        "decimals": 2,
        "rounding": "up",
        "timezone": "America/New_York",
        "rates": 0,
        "status": "active",
        "owner": None,  # the operator's (a reseller's: docs/RESELLERS.md)
    }
    listed = cli.json("tariff", "list")
    assert [x["name"] for x in listed] == ["retail", "wholesale"]
    text = cli.ok("tariff", "list")
    assert text.splitlines()[0].split() == ["NAME", "CURRENCY", "ROUNDING", "TIMEZONE", "RATES", "STATUS"]
    assert "wholesale" in text and "2 up" in text


def test_duplicate_tariff(cli):
    cli.ok("tariff", "add", "retail")
    assert "already exists" in cli.fails("tariff", "add", "retail")


@pytest.mark.parametrize(
    "argv",
    [
        ["tariff", "add", "x", "--currency", "EURO"],
        ["tariff", "add", "x", "--rounding", "bankers"],
        ["tariff", "add", "x", "--decimals", "-1"],
        ["tariff", "add", "x", "--decimals", "9"],
        ["tariff", "add", "x", "--timezone", "Nowhere/Special"],
        ["tariff", "add"],
    ],
)
def test_bad_tariff_input(cli, argv):
    cli.fails(*argv)
    assert cli.json("tariff", "list") == []


# -- accounts ----------------------------------------------------------------------------------------
def test_account_add_show_list(cli):
    cli.ok("tariff", "add", "retail")
    created = cli.json(
        "account",
        "add",
        "1001",
        "--tariff",
        "retail",
        "--credit-limit",
        "2.5",
        "--max-channels",
        "2",
        "--cli",
        "+4930111",
        "--cli",
        "4930222",
    )
    assert created == {
        "code": "1001",
        "tariff": "retail",
        "currency": "EUR",
        "status": "active",
        "balance": "0.00",
        "credit_limit": "2.50",
        "reserved": "0.00",
        "available": "2.50",
        "arrears": "0.00",
        "max_channels": 2,
        "live_calls": 0,
        "clis": ["4930111", "4930222"],
        "email": "",
        "parent": None,
    }
    shown = cli.json("account", "show", "1001")
    assert shown.pop("guards")["daily_cap"] is None  # the fraud guards (tests/test_guards.py)
    assert (shown.pop("low_balance"), shown.pop("low_balance_from")) == ([], None)  # docs/NOTICES.md
    assert (shown.pop("auto_recharge"), shown.pop("recharge_failures")) == (None, 0)  # off by default
    assert shown == created
    text = cli.ok("account", "show", "1001")
    assert "balance      0.00 EUR" in text
    assert "available    2.50 EUR" in text
    assert "live calls   0 of 2" in text
    assert "caller ids   4930111, 4930222" in text
    assert cli.ok("account", "add", "1002", "--tariff", "retail").strip() == "account 1002 created on tariff retail"
    listed = cli.json("account", "list")
    assert [a["code"] for a in listed] == ["1001", "1002"]
    table = cli.ok("account", "list").splitlines()
    assert table[0].split() == ["CODE", "STATUS", "TARIFF", "BALANCE", "RESERVED", "AVAILABLE", "CUR", "LIVE"]
    assert table[1].split()[:6] == ["1001", "active", "retail", "0.00", "0.00", "2.50"]


def test_suspend_and_resume(ready):
    assert ready.ok("account", "suspend", "1001").strip() == "account 1001 is suspended"
    assert ready.json("account", "show", "1001")["status"] == "suspended"
    assert ready.json("account", "resume", "1001")["status"] == "active"
    assert "no account" in ready.fails("account", "suspend", "ghost")


@pytest.mark.parametrize(
    "argv, says",
    [
        (["account", "add", "1002", "--tariff", "nope"], "no tariff named 'nope'"),
        (["account", "add", "1001", "--tariff", "retail"], "already exists"),
        (["account", "add", "1002"], "--tariff"),
        (["account", "add", "1002", "--tariff", "retail", "--credit-limit", "-1"], "credit limit"),
        (["account", "add", "1002", "--tariff", "retail", "--credit-limit", "1e3"], "1e3"),
        (["account", "add", "1002", "--tariff", "retail", "--max-channels", "two"], "two"),
        (["account", "add", "1002", "--tariff", "retail", "--cli", "12ab"], "caller id"),
        (["account", "add", "1002", "--tariff", "retail", "--cli", "1555\u0661\u0662"], "caller id"),
        (["account", "add", "1002", "--tariff", "retail", "--cli", "\uff11\uff12\uff13"], "caller id"),
        (["account", "add", "has space", "--tariff", "retail"], "account code"),
        (["account", "show", "ghost"], "no account 'ghost'"),
        (["account", "show"], "code"),
        (["account", "frobnicate", "1001"], "frobnicate"),
    ],
)
def test_bad_account_input(ready, argv, says):
    assert says in ready.fails(*argv)
    assert [a["code"] for a in ready.json("account", "list")] == ["1001"]


# -- money movements ----------------------------------------------------------------------------------
def test_topup_round_trips_exact_amounts(ready):
    out = ready.ok("topup", "1001", "10.50", "--reference", "pay-1", "--note", "card")
    assert out.strip() == "credited 10.50 to 1001; balance 10.50"
    j = ready.json("topup", "1001", "0.000001")
    assert j["applied"] is True and j["amount"] == "0.000001" and j["balance_after"] == "10.500001"
    assert j["kind"] == "topup" and j["account"] == "1001"
    shown = ready.json("account", "show", "1001")
    assert shown["balance"] == "10.500001" and shown["available"] == "10.500001"


def test_topup_same_reference_credits_once_and_says_so(ready):
    assert ready.json("topup", "1001", "5", "--reference", "bank-9")["applied"] is True
    again = ready.json("topup", "1001", "5", "--reference", "bank-9")
    assert again["applied"] is False and again["amount"] == "5.00" and again["reference"] == "bank-9"
    text = ready.ok("topup", "1001", "5", "--reference", "bank-9")
    assert "already credited" in text and "nothing added" in text
    assert ready.json("account", "show", "1001")["balance"] == "5.00"
    assert len(ledger_rows(ready)) == 1


def test_topup_reference_reused_with_another_amount_exits_2_naming_the_earlier_movement(ready):
    first = ready.json("topup", "1001", "5", "--reference", "bank-9")
    code, out, err = ready.run("topup", "1001", "50", "--reference", "bank-9")
    assert code == 2 and out == ""
    assert f"movement {first['id']}" in err and "topup 5.00" in err and "bank-9" in err
    code, _, err = ready.run("topup", "1001", "50", "--reference", "bank-9", "--json")
    assert code == 2 and json.loads(err)["kind"] == "usage"
    # adjust: the same reference and amount apply once; another amount is refused the same way
    adj = ready.json("adjust", "1001", "-1", "--reason", "fix", "--reference", "fix-1")
    again = ready.json("adjust", "1001", "-1", "--reason", "fix", "--reference", "fix-1")
    assert adj["applied"] is True and again["applied"] is False and again["id"] == adj["id"]
    assert "nothing changed" in ready.ok("adjust", "1001", "-1", "--reason", "fix", "--reference", "fix-1")
    code, _, err = ready.run("adjust", "1001", "-2", "--reason", "fix", "--reference", "fix-1")
    assert code == 2 and f"movement {adj['id']}" in err
    assert ready.json("account", "show", "1001")["balance"] == "4.00"
    assert len(ledger_rows(ready)) == 2


def test_adjust_and_ledger(ready):
    ready.ok("topup", "1001", "10", "--reference", "p1")
    assert ready.ok("adjust", "1001", "-2.25", "--reason", "refund").strip() == "adjusted 1001 by -2.25; balance 7.75"
    j = ready.json("adjust", "1001", "0.5", "--reason", "goodwill")
    assert (j["kind"], j["amount"], j["note"], j["balance_after"]) == ("adjust", "0.50", "goodwill", "8.25")
    rows = ledger_rows(ready)
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("topup", "10.00", "10.00"),
        ("adjust", "-2.25", "7.75"),
        ("adjust", "0.50", "8.25"),
    ]
    assert all(isinstance(r["amount"], str) and r["time"].endswith("Z") for r in rows)
    assert ledger_rows(ready)[-1]["balance_after"] == ready.json("account", "show", "1001")["balance"]
    text = ready.ok("ledger", "1001").splitlines()
    assert text[0].split()[:4] == ["TIME", "KIND", "AMOUNT", "BALANCE"]
    assert len(text) == 4 and "refund" in text[2] and "p1" in text[1]
    assert ready.json("ledger", "1001", "--since", "2000-01-01") == rows
    assert ready.json("ledger", "1001", "--since", "2999-01-01T00:00:00Z") == []
    assert ready.json("ledger", "1001", "--limit", "2") == rows[1:]  # the latest two, oldest first


def test_adjust_below_available_needs_force(ready):
    ready.ok("topup", "1001", "1")
    assert "--force" in ready.fails("adjust", "1001", "-1.01", "--reason", "x")
    assert ready.json("account", "show", "1001")["balance"] == "1.00"
    assert ready.json("adjust", "1001", "-1.01", "--reason", "chargeback", "--force")["balance_after"] == "-0.01"


@pytest.mark.parametrize(
    "argv, says",
    [
        (["topup", "ghost", "5"], "no account 'ghost'"),
        (["topup", "1001", "-5"], "positive"),
        (["topup", "1001", "0"], "positive"),
        (["topup", "1001", "1e3"], "1e3"),
        (["topup", "1001", "1,5"], "1,5"),
        (["topup", "1001", "1.0000001"], "6 decimals"),
        (["topup", "1001", "NaN"], "NaN"),
        (["topup", "1001", "1000000000000"], "out of range"),
        (["topup", "1001", "five"], "five"),
        (["topup", "1001", "\u0663"], "malformed amount"),  # `fsbill topup a ٣` credited 3.00
        (["adjust", "1001", "-\u0661", "--reason", "x"], "malformed amount"),
        (["topup", "1001"], "amount"),
        (["topup"], "code"),
        (["topup", "1001", "5", "--reference", ""], "reference"),
        (["adjust", "1001", "5"], "--reason"),
        (["adjust", "1001", "0", "--reason", "x"], "zero"),
        (["adjust", "1001", "1e3", "--reason", "x"], "1e3"),
        (["adjust", "ghost", "1", "--reason", "x"], "no account"),
        (["ledger", "ghost"], "no account"),
        (["ledger", "1001", "--since", "yesterday"], "yesterday"),
    ],
)
def test_bad_money_input_writes_nothing(ready, argv, says):
    ready.ok("topup", "1001", "1", "--reference", "seed")
    assert says in ready.fails(*argv)
    assert ready.json("account", "show", "1001")["balance"] == "1.00"
    assert len(ledger_rows(ready)) == 1


def test_no_command_is_a_usage_error(cli):
    code, _, err = cli.run()
    assert code != 0 and len(err.strip().splitlines()) == 1


def test_bad_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cutoff: {mode: drop}\n", encoding="utf-8")
    code = main(["tariff", "list", "--config", str(bad)])
    err = capsys.readouterr().err
    assert code != 0 and err.strip().splitlines() == [err.strip()] and "cutoff.mode" in err


def test_fsbill_config_environment_is_honoured(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FSBILL_CONFIG", str(_config(tmp_path, f"sqlite:///{tmp_path}/env.db")))
    assert main(["tariff", "add", "env-tariff"]) == 0
    assert (tmp_path / "env.db").exists()


# -- both databases, and the installed console script -----------------------------------------------
def test_round_trip_on_both_databases(db_url, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    cli = Cli(capsys, _config(tmp_path, db_url))
    cli.ok("db", "upgrade")
    cli.ok("tariff", "add", "retail")
    cli.ok("account", "add", "1001", "--tariff", "retail", "--credit-limit", "0.000001")
    for amount in ("12345678.123456", "0.000001", "0.1", "0.2"):
        cli.ok("topup", "1001", amount)
    shown = cli.json("account", "show", "1001")
    assert shown["balance"] == "12345678.423457"
    assert shown["available"] == "12345678.423458"


def test_console_script_entry_point(tmp_path, capsys):
    script = Path(sys.executable).with_name("fsbill")
    assert script.exists(), f"console script missing next to {sys.executable}"
    config = _config(tmp_path, f"sqlite:///{tmp_path}/script.db")
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}

    def run(*argv):
        return subprocess.run(
            [str(script), *argv, "--config", str(config)], capture_output=True, text=True, env=env, timeout=60
        )

    assert main(["tariff", "add", "retail", "--config", str(config)]) == 0
    assert main(["account", "add", "1001", "--tariff", "retail", "--config", str(config)]) == 0
    topped = run("topup", "1001", "7.77", "--json")
    assert topped.returncode == 0, topped.stderr
    assert json.loads(topped.stdout)["balance_after"] == "7.77"
    bad = run("topup", "1001", "1e3")
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
