"""`fsbill account add --parent`, `account show`, `fsbill fund`, `fsbill fx` and `report margin --account`
from the command line."""

from __future__ import annotations

import json

import pytest
from migrated import migrate_fresh
from test_cli_accounts import Cli, _config
from test_fx_db import rub_under_usd, talk

from fsbill.db import Store


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


def test_fx_set_and_list_and_bad_rates_in_one_line(cli):
    assert cli.ok("fx", "set", "usd", "RUB", "90.1234", "--actor", "ops").strip() == "1 USD = 90.1234 RUB"
    assert cli.json("fx", "set", "RUB", "KZT", "5.25")["rate"] == "5.25"
    listed = cli.json("fx", "list")
    assert [(r["from"], r["to"], r["rate"]) for r in listed] == [("RUB", "KZT", "5.25"), ("USD", "RUB", "90.1234")]
    assert "90.1234" in cli.ok("fx", "list")
    assert [e["new"] for e in cli.json("audit", "--entity", "fx:USD/RUB")] == ["90.1234"]
    assert "malformed rate" in cli.fails("fx", "set", "USD", "RUB", "9e1")
    assert "greater than zero" in cli.fails("fx", "set", "USD", "RUB", "0.0")
    assert "ISO 4217" in cli.fails("fx", "set", "DOLLAR", "RUB", "90")
    code, out, err = cli.run("fx", "set", "USD", "USD", "1", "--json")
    assert code == 2 and "two currencies" in json.loads(out + err)["error"]


def test_a_reseller_in_another_currency_is_funded_at_the_rate_and_reports_its_margin(cli, tmp_path):
    cli.ok("tariff", "add", "top", "--currency", "USD")
    cli.ok("tariff", "add", "rub", "--currency", "RUB")
    cli.ok("account", "add", "W", "--tariff", "top")
    cli.ok("account", "add", "R", "--tariff", "rub", "--parent", "W")  # another currency: accepted
    cli.ok("topup", "W", "10.00", "--reference", "seed")
    assert "fx set USD RUB" in cli.fails("fund", "R", "1.00", "--reference", "f-1")
    cli.ok("fx", "set", "USD", "RUB", "90.1234")
    text = cli.ok("fund", "R", "1.00", "--reference", "f-1")
    assert "to R (balance 90.12)" in text and "1.00 USD = 90.12 RUB at USD/RUB 90.1234" in text
    assert cli.ok("report", "margin", "--account", "W").splitlines() == [
        "account,currency,calls,billed_s,cost,margin,no_rate_calls"
    ]
    assert cli.json("report", "margin", "--account", "W", "--by", "prefix") == []
    assert "no account 'X'" in cli.fails("report", "margin", "--account", "X")


def test_report_margin_says_when_calls_have_no_rate(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    migrate_fresh(f"sqlite:///{tmp_path}/m.db")
    store = Store(f"sqlite:///{tmp_path}/m.db")
    try:
        store.upgrade()
        payer = rub_under_usd(store)
        talk(store, "call", payer, 10)
    finally:
        store.close()
    cli = Cli(capsys, _config(tmp_path, f"sqlite:///{tmp_path}/m.db"))
    code, out, err = cli.run("report", "margin", "--account", "W")
    assert code == 0 and out.splitlines()[1] == "C,USD,1,10,0.01,,1"
    assert err.startswith("note: 1 call(s) have no margin") and "fsbill fx set" in err
    [row] = cli.json("report", "margin", "--account", "W")
    assert (row["margin"], row["no_rate_calls"]) == (None, 1)
