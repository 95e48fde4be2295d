"""Resellers end to end (issue 24): a real `fsbill serve` node and the FreeSWITCH emulator over
TCP. A reseller holding 0.30 at 0.60/min with a customer holding 100.00 at 1.20/min: however
many concurrent calls the customer makes, the reseller never goes below zero, and the customer
pays exactly 1.20/min for exactly the seconds the reseller paid 0.60/min for."""

from __future__ import annotations

import io
from decimal import ROUND_HALF_EVEN, Decimal

import gevent
import gevent.event
import pytest
from rig import Rig

from fsbill.core.money import Money
from fsbill.db import chain as dbchain
from fsbill.db import funding, ledger, reports
from fsbill.db import fx as dbfx
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


def test_a_rub_reseller_under_a_usd_wholesaler_never_below_zero_with_and_without_a_rate(sqlite_url):
    """W pays 0.06 USD/min (holding 0.03 USD: 30 s), R, a RUB reseller under it, 0.60 RUB/min,
    R's customer C 1.20 RUB/min. Each level holds and pays in its own currency; W's margin is in
    USD at the rate snapshotted when the call settled, empty before a rate was set. (SQLite only:
    tests/test_fx_db.py runs the same holds, settlement and margins on PostgreSQL too.)"""
    rig = Rig(sqlite_url, time_scale=20, seed_tariff=False)
    try:
        for name, per_min, currency in (
            ("top", "0.06", "USD"),
            ("wholesale", "0.60", "RUB"),
            ("retail", "1.20", "RUB"),
        ):
            ledger.create_tariff(rig.store, name, currency, rig.clock.now_us())
            import_deck(rig.store, name, io.StringIO(HEADER + f"49,{per_min},0,1,1,0,Germany\n"))
        account(rig, "W", "top", "0.03")
        account(rig, "R", "wholesale", "100.00", parent="W")
        account(rig, "C", "retail", "100.00", parent="R")

        lowest = watch_available(rig, ("W", "R", "C"), lambda: rig.calls([rig.spec(account="C", talk_s=40)] * 3))
        first = rig.settled(3, timeout_s=30)
        talked = [cdr for cdr in first if cdr.billed_s]
        assert talked and sum(cdr.billed_s for cdr in talked) <= 30  # what W's 0.03 USD pays for
        for cdr in talked:
            top, mid = dbchain.cdr_levels(rig.store, cdr.uuid, cdr.visit)
            assert (top.currency, mid.currency, cdr.currency) == ("USD", "RUB", "RUB")
            assert (top.charged, mid.charged, cdr.charged) == (
                M("0.001") * cdr.billed_s,
                M("0.01") * cdr.billed_s,
                M("0.02") * cdr.billed_s,
            )
            assert (top.margin, top.fx_rate) == (None, None)  # no rate yet: left empty
            assert mid.margin == cdr.charged - mid.charged  # one currency: no rate needed
        assert sum(r.no_rate_calls for r in reports.reseller_margin(rig.store, "W")) == len(talked)

        dbfx.set_rate(rig.store, "USD", "RUB", "9", rig.clock.now_us(), actor="test")
        ledger.topup(rig.store, "W", M("0.03"), rig.clock.now_us(), reference="more")
        moved = funding.fund(rig.store, "R", M("0.01"), rig.clock.now_us(), reference="f-1")
        assert moved.child.amount == M("0.09")  # 0.01 USD at 9 RUB
        w_left = ledger.get_account(rig.store, "W").balance  # 0.02 USD, plus what the first calls left
        lowest = min(
            lowest,
            watch_available(rig, ("W", "R", "C"), lambda: rig.calls([rig.spec(account="C", talk_s=40)] * 3)),
        )
        second = [cdr for cdr in rig.settled(6, timeout_s=30) if cdr.uuid not in {c.uuid for c in first}]
        talked = [cdr for cdr in second if cdr.billed_s]
        assert talked and sum(cdr.billed_s for cdr in talked) <= w_left.micros // M("0.001").micros  # W's seconds
        for cdr in talked:
            top, mid = dbchain.cdr_levels(rig.store, cdr.uuid, cdr.visit)
            paid_by_r = (mid.cost.to_decimal() / Decimal(9)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN)
            assert (top.fx_pair, top.fx_rate) == ("USD/RUB", "9")
            assert top.margin == M(str(paid_by_r)) - top.cost
        assert lowest >= Money(0), "a level went below zero"
        w, r, c = books(rig, "W"), books(rig, "R"), books(rig, "C")
        assert M("0.06") - M("0.01") - w.balance == levels_paid(rig, "W")
        assert M("100.09") - r.balance == levels_paid(rig, "R")
        assert M("100.00") - c.balance == sum((cdr.charged for cdr in rig.cdrs()), Money(0))
    finally:
        rig.close()


def watch_available(rig: Rig, codes: tuple[str, ...], run) -> Money:
    """Run `run` (the calls) while reading what each account has available, over and over; the
    lowest amount seen at any level."""
    seen: list[Money] = []
    done = gevent.event.Event()

    def sample() -> None:
        while not done.is_set():
            seen.extend(rig.show(code).available for code in codes)
            gevent.sleep(0.02)

    watcher = gevent.spawn(sample)
    try:
        run()
    finally:
        done.set()
        watcher.join()
    return min(seen)
