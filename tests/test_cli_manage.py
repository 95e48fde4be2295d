"""The operator's second day through the real `fsbill` command (SQLite): `account set|cli|close`,
`tariff set|close`, `vendor set|close`, and `fsbill audit` listing each change with who, when,
the old and the new value. Refusals are one line, exit 2, nothing changed, nothing audited."""

from __future__ import annotations

import json

import pytest
from cli_rig import Cli as BaseCli


class Cli(BaseCli):
    def ok(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert code == 0, err
        assert err == ""
        return out

    def json(self, *argv: str):
        return json.loads(self.ok(*argv, "--json"))

    def fails(self, *argv: str, code: int = 2) -> str:
        got, out, err = self.run(*argv)
        assert got == code, (got, err)
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error:")
        return lines[0]


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    monkeypatch.setenv("USER", "operator1")
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: 'sqlite:///{tmp_path}/x.db'\n", encoding="utf-8")
    c = Cli(capsys, config)
    c.ok("tariff", "add", "retail")
    c.ok("tariff", "add", "dollars", "--currency", "USD")
    c.ok("account", "add", "1001", "--tariff", "retail", "--cli", "4930111")
    return c


def audit(cli, *argv):
    return [
        (r["actor"], r["action"], r["entity"], r["name"], r["field"], r["old"], r["new"])
        for r in cli.json("audit", *argv)
    ]


# -- account set ---------------------------------------------------------------------------------------
def test_account_set_changes_and_audits_each_field(cli):
    out = cli.ok("account", "set", "1001", "--credit-limit", "5", "--max-channels", "2", "--email", "b@example.com")
    assert out.splitlines() == [
        "account 1001: credit_limit 0.00 -> 5.00",
        "account 1001: max_channels 0 -> 2",
        "account 1001: email (none) -> b@example.com",
    ]
    shown = cli.json("account", "show", "1001")
    assert (shown["credit_limit"], shown["max_channels"], shown["email"], shown["available"]) == (
        "5.00",
        2,
        "b@example.com",
        "5.00",
    )
    assert "email        b@example.com" in cli.ok("account", "show", "1001")
    assert audit(cli, "--entity", "account:1001", "--limit", "3") == [
        ("operator1", "set", "account", "1001", "email", None, "b@example.com"),
        ("operator1", "set", "account", "1001", "max_channels", "0", "2"),
        ("operator1", "set", "account", "1001", "credit_limit", "0.00", "5.00"),
    ]
    # the same values again: nothing changed, nothing audited
    data = cli.json("account", "set", "1001", "--credit-limit", "5.000", "--actor", "bob")
    assert data["changes"] == []
    assert "nothing changed" in cli.ok("account", "set", "1001", "--max-channels", "2")
    assert all(r[0] != "bob" for r in audit(cli))
    # --email none clears it
    assert cli.json("account", "set", "1001", "--email", "none")["changes"] == [
        {"field": "email", "old": "b@example.com", "new": None}
    ]


def test_lowering_the_credit_limit_below_what_is_spent_is_refused_with_the_arithmetic(cli):
    cli.ok("account", "set", "1001", "--credit-limit", "5")
    cli.ok("adjust", "1001", "-3", "--reason", "call charged by hand")  # balance -3.00, available 2.00
    line = cli.fails("account", "set", "1001", "--credit-limit", "2")
    assert line == (
        "error: credit limit 2.00 would leave -1.00 available (balance -3.00 + credit limit 2.00 − held by live "
        "calls 0.00); use --force to apply anyway"
    )
    assert cli.json("account", "show", "1001")["credit_limit"] == "5.00"
    assert [r[4] for r in audit(cli, "--entity", "account:1001")].count("credit_limit") == 2  # add + the first set
    # a lower limit that still leaves something is fine; --force applies the refused one
    cli.ok("account", "set", "1001", "--credit-limit", "3")
    out = cli.ok("account", "set", "1001", "--credit-limit", "0", "--force", "--actor", "alice")
    assert "available is now -3.00 EUR" in out
    assert audit(cli, "--limit", "1") == [("alice", "set", "account", "1001", "credit_limit", "3.00", "0.00")]


def test_tariff_change_in_another_currency_needs_a_zero_balance(cli):
    cli.ok("topup", "1001", "4.00")
    line = cli.fails("account", "set", "1001", "--tariff", "dollars")
    assert "tariff 'dollars' is in USD and account '1001' is in EUR" in line and "balance 4.00 EUR" in line
    assert cli.json("account", "show", "1001")["tariff"] == "retail"
    cli.ok("adjust", "1001", "-4.00", "--reason", "refunded")
    data = cli.json("account", "set", "1001", "--tariff", "dollars")
    assert (data["tariff"], data["currency"]) == ("dollars", "USD")
    assert data["changes"] == [
        {"field": "tariff", "old": "retail", "new": "dollars"},
        {"field": "currency", "old": "EUR", "new": "USD"},
    ]


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (("account", "set", "1001"), 2, "nothing to set"),
        (("account", "set", "1001", "--credit-limit", "-1"), 2, "must not be negative"),
        (("account", "set", "1001", "--credit-limit", "1e3"), 2, "--credit-limit"),
        (("account", "set", "1001", "--max-channels", "-2"), 2, "--max-channels"),
        (("account", "set", "1001", "--email", "not-an-address"), 2, "--email must be an address"),
        (("account", "set", "1001", "--tariff", "vendor:x"), 3, "no tariff named 'vendor:x'"),
        (("account", "set", "1001", "--tariff", "nope"), 3, "no tariff named 'nope'"),
        (("account", "set", "ghost", "--max-channels", "1"), 3, "no account 'ghost'"),
        (("account", "cli", "add", "1001", "49abc"), 2, "caller id must be digits"),
        (("account", "cli", "remove", "1001", "4930999"), 3, "has no caller id 4930999"),
        (("account", "cli", "frob", "1001", "1"), 2, "invalid choice"),
        (("tariff", "set", "retail"), 2, "nothing to set"),
        (("tariff", "set", "retail", "--timezone", "Mars/Olympus"), 2, "unknown time zone"),
        (("tariff", "set", "retail", "--decimals", "9"), 2, "rounding decimals"),
        (("tariff", "set", "retail", "--rounding", "sideways"), 2, "invalid choice"),
        (("tariff", "set", "nope", "--timezone", "UTC"), 3, "no tariff named 'nope'"),
        (("vendor", "set", "nope", "--weight", "1"), 3, "no vendor named 'nope'"),
        (("audit", "--entity", "cdr"), 2, "--entity must be one of account, tariff, vendor"),
        (("audit", "--limit", "0"), 2, "positive whole number"),
        (("account", "set", "1001", "--max-channels", "1", "--actor", "a\tb"), 2, "--actor"),
    ],
)
def test_bad_arguments_are_one_line_and_change_nothing(cli, argv, code, message):
    before = cli.json("audit")
    assert message in cli.fails(*argv, code=code)
    assert cli.json("audit") == before


def test_bad_arguments_under_json_are_a_json_error(cli):
    code, out, err = cli.run("account", "set", "1001", "--json")
    assert code == 2 and out == ""
    assert json.loads(err) == {"error": json.loads(err)["error"], "kind": "usage", "exit": 2}


# -- caller ids --------------------------------------------------------------------------------------------
def test_cli_add_and_remove(cli):
    cli.ok("account", "add", "1002", "--tariff", "retail")
    assert cli.ok("account", "cli", "add", "1001", "+4930222").strip() == "caller id 4930222 mapped to account 1001"
    assert "already maps to" in cli.ok("account", "cli", "add", "1001", "4930222")
    assert "already belongs to account '1001'" in cli.fails("account", "cli", "add", "1002", "4930222")
    assert cli.json("account", "show", "1001")["clis"] == ["4930111", "4930222"]
    cli.ok("account", "cli", "remove", "1001", "4930111")
    assert cli.json("account", "cli", "add", "1002", "4930111")["clis"] == ["4930111"]
    assert audit(cli, "--limit", "3") == [
        ("operator1", "cli_add", "account", "1002", "cli", None, "4930111"),
        ("operator1", "cli_remove", "account", "1001", "cli", "4930111", None),
        ("operator1", "cli_add", "account", "1001", "cli", None, "4930222"),
    ]


# -- close -------------------------------------------------------------------------------------------------
def test_close_is_refused_with_a_balance_and_forced_moves_it_out_through_the_ledger(cli):
    cli.ok("topup", "1001", "7.50", "--reference", "pay-1")
    line = cli.fails("account", "close", "1001")
    assert line == (
        "error: account '1001' has balance 7.50 EUR: closing would move -7.50 EUR through the ledger (kind close); "
        "use --force to close anyway"
    )
    assert cli.json("account", "show", "1001")["status"] == "active"
    out = cli.ok("account", "close", "1001", "--force", "--actor", "alice")
    assert out.strip() == "account 1001 closed; -7.50 EUR ledgered as kind close, balance 0.00"
    shown = cli.json("account", "show", "1001")
    assert (shown["status"], shown["balance"]) == ("closed", "0.00")
    ledger = cli.json("ledger", "1001")
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in ledger] == [
        ("topup", "7.50", "7.50"),
        ("close", "-7.50", "0.00"),
    ]
    assert audit(cli, "--limit", "2") == [
        ("alice", "close", "account", "1001", "balance", "7.50", "0.00"),
        ("alice", "close", "account", "1001", "status", "active", "closed"),
    ]
    # closed: no top-ups, no changes, no resume, no second close; its caller id may go elsewhere
    assert "is closed: it takes no top-ups" in cli.fails("topup", "1001", "1")
    assert cli.json("topup", "1001", "7.50", "--reference", "pay-1")["applied"] is False  # a redelivery
    assert "is closed" in cli.fails("account", "set", "1001", "--max-channels", "1")
    assert "is closed" in cli.fails("account", "resume", "1001")
    assert "is closed" in cli.fails("account", "cli", "add", "1001", "4930555")
    assert "already closed" in cli.fails("account", "close", "1001", "--force")
    cli.ok("account", "cli", "remove", "1001", "4930111")
    assert [a["status"] for a in cli.json("account", "list")] == ["closed"]


def test_a_closed_account_takes_no_top_up_and_no_adjustment_unless_forced_and_audited(cli):
    cli.ok("topup", "1001", "3", "--reference", "pay-1")
    cli.ok("adjust", "1001", "-1", "--reason", "fix", "--reference", "fix-1")
    cli.ok("account", "close", "1001", "--force")
    before = cli.json("ledger", "1001")
    assert "is closed: it takes no top-ups" in cli.fails("topup", "1001", "1")
    line = cli.fails("adjust", "1001", "-0.50", "--reason", "late CDR")
    assert line == (
        "error: account '1001' is closed: an adjustment of -0.50 would move its balance from 0.00 to -0.50 "
        "after it was closed; use --force to correct the books of a closed account (written to the audit trail)"
    )
    assert "is closed" in cli.fails("adjust", "1001", "2", "--reason", "goodwill")
    assert cli.json("ledger", "1001") == before and cli.json("account", "show", "1001")["balance"] == "0.00"
    # a redelivered adjustment already applied before the close is still "already applied"
    assert cli.json("adjust", "1001", "-1", "--reason", "fix", "--reference", "fix-1")["applied"] is False
    out = cli.ok("adjust", "1001", "-0.50", "--reason", "late CDR", "--force", "--actor", "alice")
    assert out.strip() == "adjusted 1001 by -0.50; balance -0.50"
    assert audit(cli, "--limit", "1") == [("alice", "adjust", "account", "1001", "balance", "0.00", "-0.50")]
    assert cli.json("ledger", "1001")[-1]["kind"] == "adjust"
    assert cli.json("account", "show", "1001")["status"] == "closed"


def test_close_an_empty_account_needs_no_force_and_writes_no_ledger_entry(cli):
    data = cli.json("account", "close", "1001")
    assert data["status"] == "closed" and data["entry"] is None
    assert cli.json("ledger", "1001") == []


def test_a_debt_is_written_off_at_a_forced_close(cli):
    cli.ok("account", "set", "1001", "--credit-limit", "5")
    cli.ok("adjust", "1001", "-2", "--reason", "late CDR")
    assert "balance -2.00 EUR" in cli.fails("account", "close", "1001")
    entry = cli.json("account", "close", "1001", "--force")["entry"]
    assert (entry["kind"], entry["amount"], entry["note"]) == ("close", "2.00", "debt written off at close")


def test_suspend_and_resume_are_audited(cli):
    cli.ok("account", "suspend", "1001")
    cli.ok("account", "resume", "1001", "--actor", "bob")
    assert audit(cli, "--limit", "2") == [
        ("bob", "set", "account", "1001", "status", "suspended", "active"),
        ("operator1", "set", "account", "1001", "status", "active", "suspended"),
    ]


# -- tariffs -----------------------------------------------------------------------------------------------
def test_tariff_set_and_close(cli):
    out = cli.ok("tariff", "set", "retail", "--timezone", "Europe/Berlin", "--rounding", "half_even", "--decimals", "2")
    assert out.splitlines() == [
        "tariff retail: decimals 4 -> 2",
        "tariff retail: rounding half_up -> half_even",
        "tariff retail: timezone UTC -> Europe/Berlin",
    ]
    [retail] = [t for t in cli.json("tariff", "list") if t["name"] == "retail"]
    assert (retail["decimals"], retail["rounding"], retail["timezone"], retail["status"]) == (
        2,
        "half_even",
        "Europe/Berlin",
        "active",
    )
    out = cli.ok("tariff", "close", "retail")
    assert out.strip() == (
        "tariff retail closed: it is given to no more accounts; 1 open account(s) keep it "
        "(move them with 'fsbill account set CODE --tariff T')"
    )
    assert "tariff 'retail' is closed" in cli.fails("account", "add", "1002", "--tariff", "retail")
    cli.ok("account", "add", "1002", "--tariff", "dollars")
    assert "tariff 'retail' is closed" in cli.fails("account", "set", "1002", "--tariff", "retail")
    assert "already closed" in cli.fails("tariff", "close", "retail")
    assert "is closed" in cli.fails("tariff", "set", "retail", "--decimals", "3")
    assert cli.json("account", "show", "1001")["tariff"] == "retail"  # kept
    assert audit(cli, "--entity", "tariff:retail", "--limit", "4") == [
        ("operator1", "close", "tariff", "retail", "status", "active", "closed"),
        ("operator1", "set", "tariff", "retail", "timezone", "UTC", "Europe/Berlin"),
        ("operator1", "set", "tariff", "retail", "rounding", "half_up", "half_even"),
        ("operator1", "set", "tariff", "retail", "decimals", "4", "2"),
    ]


def test_vendor_decks_are_set_through_vendor_set(cli):
    cli.ok("vendor", "add", "c1", "--dial-string", "sofia/gateway/c1/{destination}")
    assert "change it with 'fsbill vendor set'" in cli.fails("tariff", "set", "vendor:c1", "--decimals", "2")
    assert "vendor:c1" not in [t["name"] for t in cli.json("tariff", "list")]


# -- vendors -----------------------------------------------------------------------------------------------
def test_vendor_set_close_and_routing(cli, tmp_path):
    (tmp_path / "sell.csv").write_text("prefix,rate\n49,0.10\n", encoding="utf-8")
    (tmp_path / "cost.csv").write_text("prefix,rate\n49,0.02\n", encoding="utf-8")
    cli.ok("rates", "import", "retail", str(tmp_path / "sell.csv"))
    cli.ok("vendor", "add", "c1", "--dial-string", "sofia/gateway/c1/{destination}")
    cli.ok("vendor", "rates", "import", "c1", str(tmp_path / "cost.csv"))
    data = cli.json(
        "vendor",
        "set",
        "c1",
        "--dial-string",
        "sofia/gateway/c1b/{destination}",
        "--weight",
        "7",
        "--max-channels",
        "3",
    )
    assert (data["dial_string"], data["weight"], data["max_channels"]) == ("sofia/gateway/c1b/{destination}", 7, 3)
    assert [c["field"] for c in data["changes"]] == ["dial_string", "weight", "max_channels"]
    assert cli.json("vendor", "set", "c1", "--timezone", "Europe/Paris")["timezone"] == "Europe/Paris"
    assert "one target" in cli.fails("vendor", "set", "c1", "--dial-string", "a|b")
    route = cli.json("route", "show", "1001", "4930123")
    assert route["vendors"][0]["usable"] and route["vendors"][0]["dial_string"] == "sofia/gateway/c1b/4930123"

    assert cli.ok("vendor", "close", "c1").strip() == "vendor c1 closed: never routed to again"
    route = cli.json("route", "show", "1001", "4930123")
    assert route["reason"] == "vendor_unavailable" and not route["vendors"][0]["usable"]
    assert cli.json("vendor", "show", "c1")["status"] == "closed"
    assert "closed is final" in cli.fails("vendor", "resume", "c1")
    assert "is closed" in cli.fails("vendor", "set", "c1", "--weight", "1")
    assert "already closed" in cli.fails("vendor", "close", "c1")
    assert audit(cli, "--entity", "vendor", "--limit", "2") == [
        ("operator1", "close", "vendor", "c1", "status", "active", "closed"),
        ("operator1", "set", "vendor", "c1", "timezone", "UTC", "Europe/Paris"),
    ]


# -- the trail ---------------------------------------------------------------------------------------------
def test_audit_text_and_json(cli, monkeypatch):
    monkeypatch.delenv("USER")
    cli.ok("account", "set", "1001", "--max-channels", "4")
    lines = cli.ok("audit", "--limit", "1").splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "ACTION", "WHAT", "FIELD", "OLD", "NEW"]
    assert lines[1].split()[1:] == ["cli", "set", "account", "1001", "max_channels", "0", "4"]
    [row] = cli.json("audit", "--limit", "1")
    assert set(row) == {"id", "time", "actor", "action", "entity", "name", "field", "old", "new"}
    assert row["time"].endswith("Z")
    # every add is in it too, oldest last
    everything = audit(cli)
    assert everything[-1] == ("operator1", "add", "tariff", "retail", "currency", None, "EUR")
    assert ("operator1", "add", "account", "1001", "cli", None, "4930111") in everything
    assert cli.json("audit", "--entity", "vendor") == []


# -- the fraud guards through `set` ---------------------------------------------------------------------
def test_account_set_and_tariff_set_take_the_fraud_guards(cli):
    got = cli.json("account", "set", "1001", "--daily-cap", "5.00", "--credit-limit", "1")
    assert got["guards"]["daily_cap"] == "5.00" and got["credit_limit"] == "1.00"
    got = cli.json("account", "set", "1001", "--max-rate", "0.90")
    assert got["guards"]["max_rate"] == "0.90"
    assert got["changes"] == [{"field": "max_rate", "old": None, "new": "0.90"}]  # audited like the others
    cli.ok("tariff", "set", "retail", "--monthly-cap", "50", "--timezone", "Europe/Berlin")
    shown = cli.json("account", "show", "1001")["guards"]
    assert shown["monthly_cap"] == "50.00" and shown["from"]["monthly_cap"] == "tariff"
    assert cli.fails("account", "set", "1001", "--daily-cap", "abc").startswith("error:")
