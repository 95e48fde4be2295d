"""`fsbill bundle add|list|show`, `plan add --bundle`, `subscribe` and `account show` with bundle
balances (docs/BUNDLES.md): text and --json, one-line errors, the audit trail."""

from __future__ import annotations

import json

import pytest

from tests.test_cli_accounts import Cli, _config


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    c = Cli(capsys, _config(tmp_path, f"sqlite:///{tmp_path}/x.db"))
    c.ok("tariff", "add", "retail")
    c.ok("account", "add", "1001", "--tariff", "retail")
    return c


def test_sell_a_bundle_through_a_plan_and_see_what_is_left(cli):
    added = cli.json(
        "bundle", "add", "de", "--seconds", "60000", "--prefixes", "4930,49", "--rollover-max", "600", "--increment", "60"
    )  # fmt: skip
    want = {"name": "de", "seconds": 60000, "prefixes": ["49", "4930"], "rollover_max_s": 600, "increment_s": 60}
    assert added == want | {"plans": []}
    plan = cli.json("plan", "add", "de-flat", "--fee", "0", "--period", "monthly", "--bundle", "de")
    assert plan["bundle"] == "de" and plan["fee"] == "0.00"
    assert cli.json("bundle", "show", "de") == want | {"plans": ["de-flat"]}
    assert cli.json("bundle", "list") == [want | {"plans": ["de-flat"]}]
    assert "de-flat" in cli.ok("bundle", "list")
    cli.ok("subscribe", "1001", "de-flat", "--quantity", "2")
    [b] = cli.json("account", "show", "1001")["bundles"]
    assert (b["bundle"], b["seconds"], b["held_s"], b["remaining_s"]) == ("de", 120000, 0, 120000)
    assert "bundle de  120000 s left" in cli.ok("account", "show", "1001")
    assert cli.json("charges", "run")["charges"] == 0  # a free allowance posts no charge
    audit = cli.json("audit", "--entity", "bundle")
    assert {row["field"] for row in audit} == {"seconds", "prefixes", "rollover_max_s", "increment_s"}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("bundle", "add", "x", "--seconds", "0"), "positive"),
        (("bundle", "add", "x", "--seconds", "10", "--prefixes", "49,abc"), "prefix"),
        (("bundle", "show", "nope"), "no bundle named"),
        (("plan", "add", "p", "--fee", "1", "--period", "monthly", "--bundle", "nope"), "no bundle named"),
        (("plan", "add", "p", "--fee", "0", "--period", "monthly"), "positive"),
    ],
)
def test_bad_input_is_one_line(cli, argv, says):
    out = cli.fails(*argv)
    assert says in out and len(out.strip().splitlines()) == 1
    code, _, err = cli.run(*argv, "--json")
    assert code != 0 and "error" in json.loads(err)


def test_a_bundle_name_is_unique(cli):
    cli.ok("bundle", "add", "x", "--seconds", "10")
    assert "already exists" in cli.fails("bundle", "add", "x", "--seconds", "10")
