"""`fsbill account add --parent`, `account show` and `fsbill fund` from the command line."""

from __future__ import annotations

import pytest
from test_cli_accounts import Cli, _config


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    c = Cli(capsys, _config(tmp_path, f"sqlite:///{tmp_path}/x.db"))
    c.ok("db", "upgrade")
    c.ok("tariff", "add", "wholesale")
    c.ok("tariff", "add", "retail")
    return c


def test_account_add_under_a_parent_and_fund_it(cli):
    cli.ok("account", "add", "R", "--tariff", "wholesale")
    created = cli.json("account", "add", "C", "--tariff", "retail", "--parent", "R")
    assert created["parent"] == "R"
    assert "parent       R" in cli.ok("account", "show", "C")
    assert cli.json("account", "show", "R")["parent"] is None
    cli.ok("topup", "R", "10.00", "--reference", "seed")
    moved = cli.json("fund", "C", "4.00", "--reference", "f-1")
    assert moved["applied"] and moved["parent"]["balance_after"] == "6.00" and moved["child"]["amount"] == "4.00"
    assert "nothing moved" in cli.ok("fund", "C", "4.00", "--reference", "f-1")
    assert cli.json("account", "show", "R")["balance"] == "6.00"


def test_bad_parents_and_fundings_fail_with_one_line(cli):
    cli.ok("account", "add", "R", "--tariff", "wholesale")
    assert "no account 'X'" in cli.fails("account", "add", "C", "--tariff", "retail", "--parent", "X")
    cli.ok("account", "add", "C", "--tariff", "retail", "--parent", "R")
    assert "available" in cli.fails("fund", "C", "1.00", "--reference", "f-1")
    assert "no parent" in cli.fails("fund", "R", "1.00", "--reference", "f-2")
    code, out, err = cli.run("fund", "C", "1.00", "--reference", "f-3", "--json")
    assert code != 0 and '"error"' in out + err
