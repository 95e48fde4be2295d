"""Resellers on two `fsbill serve` processes sharing PostgreSQL (issue 24): customers of one
reseller calling through both nodes never take it below zero, every level's books add up, and a
node killed mid-call (`kill -9`) and restarted settles every level of its calls once, with three
levels (a wholesaler above the reseller)."""

from __future__ import annotations

import io
import random

import gevent
from migrated import migrate_fresh
from nodes import ServeProcess
from rig import DECK
from test_multinode import SCALE, node_settings, spec, wait_for_cdrs

from fsbill.clock import Clock
from fsbill.core.money import Money
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db import chain as dbchain
from fsbill.db.rates import import_deck
from fsbill.sim import Switch

M = Money.parse
HEADER = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n"


def seed(url: str, reseller: str, top: str) -> Store:
    """Three levels: wholesaler W (0.30/min) with `top` money, reseller R (0.60/min) under it with
    `reseller` money, customers C1 and C2 (1.00/min) under R with 20.00 each."""
    migrate_fresh(url)
    store = Store(url)
    store.upgrade()
    now = Clock(SCALE).now_us()
    ledger.create_tariff(store, "retail", "EUR", now)
    import_deck(store, "retail", io.StringIO(DECK))
    for tariff, price in (("wholesale", "0.60"), ("top", "0.30")):
        ledger.create_tariff(store, tariff, "EUR", now)
        import_deck(store, tariff, io.StringIO(HEADER + f"49,{price},0,1,1,0,Germany\n"))
    ledger.create_account(store, "W", "top", now)
    ledger.topup(store, "W", M(top), now, reference="seed-W")
    ledger.create_account(store, "R", "wholesale", now, parent="W")
    ledger.topup(store, "R", M(reseller), now, reference="seed-R")
    for code in ("C1", "C2"):
        ledger.create_account(store, code, "retail", now, parent="R")
        ledger.topup(store, code, M("20.00"), now, reference=f"seed-{code}")
    return store


def level_charges(store: Store, cdrs: list, account: str) -> Money:
    """What `account` (W or R) was charged for the customers' calls: one line each per billed call."""
    total = Money(0)
    for cdr in cdrs:
        lines = dbchain.cdr_levels(store, cdr.uuid, cdr.visit)
        accounts = sorted(line.account for line in lines)
        assert accounts == ["R", "W"] if cdr.billed_s else accounts in ([], ["R", "W"])
        for line in lines:
            assert line.billed_s == cdr.billed_s
            if line.account == account:
                total += line.charged
    return total


def check_level_books(store: Store, cdrs: list, initial: dict[str, Money]) -> dict[str, ledger.AccountView]:
    """Every level's ledger adds up to its balance, nothing is held, nobody is below zero, and each
    level's balance fell by exactly what its level lines charged."""
    levels = {}
    for code in ("W", "R"):
        a = ledger.get_account(store, code)
        assert a.balance == ledger.ledger_sum(store, code) and a.balance >= Money(0)
        assert a.reserved == Money(0) and a.live_channels == 0
        assert initial[code] - a.balance == level_charges(store, cdrs, code)
        levels[code] = a
    for code in ("C1", "C2"):
        c = ledger.get_account(store, code)
        assert c.balance == ledger.ledger_sum(store, code) and c.reserved == Money(0)
        mine = [x for x in cdrs if x.account == code]
        assert M("20.00") - c.balance == sum((x.charged for x in mine), Money(0))
    return levels


def test_two_nodes_never_take_the_reseller_below_zero(pg_url, tmp_path):
    # R affords 100 s at 0.60/min, W above it only 80 s at 0.30/min: the top is the limit
    store = seed(pg_url, "1.00", "0.40")
    servers = [ServeProcess(tmp_path, f"node{i}", node_settings(pg_url)) for i in range(2)]
    try:
        for s in servers:
            s.start()
        switch = Switch(Clock(SCALE))
        rnd = random.Random(24)
        n = 30
        greenlets = []
        for i in range(n):
            account = "C1" if i % 3 else "C2"
            greenlets.append(switch.start_call(servers[i % 2].address, spec(rnd, account=account)))
            gevent.sleep(rnd.uniform(0, 0.02))
        gevent.joinall(greenlets, raise_error=True)
        cdrs = wait_for_cdrs(store, n)
        assert {c.node for c in cdrs} == {s.name for s in servers}
        levels = check_level_books(store, cdrs, {"W": M("0.40"), "R": M("1.00")})
        talked = [c for c in cdrs if c.billed_s]
        assert talked and sum(c.billed_s for c in talked) <= 80
        assert {c.reason for c in cdrs if c.result == "rejected"} <= {"insufficient_funds"}
        assert levels["W"].balance < M("0.40") and levels["R"].balance < M("1.00")
        for s in servers:
            assert s.alive(), s.output()[-2000:]
    finally:
        for s in servers:
            s.terminate()
        store.close()


def test_kill_9_then_restart_settles_every_level_once(pg_url, tmp_path):
    store = seed(pg_url, "10.00", "10.00")
    server = ServeProcess(tmp_path, "crashy", node_settings(pg_url, slice_s=120))
    server.start()
    switch = Switch(Clock(SCALE))
    clock = Clock(SCALE)
    rnd = random.Random(9)
    specs = [spec(rnd, account="C1", talk_s=34 + rnd.uniform(0, 2), answer_after_s=1.0) for _ in range(3)]
    greenlets = [switch.start_call(server.address, s) for s in specs]
    clock.sleep(35)
    assert len(dbcalls.live_calls(store)) == 3
    server.kill9()
    records = [g.get(timeout=60) for g in greenlets]
    server.start()  # same node name: it settles its own orphans, every level of them
    try:
        cdrs = wait_for_cdrs(store, 3, timeout_s=60)
        assert all(c.result == "recovered" for c in cdrs)
        check_level_books(store, cdrs, {"W": M("10.00"), "R": M("10.00")})
        assert sorted(c.uuid for c in cdrs) == sorted(r.uuid for r in records)
        gevent.sleep(1)
        assert len(dbcalls.cdrs(store)) == 3 and level_charges(store, dbcalls.cdrs(store), "W") > Money(0)
    finally:
        server.terminate()
        store.close()
