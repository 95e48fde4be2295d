"""Every change to a fraud guard is in the audit trail (who, what, when, old and new value), written
in the transaction that makes it: `account guard`, `tariff guard`, and the guard flags of `account
set` and `tariff set`, as `fsbill audit [--json]` lists them."""

from __future__ import annotations

import json

import pytest

from fsbill.cli.main import main
from fsbill.db import audit, ledger, management
from fsbill.db import guards as dbguards
from fsbill.errors import InvalidInput

NOW = 1_750_000_000_000_000


def trail(store, **kwargs):
    return [(e.actor, e.action, e.entity, e.subject, e.field, e.old, e.new) for e in audit.entries(store, **kwargs)]


@pytest.fixture
def books(store):
    ledger.create_tariff(store, "retail", "EUR", NOW)
    ledger.create_account(store, "acme", "retail", NOW)
    return store


def test_account_guard_changes_are_audited_with_old_and_new_values(books):
    g = dbguards.set_account_guards(
        books,
        "acme",
        {"daily_cap_micros": "5", "block_prefixes": "+882,883", "max_calls_per_minute": "10"},
        NOW,
        actor="alice",
    )
    assert [(c.field, c.old, c.new) for c in g.changes] == [
        ("daily_cap", None, "5.00"),
        ("block", None, "882,883"),
        ("max_calls_per_minute", None, "10"),
    ]
    dbguards.set_account_guards(
        books,
        "acme",
        {"daily_cap_micros": "7.5", "block_prefixes": "off", "max_calls_per_minute": "none"},
        NOW + 1,
        actor="bob",
    )
    assert trail(books) == [  # latest first
        ("bob", "set", "account", "acme", "max_calls_per_minute", "10", None),
        ("bob", "set", "account", "acme", "block", "882,883", "off"),
        ("bob", "set", "account", "acme", "daily_cap", "5.00", "7.50"),
        ("alice", "set", "account", "acme", "max_calls_per_minute", None, "10"),
        ("alice", "set", "account", "acme", "block", None, "882,883"),
        ("alice", "set", "account", "acme", "daily_cap", None, "5.00"),
    ]
    assert {e.created_us for e in audit.entries(books)} == {NOW, NOW + 1}


def test_tariff_guard_changes_are_audited(books):
    dbguards.set_tariff_guards(books, "retail", {"max_rate_micros": "2", "allow_prefixes": "49,44"}, NOW, actor="carol")
    dbguards.set_tariff_guards(
        books, "retail", {"max_rate_micros": "off", "monthly_cap_micros": "100"}, NOW, actor="dan"
    )
    assert trail(books, entity="tariff") == [
        ("dan", "set", "tariff", "retail", "monthly_cap", None, "100.00"),
        ("dan", "set", "tariff", "retail", "max_rate", "2.00", None),  # `off` on a tariff clears it
        ("carol", "set", "tariff", "retail", "allow", None, "44,49"),  # as stored: sorted
        ("carol", "set", "tariff", "retail", "max_rate", None, "2.00"),
    ]


def test_an_unchanged_or_refused_guard_writes_nothing(books):
    dbguards.set_account_guards(books, "acme", {"daily_cap_micros": "5"}, NOW, actor="alice")
    before = trail(books)
    g = dbguards.set_account_guards(books, "acme", {"daily_cap_micros": "5.000"}, NOW, actor="alice")
    assert g.changes == () and trail(books) == before
    with pytest.raises(InvalidInput, match="daily cap"):
        dbguards.set_account_guards(books, "acme", {"monthly_cap_micros": "3", "daily_cap_micros": "x"}, NOW, actor="a")
    assert trail(books) == before
    assert dbguards.account_guards(books, "acme", NOW).effective.monthly_cap is None


def test_a_closed_accounts_guards_cannot_be_changed(books):
    management.close_account(books, "acme", NOW, "op")
    before = trail(books)
    with pytest.raises(InvalidInput, match="'acme' is closed"):
        dbguards.set_account_guards(books, "acme", {"daily_cap_micros": "5"}, NOW, actor="alice")
    assert trail(books) == before
    assert dbguards.account_guards(books, "acme", NOW).own["daily_cap_micros"] is None


# -- the CLI -----------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    monkeypatch.setenv("USER", "operator1")
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: 'sqlite:///{tmp_path}/c.db'\n", encoding="utf-8")

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config)])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("tariff", "add", "retail")[0] == 0
    assert run("account", "add", "acme", "--tariff", "retail")[0] == 0
    return run


def test_every_guard_command_is_listed_by_fsbill_audit(cli):
    code, out, _ = cli("account", "guard", "acme", "--daily-cap", "5", "--actor", "alice")
    assert code == 0 and "account acme: daily_cap (none) -> 5.00" in out
    code, out, _ = cli("account", "set", "acme", "--block", "900", "--max-channels", "3", "--json")
    assert code == 0
    assert {"field": "block", "old": None, "new": "900"} in json.loads(out)["changes"]
    assert {"field": "max_channels", "old": "0", "new": "3"} in json.loads(out)["changes"]
    code, out, _ = cli("tariff", "guard", "retail", "--max-rate", "2", "--actor", "carol", "--json")
    assert code == 0 and json.loads(out)["changes"] == [{"field": "max_rate", "old": None, "new": "2.00"}]
    code, out, _ = cli("tariff", "set", "retail", "--allow", "49", "--timezone", "Europe/Berlin", "--json")
    assert code == 0 and [c["field"] for c in json.loads(out)["changes"]] == ["allow", "timezone"]
    code, out, _ = cli("audit", "--json")
    rows = [(r["actor"], r["action"], r["entity"], r["name"], r["field"], r["old"], r["new"]) for r in json.loads(out)]
    assert rows[:6] == [
        ("operator1", "set", "tariff", "retail", "timezone", "UTC", "Europe/Berlin"),
        ("operator1", "set", "tariff", "retail", "allow", None, "49"),
        ("carol", "set", "tariff", "retail", "max_rate", None, "2.00"),
        ("operator1", "set", "account", "acme", "block", None, "900"),
        ("operator1", "set", "account", "acme", "max_channels", "0", "3"),
        ("alice", "set", "account", "acme", "daily_cap", None, "5.00"),
    ]
    assert all(r["time"].endswith("Z") for r in json.loads(out))
    code, out, _ = cli("audit", "--entity", "account:acme", "--limit", "1")
    assert code == 0 and "alice" not in out and "block" in out and "900" in out
