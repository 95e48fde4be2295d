"""`fsbill did add|list|show|set|remove` (docs/DIDS.md): text and --json, numbers normalised as
caller ids are, one-line errors with the documented exit codes, every change audited."""

from __future__ import annotations

import json

import pytest

from tests.test_cli_accounts import Cli, _config


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    c = Cli(capsys, _config(tmp_path, f"sqlite:///{tmp_path}/x.db"))
    c.ok("tariff", "add", "retail")
    c.ok("account", "add", "shop", "--tariff", "retail")
    c.ok("account", "add", "other", "--tariff", "retail")
    return c


def test_add_show_list_set_remove(cli):
    added = cli.json(
        "did", "add", "+4930555000", "--account", "shop", "--dial-string", "sofia/gateway/pbx/{destination}",
        "--rate", "0.60", "--connect-fee", "0.05", "--increments", "30/6", "--max-channels", "4",
    )  # fmt: skip
    assert added == {
        "number": "4930555000",
        "account": "shop",
        "dial_string": "sofia/gateway/pbx/{destination}",
        "rate": "0.60",
        "connect_fee": "0.05",
        "increments": "30/6",
        "on_empty": "reject",
        "max_channels": 4,
        "status": "active",
    }
    assert cli.json("did", "show", "+4930555000") == added
    free = cli.json("did", "add", "4930555001", "--account", "other", "--dial-string", "user/1000")
    assert (free["rate"], free["increments"], free["on_empty"], free["max_channels"]) == (None, "1/1", "reject", 0)
    assert [d["number"] for d in cli.json("did", "list")] == ["4930555000", "4930555001"]
    assert [d["number"] for d in cli.json("did", "list", "--account", "other")] == ["4930555001"]
    assert "4930555000  shop" in cli.ok("did", "list")
    changed = cli.json("did", "set", "4930555000", "--free", "--on-empty", "free", "--account", "other")
    assert (changed["rate"], changed["connect_fee"], changed["on_empty"], changed["account"]) == (
        None,
        "0.00",
        "free",
        "other",
    )
    assert "removed" in cli.ok("did", "remove", "4930555000")
    assert [d["number"] for d in cli.json("did", "list")] == ["4930555001"]
    again = cli.json("did", "add", "4930555000", "--account", "shop", "--dial-string", "user/1001")
    assert (again["account"], again["rate"], again["status"]) == ("shop", None, "active")


def test_every_change_is_audited(cli):
    cli.ok("did", "add", "4930555000", "--account", "shop", "--dial-string", "user/1000", "--actor", "alice")
    cli.ok("did", "set", "4930555000", "--rate", "0.10", "--actor", "bob")
    cli.ok("did", "remove", "4930555000", "--actor", "carol")
    trail = cli.json("audit", "--entity", "did:4930555000")
    assert {(e["actor"], e["action"]) for e in trail} == {("alice", "add"), ("bob", "set"), ("carol", "remove")}
    assert [(e["field"], e["old"], e["new"]) for e in trail if e["actor"] == "bob"] == [("rate", None, "0.10")]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["did", "add", "49305x", "--account", "shop", "--dial-string", "x"], 2, "digits 0-9"),
        (["did", "add", "٣٣٣", "--account", "shop", "--dial-string", "x"], 2, "digits 0-9"),
        (["did", "add", "4930", "--account", "nobody", "--dial-string", "x"], 3, "no account 'nobody'"),
        (["did", "add", "4930", "--account", "shop", "--dial-string", " "], 2, "--dial-string must not be empty"),
        (["did", "add", "4930", "--account", "shop", "--dial-string", "x", "--increments", "0/1"], 2, "INITIAL/NEXT"),
        (["did", "add", "4930", "--account", "shop", "--dial-string", "x", "--rate", "1.2.3"], 2, "--rate"),
        (["did", "add", "4930", "--account", "shop", "--dial-string", "x", "--rate", "-1"], 2, "must not be negative"),
        (["did", "add", "4930", "--account", "shop", "--dial-string", "x", "--connect-fee", "0.1"], 2, "needs --rate"),
        (["did", "add", "4930", "--account", "shop", "--dial-string", "x", "--on-empty", "maybe"], 2, "--on-empty"),
        (["did", "add", "4930", "--dial-string", "x"], 2, "--account"),
        (["did", "show", "4931"], 3, "no inbound number '4931'"),
        (["did", "set", "4931", "--rate", "1"], 3, "no inbound number"),
        (["did", "remove", "4931"], 3, "no inbound number"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(cli, argv, code, message):
    got, _, err = cli.run(*argv)
    line = cli.fails(*argv)
    assert got == code and message in line, err
    assert cli.json("did", "list") == []
    _, _, err = cli.run(*argv, "--json")
    assert json.loads(err)["exit"] == code


def test_a_number_in_use_is_refused_naming_its_owner(cli):
    cli.ok("did", "add", "4930555000", "--account", "shop", "--dial-string", "x")
    line = cli.fails("did", "add", "4930555000", "--account", "other", "--dial-string", "y")
    assert "already in use" in line and "shop" in line
    assert cli.json("did", "show", "4930555000")["account"] == "shop"
    line = cli.fails("did", "set", "4930555000", "--free", "--rate", "0.1")
    assert "--free" in line
