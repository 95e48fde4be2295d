"""Bundles of minutes end to end (issue 25): a real `fsbill serve` node and the FreeSWITCH
emulator over TCP. An account with a bundle of 20 s for 49 and 0.10 at 0.60/min (1/1): one
call talks at most 30 s less the cut-off margin, into paid time without a break, and is
charged at most 0.10 and 20 bundle seconds; concurrent calls together never exceed that; a
destination the bundle does not cover pays money."""

from __future__ import annotations

import pytest
from rig import Rig

from fsbill.core.money import Money
from fsbill.db import bundles as dbbundles
from fsbill.db import ledger
from fsbill.db import plans as dbplans

M = Money.parse
DECK = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n"
DECK += "49,0.60,0,1,1,0,Germany\n33,0.60,0,1,1,0,France\n"
MARGIN_S = 1


@pytest.fixture
def rig(db_url):
    rig = Rig(db_url, time_scale=20, deck=DECK)  # cutoff.margin_s: 1 (the default)
    now = rig.clock.now_us()
    rig.account("acme", "0.10")
    dbbundles.create_bundle(rig.store, "de20", 20, now, prefixes="49")
    dbplans.create_plan(rig.store, "de-minutes", Money(0), "monthly", "EUR", now, bundle="de20")
    dbplans.subscribe(rig.store, "acme", "de-minutes", now)
    yield rig
    rig.close()


def books(rig: Rig) -> tuple[ledger.AccountView, dbbundles.BalanceView]:
    a = rig.show("acme")
    assert a.balance == ledger.ledger_sum(rig.store, "acme")  # the money ledger adds up
    assert a.reserved == Money(0) and a.live_channels == 0 and a.balance >= Money(0)
    [b] = dbbundles.balances(rig.store, "acme", rig.clock.now_us())
    entries = dbbundles.entries(rig.store, "acme")
    assert sum(e.delta_s for e in entries) == b.seconds and b.held_s == 0  # so does the bundle's
    assert rig.live() == []
    return a, b


@pytest.mark.parametrize("concurrent", [1, 2, 5])
def test_bundle_then_money_never_exceed_thirty_seconds(rig, concurrent):
    rig.calls([rig.spec(account="acme", talk_s=90) for _ in range(concurrent)])
    cdrs = rig.settled(concurrent, timeout_s=30)
    a, b = books(rig)
    charged = sum((c.charged for c in cdrs), Money(0))
    used = sum(c.bundle_s for c in cdrs)
    assert charged <= M("0.10") and used <= 20
    assert M("0.10") - a.balance == charged and b.seconds == 20 - used
    # cut off at 30 s less the margin, on FreeSWITCH's whole second: every started second billed
    assert sum(c.bundle_s + c.billed_s for c in cdrs) <= 30
    for c in cdrs:
        assert c.charged == M("0.01") * c.billed_s  # 0.60/min for the paid part only
    if concurrent == 1:
        [c] = cdrs
        assert c.result == "cut_off" and c.bundle_s == 20 and c.billed_s >= 5  # carried on into paid time
        assert c.end_us - c.answer_us <= (30 - MARGIN_S) * 1_000_000 + 999_999


def test_a_destination_the_bundle_does_not_cover_pays_money(rig):
    rig.call(account="acme", destination="33612345678", talk_s=5)
    [c] = rig.settled(1)
    assert c.bundle_s == 0 and c.billed_s in (5, 6) and c.charged == M("0.01") * c.billed_s
    _, b = books(rig)
    assert b.seconds == 20


def test_a_short_call_uses_only_its_seconds_and_an_unanswered_one_none(rig):
    rig.call(account="acme", talk_s=4.5)
    rig.call(account="acme", talk_s=None, answer_after_s=None, fail_cause="USER_BUSY", ring_s=1)
    cdrs = rig.settled(2)
    answered = [c for c in cdrs if c.answer_us is not None]
    [c] = answered
    assert c.bundle_s in (5, 6) and c.charged == Money(0)
    assert sum(x.bundle_s for x in cdrs) == c.bundle_s
    _, b = books(rig)
    assert b.seconds == 20 - c.bundle_s
