"""Vendor channels and the vendor side of settlements, in the database (SQLite and PostgreSQL):
concurrent reservations from several stores (nodes) never take more than a vendor's channels;
the reaper releases them; a settlement is exactly once, vendor fields included."""

from __future__ import annotations

import io
import uuid as uuidlib

import gevent
import pytest
from migrated import migrate_fresh

from fsbill.core.call import answer
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db import vendors as dbvendors

POLICY = GrantPolicy.build(120, 14400, 1, 60, 10)
SELL = Rate("49", Money.parse("1.00"))
NOW = 1_800_000_000_000_000


def setup(store: Store, max_channels: int) -> tuple[int, list[dbvendors.VendorView]]:
    ledger.create_tariff(store, "retail", "EUR", NOW)
    account = ledger.create_account(store, "acme", "retail", NOW)
    ledger.topup(store, "acme", Money.parse("1000"), NOW, reference="seed")
    for name in ("a", "b"):
        dbvendors.create_vendor(store, name, f"sofia/gateway/{name}/{{destination}}", NOW, max_channels=max_channels)
        dbvendors.import_rates(store, name, io.StringIO("prefix,rate\n49,0.10\n"))
    return account.id, dbvendors.list_vendors(store, with_counts=False)


def legs(vendors: list[dbvendors.VendorView]) -> list[dbvendors.Leg]:
    return [
        dbvendors.Leg(
            v.id, v.name, str(uuidlib.uuid4()), f"sofia/gateway/{v.name}/4930", Rate("49", Money.parse("0.10"))
        )
        for v in vendors
    ]


def reserve(store: Store, account_id: int, vendor_legs: list[dbvendors.Leg], uuid: str | None = None):
    return dbcalls.reserve(
        store,
        uuid=uuid or str(uuidlib.uuid4()),
        account_id=account_id,
        rate=SELL,
        policy=POLICY,
        node="n",
        caller="1",
        destination="4930",
        now_us=NOW,
        lease_until_us=NOW + 30_000_000,
        max_ring_s=120,
        vendor_legs=vendor_legs,
    )


def counts(store: Store) -> dict[str, int]:
    return {v.name: v.live_channels for v in dbvendors.list_vendors(store, with_counts=False)}


def test_concurrent_reservations_from_several_nodes_respect_vendor_limits(db_url):
    migrate_fresh(db_url)
    first = Store(db_url)
    first.upgrade()
    account_id, vendors = setup(first, max_channels=3)
    stores = [first] + [Store(db_url) for _ in range(3)]  # four nodes
    try:
        results = []

        def one(store: Store) -> None:
            results.append(reserve(store, account_id, legs(vendors)))

        gevent.joinall([gevent.spawn(one, stores[i % 4]) for i in range(12)], raise_error=True)
        admitted = [r for r in results if r.call is not None]
        # every call holds a channel on both vendors of its bridge until FreeSWITCH picks one
        assert len(admitted) == 3 and counts(first) == {"a": 3, "b": 3}
        assert {r.reason for r in results if r.call is None} == {"vendor_unavailable"}
        assert ledger.get_account(first, "acme").reserved == sum((r.call.held for r in admitted), Money(0))
    finally:
        for s in stores:
            s.close()


def test_a_vendor_found_full_under_lock_is_dropped_from_the_bridge(store):
    account_id, vendors = setup(store, max_channels=1)
    assert reserve(store, account_id, legs(vendors)[:1]).call is not None  # takes a's only channel
    auth = reserve(store, account_id, legs(vendors))
    assert auth.call is not None and auth.refused_vendors == frozenset({"a"})
    assert counts(store) == {"a": 1, "b": 1}
    dbvendors.set_status(store, "b", dbvendors.SUSPENDED)
    refused = reserve(store, account_id, legs(vendors))
    assert refused.call is None and refused.reason == "vendor_unavailable"
    assert counts(store) == {"a": 1, "b": 1}  # nothing taken by the refused call


def test_bridge_releases_the_others_and_settlement_is_exactly_once(store):
    account_id, vendors = setup(store, max_channels=5)
    call_legs = legs(vendors)
    auth = reserve(store, account_id, call_legs)
    call = auth.call
    assert dbvendors.keep_carrier(store, call.uuid, call.visit, call_legs[1].leg_uuid) == "b"
    assert counts(store) == {"a": 0, "b": 1}
    answered = answer(call, NOW + 2_000_000, POLICY)
    dbcalls.mark_answered(store, answered, NOW + 60_000_000)
    outcome = dbvendors.BridgeOutcome(
        call_legs[1].leg_uuid, ((call_legs[0].leg_uuid, "USER_BUSY"), (call_legs[1].leg_uuid, "NONE"))
    )
    end = dbcalls.CallEnd(
        call.uuid, call.visit, NOW + 2_000_000, NOW + 32_500_000, NOW, 30, "NORMAL_CLEARING", "completed", NOW, outcome
    )
    cdr = dbcalls.settle_call(store, end)
    # 31 s (every started second) at 1.00 sells 0.5167; at 0.10 costs 0.0517
    assert (cdr.vendor, cdr.cost, cdr.vendor_cost, cdr.margin) == (
        "b",
        Money.parse("0.5167"),
        Money.parse("0.0517"),
        Money.parse("0.465"),
    )
    assert [(a.vendor, a.result, a.cause) for a in cdr.attempts] == [
        ("a", "failed", "USER_BUSY"),
        ("b", "answered", ""),
    ]
    assert counts(store) == {"a": 0, "b": 0}
    again = dbcalls.settle_call(store, end)
    assert (again.vendor, again.vendor_cost, again.margin) == ("b", cdr.vendor_cost, cdr.margin)
    assert counts(store) == {"a": 0, "b": 0}
    m = store.models
    with store.reading():
        assert m.VendorAttempt.select().count() == 2 and m.LiveCallVendor.select().count() == 0


@pytest.mark.parametrize("bridged", [True, False])
def test_the_reaper_releases_vendor_channels(store, bridged):
    account_id, vendors = setup(store, max_channels=5)
    call_legs = legs(vendors)
    call = reserve(store, account_id, call_legs).call
    if bridged:
        dbvendors.keep_carrier(store, call.uuid, call.visit, call_legs[0].leg_uuid)
        dbcalls.mark_answered(store, answer(call, NOW + 1_000_000, POLICY), NOW + 1_000_001)
    (cdr,) = dbcalls.reap(store, NOW + 10**12)
    assert cdr.result == "recovered"
    assert cdr.vendor == ("a" if bridged else "")
    assert counts(store) == {"a": 0, "b": 0}
