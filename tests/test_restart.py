"""Nothing lost when fsbill restarts (issue 13): kill -9, SIGTERM, node loss, a switch link
that drops, a CDR posted twice.

Real `fsbill serve` processes (or an in-process node), the FreeSWITCH emulator placing calls
over real TCP and serving its inbound event socket and mod_json_cdr posts, real databases.
Every test checks each call's charge against the rating of the emulator's real answer→end
times, and Σ CDR = Σ ledger = Δ balance.
"""

from __future__ import annotations

import io
import json
import os
import random
import socket
import time
import urllib.request

import gevent
import pytest
from migrated import migrate_fresh
from nodes import ServeProcess
from rig import DECK, Rig, charged_total

from fsbill.clock import Clock
from fsbill.core.money import Money, RoundingRule
from fsbill.core.rating import Rate, billed_seconds_us, cost
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db.rates import import_deck
from fsbill.sim import CallSpec, Misbehaviour, Switch
from fsbill.sim.inbound import InboundServer, JsonCdrPoster

SCALE = 5  # slow enough that a restart on a loaded 2-core machine takes a few call-seconds, not tens
PASSWORD = "ClueCon-test"
GERMANY = Rate("49", Money.parse("1.00"), Money(0), 1, 1, 0, RoundingRule())  # DECK: 49 at 1.00/min, 1/1


def seed(url: str, balance: str = "50.00") -> Store:
    migrate_fresh(url)
    store = Store(url)
    store.upgrade()
    now = Clock(SCALE).now_us()
    ledger.create_tariff(store, "retail", "EUR", now)
    import_deck(store, "retail", io.StringIO(DECK))
    ledger.create_account(store, "acme", "retail", now)
    ledger.topup(store, "acme", Money.parse(balance), now, reference="seed-acme")
    return store


def settings(url: str, inbound: InboundServer | None, **extra) -> dict:
    s = dict(database=url, time_scale=SCALE, heartbeat_s=10, lease_s=30, slice_s=120, route="loopback/{destination}")
    if inbound is not None:
        s["switches"] = [{"name": "fs1", "event_socket": inbound.address, "password": PASSWORD}]
    s.update(extra)
    return s


def spec(rnd: random.Random, talk_s: float, **kwargs) -> CallSpec:
    return CallSpec(
        destination_number="4930123456",
        caller_id_number=f"1555{rnd.randint(0, 10**7):07d}",
        variables={"fsbill_account": "acme"},
        talk_s=talk_s,
        answer_after_s=kwargs.pop("answer_after_s", 1.0),
        **kwargs,
    )


def wait_for_cdrs(store: Store, n: int, timeout_s: float = 60.0, until=None) -> list:
    with gevent.Timeout(timeout_s, AssertionError(f"fewer than {n} CDRs after {timeout_s} s")):
        while True:
            rows = dbcalls.cdrs(store)
            if len(rows) >= n and (until is None or until(rows)):
                return rows
            gevent.sleep(0.1)


def check_books(store: Store, initial: Money) -> list:
    acct = ledger.get_account(store, "acme")
    cdrs = dbcalls.cdrs(store, account="acme")
    assert acct.balance == ledger.ledger_sum(store, "acme")
    assert acct.reserved == Money(0)
    assert dbcalls.live_calls(store, "acme") == []
    assert initial - acct.balance == charged_total(cdrs)
    return cdrs


def expected_charge(rec) -> Money:
    return cost(GERMANY, billed_seconds_us(GERMANY, rec.talk_us))


def unbilled_s(rec, cdr) -> float:
    """Seconds the caller talked that the CDR did not charge for (1.00/min at 1/1)."""
    charged_s = cdr.charged.micros * 60 / 1_000_000
    return max(0.0, rec.talk_us / 1_000_000 - charged_s)


def check_exact(records, cdrs) -> None:
    by_uuid = {c.uuid: c for c in cdrs}
    assert sorted(by_uuid) == sorted(r.uuid for r in records)  # one CDR per call, none twice
    for rec in records:
        cdr = by_uuid[rec.uuid]
        assert cdr.charged == expected_charge(rec), (rec.uuid, rec.talk_us, cdr)
        assert cdr.answer_us == rec.answered_us
        assert cdr.end_us == rec.ended_us


def wait_in_log(server, text: str, count: int, timeout_s: float = 120.0) -> None:
    with gevent.Timeout(timeout_s, AssertionError(f"{count}x {text!r} not in the log: {server.tail()}")):
        while server.output().count(text) < count:
            gevent.sleep(0.1)


def hang_up_after(switch, specs, talk_s: list[float]) -> None:
    """The callers of `specs` hang up `talk_s` call-seconds after answer, or at once if that is
    past: the test decides when, so a restart slowed down by a loaded machine changes nothing
    but the length of the calls, which are then billed for exactly that length."""
    clock = switch.clock
    with gevent.Timeout(30, AssertionError("calls not answered")):
        while True:
            recs = [next((r for r in switch.records if r.spec is sp), None) for sp in specs]
            if all(r is not None and r.answered_us for r in recs):
                break
            gevent.sleep(0.05)
    for rec, talk in sorted(zip(recs, talk_s, strict=True), key=lambda x: x[0].answered_us + x[1] * 1e6):
        due_us = rec.answered_us + int(talk * 1_000_000)
        clock.sleep(max(0.0, (due_us - clock.now_us()) / 1_000_000))
        switch.api("uuid_kill", f"{rec.uuid} NORMAL_CLEARING")


@pytest.fixture
def emulator():
    switch = Switch(Clock(SCALE))
    inbound = InboundServer(switch, password=PASSWORD)
    inbound.start()
    yield switch, inbound
    inbound.close()
    switch.close()


@pytest.mark.parametrize("with_switches", [False, True], ids=["before", "after"])
def test_kill_9_with_live_calls_then_restart(pg_url, tmp_path, emulator, with_switches):
    switch, inbound = emulator
    store = seed(pg_url)
    server = ServeProcess(tmp_path, "crashy", settings(pg_url, inbound if with_switches else None))
    server.start()
    rnd = random.Random(13)
    # 36.7 s of talk each, as measured on a real FreeSWITCH; the biller dies 15 s in
    specs = [spec(rnd, talk_s=None) for _ in range(3)]
    greenlets = [switch.start_call(server.address, s) for s in specs]
    Clock(SCALE).sleep(15)
    assert len(dbcalls.live_calls(store)) == 3
    server.kill9()
    server.start()  # same node name, new process
    try:
        if with_switches:
            wait_in_log(server, "event=adopted", 3)
        hang_up_after(switch, specs, [36.7 + rnd.uniform(0, 1) for _ in specs])
        records = [g.get(timeout=60) for g in greenlets]
        assert all(r.ended_by == "uuid_kill" for r in records)  # FreeSWITCH kept the calls up
        cdrs = wait_for_cdrs(store, 3, timeout_s=120)
        check_books(store, Money.parse("50.00"))
        by_uuid = {c.uuid: c for c in cdrs}
        loss = [round(unbilled_s(r, by_uuid[r.uuid]), 3) for r in records]
        print(f"\nkill -9, {'with' if with_switches else 'without'} switches: unbilled s per call {loss}")
        if with_switches:
            check_exact(records, cdrs)
            assert all(c.result != "recovered" for c in cdrs)
            assert "event=adopted" in server.output()
        else:
            assert all(c.result == "recovered" for c in cdrs)
        gevent.sleep(1)
        assert len(dbcalls.cdrs(store)) == 3
    finally:
        server.terminate()
        store.close()


def test_sigterm_with_live_calls_settles_what_ends_and_the_next_process_adopts_the_rest(sqlite_url, tmp_path, emulator):
    switch, inbound = emulator
    store = seed(sqlite_url)
    server = ServeProcess(tmp_path, "graceful", settings(sqlite_url, inbound, shutdown_grace_s=10))
    server.start()
    rnd = random.Random(15)
    # one call ends within the grace, two outlive the process
    specs = [spec(rnd, talk_s=13.5), spec(rnd, talk_s=None), spec(rnd, talk_s=None)]
    greenlets = [switch.start_call(server.address, s) for s in specs]
    Clock(SCALE).sleep(10)
    assert server.terminate() == 0
    assert "event=stopping" in server.output()
    server.start()
    try:
        wait_in_log(server, "event=adopted", 2)
        hang_up_after(switch, specs[1:], [60 + rnd.uniform(0, 1), 65.3])
        records = [g.get(timeout=60) for g in greenlets]
        assert [r.ended_by for r in records] == ["caller", "uuid_kill", "uuid_kill"]
        cdrs = wait_for_cdrs(store, 3)
        check_books(store, Money.parse("50.00"))
        check_exact(records, cdrs)
        assert all(c.result == "completed" for c in cdrs)
        assert server.output().count("event=adopted") == 2
    finally:
        server.terminate()
        store.close()


def test_a_second_node_takes_over_a_dead_nodes_calls_on_postgresql(pg_url, tmp_path, emulator):
    switch, inbound = emulator
    store = seed(pg_url)
    a = ServeProcess(tmp_path, "node-a", settings(pg_url, inbound, lease_s=20))
    b = ServeProcess(tmp_path, "node-b", settings(pg_url, inbound, lease_s=20))
    a.start()
    b.start()
    rnd = random.Random(17)
    try:
        specs = [spec(rnd, talk_s=None) for _ in range(4)]
        greenlets = [switch.start_call(a.address, s) for s in specs]
        Clock(SCALE).sleep(12)
        assert {c.node for c in dbcalls.live_calls(store)} == {"node-a"}
        a.kill9()  # node-a is gone for good: node-b takes its calls once their lease runs out
        wait_in_log(b, "event=adopted", 4)
        hang_up_after(switch, specs, [55 + rnd.uniform(0, 5) for _ in specs])
        records = [g.get(timeout=90) for g in greenlets]
        assert all(r.ended_by == "uuid_kill" for r in records)
        cdrs = wait_for_cdrs(store, 4)
        check_books(store, Money.parse("50.00"))
        check_exact(records, cdrs)
        assert {c.node for c in cdrs} == {"node-b"}
        assert b.output().count("event=adopted") == 4
    finally:
        a.terminate()
        b.terminate()
        store.close()


def test_a_switch_link_that_drops_and_comes_back(sqlite_url, emulator):
    switch, inbound = emulator
    rig = Rig(
        sqlite_url,
        time_scale=SCALE,
        switches=[{"name": "fs1", "event_socket": inbound.address, "password": PASSWORD}],
        metrics_listen="127.0.0.1:0",
    )
    rig.switch.close()
    rig.switch = switch
    rig.account("acme", "50.00")
    try:
        assert rig.node.switches.wait_up(10)
        rnd = random.Random(19)
        # the calls' outbound sockets die 3 s after answer: the node follows them through the
        # switch link from then on
        specs = [
            spec(rnd, talk_s=40 + rnd.uniform(0, 3), misbehaviour=Misbehaviour(drop_after_s=3.0)) for _ in range(3)
        ]
        greenlets = [switch.start_call(rig.address, s) for s in specs]
        with gevent.Timeout(20, AssertionError("calls not adopted")):
            while rig.node.adopter.adopted < 3:
                gevent.sleep(0.05)
        rig.clock.sleep(8)
        inbound.drop()  # the switch link resets mid-call ...
        with gevent.Timeout(20, AssertionError("calls not re-adopted")):
            while rig.node.adopter.adopted < 6:
                gevent.sleep(0.05)
        text = rig.node.metrics.render().decode()
        assert 'fsbill_switch_up{switch="fs1"} 1.0' in text
        health = f"http://127.0.0.1:{rig.node.metrics_server.server_port}/healthz"
        with urllib.request.urlopen(health, timeout=10) as r:
            assert f"switch fs1 {inbound.address}: up" in r.read().decode()
        with urllib.request.urlopen(health + "?format=json", timeout=10) as r:
            link = json.loads(r.read())["switches"][0]
        assert link["up"] is True and link["connects"] == 2 and link["following"] == 3
        records = [g.get(timeout=60) for g in greenlets]
        assert all(r.ended_by == "caller" for r in records)
        cdrs = wait_for_cdrs(rig.store, 3)
        check_books(rig.store, Money.parse("50.00"))
        check_exact(records, cdrs)
        assert rig.node.switches.connections[0].connects == 2
    finally:
        rig.close()


def test_a_cdr_posted_twice_corrects_a_recovered_call_once(db_url, emulator, tmp_path):
    switch, _ = emulator
    rig = Rig(db_url, time_scale=SCALE, cdr_intake={"listen": "127.0.0.1:0", "user": "fs", "password": "pw"})
    rig.switch.close()
    rig.switch = switch
    rig.account("acme", "50.00")
    url = f"http://127.0.0.1:{rig.node.cdr_intake.port}/cdr"
    poster = JsonCdrPoster(switch, url, cred="fs:pw", retries=2, delay_s=0.2, err_log_dir=tmp_path)
    try:
        rnd = random.Random(21)
        # nobody follows these calls once their sockets die (no switches: configured): a reaper
        # settles them up to their last debit, and FreeSWITCH's CDR corrects that
        specs = [
            spec(rnd, talk_s=25 + rnd.uniform(0, 3), misbehaviour=Misbehaviour(drop_after_s=2.0)) for _ in range(3)
        ]
        records = rig.calls(specs)
        poster.wait()
        assert [p.status for p in poster.posts] == [200, 200, 200]
        cdrs = wait_for_cdrs(rig.store, 3, until=lambda rows: all(r.end_us for r in rows))
        check_exact(records, cdrs)
        before = check_books(rig.store, Money.parse("50.00"))
        for rec in records:
            assert poster.repost(rec.uuid)  # FreeSWITCH posts it again: 200, nothing moves
        rig.node.reap_once()
        after = check_books(rig.store, Money.parse("50.00"))
        assert [(c.uuid, c.charged) for c in after] == [(c.uuid, c.charged) for c in before]
        text = rig.node.metrics.render().decode()
        assert 'fsbill_cdr_posts_total{outcome="duplicate"} 3.0' in text
    finally:
        poster.close()
        rig.close()


def test_the_cdr_intake_wants_its_credentials(sqlite_url):
    import urllib.request
    from urllib.error import HTTPError

    rig = Rig(sqlite_url, cdr_intake={"listen": "127.0.0.1:0", "user": "fs", "password": "pw"})
    try:
        url = f"http://127.0.0.1:{rig.node.cdr_intake.port}/cdr?uuid=x"
        request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
        with pytest.raises(HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        request.add_header("Authorization", "Basic ZnM6cHc=")  # fs:pw
        with pytest.raises(HTTPError) as bad:
            urllib.request.urlopen(request, timeout=5)
        assert bad.value.code == 400  # not a CDR: retrying cannot help
    finally:
        rig.close()


class ActivatedServe(ServeProcess):
    """`fsbill serve` started as systemd starts it with deploy/fsbill.socket: the listening
    socket is the test's (systemd's), passed as fd 3 with LISTEN_FDS=1 and LISTEN_PID."""

    LAUNCH = (
        "import os, sys; fd = int(os.environ.pop('TEST_LISTEN_FD')); fd == 3 or (os.dup2(fd, 3), os.close(fd)); "
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
        "from fsbill.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )

    def __init__(self, tmp, name, settings, listener: socket.socket) -> None:
        super().__init__(tmp, name, settings)
        self.listener = listener

    def start(self, timeout_s: float = 30.0) -> int:
        import subprocess
        import sys
        import time

        from fsbill.bench.calls import SERVING

        offset = self.log.stat().st_size if self.log.exists() else 0
        fd = self.listener.fileno()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.LAUNCH, "serve", "--config", str(self.config)],
                stdout=logf,
                stderr=logf,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "TEST_LISTEN_FD": str(fd)},
                pass_fds=(fd,),
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = SERVING.search(self.log.read_bytes()[offset:])
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise RuntimeError(f"fsbill serve exited: {self.tail()}")
            gevent.sleep(0.05)
        raise RuntimeError(f"fsbill serve did not start: {self.tail()}")


def test_restarts_under_load_refuse_no_call_and_lose_no_second(sqlite_url, tmp_path):
    from fsbill.bench.calls import free_port

    # Real time here: FreeSWITCH gives an app 25 s to send its first command, so a call queued
    # during a restart waits at most that long (a restart slower than that refuses calls, in
    # production as here: a heavily loaded machine can make this test fail for that reason).
    scale = 1
    switch = Switch(Clock(scale))
    inbound = InboundServer(switch, password=PASSWORD)
    inbound.start()
    store = seed(sqlite_url, "200.00")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    intake_port = free_port()
    poster = JsonCdrPoster(
        switch, f"http://127.0.0.1:{intake_port}/cdr", cred="fs:pw", retries=30, delay_s=0.2, err_log_dir=tmp_path
    )
    server = ActivatedServe(
        tmp_path,
        "activated",
        settings(
            sqlite_url,
            inbound,
            shutdown_grace_s=2,
            time_scale=scale,
            cdr_intake={"listen": f"127.0.0.1:{intake_port}", "user": "fs", "password": "pw"},
        ),
        listener,
    )
    assert server.start() == listener.getsockname()[1]
    rnd = random.Random(23)
    restarts = 3
    greenlets = []

    def load() -> None:
        for _ in range(50):
            greenlets.append(switch.start_call(("127.0.0.1", server.port), spec(rnd, talk_s=rnd.uniform(1, 8))))
            gevent.sleep(0.25)

    loader = gevent.spawn(load)
    try:
        gaps = []
        for _ in range(restarts):
            gevent.sleep(3.0)
            began = time.monotonic()
            assert server.terminate() == 0  # systemctl restart fsbill: SIGTERM, then a new process
            server.start()
            gaps.append(time.monotonic() - began)
        loader.get(timeout=60)
        records = [g.get(timeout=90) for g in greenlets]
        refused = [r for r in records if r.responded or r.answered_us is None]
        assert refused == [], (
            f"{len(refused)} calls refused; the restarts took {[round(g, 1) for g in gaps]} s and FreeSWITCH"
            " waits 25 s for an app's first command (is the machine overloaded?)"
        )
        assert all(r.ended_by == "caller" for r in records)
        n = len(records)
        cdrs = wait_for_cdrs(store, n, timeout_s=90, until=lambda rows: all(r.end_us for r in rows))
        check_books(store, Money.parse("200.00"))
        check_exact(records, cdrs)
        lost = sum(unbilled_s(r, {c.uuid: c for c in cdrs}[r.uuid]) for r in records)
        log = server.output()
        print(
            f"\n{restarts} restarts, {n} calls: refused 0, unbilled {lost:.3f} s,"
            f" adopted {log.count('event=adopted')}, inherited socket {log.count('inherited=True')}x,"
            f" CDR posts {len(poster.posts)}, restarts took {', '.join(f'{g:.1f}' for g in gaps)} s"
        )
        assert lost == 0
        assert log.count("inherited=True") == restarts + 1
    finally:
        loader.kill()
        poster.close()
        server.terminate()
        listener.close()
        store.close()
        inbound.close()
        switch.close()


def test_adopted_calls_keep_their_extensions_warnings_and_cut_off(sqlite_url, tmp_path, emulator):
    switch, inbound = emulator
    store = seed(sqlite_url, "20.00")
    now = Clock(SCALE).now_us()
    ledger.create_account(store, "poor", "retail", now)
    ledger.topup(store, "poor", Money.parse("2.00"), now, reference="seed-poor")  # 120 s at 1.00/min
    # A 60 s slice: the first grants end 59 call-s after answer, so the restart below has some 50
    # call-seconds (10 s real) to adopt the calls before FreeSWITCH cuts them at their grant's end.
    # With 30 s slices it had 22 (4.4 s real), which a loaded machine overran now and then: the
    # rich call was cut (sched_hangup) before its first extension.
    server = ServeProcess(
        tmp_path, "extends", settings(sqlite_url, inbound, slice_s=60, cutoff={"warning_s": 10, "margin_s": 1})
    )
    server.start()
    rnd = random.Random(29)
    rich = spec(rnd, talk_s=None)  # will need extensions of its 60 s grant, all after the crash
    poor = spec(rnd, talk_s=None)  # talks until its money runs out
    poor.variables["fsbill_account"] = "poor"
    greenlets = [switch.start_call(server.address, s) for s in (rich, poor)]
    Clock(SCALE).sleep(8)
    server.kill9()
    server.start()
    try:
        wait_in_log(server, "event=adopted", 2)
        hang_up_after(switch, [rich], [150.4])
        rich_rec, poor_rec = (g.get(timeout=90) for g in greenlets)
        assert rich_rec.ended_by == "uuid_kill" and rich_rec.talk_us >= 150_400_000
        assert poor_rec.ended_by == "sched_hangup" and poor_rec.hangup_cause == "ALLOTTED_TIMEOUT"
        assert 118_000_000 <= poor_rec.talk_us <= 120_000_000
        assert len(poor_rec.broadcasts) == 1  # the final grant's warning, once
        cdrs = wait_for_cdrs(store, 2)
        check_exact([rich_rec, poor_rec], cdrs)
        assert ledger.get_account(store, "poor").balance >= Money(0)
        assert ledger.get_account(store, "poor").balance == ledger.ledger_sum(store, "poor")
        assert server.output().count("event=adopted") == 2
        assert server.output().count("event=extended") >= 2
    finally:
        server.terminate()
        store.close()


def test_after_kill_9_an_answered_calls_hold_ends_with_its_cutoff_not_the_ring_bound(sqlite_url, tmp_path, emulator):
    """Without `switches:`, the holds of answered calls whose node died are released within
    heartbeat_s + a few seconds of their FreeSWITCH-side cut-off, never before it (the ring
    allowance, 120 s here, no longer keeps the money held after FreeSWITCH ended the call)."""
    switch, _ = emulator
    store = seed(sqlite_url, balance="0.20")  # 12 s at 1.00/min
    server = ServeProcess(tmp_path, "crashy", settings(sqlite_url, None, max_ring_s=120))
    server.start()
    rnd = random.Random(7)
    specs = [spec(rnd, talk_s=None)]  # the balance buys one call's grant
    greenlets = [switch.start_call(server.address, s) for s in specs]
    Clock(SCALE).sleep(5)
    assert len(dbcalls.live_calls(store)) == 1
    server.kill9()
    server.start()
    try:
        records = [g.get(timeout=60) for g in greenlets]
        clock = Clock(SCALE)
        with gevent.Timeout(60, AssertionError("the hold was never released")):
            while dbcalls.live_calls(store):
                gevent.sleep(0.05)
        released_us = clock.now_us()
        cdrs = wait_for_cdrs(store, 1, timeout_s=60)
        by_uuid = {c.uuid: c for c in cdrs}
        heartbeat_s, margin_s, slack_s = 10, 1, 5
        for rec in records:
            cdr = by_uuid[rec.uuid]
            assert cdr.result == "recovered"
            released_after_s = (released_us - rec.ended_us) / 1e6
            print(f"\nhold released {released_after_s:.1f} s after the FreeSWITCH-side cut-off")
            assert 0 <= released_after_s <= heartbeat_s + margin_s + slack_s + 5
        check_books(store, Money.parse("0.20"))
    finally:
        server.terminate()
        store.close()


def test_a_pre_answered_call_adopted_after_its_bridge_bills_from_the_bridge_and_is_cut_at_its_grant(
    sqlite_url, tmp_path, emulator
):
    """Measured on a real switch before the fix: an IVR-answered channel whose fsbill died while
    the B leg rang, restarted after the B leg answered, was adopted with the IVR's answer as its
    start and its cut-off left at the take-time bound: 132.5 s talked on a 20 s grant. Now the
    adopter bills it from its bridge and moves its cut-off to the grant's end at once."""
    switch, inbound = emulator
    store = seed(sqlite_url, balance="0.20")  # 12 s at 1.00/min
    server = ServeProcess(tmp_path, "crashy", settings(sqlite_url, inbound, max_ring_s=120))
    server.start()
    rnd = random.Random(11)
    s = spec(rnd, talk_s=None, answer_after_s=4.0, answered_before_s=30)
    greenlet = switch.start_call(server.address, s)
    Clock(SCALE).sleep(1.5)
    assert len(dbcalls.live_calls(store)) == 1
    server.kill9()  # while the B leg rings
    with gevent.Timeout(30, AssertionError("the B leg never answered")):
        while not any(r.spec is s and r.bridged_us for r in switch.records):
            gevent.sleep(0.05)
    server.start()
    try:
        wait_in_log(server, "event=adopted", 1)
        rec = greenlet.get(timeout=60)
        [cdr] = wait_for_cdrs(store, 1, timeout_s=60)
        talked_s = (rec.ended_us - rec.bridged_us) / 1e6
        print(f"\nadopted pre-answered call talked {talked_s:.1f} s after its bridge on a 12 s grant")
        assert talked_s <= 12
        assert cdr.answer_us == rec.bridged_us  # billed from the bridge, not the IVR's answer
        assert cdr.charged <= Money.parse("0.20") and cdr.uncollected == Money(0)
        check_books(store, Money.parse("0.20"))
    finally:
        server.terminate()
        store.close()
