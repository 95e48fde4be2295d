"""Notices in the database (SQLite and PostgreSQL): a change of what is available that crosses a
low-balance level raises one `balance.low` in the transaction of its cause (top-up, adjust,
reservation, heartbeat, settlement, credit limit), a cause that rolls back raises none, and
suspending / resuming an account raises its notice. Then the CLI."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from cli_rig import Cli
from migrated import migrate_fresh

from fsbill.core.call import answer
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd
from fsbill.db import Store, ledger, management
from fsbill.db import calls as dbcalls
from fsbill.db import notices as dbnotices

US = 1_000_000
NOW = 1_750_000_000 * US
M = Money.parse
POLICY = GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60)
RATE = Rate("49", M("1.00"), Money(0), 1, 1, 0, RoundingRule(4, RoundingMethod.HALF_UP))  # 1.00 a minute


def seed(store: Store, balance: str = "20", levels: str | None = "10.00,2.00", code: str = "acme") -> int:
    if not any(t.name == "retail" for t in ledger.list_tariffs(store)):
        ledger.create_tariff(store, "retail", "EUR", NOW)
    ledger.create_account(store, code, "retail", NOW)
    ledger.topup(store, code, M(balance), NOW, reference="seed")
    if levels is not None:
        dbnotices.set_levels(store, "account", code, levels, NOW, actor="test")
    return ledger.get_account(store, code).id


def low(store: Store, code: str = "acme") -> list[str]:
    """The levels of the balance.low notices raised so far, oldest first."""
    return [n.payload["level"] for n in dbnotices.list_notices(store, account=code) if n.kind == "balance.low"]


def test_top_up_and_adjust_raise_one_notice_per_crossing(store):
    seed(store)
    assert low(store) == []
    ledger.adjust(store, "acme", M("-10.01"), "test", NOW)  # 9.99: under 10
    assert low(store) == ["10.00"]
    # hovering around the level: no second notice until 11.00 is available again
    ledger.topup(store, "acme", M("1.00"), NOW)  # 10.99
    ledger.adjust(store, "acme", M("-1.00"), "test", NOW)  # 9.99
    assert low(store) == ["10.00"]
    ledger.topup(store, "acme", M("1.01"), NOW)  # 11.00: armed again
    ledger.adjust(store, "acme", M("-0.01"), "test", NOW)  # 10.99: above, nothing
    assert low(store) == ["10.00"]
    ledger.adjust(store, "acme", M("-9.49"), "test", NOW)  # 1.50: under 10 and under 2
    assert low(store) == ["10.00", "10.00", "2.00"]
    notice = dbnotices.list_notices(store, account="acme")[-1]
    assert notice.payload == {
        "account": "acme",
        "currency": "EUR",
        "level": "2.00",
        "available": "1.50",
        "balance": "1.50",
        "rearm_at": "2.20",
    }
    assert notice.status == "pending" and notice.id.startswith("ntc_")


def test_a_cause_that_rolls_back_raises_nothing(store):
    acc = seed(store)
    with pytest.raises(RuntimeError):
        with store.transaction():
            ledger.post(store, acc, M("-15"), "adjust", NOW, note="rolled back")
            dbnotices.check_low_balance(store, acc, NOW)
            assert store.models.Notice.select().count() == 1  # written in the cause's transaction...
            raise RuntimeError("the cause fails after its notice was written")
    assert low(store) == []  # ...and gone with it
    assert ledger.get_account(store, "acme").balance == M("20")
    with store.reading():
        assert store.models.LowBalanceState.select().count() == 0  # the level is still armed
    ledger.adjust(store, "acme", M("-15"), "test", NOW)
    assert low(store) == ["10.00"]


def test_the_notice_is_invisible_to_others_until_its_cause_commits(pg_url):
    migrate_fresh(pg_url)
    store, other = Store(pg_url), Store(pg_url)
    store.upgrade()
    try:
        acc = seed(store)
        with store.transaction():
            ledger.post(store, acc, M("-15"), "adjust", NOW)
            dbnotices.check_low_balance(store, acc, NOW)
            assert low(other) == []
        assert low(other) == ["10.00"]
    finally:
        store.close()
        other.close()


def test_a_reservation_a_heartbeat_and_a_settlement_move_the_levels(store):
    """Held money counts: a call's first hold, its extension and its settlement each check."""
    acc = seed(store, balance="12.50")
    uuid = str(uuidlib.uuid4())
    auth = dbcalls.reserve(
        store,
        uuid=uuid,
        account_id=acc,
        rate=RATE,
        policy=POLICY,
        node="n",
        caller="1",
        destination="4930",
        now_us=NOW,
        lease_until_us=NOW + 60 * US,
        max_ring_s=0,
    )
    assert auth.call is not None and auth.call.held == M("2.00")  # 10.50 available: nothing yet
    assert low(store) == []
    call = answer(auth.call, NOW, POLICY)
    dbcalls.mark_answered(store, call, NOW + 60 * US)
    beat = dbcalls.heartbeat(store, uuid, 1, NOW + 61 * US, POLICY, NOW + 120 * US, known=call)
    assert beat is not None and beat.extra_hold  # the next slice is held: under 10
    assert low(store) == ["10.00"]
    assert dbnotices.list_notices(store)[-1].payload["available"] == str(ledger.get_account(store, "acme").available)
    end = CallEnd(uuid, 1, NOW, NOW + 70 * US, NOW, 70, "NORMAL_CLEARING", "completed", NOW + 71 * US)
    cdr = dbcalls.settle_call(store, end)
    assert cdr is not None and cdr.charged == M("1.1667")
    with store.reading():  # 11.3333 available after the settlement: armed again
        assert store.models.LowBalanceState.select().count() == 0
    assert low(store) == ["10.00"]


def test_the_tariffs_default_and_an_accounts_own_levels(store):
    seed(store, levels=None)
    ledger.adjust(store, "acme", M("-15"), "test", NOW)
    assert low(store) == []  # no level anywhere: nothing, and no state written
    dbnotices.set_levels(store, "tariff", "retail", "8,3", NOW, actor="test")
    assert dbnotices.levels_of(store, "account", "acme").source == "tariff"
    ledger.adjust(store, "acme", M("-0.01"), "test", NOW)  # 4.99 under the tariff's 8
    assert low(store) == ["8.00"]
    dbnotices.set_levels(store, "account", "acme", "off", NOW, actor="test")
    ledger.adjust(store, "acme", M("-4"), "test", NOW)  # 0.99: under 3, but the account is off
    assert low(store) == ["8.00"]
    # setting a level above what is available raises its notice at once, in the same transaction
    view = dbnotices.set_levels(store, "account", "acme", "1.00", NOW, actor="test")
    assert low(store) == ["8.00", "1.00"] and view.source == "account"
    trail = [(e.field, e.old, e.new) for e in ledger_audit(store) if e.field == "low_balance"]
    assert trail[::-1] == [
        ("low_balance", None, "8.00,3.00"),
        ("low_balance", "none", "off"),
        ("low_balance", "off", "1.00"),
    ]


def ledger_audit(store: Store):
    from fsbill.db.audit import entries

    return entries(store)


def test_a_lower_credit_limit_is_a_change_of_what_is_available(store):
    seed(store)
    management.set_account(store, "acme", NOW, "test", credit_limit=M("5"))
    ledger.adjust(store, "acme", M("-14"), "test", NOW)  # 6 + 5 = 11 available
    assert low(store) == []
    management.set_account(store, "acme", NOW, "test", credit_limit=M("0"))
    assert low(store) == ["10.00"]


def test_suspend_and_resume_raise_their_notices(store):
    seed(store, levels=None)
    management.set_account_status(store, "acme", "suspended", NOW, "test")
    management.set_account_status(store, "acme", "suspended", NOW, "test")  # no change: no notice
    management.set_account_status(store, "acme", "active", NOW, "test")
    found = dbnotices.list_notices(store, account="acme")
    assert [(n.kind, n.payload["status"]) for n in found] == [
        ("account.suspended", "suspended"),
        ("account.resumed", "active"),
    ]


def test_the_generic_entry_other_features_call(store):
    seed(store, levels=None)
    with store.transaction():
        nid = dbnotices.raise_notice(store, "charge.posted", "acme", {"amount": "5.00", "plan": "did"}, NOW)
    only = dbnotices.list_notices(store, pending=True)
    assert [(n.id, n.kind, n.payload) for n in only] == [(nid, "charge.posted", {"amount": "5.00", "plan": "did"})]


# -- the CLI ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli(capsys, tmp_path) -> Cli:
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/cli.db\n")
    c = Cli(capsys, config)
    assert c.run("tariff", "add", "retail")[0] == 0
    assert c.run("account", "add", "acme", "--tariff", "retail")[0] == 0
    assert c.run("topup", "acme", "20")[0] == 0
    return c


def test_cli_levels_and_the_list(cli):
    out = cli.json("account", "set", "acme", "--low-balance", "2.00,10", "--email", "billing@example.com")
    assert out["low_balance"] == ["10.00", "2.00"] and out["low_balance_from"] == "account"
    assert {c["field"] for c in out["changes"]} == {"email", "low_balance"}
    assert cli.json("tariff", "set", "retail", "--low-balance", "5")["low_balance"] == ["5.00"]
    assert cli.json("account", "show", "acme")["low_balance"] == ["10.00", "2.00"]
    assert cli.run("adjust", "acme", "-12", "--reason", "test")[0] == 0
    assert cli.run("account", "suspend", "acme")[0] == 0
    listed = cli.json("notices", "list", "--account", "acme")
    assert [n["kind"] for n in listed] == ["balance.low", "account.suspended"]
    assert listed[0]["payload"]["level"] == "10.00" and listed[0]["status"] == "pending"
    assert [n["kind"] for n in cli.json("notices", "list", "--pending", "--limit", "1")] == ["account.suspended"]
    code, out, _ = cli.run("notices", "list", "--pending")
    assert code == 0 and "balance.low" in out and "account.suspended" in out


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (("account", "set", "acme", "--low-balance", "10,abc"), 2, "--low-balance"),
        (("account", "set", "acme", "--low-balance", "0"), 2, "more than zero"),
        (("account", "set", "ghost", "--low-balance", "1"), 3, "no account"),
        (("tariff", "set", "nope", "--low-balance", "1"), 3, "no tariff"),
        (("notices", "list", "--account", "ghost"), 3, "no account"),
    ],
)
def test_cli_errors_are_one_line(cli, argv, code, words):
    got, out, err = cli.run(*argv)
    assert (got, out) == (code, "") and words in err and len(err.strip().splitlines()) == 1
    got, out, err = cli.run(*argv, "--json")
    assert got == code and json.loads(err)["exit"] == code
