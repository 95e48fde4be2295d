"""Recurring charges while calls are live, on a real `fsbill serve` node with the FreeSWITCH
emulator: a charge never takes what live calls hold, the calls finish their grant, new calls
are refused while the account is in arrears, and the released holds pay the arrears."""

from __future__ import annotations

import gevent
import pytest

from fsbill.core.money import Money
from fsbill.core.plans import month_span
from fsbill.db import ledger
from fsbill.db import plans as dbplans
from fsbill.db.charges import run_charges
from tests.rig import Rig

M = Money.parse


def promised(rig: Rig) -> Money:
    """What the live calls were promised: what they hold now plus what heartbeats already debited
    from their holds (a heartbeat moves money from held to posted; at 25x one comes every 0.4 s)."""
    return Money(sum((c.held + c.debited).micros for c in rig.live()))


def debited(rig: Rig) -> Money:
    return Money(sum(c.debited.micros for c in rig.live()))


@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25, charges={"enabled": False})
    yield r
    r.close()


def test_charges_posted_while_calls_are_live_never_touch_their_holds(rig):
    rig.account("acme", "10.00")
    live = [rig.switch.start_call(rig.address, rig.spec(talk_s=600)) for _ in range(3)]
    with gevent.Timeout(10, AssertionError("the calls were never all answered")):
        while not (rig.show("acme").live_channels == 3 and all(c.answered_us for c in rig.live())):
            gevent.sleep(0.02)
    assert promised(rig) == M("6.00")  # a 120 s slice at 1.00/min each

    violations: list[str] = []

    def watch() -> None:  # the invariant, sampled all along: balance + credit limit − held ≥ 0
        while True:
            a = rig.show("acme")
            if (a.balance + a.credit_limit - a.reserved).is_negative():
                violations.append(f"{a.balance} + {a.credit_limit} - {a.reserved}")
            gevent.sleep(0.01)

    watcher = gevent.spawn(watch)
    now = rig.clock.now_us()
    dbplans.create_plan(rig.store, "pbx", M("50.00"), "monthly", "EUR", now)
    month = month_span(now, "UTC")  # the tariff's zone
    dbplans.subscribe(rig.store, "acme", "pbx", now, start_us=month.start_us)  # charged the whole month
    report = run_charges(rig.store, now)
    a = rig.show("acme")
    assert report.charges == 1 and promised(rig) == M("6.00")  # the holds are whole
    assert a.balance + debited(rig) == M("6.00") and a.arrears == M("46.00") and a.available == M("-46.00")
    # later months post while the calls still talk: all owed, nothing taken
    for next_month in (month.end_us, month_span(month.end_us, "UTC").end_us):
        run_charges(rig.store, next_month)
        assert promised(rig) == M("6.00")
    assert rig.show("acme").arrears == M("146.00")

    refused = rig.call(account="acme", talk_s=30)  # in arrears: nothing available
    gevent.joinall(live, raise_error=True)
    with gevent.Timeout(10, AssertionError("a hold was never released")):
        while rig.live():
            gevent.sleep(0.05)
    watcher.kill()
    assert violations == []
    cdrs = rig.cdrs("acme")
    talked = [c for c in cdrs if c.uuid != refused.uuid]
    assert len(talked) == 3
    for cdr in talked:  # each finished its grant (no extension), paid by its own hold
        assert cdr.result == "cut_off" and cdr.charged == cdr.cost <= M("2.00") and not cdr.uncollected
    (rejected,) = [c for c in cdrs if c.uuid == refused.uuid]
    assert rejected.result == "rejected" and rejected.reason == "insufficient_funds"
    spent = Money(sum(c.charged.micros for c in talked))
    a = rig.show("acme")
    assert a.balance == ledger.ledger_sum(rig.store, "acme") == M("0.00")
    assert a.reserved == M("0") and a.arrears == M("146.00") - (M("6.00") - spent)
    entries = ledger.ledger(rig.store, "acme")
    assert sum(-e.amount.micros for e in entries if e.kind == "arrears") == (M("6.00") - spent).micros
