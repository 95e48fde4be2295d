"""`fsbill serve --workers N` (issue 14): N real processes behind one listening socket.

The supervisor and its workers are real processes; the calls are real TCP connections from the
FreeSWITCH emulator to the one port the supervisor bound; the books are a real SQLite file or a
real PostgreSQL database. Unit tests of the per-worker settings and the restart backoff first.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gevent
import gevent.event
import pytest
from migrated import migrate_fresh
from nodes import ServeProcess
from rig import DECK, charged_total

from fsbill.clock import Clock
from fsbill.config import Settings, load_settings
from fsbill.core.money import Money
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db.rates import import_deck
from fsbill.errors import ConfigError
from fsbill.sim import CallSpec, Switch
from fsbill.workers import Supervisor, backoff_s, worker_argv, worker_settings

SCALE = 10


# -- per-worker settings ---------------------------------------------------------------------------------
def test_each_worker_is_its_own_node_with_its_own_metrics_port():
    base = Settings(node="edge1", metrics_listen="127.0.0.1:9184", workers=3)
    got = [worker_settings(base, i) for i in range(3)]
    assert [s.node for s in got] == ["edge1-w0", "edge1-w1", "edge1-w2"]
    assert [s.metrics_listen for s in got] == ["127.0.0.1:9184", "127.0.0.1:9185", "127.0.0.1:9186"]
    assert all(s.listen == base.listen and s.database == base.database for s in got)


def test_worker_metrics_ports_on_ipv6_off_and_any_port():
    assert worker_settings(Settings(metrics_listen="[::1]:9184"), 2).metrics_listen == "[::1]:9186"
    assert worker_settings(Settings(metrics_listen=""), 2).metrics_listen == ""
    assert worker_settings(Settings(metrics_listen="127.0.0.1:0"), 2).metrics_listen == "127.0.0.1:0"
    with pytest.raises(ConfigError, match="worker 2 would serve on port 65536"):
        worker_settings(Settings(metrics_listen="127.0.0.1:65534"), 2)


@pytest.mark.parametrize("workers", [0, -1, 65])
def test_a_worker_count_out_of_range_is_refused(tmp_path, workers):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"workers: {workers}\n")
    with pytest.raises(ConfigError, match="workers: must be 1 to 64"):
        load_settings(str(cfg))


def test_a_bad_worker_count_on_the_command_line_exits_2_without_a_traceback(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsbill",
            "--json",
            "serve",
            "--workers",
            "0",
            "--database",
            f"sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    error = json.loads(out.stderr.strip().splitlines()[-1])
    assert "workers" in error["error"] and error["kind"] == "usage"
    assert "Traceback" not in out.stderr


def test_a_worker_dying_young_waits_longer_each_time_up_to_a_ceiling():
    waits = []
    wait = 0.0
    for _ in range(10):
        wait = backoff_s(wait, lived_s=0.2)
        waits.append(wait)
    assert waits[0] == 0.5 and waits == sorted(waits) and waits[-1] == 30.0
    assert backoff_s(30.0, lived_s=600) == 0.5  # one crash after a long life: start again at once


@pytest.mark.parametrize("stop_after_s", [0.0, 0.0005, 0.002, 0.01, 0.05])
def test_a_stop_that_comes_while_workers_are_being_started_stops_them_all(stop_after_s):
    """CI once saw `dictionary changed size during iteration`: the stop walked the workers
    while a keeper was still starting one. Whatever the moment, every started worker gets its
    SIGTERM and the supervisor returns."""
    sleeper = [
        sys.executable,
        "-c",
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)",
    ]
    supervisor = Supervisor(Settings(workers=4, shutdown_grace_s=1), sleeper)
    stop = gevent.event.Event()
    gevent.spawn_later(stop_after_s, stop.set)
    runner = gevent.spawn(supervisor.run, stop)
    assert runner.get(timeout=30) == 0
    assert all(proc.poll() is not None for proc in supervisor.procs.values())
    # Stopped by the SIGTERM (before or after its handler was installed), never SIGKILLed.
    codes = [proc.returncode for proc in supervisor.procs.values()]
    assert all(code in (0, -signal.SIGTERM) for code in codes), codes


def test_the_worker_command_line_keeps_the_config_and_overrides_but_not_the_count(tmp_path):
    argv = worker_argv(str(tmp_path / "fsbill.yaml"), {"--database": "sqlite:///x.db", "--node": None})
    assert argv[:4] == [sys.executable, "-m", "fsbill", "serve"]
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--config") + 1] == str(tmp_path / "fsbill.yaml")
    assert argv[argv.index("--database") + 1] == "sqlite:///x.db" and "--node" not in argv


# -- real processes ---------------------------------------------------------------------------------------
def seed(url: str, balance: str, **account) -> Store:
    migrate_fresh(url)
    store = Store(url)
    store.upgrade()
    now = Clock(SCALE).now_us()
    ledger.create_tariff(store, "retail", "EUR", now)
    import_deck(store, "retail", io.StringIO(DECK))
    ledger.create_account(store, "acme", "retail", now, **account)
    ledger.topup(store, "acme", Money.parse(balance), now, reference="seed-acme")
    return store


def spec(rnd: random.Random, **kwargs) -> CallSpec:
    kwargs.setdefault("talk_s", rnd.randint(5, 60))
    kwargs.setdefault("answer_after_s", rnd.uniform(0.5, 2))
    return CallSpec(
        destination_number="4930123456",
        caller_id_number=f"1555{rnd.randint(0, 10**7):07d}",
        variables={"fsbill_account": "acme"},
        **kwargs,
    )


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        gevent.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def cdrs_of(store: Store, n: int, timeout_s: float = 90) -> list:
    return wait_until(lambda: (rows := dbcalls.cdrs(store)) and len(rows) >= n and rows, timeout_s, f"{n} CDRs")


def workers_ready(server: ServeProcess, n: int) -> list[int]:
    """The workers' pids, once each has said it serves (its own banner in the shared log)."""
    try:
        return wait_until(
            lambda: (
                len(children(server.pid)) == n
                and server.output().count("node acme-edge-w") >= n
                and children(server.pid)
            ),
            90,
            f"{n} workers serving",
        )
    except AssertionError as failed:  # say what the supervisor and its workers printed
        raise AssertionError(f"{failed}; their output ends:\n{server.output()[-4000:]}") from None


def test_workers_share_one_socket_and_one_account_without_overspending(db_url, tmp_path):
    """Two workers behind one port, one account with money for part of the calls and a
    channel limit: every call lands on one worker or the other, the books balance, and the
    limit held across the processes exactly as it does across machines."""
    store = seed(db_url, "8.00", max_channels=8)
    metrics_port = _free_port_pair()
    server = ServeProcess(
        tmp_path,
        "acme-edge",
        dict(
            database=db_url,
            workers=2,
            time_scale=SCALE,
            heartbeat_s=10,
            slice_s=30,
            route="loopback/{destination}",
            metrics_listen=f"127.0.0.1:{metrics_port}",
        ),
    )
    try:
        server.start()
        workers_ready(server, 2)
        switch = Switch(Clock(SCALE))
        rnd = random.Random(14)
        n = 60
        greenlets = []
        for _ in range(n):
            greenlets.append(switch.start_call(server.address, spec(rnd)))
            gevent.sleep(rnd.uniform(0, 0.02))
        gevent.joinall(greenlets, raise_error=True)
        cdrs = cdrs_of(store, n)
        assert len({(c.uuid, c.visit) for c in cdrs}) == n
        nodes = {c.node for c in cdrs}
        assert nodes <= {"acme-edge-w0", "acme-edge-w1"}
        assert len(nodes) == 2, f"one worker took every call: {nodes}"
        acct = ledger.get_account(store, "acme")
        assert acct.balance == ledger.ledger_sum(store, "acme")
        assert acct.reserved == Money(0) and dbcalls.live_calls(store) == []
        assert Money.parse("8.00") - acct.balance == charged_total(cdrs) and acct.balance >= Money(0)
        accepted = [c for c in cdrs if c.result != "rejected"]
        assert accepted and all(c.cost == c.charged and not c.uncollected for c in accepted)
        assert {c.reason for c in cdrs if c.result == "rejected"} <= {"insufficient_funds", "channel_limit"}
        spans = sorted((c.answer_us, c.end_us) for c in accepted if c.answer_us)
        assert max(sum(1 for a, e in spans if a <= t < e) for t, _ in spans) <= 8
        for port in (metrics_port, metrics_port + 1):  # each worker serves its own /metrics
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                assert b"fsbill_calls_total" in r.read()
    finally:
        assert server.terminate() == 0, server.output()[-3000:]
        store.close()
    for pid in children(server.pid):  # pragma: no cover - a worker outliving its supervisor
        os.kill(pid, signal.SIGKILL)


def test_a_worker_killed_is_started_again_and_its_calls_are_still_settled(sqlite_url, tmp_path):
    """kill -9 of one worker with calls up: FreeSWITCH's cut-off keeps them safe, the supervisor
    starts the worker again under the same node name, and that process settles what its
    predecessor left (the reaper's own-node rule) while the other worker goes on taking calls."""
    store = seed(sqlite_url, "50.00")
    server = ServeProcess(
        tmp_path,
        "acme-edge",
        dict(
            database=sqlite_url, workers=2, time_scale=SCALE, heartbeat_s=10, slice_s=60, route="loopback/{destination}"
        ),
    )
    try:
        server.start()
        before = workers_ready(server, 2)
        switch = Switch(Clock(SCALE))
        rnd = random.Random(41)
        first = [switch.start_call(server.address, spec(rnd, talk_s=20 + rnd.uniform(0, 2))) for _ in range(6)]
        Clock(SCALE).sleep(8)
        live = dbcalls.live_calls(store)
        assert len(live) == 6
        victim_node = live[0].node
        victim = next(p for p in before if _worker_node(server, p) == victim_node)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: (pids := children(server.pid)) and len(pids) == 2 and victim not in pids and pids,
            30,
            "a new worker",
        )
        assert server.alive()
        later = [switch.start_call(server.address, spec(rnd, talk_s=3)) for _ in range(4)]
        records = [g.get(timeout=90) for g in first + later]
        cdrs = cdrs_of(store, 10)
        assert sorted(c.uuid for c in cdrs) == sorted(r.uuid for r in records)
        recovered = [c for c in cdrs if c.result == "recovered"]
        assert recovered and all(c.node == victim_node for c in recovered)
        assert "worker_died" in server.output() and set(replaced) != set(before)
        acct = ledger.get_account(store, "acme")
        assert acct.balance == ledger.ledger_sum(store, "acme") and acct.reserved == Money(0)
        assert Money.parse("50.00") - acct.balance == charged_total(cdrs)
    finally:
        assert server.terminate() == 0, server.output()[-3000:]
        store.close()
    assert children(server.pid) == []


def _worker_node(server: ServeProcess, pid: int) -> str:
    """The node a worker pid serves as, from its `started` log line."""
    for line in server.output().splitlines():
        if "event=started" in line and f":{pid}:" in line:
            return line.split("node=", 1)[1].split()[0]
    raise AssertionError(f"no started line for worker {pid}")


def _free_port_pair() -> int:
    """A port p such that p and p + 1 are both free now, from below the kernel's ephemeral
    range (32768-60999): a port taken by bind(0) could be handed to any other test's socket
    before the worker binds it, and a worker that cannot bind its metrics port never serves."""
    import socket

    rnd = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        port = rnd.randrange(21000, 32000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
                return port
        except OSError:
            continue
    raise AssertionError("no two consecutive free ports")


def test_workers_do_not_outlive_a_supervisor_killed_with_sigkill(sqlite_url, tmp_path):
    """kill -9 of the supervisor: its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
    and stop, so nothing is left holding the listening socket and a new supervisor can bind it."""
    seed(sqlite_url, "5.00").close()
    server = ServeProcess(tmp_path, "acme-edge", dict(database=sqlite_url, workers=2, time_scale=SCALE))
    server.start()
    pids = workers_ready(server, 2)
    port = server.port
    server.kill9()
    wait_until(lambda: not any(Path(f"/proc/{p}").exists() and _running(p) for p in pids), 30, "workers gone")
    again = ServeProcess(tmp_path, "acme-edge-2", dict(database=sqlite_url, workers=2, listen=f"127.0.0.1:{port}"))
    try:
        assert again.start() == port
    finally:
        assert again.terminate() == 0, again.output()[-3000:]


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
