"""Managing accounts, tariffs and vendors (fsbill.db.management) on SQLite and PostgreSQL, and
what it does to calls placed through the FreeSWITCH emulator into a real node: a closed account
is refused `closed` (403), a forced close or a lower credit limit under a live call gives it no
more time, and every change is in the audit trail, written with it or not at all."""

from __future__ import annotations

import pytest
from rig import Rig, charged_total

from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.db import audit, ledger, management
from fsbill.db import vendors as dbvendors
from fsbill.errors import Conflict, InvalidInput

NOW = 1_780_000_000_000_000


def fields(store, **kwargs):
    return [(e.action, e.subject, e.field, e.old, e.new) for e in audit.entries(store, **kwargs)]


@pytest.fixture
def books(store):
    ledger.create_tariff(store, "retail", "EUR", NOW, actor="setup")
    ledger.create_tariff(store, "dollars", "USD", NOW)
    ledger.create_account(store, "a1", "retail", NOW, credit_limit=Money.parse("5"), actor="setup")
    return store


def test_a_refused_change_changes_nothing_and_audits_nothing(books):
    ledger.adjust(books, "a1", Money.parse("-4"), "test", NOW)  # balance -4, available 1
    before = fields(books)
    with pytest.raises(InvalidInput, match=r"credit limit 3.00 would leave -1.00 available \(balance -4.00"):
        management.set_account(books, "a1", NOW, "op", credit_limit=Money.parse("3"), max_channels=2)
    a = ledger.get_account(books, "a1")
    assert (a.credit_limit, a.max_channels) == (Money.parse("5"), 0)
    assert fields(books) == before
    r = management.set_account(books, "a1", NOW, "op", credit_limit=Money.parse("3"), max_channels=2, force=True)
    assert r.account.available == Money.parse("-1")
    assert fields(books, entity="account", subject="a1", limit=2) == [
        ("set", "a1", "max_channels", "0", "2"),
        ("set", "a1", "credit_limit", "5.00", "3.00"),
    ]


def test_currency_change_and_closed_tariff(books):
    ledger.topup(books, "a1", Money.parse("1"), NOW)
    with pytest.raises(InvalidInput, match="needs a zero balance"):
        management.set_account(books, "a1", NOW, "op", tariff="dollars")
    ledger.adjust(books, "a1", Money.parse("-1"), "refund", NOW)
    management.close_tariff(books, "dollars", NOW, "op")
    with pytest.raises(InvalidInput, match="'dollars' is closed"):
        management.set_account(books, "a1", NOW, "op", tariff="dollars")
    with pytest.raises(InvalidInput, match="'dollars' is closed"):
        ledger.create_account(books, "a2", "dollars", NOW)
    assert ledger.get_tariff(books, "dollars").status == "closed"


def test_tariff_set_bumps_the_deck_version_so_every_node_reloads(books):
    version = ledger.get_tariff(books, "retail").deck_version
    r = management.set_tariff(books, "retail", NOW, "op", timezone="Asia/Tokyo", decimals=2)
    assert r.tariff.timezone == "Asia/Tokyo" and r.tariff.rounding.decimals == 2
    assert r.tariff.deck_version == version + 1
    assert management.set_tariff(books, "retail", NOW, "op", timezone="Asia/Tokyo").changes == ()
    assert ledger.get_tariff(books, "retail").deck_version == version + 1


def test_close_keeps_the_books(books):
    ledger.topup(books, "a1", Money.parse("2.50"), NOW, reference="r1")
    with pytest.raises(InvalidInput, match="balance 2.50 EUR"):
        management.close_account(books, "a1", NOW, "op")
    r = management.close_account(books, "a1", NOW + 1, "op", force=True)
    assert r.entry is not None and r.entry.kind == "close" and r.entry.amount == Money.parse("-2.50")
    assert ledger.get_account(books, "a1").balance == Money(0) == ledger.ledger_sum(books, "a1")
    assert [e.kind for e in ledger.ledger(books, "a1")] == ["topup", "close"]
    with pytest.raises(Conflict):
        management.close_account(books, "a1", NOW, "op", force=True)
    with pytest.raises(InvalidInput, match="closed"):
        ledger.topup(books, "a1", Money.parse("1"), NOW)
    assert fields(books, entity="account", limit=2) == [
        ("close", "a1", "balance", "2.50", "0.00"),
        ("close", "a1", "status", "active", "closed"),
    ]
    assert fields(books)[-1] == ("add", "retail", "currency", None, "EUR")  # actor given: audited


def test_a_closed_vendor_takes_no_channel(books):
    dbvendors.create_vendor(books, "v1", "x/{destination}", NOW, actor="op")
    management.set_vendor(books, "v1", NOW, "op", max_channels=1, weight=3)
    management.close_vendor(books, "v1", NOW, "op")
    [v] = dbvendors.list_vendors(books)
    assert v.status == "closed" and v.max_channels == 1 and v.weight == 3
    with pytest.raises(InvalidInput, match="closed is final"):
        management.set_vendor_status(books, "v1", dbvendors.ACTIVE, NOW, "op")
    assert fields(books, entity="vendor", limit=3) == [
        ("close", "v1", "status", "active", "closed"),
        ("set", "v1", "max_channels", "0", "1"),
        ("set", "v1", "weight", "0", "3"),
    ]
    # the call path's channel take (fsbill.db.vendors.take_channels) refuses it like a suspended one
    leg = dbvendors.Leg(v.id, "v1", "leg-1", "x/49", Rate.adhoc(Money.parse("0.01")))
    with books.transaction():
        assert dbvendors.take_channels(books, "call-1", 1, [leg]) == {"v1"}


# -- calls through the emulator ------------------------------------------------------------------------------
@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25)
    yield r
    r.close()


def test_a_closed_account_is_refused_with_reason_closed(rig):
    rig.account("acme", "10.00")
    management.close_account(rig.store, "acme", rig.clock.now_us(), "op", force=True)
    rec = rig.call()
    [cdr] = rig.settled(1)
    assert rec.answered_us is None and rec.responded == "403 Forbidden"
    assert rec.variables.get("fsbill_result") == "rejected_closed"
    assert (cdr.result, cdr.reason, cdr.charged) == ("rejected", "closed", Money(0))
    assert [e.kind for e in ledger.ledger(rig.store, "acme")] == ["topup", "close"]
    assert rig.node.metrics.calls.labels("rejected", "closed")._value.get() == 1


def test_a_forced_close_under_a_live_call_lets_it_finish_its_grant_and_no_more(rig):
    rig.account("acme", "10.00")  # 600 s at 1.00/min; the first grant is one slice (120 s)
    call = rig.switch.start_call(rig.address, rig.spec(talk_s=None))
    rig.clock.sleep(20)
    with pytest.raises(InvalidInput, match=r"1 live call\(s\) holding"):
        management.close_account(rig.store, "acme", rig.clock.now_us(), "op")
    management.close_account(rig.store, "acme", rig.clock.now_us(), "op", force=True)
    rec = call.get(timeout=60)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT" and cdr.billed_s <= 120
    assert cdr.cost == cdr.charged
    acct = rig.show("acme")
    assert acct.status == "closed" and acct.reserved == Money(0)
    assert acct.balance == ledger.ledger_sum(rig.store, "acme")
    close = [e for e in ledger.ledger(rig.store, "acme") if e.kind == "close"]
    # what the call cost after the close lands on the closed account, within what it held
    assert Money.parse("10.00") + close[0].amount - charged_total([cdr]) == acct.balance
    assert acct.balance <= Money(0)


def test_a_lower_credit_limit_under_a_live_call_needs_force_and_gives_it_no_more_time(rig):
    rig.account("acme", "0", credit_limit=Money.parse("10.00"))
    call = rig.switch.start_call(rig.address, rig.spec(talk_s=None))
    rig.clock.sleep(20)
    held = rig.show("acme").reserved
    assert held > Money(0)
    with pytest.raises(InvalidInput, match=r"would leave -.* \(balance .* \+ credit limit 0.00 − held by live calls"):
        management.set_account(rig.store, "acme", rig.clock.now_us(), "op", credit_limit=Money(0))
    management.set_account(rig.store, "acme", rig.clock.now_us(), "op", credit_limit=Money(0), force=True)
    rec = call.get(timeout=60)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT" and cdr.billed_s <= 120
    assert cdr.cost == cdr.charged
    # and a new call is refused: nothing available
    rig.call()
    cdrs = rig.settled(2)
    assert sorted(c.reason for c in cdrs if c.result == "rejected") == ["insufficient_funds"]


def test_an_adjustment_of_a_closed_account_is_refused_unless_forced_and_then_audited(books):
    ledger.topup(books, "a1", Money.parse("2"), NOW)
    management.close_account(books, "a1", NOW, "op", force=True)
    before = (fields(books), ledger.ledger(books, "a1"))
    for amount in ("-1", "1"):
        with pytest.raises(InvalidInput, match=r"'a1' is closed: an adjustment of .* use --force"):
            ledger.adjust(books, "a1", Money.parse(amount), "late CDR", NOW + 1)
    assert (fields(books), ledger.ledger(books, "a1")) == before
    entry = ledger.adjust(books, "a1", Money.parse("-7"), "late CDR", NOW + 2, force=True, actor="alice")
    assert (entry.kind, entry.amount, entry.balance_after) == ("adjust", Money.parse("-7"), Money.parse("-7"))
    assert fields(books, limit=1) == [("adjust", "a1", "balance", "0.00", "-7.00")]
    assert audit.entries(books, limit=1)[0].actor == "alice"
    assert ledger.ledger_sum(books, "a1") == ledger.get_account(books, "a1").balance
    # an open account's adjustments stay in the ledger only
    ledger.create_account(books, "a2", "retail", NOW)
    ledger.adjust(books, "a2", Money.parse("1"), "goodwill", NOW)
    assert fields(books, subject="a2") == []
