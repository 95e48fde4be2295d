"""Inbound numbers (issue 25, docs/DIDS.md), end to end: the FreeSWITCH emulator over real TCP
into a real node, on SQLite and PostgreSQL. A call the dialplan marks fsbill_direction=inbound
is billed to the number's owner at the number's own price and bridged to its dial string."""

from __future__ import annotations

import gevent
import pytest
from rig import Rig

from fsbill.cdr_format import FIELDS, record
from fsbill.core.money import Money
from fsbill.db import dids as dbdids
from fsbill.db import ledger, management

DID = "4930555000"
INBOUND = {"fsbill_direction": "inbound"}


@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25)
    yield r
    r.close()


def add_did(rig: Rig, owner: str = "shop", **kwargs) -> None:
    dbdids.add_did(
        rig.store, DID, owner, kwargs.pop("dial_string", "loopback/{destination}"), rig.clock.now_us(), **kwargs
    )


def inbound(rig: Rig, number: str = "+" + DID, **kwargs):
    """An inbound call as dialplan/fsbill_inbound.xml hands it over: no account variable."""
    variables = {**INBOUND, **kwargs.pop("variables", {})}
    return rig.spec(account=None, destination=number, variables=variables, **kwargs)


def bridged_to(rec) -> list[str]:
    return [data for app, data in rec.applications if app == "bridge"]


def test_an_inbound_call_is_billed_to_the_owner_at_the_numbers_rate_not_to_the_caller(rig):
    rig.account("shop", "10.00")
    rig.account("caller", "5.00", clis=["15550001111"])  # the caller id belongs to another account
    add_did(rig, rate=Money.parse("0.60"), connect_fee=Money.parse("0.05"), increments=(30, 6))
    rec = rig.switch.place_call(rig.address, inbound(rig, caller_id_number="15550001111", talk_s=31))
    [cdr] = rig.settled(1)
    assert bridged_to(rec) == [f"loopback/{DID}"]
    assert rec.hangup_cause == "NORMAL_CLEARING"
    assert (cdr.account, cdr.direction, cdr.did, cdr.destination, cdr.caller) == (
        "shop",
        "inbound",
        DID,
        DID,
        "15550001111",
    )
    assert (cdr.result, cdr.prefix, cdr.rate, cdr.connect_fee) == (
        "completed",
        DID,
        Money.parse("0.60"),
        Money.parse("0.05"),
    )
    assert (cdr.initial_increment_s, cdr.increment_s) == (30, 6)
    # 31 s at 30/6 bills 36 s: 0.05 + 36 × 0.60 / 60 = 0.41
    assert (cdr.billed_s, cdr.cost, cdr.charged, cdr.reason) == (36, Money.parse("0.41"), Money.parse("0.41"), "")
    exported = record(cdr)  # `fsbill cdr export`: the new fields come after all the others
    assert list(exported) == list(FIELDS)
    assert list(exported)[-5:] == ["direction", "did", "bundle_s", "fx_pair", "fx_rate"]
    assert (exported["account"], exported["direction"], exported["did"], exported["charged"]) == (
        "shop",
        "inbound",
        DID,
        "0.41",
    )
    assert rig.show("shop").balance == Money.parse("9.59")
    assert rig.show("caller").balance == Money.parse("5.00")
    assert rig.show("shop").reserved == Money(0)


def test_an_owner_holding_ten_cents_at_sixty_cents_a_minute_is_cut_at_its_grant(rig):
    rig.account("shop", "0.10")  # buys 10 s at 0.60/min, 1/1
    add_did(rig, rate=Money.parse("0.60"))
    rec = rig.switch.place_call(rig.address, inbound(rig, talk_s=None))
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert (cdr.account, cdr.direction, cdr.did, cdr.result) == ("shop", "inbound", DID, "cut_off")
    assert cdr.billed_s <= 10 and cdr.charged <= Money.parse("0.10")
    assert rig.show("shop").balance >= Money(0)
    assert rig.show("shop").balance == Money.parse("0.10") - cdr.charged


def test_a_number_without_a_rate_is_free_inbound(rig):
    rig.account("shop", "0")
    add_did(rig)
    rig.switch.place_call(rig.address, inbound(rig, talk_s=20))
    [cdr] = rig.settled(1)
    assert (cdr.account, cdr.direction, cdr.did, cdr.result) == ("shop", "inbound", DID, "completed")
    assert (cdr.billed_s, cdr.cost, cdr.charged) == (20, Money(0), Money(0))
    assert rig.show("shop").balance == Money(0)


@pytest.mark.parametrize("status", ["empty", "suspended", "closed"])
def test_on_empty_reject_follows_the_configured_rejection(rig, status):
    rig.account("shop", "0" if status == "empty" else "1.00")
    add_did(rig, rate=Money.parse("0.60"), on_empty="reject")
    if status == "suspended":
        ledger.set_status(rig.store, "shop", status, rig.clock.now_us())
    elif status == "closed":
        management.close_account(rig.store, "shop", rig.clock.now_us(), "test", force=True)
    rec = rig.switch.place_call(rig.address, inbound(rig, talk_s=20))
    [cdr] = rig.settled(1)
    reason = {"empty": "insufficient_funds", "suspended": "suspended", "closed": "closed"}[status]
    assert (cdr.account, cdr.direction, cdr.did, cdr.result, cdr.reason) == ("shop", "inbound", DID, "rejected", reason)
    assert not bridged_to(rec)
    if status == "empty":
        assert rec.responded is not None and rec.responded.startswith("402")


@pytest.mark.parametrize("status", ["empty", "suspended"])
def test_on_empty_free_lets_the_call_through_unbilled_and_the_cdr_says_why(rig, status):
    rig.account("shop", "0" if status == "empty" else "1.00")
    add_did(rig, rate=Money.parse("0.60"), on_empty="free")
    if status != "empty":
        ledger.set_status(rig.store, "shop", status, rig.clock.now_us())
    before = rig.show("shop").balance
    rec = rig.switch.place_call(rig.address, inbound(rig, talk_s=200))
    [cdr] = rig.settled(1)
    assert bridged_to(rec) == [f"loopback/{DID}"]
    assert (cdr.account, cdr.direction, cdr.did, cdr.result, cdr.reason) == (
        "shop",
        "inbound",
        DID,
        "completed",
        "free_on_empty",
    )
    assert (cdr.cost, cdr.charged) == (Money(0), Money(0)) and cdr.billed_s == 200
    assert rig.show("shop").balance == before and rig.show("shop").reserved == Money(0)
    counted = rig.node.metrics.registry.get_sample_value(
        "fsbill_calls_total", {"result": "accepted", "reason": "free_on_empty"}
    )
    assert counted == 1


def test_max_channels_limits_concurrent_calls_to_the_number(rig):
    rig.account("shop", "10.00")
    add_did(rig, rate=Money.parse("0.60"), max_channels=1)
    first = rig.switch.start_call(rig.address, inbound(rig, talk_s=60))
    with gevent.Timeout(10):
        while not rig.live():
            gevent.sleep(0.02)
    second = rig.switch.place_call(rig.address, inbound(rig, talk_s=5))
    assert second.responded is not None and second.responded.startswith("486")
    first.get(timeout=30)
    cdrs = rig.settled(2)
    assert sorted((c.result, c.reason) for c in cdrs) == [("completed", ""), ("rejected", "channel_limit")]
    assert all((c.direction, c.did) == ("inbound", DID) for c in cdrs)


def test_an_unknown_number_is_refused(rig):
    rig.account("shop", "10.00")
    add_did(rig)
    rec = rig.switch.place_call(rig.address, inbound(rig, number="4930999999", talk_s=5))
    [cdr] = rig.settled(1)
    assert rec.responded is not None and rec.responded.startswith("404")
    assert (cdr.account, cdr.direction, cdr.did, cdr.result, cdr.reason) == (
        "",
        "inbound",
        "4930999999",
        "rejected",
        "unknown_did",
    )
    counted = rig.node.metrics.registry.get_sample_value(
        "fsbill_calls_total", {"result": "rejected", "reason": "unknown_did"}
    )
    assert counted == 1


def test_a_removed_number_is_unknown(rig):
    rig.account("shop", "10.00")
    add_did(rig)
    dbdids.remove_did(rig.store, DID, rig.clock.now_us())
    rig.switch.place_call(rig.address, inbound(rig, talk_s=5))
    [cdr] = rig.settled(1)
    assert (cdr.result, cdr.reason) == ("rejected", "unknown_did")


def test_an_on_net_call_to_a_customers_number_without_the_direction_stays_the_callers(rig):
    rig.account("shop", "10.00")
    rig.account("acme", "10.00")
    add_did(rig, rate=Money.parse("0.60"))
    rec = rig.call(account="acme", destination=DID, talk_s=30)  # the deck's 49: 1.00/min, 1/1
    [cdr] = rig.settled(1)
    assert bridged_to(rec) == [f"loopback/{DID}"]  # the route template, not the number's dial string
    assert (cdr.account, cdr.direction, cdr.did, cdr.prefix, cdr.rate) == (
        "acme",
        "outbound",
        "",
        "49",
        Money.parse("1.00"),
    )
    assert cdr.charged == Money.parse("0.50")
    assert rig.show("shop").balance == Money.parse("10.00")


def test_a_free_on_empty_call_of_a_suspended_owner_is_not_cut_under_on_suspend_cut(db_url):
    rig = Rig(db_url, time_scale=25, on_suspend="cut")
    try:
        rig.account("shop", "1.00")
        add_did(rig, rate=Money.parse("0.60"), on_empty="free")
        ledger.set_status(rig.store, "shop", "suspended", rig.clock.now_us())
        rec = rig.switch.place_call(rig.address, inbound(rig, talk_s=40))  # several heartbeats (10 s)
        [cdr] = rig.settled(1)
        assert rec.hangup_cause == "NORMAL_CLEARING"
        assert (cdr.result, cdr.reason, cdr.billed_s, cdr.charged) == ("completed", "free_on_empty", 40, Money(0))
    finally:
        rig.close()


def test_max_channels_counts_the_calls_to_the_number_on_every_node(pg_url):
    """Two nodes on one PostgreSQL database: the number's limit is counted in the database,
    under its owner's lock, so a call on node B sees the one live on node A."""
    a = Rig(pg_url, time_scale=25)
    b = Rig(pg_url, time_scale=25, seed_tariff=False, node="node-b")
    try:
        a.account("shop", "10.00")
        add_did(a, rate=Money.parse("0.60"), max_channels=1)
        first = a.switch.start_call(a.address, inbound(a, talk_s=60))
        with gevent.Timeout(10):
            while not a.live():
                gevent.sleep(0.02)
        second = b.switch.place_call(b.address, inbound(b, talk_s=5))
        assert second.responded is not None and second.responded.startswith("486")
        first.get(timeout=30)
        cdrs = a.settled(2)
        assert sorted((c.node, c.result, c.reason) for c in cdrs) == [
            ("node-a", "completed", ""),
            ("node-b", "rejected", "channel_limit"),
        ]
    finally:
        b.close()
        a.close()
