"""What the API changes as the CLI can (issue 22): caller ids, the fraud guards and auto-recharge,
and the payment side's recharge routes, over real HTTP on a real SQLite file; every write audited
with the token's name, and the answers the same as the CLI's --json."""

from __future__ import annotations

import json

import pytest
from api_rig import ApiRig

from fsbill.cli.main import main
from fsbill.db import audit, ledger


@pytest.fixture
def rig(tmp_path):
    r = ApiRig(f"sqlite:///{tmp_path}/api.db").seed()
    yield r
    r.close()


def cli_json(tmp_path, rig: ApiRig, capsys, *argv: str):
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: '{rig.store.url}'\n")
    capsys.readouterr()
    assert main([*argv, "--config", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def trail(rig: ApiRig, code: str = "1001") -> list[tuple[str, str, str | None, str | None]]:
    return [(e.actor, e.field, e.old, e.new) for e in reversed(audit.entries(rig.store, "account", code))]


def test_caller_ids_are_added_and_removed_and_audited(rig):
    r = rig.call("POST", "/v1/accounts/1001/clis", "admin", {"number": "+15551234"})
    assert r.status == 200 and "15551234" in r.json["clis"]
    assert r.json["changes"] == [{"field": "cli", "old": None, "new": "15551234"}]
    again = rig.call("POST", "/v1/accounts/1001/clis", "admin", {"number": "15551234"})
    assert again.status == 200 and again.json["changes"] == []
    taken = rig.call("POST", "/v1/accounts/1002/clis", "admin", {"number": "15551234"})
    assert taken.status == 409 and "already belongs" in taken.json["detail"]
    gone = rig.call("DELETE", "/v1/accounts/1001/clis/15551234", "admin")
    assert gone.status == 200 and "15551234" not in gone.json["clis"]
    missing = rig.call("DELETE", "/v1/accounts/1001/clis/15551234", "admin")
    assert missing.status == 404
    bad = rig.call("POST", "/v1/accounts/1001/clis", "admin", {"number": "abc"})
    assert bad.status == 400 and bad.json["kind"] == "usage"
    assert trail(rig)[-2:] == [("boss", "cli", None, "15551234"), ("boss", "cli", "15551234", None)]


def test_guards_read_as_account_guard_json_and_change_as_it_does(rig, tmp_path, capsys):
    shown = cli_json(tmp_path, rig, capsys, "account", "guard", "1001")
    got = rig.call("GET", "/v1/accounts/1001/guards", "account")  # its own account's
    assert got.status == 200 and got.json == shown
    r = rig.call("PATCH", "/v1/accounts/1001/guards", "admin", {"daily_cap": "5.00", "block": "4490,4491"})
    assert r.status == 200 and r.json["daily_cap"] == "5.00" and r.json["block"] == ["4490", "4491"]
    assert {c["field"] for c in r.json["changes"]} == {"daily_cap", "block"}
    assert rig.call("GET", "/v1/accounts/1001/guards", "readonly").json["daily_cap"] == "5.00"
    off = rig.call("PATCH", "/v1/accounts/1001/guards", "admin", {"daily_cap": "none"})
    assert off.status == 200 and off.json["daily_cap"] is None
    assert [(a, f) for a, f, *_ in trail(rig) if f in ("daily_cap", "block")] == [
        ("boss", "daily_cap"),
        ("boss", "block"),
        ("boss", "daily_cap"),
    ]
    for body, status in (({}, 400), ({"daily_cap": "abc"}, 400), ({"nope": "1"}, 400)):
        bad = rig.call("PATCH", "/v1/accounts/1001/guards", "admin", body)
        assert bad.status == status and bad.json["kind"] == "usage", body
    assert rig.call("PATCH", "/v1/accounts/1001/guards", "account", {"daily_cap": "1"}).status == 403
    assert rig.call("GET", "/v1/accounts/1002/guards", "account").status == 403


def test_auto_recharge_is_set_by_patch_requested_failed_and_credited(rig, tmp_path, capsys):
    ar = {"amount": "25.00", "below": "60.00", "max_per_day": 2}
    r = rig.call("PATCH", "/v1/accounts/1001", "admin", {"auto_recharge": ar})
    assert r.status == 200 and [c["field"] for c in r.json["changes"]] == ["auto_recharge"]
    shown = rig.call("GET", "/v1/accounts/1001", "account").json
    assert shown["auto_recharge"] == ar and shown["recharge_failures"] == 0
    assert cli_json(tmp_path, rig, capsys, "account", "show", "1001")["auto_recharge"] == ar
    # 50.00 minus the live call's hold is under 60.00: requested at once
    [req] = rig.call("GET", "/v1/accounts/1001/recharges", "account").json["items"]
    assert (req["status"], req["amount"]) == ("open", "25.00")
    assert cli_json(tmp_path, rig, capsys, "recharge", "list", "1001") == [req]
    path = f"/v1/accounts/1001/recharges/{req['key']}/failed"
    assert rig.call("POST", path, "account").status == 403
    failed = rig.call("POST", path, "admin")
    assert failed.status == 200 and (failed.json["failures"], failed.json["changed"]) == (1, True)
    assert rig.call("POST", path, "admin").json["changed"] is False
    assert ("boss", f"recharge {req['key']}", "open", "failed") in trail(rig)
    assert rig.call("POST", "/v1/accounts/1001/recharges/rch_nope/failed", "admin").status == 404
    # a credit names the key: the request is closed, the run of failures ends
    credit = rig.call(
        "POST",
        "/v1/accounts/1001/topups",
        "admin",
        {"amount": "25.00", "reference": req["key"]},
        {"Idempotency-Key": "pay-1"},
    )
    assert credit.status == 201
    items = rig.call("GET", "/v1/accounts/1001/recharges", "admin").json["items"]
    assert [i["status"] for i in items] == ["credited"] and items[0]["entry"] == credit.json["id"]
    assert rig.call("POST", path, "admin").status == 409  # credited: it cannot fail
    assert rig.call("GET", "/v1/accounts/1001", "admin").json["recharge_failures"] == 0
    off = rig.call("PATCH", "/v1/accounts/1001", "admin", {"auto_recharge": None})
    assert off.status == 200 and off.json["changes"][0]["new"] is None
    assert ledger.get_account(rig.store, "1001").balance.micros == 75_000_000


@pytest.mark.parametrize(
    "body",
    [
        {"auto_recharge": {"amount": "25.00"}},
        {"auto_recharge": {"amount": "0", "below": "5"}},
        {"auto_recharge": {"amount": "-1", "below": "5"}},
        {"auto_recharge": {"amount": "5", "below": "5", "max_per_day": 0}},
        {"auto_recharge": {"amount": "5", "below": "5", "extra": 1}},
        {"auto_recharge": "20"},
        {"auto_recharge": {"amount": "5", "below": "5"}, "status": "suspended"},
    ],
)
def test_bad_auto_recharge_is_a_usage_problem_and_changes_nothing(rig, body):
    r = rig.call("PATCH", "/v1/accounts/1001", "admin", body)
    assert r.status == 400 and r.json["kind"] == "usage", r.text
    assert rig.call("GET", "/v1/accounts/1001", "admin").json["auto_recharge"] is None
