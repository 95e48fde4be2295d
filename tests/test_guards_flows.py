"""Fraud guards on real calls (issue 21): the FreeSWITCH emulator over real TCP into a real node
on SQLite and PostgreSQL, and two `fsbill serve` processes sharing one PostgreSQL database."""

from __future__ import annotations

import random
import time

import gevent
import pytest
from nodes import ServeProcess
from rig import Rig, charged_total
from test_multinode import check_books, node_settings, seed, spec, wait_for_cdrs

from fsbill.clock import Clock
from fsbill.core.money import Money
from fsbill.db import guards as dbguards
from fsbill.db import ledger
from fsbill.sim import Switch

US = 1_000_000
SCALE = 10  # test_multinode's


def zone_far_from_midnight(clock: Clock) -> str:
    """A fixed-offset zone where it is about noon on `clock`, so that no test day ends mid-test
    (scaled clocks run a day in an hour or so)."""
    utc_hour = (clock.now_us() // US // 3600) % 24
    offset = (12 - utc_hour) % 24
    if offset > 14:
        offset -= 24
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def set_zone(store, clock: Clock, tariff: str = "retail") -> None:
    m = store.models
    with store.transaction():
        m.Tariff.update(timezone=zone_far_from_midnight(clock)).where(m.Tariff.name == tariff).execute()


@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25)
    set_zone(r.store, r.clock)
    yield r
    r.close()


def test_a_call_reaching_the_daily_cap_is_cut_off_like_one_out_of_money(rig):
    rig.account("acme", "10.00")
    dbguards.set_account_guards(rig.store, "acme", {"daily_cap_micros": "1.50"}, rig.clock.now_us(), actor="test")
    rec = rig.call(talk_s=None)  # talks until fsbill's cut-off
    [cdr] = rig.settled(1, timeout_s=30)
    assert rec.answered_us is not None and cdr.result == "cut_off"
    assert cdr.charged <= Money.parse("1.50") and cdr.billed_s >= 85  # 90 s bought, cut 1 s early
    acct = rig.show("acme")
    assert acct.balance >= Money.parse("8.50") and acct.reserved == Money(0)
    # the day's spend is at the cap: the next call is refused, with money still on the account
    again = rig.call()
    assert again.responded == "402 Payment Required" and again.answered_us is None
    assert again.variables.get("fsbill_result") == "rejected_spend_cap"
    cdrs = rig.settled(2)
    assert [c.reason for c in cdrs if c.result == "rejected"] == ["spend_cap"]
    assert acct.balance == ledger.ledger_sum(rig.store, "acme")
    assert rig.initial["acme"] - acct.balance == charged_total(cdrs)


REFUSALS = [
    # (reason, account, its guards, the number dialled, what FreeSWITCH must have been told)
    ("spend_cap", "capped", {"daily_cap_micros": "0"}, "4930123456", "402 Payment Required"),
    ("destination_blocked", "blocked", {"block_prefixes": "44"}, "442071234567", "403 Forbidden"),
    ("destination_blocked", "listed", {"allow_prefixes": "33"}, "4930123456", "403 Forbidden"),
    ("rate_too_high", "thrifty", {"max_rate_micros": "0.50"}, "4930123456", "403 Forbidden"),
    ("call_rate", "burst", {"max_calls_per_minute": "1"}, "4930123456", "503 Service Unavailable"),
]


def test_every_guard_refusal_gets_its_response_and_a_cdr(rig):
    now = rig.clock.now_us()
    for _, code, guards, _, _ in REFUSALS:
        if code not in rig.initial:
            rig.account(code, "10.00")
            dbguards.set_account_guards(rig.store, code, guards, now, actor="test")
    first = rig.call(account="burst", talk_s=2)  # burst's one call of the minute
    assert first.answered_us is not None
    for reason, code, _, number, response in REFUSALS:
        rec = rig.call(account=code, destination=number)
        assert rec.answered_us is None, reason
        assert rec.responded == response, (reason, rec.responded)
        assert rec.variables.get("fsbill_result") == f"rejected_{reason}"
    # what is allowed still goes through: France for the allow-listed account, the UK at 0.30 for the thrifty one
    assert rig.call(account="listed", destination="33612345678", talk_s=2).answered_us is not None
    assert rig.call(account="thrifty", destination="33612345678", talk_s=2).answered_us is not None
    cdrs = rig.settled(len(REFUSALS) + 3)
    rejected = sorted((c.account, c.reason) for c in cdrs if c.result == "rejected")
    assert rejected == sorted((code, reason) for reason, code, _, _, _ in REFUSALS)
    assert all(c.charged == Money(0) for c in cdrs if c.result == "rejected")


@pytest.mark.timeout(240)
def test_the_daily_cap_holds_with_calls_live_on_two_nodes(pg_url, tmp_path):
    """Two `fsbill serve` processes, one PostgreSQL: the account's calls are live on both at once,
    each holding its grant on the same account row; the day's spend never passes the cap."""
    store = seed(pg_url, {"acme": ("50.00", dict(max_channels=20))})
    set_zone(store, Clock(SCALE))
    cap = Money.parse("4.00")  # 240 s at 1.00/min across all calls
    dbguards.set_account_guards(store, "acme", {"daily_cap_micros": str(cap)}, Clock(SCALE).now_us(), actor="test")
    servers = [ServeProcess(tmp_path, f"node{i}", node_settings(pg_url)) for i in range(2)]
    try:
        for s in servers:
            s.start()
        switch = Switch(Clock(SCALE))
        rnd = random.Random(21)
        n = 16
        greenlets = []
        peak_reserved = Money(0)
        for i in range(n):
            greenlets.append(switch.start_call(servers[i % 2].address, spec(rnd, talk_s=rnd.randint(40, 120))))
            gevent.sleep(rnd.uniform(0, 0.05))
        deadline = time.monotonic() + 120
        while not all(g.ready() for g in greenlets) and time.monotonic() < deadline:
            view = dbguards.account_guards(store, "acme", Clock(SCALE).now_us())
            assert view.spent_today <= cap, view  # charges posted today + live holds, at every moment
            peak_reserved = max(peak_reserved, ledger.get_account(store, "acme").reserved)
            gevent.sleep(0.05)
        gevent.joinall(greenlets, raise_error=True)
        cdrs = wait_for_cdrs(store, n)
        check_books(store, "acme", Money.parse("50.00"))
        assert charged_total(cdrs) <= cap
        accepted = [c for c in cdrs if c.result != "rejected" and c.answer_us]
        assert {c.node for c in accepted} == {"node0", "node1"}  # calls ran on both nodes...
        spans = [(c.answer_us, c.end_us, c.node) for c in accepted]
        assert any(a0 < e1 and a1 < e0 and n0 != n1 for a0, e0, n0 in spans for a1, e1, n1 in spans)  # ...at once
        assert any(c.result == "cut_off" for c in cdrs)  # the cap cut calls off
        assert {c.reason for c in cdrs if c.result == "rejected"} <= {"spend_cap"}
        assert ledger.get_account(store, "acme").balance >= Money.parse("46.00")  # money was left: the cap stopped them
        assert peak_reserved > Money(0)
        for s in servers:
            assert s.alive(), s.output()[-2000:]
    finally:
        for s in servers:
            s.terminate()
        store.close()
