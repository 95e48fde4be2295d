"""Resellers end to end (issue 24): a real `fsbill serve` node and the FreeSWITCH emulator over
TCP. A reseller holding 0.30 at 0.60/min with a customer holding 100.00 at 1.20/min: however
many concurrent calls the customer makes, the reseller never goes below zero, and the customer
pays exactly 1.20/min for exactly the seconds the reseller paid 0.60/min for."""

from __future__ import annotations

import io

import pytest
from rig import Rig

from fsbill.core.money import Money
from fsbill.db import chain as dbchain
from fsbill.db import ledger
from fsbill.db.rates import import_deck

M = Money.parse
HEADER = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n"


def tariff(rig: Rig, name: str, per_min: str) -> None:
    ledger.create_tariff(rig.store, name, "EUR", rig.clock.now_us())
    import_deck(rig.store, name, io.StringIO(HEADER + f"49,{per_min},0,1,1,0,Germany\n"))


def account(rig: Rig, code: str, tariff_name: str, balance: str, parent: str | None = None) -> None:
    ledger.create_account(rig.store, code, tariff_name, rig.clock.now_us(), parent=parent)
    ledger.topup(rig.store, code, M(balance), rig.clock.now_us(), reference=f"seed-{code}")
    rig.initial[code] = M(balance)


@pytest.fixture
def seeded(db_url):
    rig = Rig(db_url, time_scale=20, deck=HEADER + "49,1.20,0,1,1,0,Germany\n")
    tariff(rig, "wholesale", "0.60")
    account(rig, "R", "wholesale", "0.30")
    account(rig, "C", "retail", "100.00", parent="R")
    yield rig
    rig.close()


def books(rig: Rig, code: str) -> ledger.AccountView:
    a = rig.show(code)
    assert a.balance == ledger.ledger_sum(rig.store, code)
    assert a.available.micros >= 0 and a.reserved == Money(0) and a.live_channels == 0
    return a


def levels_paid(rig: Rig, code: str) -> Money:
    """What `code` paid as a level above the payer, over every settled call."""
    total = Money(0)
    for cdr in rig.cdrs():
        total += sum(
            (line.charged for line in dbchain.cdr_levels(rig.store, cdr.uuid, cdr.visit) if line.account == code),
            Money(0),
        )
    return total


@pytest.mark.parametrize("concurrent", [2, 5, 10])
def test_concurrent_customer_calls_never_take_the_reseller_below_zero(seeded, concurrent):
    rig = seeded
    rig.calls([rig.spec(account="C", talk_s=90) for _ in range(concurrent)])
    cdrs = rig.settled(concurrent, timeout_s=30)
    r, c = books(rig, "R"), books(rig, "C")
    assert r.balance >= Money(0)
    answered = [cdr for cdr in cdrs if cdr.billed_s]
    assert answered, "the reseller's 0.30 buys 30 s: some call talked"
    for cdr in answered:
        [line] = dbchain.cdr_levels(rig.store, cdr.uuid, cdr.visit)
        assert line.account == "R" and line.billed_s == cdr.billed_s  # the same seconds
        assert cdr.charged == M("0.02") * cdr.billed_s  # 1.20/min, exactly
        assert line.charged == M("0.01") * line.billed_s  # 0.60/min, exactly
        assert line.margin == cdr.charged - line.charged
    assert M("0.30") - r.balance == levels_paid(rig, "R")
    assert M("100.00") - c.balance == sum((cdr.charged for cdr in cdrs), Money(0))
    assert sum(cdr.billed_s for cdr in answered) <= 30  # never more than the reseller could pay


def test_three_levels_the_top_is_the_limit(db_url):
    rig = Rig(db_url, time_scale=20, deck=HEADER + "49,1.20,0,1,1,0,Germany\n")
    try:
        tariff(rig, "top", "0.30")
        tariff(rig, "wholesale", "0.60")
        account(rig, "W", "top", "0.10")  # 20 s at 0.30/min
        account(rig, "R", "wholesale", "5.00", parent="W")
        account(rig, "C", "retail", "100.00", parent="R")
        rig.calls([rig.spec(account="C", talk_s=90) for _ in range(4)])
        cdrs = rig.settled(4, timeout_s=30)
        w, r, c = books(rig, "W"), books(rig, "R"), books(rig, "C")
        assert w.balance >= Money(0)
        talked = [cdr for cdr in cdrs if cdr.billed_s]
        assert talked and sum(cdr.billed_s for cdr in talked) <= 20
        for cdr in talked:
            top, mid = dbchain.cdr_levels(rig.store, cdr.uuid, cdr.visit)
            assert (top.account, mid.account) == ("W", "R")
            assert top.billed_s == mid.billed_s == cdr.billed_s
            assert (top.charged, mid.charged, cdr.charged) == (
                M("0.005") * cdr.billed_s,
                M("0.01") * cdr.billed_s,
                M("0.02") * cdr.billed_s,
            )
            assert top.margin == mid.charged - top.charged and mid.margin == cdr.charged - mid.charged
        assert M("0.10") - w.balance == levels_paid(rig, "W")
        assert M("5.00") - r.balance == levels_paid(rig, "R")
        assert M("100.00") - c.balance == sum((cdr.charged for cdr in cdrs), Money(0))
    finally:
        rig.close()
