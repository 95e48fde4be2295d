"""Several `fsbill serve` processes on one PostgreSQL database; crashes; database outages.

Every server here is a real process on a real port, every call a real TCP connection from the
FreeSWITCH emulator, every balance a row in a real PostgreSQL database.
"""

import io
import random
import urllib.request
from urllib.error import HTTPError

import gevent
import pytest
from migrated import migrate_fresh
from nodes import CuttableProxy, ServeProcess
from rig import DECK, Rig, charged_total

from fsbill.clock import Clock
from fsbill.core.money import Money
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db.rates import import_deck
from fsbill.sim import CallSpec, Switch

# Faster than real time, but not so fast that two CPU cores shared by five processes turn a
# scheduling hiccup of a few hundred milliseconds into a lease expiry.
SCALE = 10


def seed(url: str, accounts: dict) -> Store:
    migrate_fresh(url)
    store = Store(url)
    store.upgrade()
    now = Clock(SCALE).now_us()
    ledger.create_tariff(store, "retail", "EUR", now)
    import_deck(store, "retail", io.StringIO(DECK))
    for code, (balance, kwargs) in accounts.items():
        ledger.create_account(store, code, "retail", now, **kwargs)
        ledger.topup(store, code, Money.parse(balance), now, reference=f"seed-{code}")
    return store


def node_settings(url: str, **extra) -> dict:
    settings = dict(
        database=url, time_scale=SCALE, heartbeat_s=10, lease_s=60, slice_s=30, route="loopback/{destination}"
    )
    settings.update(extra)
    return settings


def spec(rnd, account="acme", **kwargs) -> CallSpec:
    kwargs.setdefault("talk_s", rnd.randint(5, 90))
    kwargs.setdefault("answer_after_s", rnd.uniform(0.5, 3))
    return CallSpec(
        destination_number="4930123456",
        caller_id_number=f"1555{rnd.randint(0, 10**7):07d}",
        variables={"fsbill_account": account},
        **kwargs,
    )


def check_books(store: Store, code: str, initial: Money) -> list:
    acct = ledger.get_account(store, code)
    cdrs = dbcalls.cdrs(store, account=code)
    assert acct.balance == ledger.ledger_sum(store, code)
    assert acct.reserved == Money(0)
    assert dbcalls.live_calls(store, code) == []
    assert initial - acct.balance == charged_total(cdrs)
    assert acct.balance >= Money(0)
    return cdrs


def wait_for_cdrs(store: Store, n: int, timeout_s: float = 60.0) -> list:
    with gevent.Timeout(timeout_s, AssertionError(f"fewer than {n} CDRs after {timeout_s} s")):
        while True:
            rows = dbcalls.cdrs(store)
            if len(rows) >= n:
                return rows
            gevent.sleep(0.1)


@pytest.mark.parametrize("nodes", [2, 4])
def test_nodes_share_one_account_without_overspending(pg_url, tmp_path, nodes):
    store = seed(pg_url, {"acme": ("12.00", dict(max_channels=12))})
    servers = [ServeProcess(tmp_path, f"node{i}", node_settings(pg_url)) for i in range(nodes)]
    try:
        for s in servers:
            s.start()
        switch = Switch(Clock(SCALE))
        rnd = random.Random(nodes)
        n = 120
        greenlets = []
        for i in range(n):
            greenlets.append(switch.start_call(servers[i % nodes].address, spec(rnd)))
            gevent.sleep(rnd.uniform(0, 0.02))
        gevent.joinall(greenlets, raise_error=True)
        cdrs = wait_for_cdrs(store, n)
        assert len({c.uuid for c in cdrs}) == n
        assert {c.node for c in cdrs} == {s.name for s in servers}
        check_books(store, "acme", Money.parse("12.00"))
        assert charged_total(cdrs) <= Money.parse("12.00")
        accepted = [c for c in cdrs if c.result != "rejected"]
        assert accepted and all(c.cost == c.charged and not c.uncollected for c in accepted)
        reasons = {c.reason for c in cdrs if c.result == "rejected"}
        assert reasons <= {"insufficient_funds", "channel_limit"}
        # the channel limit held across nodes: never more than 12 answered calls overlapped
        spans = sorted((c.answer_us, c.end_us) for c in accepted if c.answer_us)
        peak = max(sum(1 for a, e in spans if a <= t < e) for t, _ in spans)
        assert peak <= 12
        for s in servers:
            assert s.alive(), s.output()[-2000:]
    finally:
        for s in servers:
            s.terminate()
        store.close()


def test_kill_9_then_restart_settles_every_call_once(pg_url, tmp_path):
    store = seed(pg_url, {"acme": ("50.00", {})})
    server = ServeProcess(tmp_path, "crashy", node_settings(pg_url, slice_s=120))
    server.start()
    switch = Switch(Clock(SCALE))
    clock = Clock(SCALE)
    rnd = random.Random(9)
    # The server dies 35 s into the calls; the callers hang up within ~2 s of the crash (a
    # crashed biller cannot know when: it charges up to its last debit, so what it can miss is
    # one heartbeat plus the time the caller talked on after the crash).
    specs = [spec(rnd, talk_s=34 + rnd.uniform(0, 2), answer_after_s=1.0) for _ in range(6)]
    greenlets = [switch.start_call(server.address, s) for s in specs]
    clock.sleep(35)
    assert len(dbcalls.live_calls(store)) == 6
    server.kill9()
    records = [g.get(timeout=60) for g in greenlets]
    assert all(r.ended_by == "caller" for r in records)  # FreeSWITCH kept the calls up
    server.start()  # same node name: it settles its own orphans
    try:
        cdrs = wait_for_cdrs(store, 6, timeout_s=60)
        assert sorted(c.uuid for c in cdrs) == sorted(r.uuid for r in records)
        assert all(c.result == "recovered" for c in cdrs)
        check_books(store, "acme", Money.parse("50.00"))
        by_uuid = {c.uuid: c for c in cdrs}
        for rec in records:
            true_talk_s = (rec.ended_us - rec.answered_us) / 1_000_000
            charged_s = by_uuid[rec.uuid].charged.micros * 60 // 1_000_000  # 1.00/min at 1/1
            assert true_talk_s - 10 - 1 <= charged_s <= true_talk_s, (true_talk_s, charged_s)
        gevent.sleep(1)
        assert len(dbcalls.cdrs(store)) == 6  # and never twice
    finally:
        server.terminate()
        store.close()


@pytest.mark.parametrize("policy", ["reject", "allow"])
def test_database_outage_mid_traffic(pg_url, tmp_path, policy):
    from urllib.parse import urlparse

    target = urlparse(pg_url)
    proxy = CuttableProxy((target.hostname, target.port or 5432))
    url = f"postgresql://{target.username}@127.0.0.1:{proxy.port}{target.path}"
    store = seed(pg_url, {"acme": ("20.00", {})})
    rig = Rig(url, time_scale=SCALE, on_db_error=policy, slice_s=120, seed_tariff=False, metrics_listen="127.0.0.1:0")
    health = f"http://127.0.0.1:{rig.node.metrics_server.server_port}/healthz"
    rig.initial["acme"] = Money.parse("20.00")
    try:
        rnd = random.Random(5)
        before = rig.switch.start_call(rig.address, spec(rnd, talk_s=45))
        rig.clock.sleep(15)
        assert urllib.request.urlopen(health, timeout=5).status == 200
        proxy.cut()
        with pytest.raises(HTTPError) as down:
            urllib.request.urlopen(health, timeout=10)
        assert down.value.code == 503
        during = [rig.switch.start_call(rig.address, spec(rnd, talk_s=10)) for _ in range(3)]
        records = [g.get(timeout=60) for g in during]
        if policy == "reject":
            assert all(r.responded == "503 Service Unavailable" for r in records), records
        else:
            assert all(r.answered_us is not None for r in records)
        rig.clock.sleep(10)
        proxy.up()
        assert urllib.request.urlopen(health, timeout=10).status == 200
        live = before.get(timeout=60)
        assert live.answered_us is not None and live.ended_by == "caller"
        after = rig.call(talk_s=5)
        assert after.answered_us is not None
        cdrs = wait_for_cdrs(store, 5, timeout_s=60)
        assert len({c.uuid for c in cdrs}) == 5
        check_books(store, "acme", Money.parse("20.00"))
        if policy == "reject":
            assert sorted(c.reason for c in cdrs if c.result == "rejected") == ["db_error"] * 3
        else:
            assert sum(1 for c in cdrs if c.reason == "db_error_allowed") == 3
        # the outage was counted: a fresh registry exports no fsbill_db_errors_total sample at all
        registry = rig.node.metrics.registry
        errors = [s for m in registry.collect() if m.name == "fsbill_db_errors" for s in m.samples]
        assert sum(s.value for s in errors if s.name == "fsbill_db_errors_total") >= 3, errors
    finally:
        rig.close()
        proxy.close()
        store.close()


def test_sigterm_stops_accepting_and_exits_cleanly(sqlite_url, tmp_path):
    store = seed(sqlite_url, {"acme": ("10.00", {})})
    server = ServeProcess(tmp_path, "graceful", node_settings(sqlite_url, shutdown_grace_s=2))
    server.start()
    switch = Switch(Clock(SCALE))
    rnd = random.Random(1)
    call = switch.start_call(server.address, spec(rnd, talk_s=20))
    Clock(SCALE).sleep(5)
    assert server.terminate() == 0
    assert "event=stopping" in server.output()
    rec = call.get(timeout=30)
    assert rec.answered_us is not None  # the call went on inside FreeSWITCH
    store.close()
