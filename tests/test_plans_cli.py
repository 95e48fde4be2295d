"""`fsbill plan add|list`, `subscribe`, `unsubscribe`, `subscriptions`, `charges run` with a
stepped clock (--from, --at, --now); text and --json; one-line errors; the audit trail; the
`charges:` config key and `fsbill serve` posting charges itself, one node at a time."""

from __future__ import annotations

import json

import gevent
import pytest

from fsbill.config import load_settings
from fsbill.core.money import Money
from fsbill.core.plans import month_span
from fsbill.db import plans as dbplans
from fsbill.errors import ConfigError
from fsbill.server import Node
from tests.rig import Rig
from tests.test_cli_accounts import Cli, _config

M = Money.parse


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    c = Cli(capsys, _config(tmp_path, f"sqlite:///{tmp_path}/x.db"))
    c.ok("tariff", "add", "retail", "--decimals", "2", "--timezone", "America/New_York")
    c.ok("account", "add", "1001", "--tariff", "retail")
    return c


def test_a_month_of_a_daily_plan_then_unsubscribe_with_a_credit(cli):
    plan = cli.json("plan", "add", "seat", "--fee", "30.00", "--period", "daily")
    assert plan == {"name": "seat", "fee": "30.00", "period": "daily", "currency": "EUR", "subscriptions": 0}
    cli.ok("topup", "1001", "100")
    sub = cli.json("subscribe", "1001", "seat", "--from", "2025-11-01T00:00:00-04:00", "--quantity", "2")
    assert (sub["quantity"], sub["from"], sub["until"]) == (2, "2025-11-01T04:00:00Z", None)
    first = cli.json("charges", "run", "--now", "2025-11-01T04:00:00Z")
    assert (first["charges"], first["charged"]) == (1, {"EUR": "2.00"})
    # November in New York: 30 days, one of them 25 hours (DST ends on the 2nd)
    for day in range(2, 31):
        cli.ok("charges", "run", "--now", f"2025-11-{day:02d}T12:00:00Z")
    again = cli.json("charges", "run", "--now", "2025-12-01T04:59:59Z")  # still November in New York
    assert (again["charges"], again["credits"]) == (0, 0)
    rows = cli.json("ledger", "1001")
    charges = [M(r["amount"]) for r in rows if r["kind"] == "charge"]
    assert len(charges) == 30 and Money(sum(c.micros for c in charges)) == M("-60.00")
    assert cli.json("account", "show", "1001")["balance"] == "40.00"
    december = cli.json("charges", "run", "--now", "2025-12-01T12:00:00Z")
    assert december["charged"] == {"EUR": "1.94"}  # round(60 x 1/31)
    out = cli.ok("unsubscribe", "1001", "seat", "--at", "2025-12-01T17:00:00Z")  # noon in New York
    assert "credited by 'fsbill charges run'" in out
    run = cli.json("charges", "run", "--now", "2025-12-02T12:00:00Z")
    assert (run["charges"], run["credits"], run["credited"]) == (0, 1, {"EUR": "0.97"})  # 1.94 - round(60 x 0.5/31)
    (shown,) = cli.json("subscriptions", "1001")
    assert (shown["charged"], shown["until"]) == ("60.97", "2025-12-01T17:00:00Z")
    assert "seat" in cli.ok("subscriptions") and "seat" in cli.ok("plan", "list")
    trail = cli.json("audit", "--entity", "account:1001")
    assert {e["action"] for e in trail} >= {"subscribe", "unsubscribe"}
    assert cli.json("audit", "--entity", "plan:seat")[0]["action"] == "add"


def test_arrears_in_account_show_and_paid_first_by_a_top_up(cli):
    cli.ok("plan", "add", "did", "--fee", "10", "--period", "monthly")
    cli.ok("topup", "1001", "4")
    cli.ok("subscribe", "1001", "did", "--from", "2025-06-01T00:00:00-04:00")
    text = cli.ok("charges", "run", "--now", "2025-06-01T04:00:00Z")
    assert "owed as arrears (not available now): 6.00 EUR" in text
    shown = cli.json("account", "show", "1001")
    assert (shown["balance"], shown["arrears"], shown["available"]) == ("0.00", "6.00", "-6.00")
    assert "arrears      6.00 EUR" in cli.ok("account", "show", "1001")
    cli.ok("topup", "1001", "20")
    shown = cli.json("account", "show", "1001")
    assert (shown["balance"], shown["arrears"], shown["available"]) == ("14.00", "0.00", "14.00")
    assert [r["kind"] for r in cli.json("ledger", "1001")] == ["topup", "charge", "topup", "arrears"]


@pytest.mark.parametrize(
    "argv,says",
    [
        (["plan", "add", "x", "--fee", "0", "--period", "daily"], "fee must be positive"),
        (["plan", "add", "x", "--fee", "1.5e2", "--period", "daily"], "1.5e2"),
        (["plan", "add", "x", "--fee", "1", "--period", "weekly"], "invalid choice"),
        (["plan", "add", "x", "--fee", "1", "--period", "daily", "--currency", "EURO"], "3-letter"),
        (["subscribe", "1001", "nope"], "no plan named 'nope'"),
        (["subscribe", "9999", "did"], "no account '9999'"),
        (["subscribe", "1001", "usd"], "is in USD but account '1001' pays in EUR"),
        (["subscribe", "1001", "did", "--quantity", "0"], "positive whole number"),
        (["subscribe", "1001", "did", "--from", "yesterday"], "not an ISO 8601"),
        (["unsubscribe", "1001", "did"], "no running subscription"),
        (["subscriptions", "9999"], "no account '9999'"),
        (["charges", "run", "--now", "soon"], "not an ISO 8601"),
        (["charges", "run", "--limit", "0"], "positive whole number"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(cli, argv, says):
    cli.ok("plan", "add", "did", "--fee", "1", "--period", "monthly")
    cli.ok("plan", "add", "usd", "--fee", "1", "--period", "monthly", "--currency", "USD")
    line = cli.fails(*argv)
    assert says in line, line
    code, out, err = cli.run(*argv, "--json")
    assert code != 0 and out == "" and says in json.loads(err)["error"]
    assert cli.json("subscriptions") == []


def test_the_charges_config_key():
    s = load_settings(None, {})
    assert (s.charges.enabled, s.charges.interval_s) == (True, 300)
    s = load_settings(None, {"charges": {"interval_s": 60, "enabled": False}})
    assert (s.charges.enabled, s.charges.interval_s) == (False, 60)
    with pytest.raises(ConfigError, match="charges.interval_s"):
        load_settings(None, {"charges": {"interval_s": 0}})
    with pytest.raises(ConfigError, match="charges.every"):
        load_settings(None, {"charges": {"every": 5}})


def test_serve_posts_charges_itself_on_one_node_at_a_time(sqlite_url):
    # the lease lasts two intervals: 60 s at 25x is 2.4 s of real time, so a loaded machine's stall
    # cannot let it lapse between the first node's run and the second node's try (1 s: 80 ms could)
    rig = Rig(sqlite_url, time_scale=25, charges={"interval_s": 30})
    other = None
    try:
        rig.account("acme", "100.00")
        now = rig.clock.now_us()
        dbplans.create_plan(rig.store, "did", M("7.00"), "monthly", "EUR", now)
        dbplans.subscribe(rig.store, "acme", "did", now, start_us=month_span(now, "UTC").start_us)
        with gevent.Timeout(10, AssertionError("the node never posted the charge")):
            while rig.show("acme").balance != M("93.00"):
                gevent.sleep(0.05)
        other = Node(rig.settings, clock=rig.clock)  # a second node on the same database
        assert not other.charges_once()  # the first node holds the lease
        assert rig.node.charges_once()
        assert rig.show("acme").balance == M("93.00")  # and nothing twice
    finally:
        if other is not None:
            other.store.close()
        rig.close()


def test_serve_with_charges_off_posts_nothing(sqlite_url):
    rig = Rig(sqlite_url, time_scale=25, charges={"enabled": False})
    try:
        rig.account("acme", "100.00")
        now = rig.clock.now_us()
        dbplans.create_plan(rig.store, "did", M("7.00"), "monthly", "EUR", now)
        dbplans.subscribe(rig.store, "acme", "did", now, start_us=month_span(now, "UTC").start_us)
        gevent.sleep(0.5)
        assert rig.show("acme").balance == M("100.00")
    finally:
        rig.close()
