"""`fsbill bench calls`: the call path of one `fsbill serve` process on SQLite, end to end.

A fresh SQLite database is seeded (one tariff, a small deck, one account with a huge balance),
`fsbill serve` is started as a subprocess (so its CPU and RSS are measured apart from the load
generator: /proc/<pid>/stat and /proc/<pid>/status) with metrics on a free port, and the
FreeSWITCH emulator (fsbill.sim) in this process places calls into it over loopback TCP.

Figures (targets from issue 7, one process on SQLite):
1. sustained call setups/s (>= 1,000): calls placed with enough concurrency to saturate;
   setups = `bridge` received by the emulator, divided by the wall time to the last one;
2. setup latency p50/p99 at a fixed offered load (p99 <= 10 ms at 500/s): Poisson (open-loop)
   arrivals; from the emulator's CallRecord.setup_latency_s (TCP connect -> `bridge`
   received) and from the server's own fsbill_setup_seconds histogram (accept -> bridge sent);
3. server CPU seconds per call (whole call: setup, answer, settlement, CDR);
4. RSS per live call at 1,000 and 10,000 simultaneously live (answered, talking) calls
   ((RSS with N live - RSS idle) / N; 10,000 in <= 1 GiB);
5. heartbeat cost while N calls are live: mean DB time per heartbeat (fsbill_db_seconds
   {op="heartbeat"} sum/count) and server CPU per heartbeat.

Both sides run one scaled clock (fsbill.clock): call time runs `time_scale` times faster than
real time, so heartbeats (every `heartbeat_s` call-seconds) come every heartbeat_s/time_scale
real seconds per live call.
"""

from __future__ import annotations

import collections
import io
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

if TYPE_CHECKING:  # imported where used: the emulator loads only for a run
    from fsbill.sim import Switch

import gevent
import yaml

DECK = """prefix,rate,connect_fee,initial_increment,increment,min_duration,description
49,1.00,0,1,1,0,Germany
4930,0.02,0,60,60,0,Germany Berlin
4915,0.20,0,1,1,0,Germany mobile
44,0.60,0,60,60,0,UK per minute
33,0.30,0.05,30,6,0,France 30/6 with connect fee
"""
ACCOUNT = "bench"
BALANCE = "1000000000.00"  # never the limit
DESTINATION = "4930123456"
SERVING = re.compile(rb"on [^ ]+:(\d+) ")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

SHORT_TALK_REAL_S = 0.1
TARGET_SETUPS_PER_S = 1000.0
TARGET_P99_MS = 10.0
TARGET_P99_AT_RATE = 500.0
TARGET_RSS_10K_BYTES = 1 << 30


@dataclass
class Options:
    setups: int = 1000  # calls for the sustained-throughput figure
    concurrency: int = 100  # calls in flight for it (enough to saturate)
    rate: float = 500.0  # offered load for the latency figure, setups/s
    latency_s: float = 10.0  # how long that load is offered
    live: tuple[int, ...] = (1000, 10000)
    time_scale: float = 1.0
    heartbeat_s: int = 10
    heartbeat_window_s: float = 10.0  # real seconds over which heartbeats are counted
    ramp_in_flight: int = 100  # unanswered calls at most while ramping live calls up
    ramp_timeout_s: float = 60.0  # give up on a live-call level after this long
    overload_backlog: int = 0  # calls waiting for `bridge` that mean "overloaded" (0: rate / 2, >= 50)
    warmup: int = 100
    sqlite_synchronous: str = "full"
    log_level: str = "info"
    keep_dir: str | None = None  # keep the database and the server log here
    seed: int = 7


# -- the server process ---------------------------------------------------------------------------
def raise_nofile() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE to the hard limit (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Server:
    """`python -m fsbill serve --config FILE` in its own process."""

    def __init__(self, workdir: Path, settings: dict[str, Any], name: str = "serve") -> None:
        self.config = workdir / f"{name}.yaml"
        self.log = workdir / f"{name}.log"
        self.config.write_text(yaml.safe_dump(settings))
        metrics = settings.get("metrics_listen")
        self.metrics_url = f"http://{metrics}/metrics" if metrics else ""
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout_s: float = 30.0) -> int:
        """Start (or restart) the process; returns the port it reports listening on."""
        offset = self.log.stat().st_size if self.log.exists() else 0  # a restart appends
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fsbill", "serve", "--config", str(self.config)],
                stdout=logf,
                stderr=logf,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
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

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server was not started"
        return self.proc.pid

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def rss(self) -> int:
        return proc_rss_bytes(self.pid)

    def scrape(self) -> Scrape:
        with urlopen(self.metrics_url, timeout=30) as response:
            return Scrape.parse(response.read().decode("utf-8"))

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL)  # nothing to keep: the database is thrown away
        self.proc.wait(timeout=10)


@dataclass
class Scrape:
    samples: dict[tuple[str, tuple], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[tuple[str, tuple], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """Cumulative (le, count) pairs of a histogram, sorted by le."""
        out = []
        want = set(labels.items())
        for (n, lbls), v in self.samples.items():
            if n != f"{name}_bucket":
                continue
            d = dict(lbls)
            if not want <= set(lbls):
                continue
            out.append((float(d["le"]), v))
        return sorted(out)


def histogram_quantile(q: float, before: Scrape, after: Scrape, name: str, **labels: str) -> float | None:
    """Prometheus' histogram_quantile over the increase between two scrapes (linear inside
    the bucket; the lowest bucket interpolates from 0)."""
    b0 = dict(before.buckets(name, **labels))
    rows = [(le, count - b0.get(le, 0.0)) for le, count in after.buckets(name, **labels)]
    if not rows or rows[-1][1] <= 0:
        return None
    total = rows[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in rows:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return rows[-2][0] if len(rows) > 1 else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- seeding -----------------------------------------------------------------------------------------
def seed_database(url: str, time_scale: float) -> None:
    from fsbill.clock import Clock
    from fsbill.core.money import Money
    from fsbill.db import Store, ledger
    from fsbill.db.rates import import_deck

    clock = Clock(time_scale)
    store = Store(url)
    try:
        store.upgrade()
        ledger.create_tariff(store, "bench", "EUR", clock.now_us())
        import_deck(store, "bench", io.StringIO(DECK))
        ledger.create_account(store, ACCOUNT, "bench", clock.now_us())
        ledger.topup(store, ACCOUNT, Money.parse(BALANCE), clock.now_us(), reference="bench-seed")
    finally:
        store.close()


# -- the benchmark ----------------------------------------------------------------------------------
@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class CallBench:
    def __init__(self, options: Options, progress: Callable[[str], None] | None = None) -> None:
        self.o = options
        self.progress = progress or (lambda _msg: None)
        self.rng = random.Random(options.seed)
        self.report = Report()
        self.server: Server | None = None  # see `running`
        self.switch: Switch | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        # calls for the setup figures talk 0.1 real seconds, whatever the time scale
        self.short_talk_s = SHORT_TALK_REAL_S * options.time_scale
        self.ramp_failures: collections.Counter = collections.Counter()

    # -- helpers --------------------------------------------------------------------------------------
    def spec(self, *, talk_s: float | None, answer_after_s: float = 0.0):
        from fsbill.sim import CallSpec

        return CallSpec(
            caller_id_number="15551230000",
            destination_number=DESTINATION,
            variables={"fsbill_account": ACCOUNT},
            answer_after_s=answer_after_s,
            talk_s=talk_s,
        )

    @property
    def running(self) -> Server:
        """The server of this run, once started."""
        assert self.server is not None, "the server was not started"
        return self.server

    def new_switch(self):
        from fsbill.clock import Clock
        from fsbill.sim import Switch

        if self.switch is not None:
            self.switch.close()
        self.switch = Switch(Clock(self.o.time_scale))
        return self.switch

    def wait_settled(self, expected_cdrs: float, timeout_s: float = 60.0) -> Scrape:
        """Until the server has no live call and has written `expected_cdrs` CDRs in all (or
        written none for 3 s: a call whose session broke before it was authorized has none)."""
        deadline = time.monotonic() + timeout_s
        last, still_since = -1.0, time.monotonic()
        while True:
            scrape = self.running.scrape()
            cdrs, live = scrape.total("fsbill_cdrs_written_total"), scrape.value("fsbill_live_calls")
            if live == 0 and cdrs >= expected_cdrs:
                return scrape
            if cdrs != last:
                last, still_since = cdrs, time.monotonic()
            elif live == 0 and time.monotonic() - still_since > 3.0:
                return scrape
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not settle: {cdrs:.0f} of {expected_cdrs:.0f} CDRs, {live:.0f} live")
            gevent.sleep(0.1)

    @staticmethod
    def _failures(records: list) -> dict[str, int]:
        out: dict[str, int] = collections.Counter()
        for r in records:
            if r is None:
                out["emulator_error"] += 1
            elif r.setup_latency_s is None:
                out[r.app_error or r.variables.get("fsbill_result") or r.hangup_cause or "no_bridge"] += 1
        return dict(out)

    # -- 1 + 3: sustained setups/s and CPU per call ---------------------------------------------------------
    def throughput(self) -> None:
        o = self.o
        switch = self.new_switch()
        cdrs0 = self.running.scrape().total("fsbill_cdrs_written_total")
        self.progress(f"sustained setups: {o.setups} calls, {o.concurrency} in flight")
        specs = [self.spec(talk_s=self.short_talk_s) for _ in range(o.setups)]
        cpu0, emu0, t0 = self.running.cpu_s(), self_cpu_s(), time.perf_counter()
        wall0 = time.time()
        records = switch.run_load(self.address, specs, concurrency=o.concurrency)
        t_end = time.perf_counter()
        emu1 = self_cpu_s()
        bridged = [r for r in records if r is not None and r.setup_latency_s is not None]
        # when the last `bridge` arrived, in real time (the record holds scaled call time)
        last_bridge = max((self._bridge_real(r) for r in bridged), default=wall0)
        wall = max(1e-6, last_bridge - wall0)
        cpu_setup = self.running.cpu_s() - cpu0
        self.wait_settled(cdrs0 + len(specs))
        cpu1 = self.running.cpu_s()
        f = self.report.figures
        f["setups"] = len(specs)
        f["concurrency"] = o.concurrency
        f["setups_completed"] = len(bridged)
        f["setup_failures"] = self._failures(records)
        f["setups_wall_s"] = round(wall, 3)
        f["setups_per_s"] = round(len(bridged) / wall, 1)
        f["setups_server_cpu_util"] = round(cpu_setup / max(1e-6, t_end - t0), 3)
        f["setups_emulator_cpu_util"] = round((emu1 - emu0) / max(1e-6, t_end - t0), 3)
        f["cpu_s_per_call"] = round((cpu1 - cpu0) / max(1, len(specs)), 6)
        f["emulator_cpu_s_per_call"] = round((emu1 - emu0) / max(1, len(specs)), 6)
        switch.records.clear()

    def _bridge_real(self, rec) -> float:
        from fsbill.clock import ANCHOR_US

        for at_us, raw in rec.commands:
            if raw.startswith("sendmsg") and "execute-app-name: bridge" in raw:
                if self.o.time_scale == 1.0:
                    return at_us / 1e6
                return (ANCHOR_US + (at_us - ANCHOR_US) / self.o.time_scale) / 1e6
        return 0.0

    # -- 2: latency at a fixed offered load ---------------------------------------------------------------
    def latency(self) -> None:
        o = self.o
        f = self.report.figures
        f["latency"] = {}
        row = self._offer(o.rate, o.latency_s)
        f["latency"][_rate_key(o.rate)] = row
        capacity = f.get("setups_per_s") or 0
        if row["overloaded"] and capacity > 0:
            # the figure the target asks for is meaningless past capacity; also give it at half
            # the measured capacity, where the server is not queueing
            half = max(1.0, round(capacity / 2))
            self.report.notes.append(
                f"{o.rate:g} setups/s is beyond this server's capacity ({capacity:,.0f}/s measured above): "
                f"the offer was stopped after {row['offered_s']:.1f} s with {row['backlog']} calls waiting; "
                f"latency is also measured at {half:g}/s (half the capacity)"
            )
            f["latency"][_rate_key(half)] = self._offer(half, o.latency_s)

    def _offer(self, rate: float, duration_s: float) -> dict[str, Any]:
        o = self.o
        switch = self.new_switch()
        n = max(1, int(round(rate * duration_s)))
        backlog_limit = o.overload_backlog or max(50, int(rate / 2))
        self.progress(f"setup latency: up to {n} calls at {rate:g}/s (Poisson arrivals, {duration_s:g} s)")
        before = self.running.scrape()
        cpu0, emu0 = self.running.cpu_s(), self_cpu_s()
        greenlets = []
        waiting: collections.deque = collections.deque()
        start = time.perf_counter()
        at = 0.0
        overloaded = False
        backlog = 0
        for _ in range(n):
            at += self.rng.expovariate(rate)
            delay = start + at - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            while waiting and (waiting[0].setup_latency_s is not None or waiting[0].done.is_set()):
                waiting.popleft()
            if len(waiting) > backlog_limit:
                overloaded, backlog = True, len(waiting)
                break
            greenlets.append(switch.start_call(self.address, self.spec(talk_s=self.short_talk_s)))
            waiting.append(switch.records[-1])
        offered_s = time.perf_counter() - start
        placed = len(greenlets)
        gevent.joinall(greenlets, timeout=120)
        emu1 = self_cpu_s()
        records = [g.value if g.successful() else None for g in greenlets]
        after = self.wait_settled(before.total("fsbill_cdrs_written_total") + placed)
        cpu1 = self.running.cpu_s()
        busy_s = max(offered_s, time.perf_counter() - start)  # an overloaded offer is worked off after it stops
        lat = [r.setup_latency_s for r in records if r is not None and r.setup_latency_s is not None]
        switch.records.clear()
        return {
            "offered_per_s": rate,
            "offered_s": round(offered_s, 2),
            "achieved_per_s": round(placed / max(1e-6, offered_s), 1),
            "calls": placed,
            "completed": len(lat),
            "failures": self._failures(records),
            "overloaded": overloaded,
            "backlog": backlog,
            "emulator_ms_p50": _ms(percentile(lat, 0.50)),
            "emulator_ms_p99": _ms(percentile(lat, 0.99)),
            "emulator_ms_max": _ms(max(lat) if lat else None),
            "server_ms_p50": _ms(histogram_quantile(0.50, before, after, "fsbill_setup_seconds")),
            "server_ms_p99": _ms(histogram_quantile(0.99, before, after, "fsbill_setup_seconds")),
            "server_cpu_util": round((cpu1 - cpu0) / busy_s, 3),
            "emulator_cpu_util": round((emu1 - emu0) / busy_s, 3),
            "server_cpu_s_per_call": round((cpu1 - cpu0) / placed, 6),
        }

    # -- 4 + 5: live calls: RSS and heartbeats --------------------------------------------------------------
    def live(self) -> None:
        o = self.o
        switch = self.new_switch()
        f = self.report.figures
        gevent.sleep(0.5)
        idle = self.running.rss()
        f["rss_idle_bytes"] = idle
        f["live"] = {}
        up: list = []
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        for target in sorted(o.live):
            # each live call holds one socket in each process, plus each process' own few files
            if target + 64 > soft:
                self.report.notes.append(
                    f"{target:,} live calls not reachable: RLIMIT_NOFILE is {soft} (hard limit {hard}) "
                    "and each live call needs one socket in each process"
                )
                continue
            t0 = time.perf_counter()
            reached, why = self._ramp(switch, up, target)
            ramp_s = time.perf_counter() - t0
            if not reached:
                self.report.notes.append(f"{target:,} live calls not reached: {why}")
                if len(up) and str(len(up)) not in f["live"]:
                    self.progress(f"measuring at {len(up):,} live calls instead")
                    row = self._measure_live(len(up), idle)
                    row["ramp_s"] = round(ramp_s, 1)
                    row["partial"] = True
                    f["live"][str(len(up))] = row
                break
            self.progress(f"{target:,} live calls up after {ramp_s:.0f} s; measuring RSS and heartbeats")
            row = self._measure_live(target, idle)
            row["ramp_s"] = round(ramp_s, 1)
            f["live"][str(target)] = row
        f["live_reached"] = len(up)
        if self.ramp_failures:
            f["live_ramp_failures"] = dict(self.ramp_failures)
            self.report.notes.append(
                f"calls that failed to come up while ramping (replaced): {_fmt_counts(self.ramp_failures)}"
            )
        self.progress(f"dropping {len(up):,} live calls")

    def _ramp(self, switch, up: list, target: int) -> tuple[bool, str]:
        o = self.o
        self.progress(f"ramping up to {target:,} live calls (at most {o.ramp_in_flight} being set up at once)")
        in_flight: collections.deque = collections.deque()
        failed = self.ramp_failures
        start = time.monotonic()
        deadline = start + o.ramp_timeout_s
        while len(up) < target:
            while in_flight and in_flight[0].answered_us is not None:
                up.append(in_flight.popleft())
                if len(up) % 500 == 0:
                    for r in up[-500:]:
                        r.sent.clear()  # the emulator's copy of every frame: its memory, not the server's
            for rec in [r for r in in_flight if r.done.is_set() and r.answered_us is None]:
                in_flight.remove(rec)  # never got up: counted, replaced by another call
                failed[
                    rec.app_error or rec.variables.get("fsbill_result") or rec.responded or rec.hangup_cause or "?"
                ] += 1
            if sum(failed.values()) > max(10, target // 100):
                return False, f"too many calls failed to come up ({_fmt_counts(failed)}), {len(up):,} up"
            for rec in up[-10:]:
                if rec.done.is_set():
                    return False, f"a live call ended ({rec.hangup_cause}, {rec.ended_by}), {len(up):,} up"
            if time.monotonic() > deadline:
                return False, (
                    f"{len(up):,} up after {o.ramp_timeout_s:g} s ({len(up) / max(1e-6, time.monotonic() - start):,.0f} "
                    f"new live calls/s while the ones up heartbeat; server CPU {self._server_util():.0%})"
                )
            room = min(o.ramp_in_flight - len(in_flight), target - len(up) - len(in_flight))
            for _ in range(max(0, room)):
                switch.start_call(self.address, self.spec(talk_s=None, answer_after_s=0.0))
                in_flight.append(switch.records[-1])
            gevent.sleep(0.01)
        for r in up:
            r.sent.clear()
        return True, ""

    def _server_util(self, window_s: float = 0.5) -> float:
        c0 = self.running.cpu_s()
        gevent.sleep(window_s)
        return (self.running.cpu_s() - c0) / window_s

    def _measure_live(self, n: int, idle: int) -> dict[str, Any]:
        o = self.o
        gevent.sleep(1.0)  # let the last setups finish their database writes
        before = self.running.scrape()
        cpu0, t0 = self.running.cpu_s(), time.perf_counter()
        window = max(o.heartbeat_window_s, 1.0)
        gevent.sleep(window)
        cpu1, t1 = self.running.cpu_s(), time.perf_counter()
        after = self.running.scrape()
        rss = self.running.rss()
        count = after.value("fsbill_db_seconds_count", op="heartbeat") - before.value(
            "fsbill_db_seconds_count", op="heartbeat"
        )
        total = after.value("fsbill_db_seconds_sum", op="heartbeat") - before.value(
            "fsbill_db_seconds_sum", op="heartbeat"
        )
        window = t1 - t0
        return {
            "live_calls_server": int(after.value("fsbill_live_calls")),
            "rss_bytes": rss,
            "rss_per_call_bytes": round((rss - idle) / n),
            "window_s": round(window, 2),
            "heartbeats": int(count),
            "heartbeats_per_s": round(count / window, 1),
            "heartbeats_due_per_s": round(n * o.time_scale / o.heartbeat_s, 1),
            "heartbeat_db_ms_mean": _ms(total / count if count else None),
            "heartbeat_cpu_ms": _ms((cpu1 - cpu0) / count if count else None),
            "server_cpu_util": round((cpu1 - cpu0) / window, 3),
        }

    # -- the whole run ------------------------------------------------------------------------------------------
    def run(self) -> Report:
        o = self.o
        soft, hard = raise_nofile()
        f = self.report.figures
        f["machine"] = machine()
        f["rlimit_nofile"] = [soft, hard]
        f["time_scale"] = o.time_scale
        f["heartbeat_s"] = o.heartbeat_s
        f["sqlite_synchronous"] = o.sqlite_synchronous
        workdir = Path(o.keep_dir or tempfile.mkdtemp(prefix="fsbill-bench-calls-"))
        workdir.mkdir(parents=True, exist_ok=True)
        db = workdir / "bench.db"
        for suffix in ("", "-wal", "-shm", ".migrate-lock"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
        started = time.perf_counter()
        try:
            seed_database(url, o.time_scale)
            self.server = Server(
                workdir,
                dict(
                    database=url,
                    listen="127.0.0.1:0",
                    metrics_listen=f"127.0.0.1:{free_port()}",
                    node="bench",
                    log_level=o.log_level,
                    time_scale=o.time_scale,
                    heartbeat_s=o.heartbeat_s,
                    route="loopback/{destination}",
                    sqlite_synchronous=o.sqlite_synchronous,
                    esl_max_connections=max(20000, max(o.live, default=0) + 1000),
                    shutdown_grace_s=0,
                ),
            )
            self.address = ("127.0.0.1", self.server.start())
            f["server_pid"] = self.server.pid
            gevent.sleep(0.3)
            f["rss_started_bytes"] = self.running.rss()
            if o.warmup:
                # imports, the deck cache and SQLite's pages warm up before anything is measured
                self.progress(f"warm-up: {o.warmup} calls")
                warm = self.new_switch()
                warm.run_load(
                    self.address, [self.spec(talk_s=self.short_talk_s) for _ in range(o.warmup)], concurrency=20
                )
                self.wait_settled(o.warmup)
            self.throughput()
            self.latency()
            if o.live:
                self.live()
        finally:
            if self.server is not None:
                self.server.stop()
            if self.switch is not None:
                self.switch.close()
            if not o.keep_dir:
                shutil.rmtree(workdir, ignore_errors=True)
        f["run_s"] = round(time.perf_counter() - started, 1)
        f["machine"]["loadavg_after"] = _loadavg()
        self._verdicts()
        return self.report

    def _verdicts(self) -> None:
        f = self.report.figures
        targets: dict[str, bool] = {}
        if "setups_per_s" in f:
            targets["setups_per_s>=1000"] = f["setups_per_s"] >= TARGET_SETUPS_PER_S
        at = f.get("latency", {}).get(_rate_key(TARGET_P99_AT_RATE))
        if at is not None:
            p99 = at["emulator_ms_p99"]
            targets["p99<=10ms@500/s"] = p99 is not None and not at["overloaded"] and p99 <= TARGET_P99_MS
        if 10000 in self.o.live:
            big = f.get("live", {}).get("10000")
            targets["10k_live<=1GiB"] = big is not None and big["rss_bytes"] <= TARGET_RSS_10K_BYTES
        f["targets_met"] = targets


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return ""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_bytes": mem,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_before": _loadavg(),
    }


def run(options: Options, progress: Callable[[str], None] | None = None) -> Report:
    return CallBench(options, progress).run()


def render(report: Report) -> str:
    """The human-readable report."""
    f = report.figures
    m = f["machine"]
    mib = 1 << 20
    lines = [
        f"fsbill bench calls - {m['date']}: {m['nproc']} CPU ({m['cpu']}), {m['ram_bytes'] / (1 << 30):.1f} GiB RAM, "
        f"Python {m['python']}, load average {m['loadavg_before']} before / {m['loadavg_after']} after",
        f"server: one `fsbill serve` subprocess on SQLite (WAL, synchronous={f['sqlite_synchronous']}); load: the "
        f"FreeSWITCH emulator in this process over loopback; time_scale={f['time_scale']:g}, heartbeat_s="
        f"{f['heartbeat_s']} (one heartbeat per live call every {f['heartbeat_s'] / f['time_scale']:g} real s); "
        f"RLIMIT_NOFILE {f['rlimit_nofile'][0]}",
        "",
    ]
    if "setups_per_s" in f:
        fail = f"; {_fmt_failures(f['setup_failures'])}" if f["setup_failures"] else ""
        lines.append(
            f"1. sustained setups: {f['setups_per_s']:,.1f}/s ({f['setups_completed']:,} of {f['setups']:,} calls "
            f"bridged in {f['setups_wall_s']:.1f} s, {f['concurrency']} in flight{fail}); CPU busy: server "
            f"{f['setups_server_cpu_util']:.0%}, emulator {f['setups_emulator_cpu_util']:.0%} of one core"
        )
    for _key, row in f.get("latency", {}).items():
        fail = f"; {_fmt_failures(row['failures'])}" if row["failures"] else ""
        over = (
            f"; OVERLOADED: offer stopped after {row['offered_s']:.1f} s, {row['backlog']} waiting"
            if row["overloaded"]
            else ""
        )
        lines.append(
            f"2. setup latency at {row['offered_per_s']:g}/s offered: emulator (connect -> bridge) p50 "
            f"{_fmt_ms(row['emulator_ms_p50'])}, p99 {_fmt_ms(row['emulator_ms_p99'])} (max "
            f"{_fmt_ms(row['emulator_ms_max'])}); server histogram (accept -> bridge sent) p50 "
            f"{_fmt_ms(row['server_ms_p50'])}, p99 {_fmt_ms(row['server_ms_p99'])}"
        )
        lines.append(
            f"   {row['calls']:,} Poisson arrivals over {row['offered_s']:.1f} s ({row['achieved_per_s']:,.0f}/s), "
            f"{row['completed']:,} bridged{fail}{over}; CPU busy: server {row['server_cpu_util']:.0%}, "
            f"emulator {row['emulator_cpu_util']:.0%}"
        )
    if "cpu_s_per_call" in f:
        per = ", ".join(
            f"{r['server_cpu_s_per_call'] * 1000:.1f} ms at {r['offered_per_s']:g}/s"
            for r in f.get("latency", {}).values()
            if not r["overloaded"]
        )
        lines.append(
            f"3. server CPU per call: {f['cpu_s_per_call'] * 1000:.1f} ms at saturation"
            + (f", {per}" if per else "")
            + f" (setup, answer, settlement, CDR; the emulator spends {f['emulator_cpu_s_per_call'] * 1000:.1f} ms)"
        )
    if "rss_idle_bytes" in f:
        lines.append(
            f"4. server RSS idle {f['rss_idle_bytes'] / mib:.1f} MiB (after the runs above; "
            f"{f['rss_started_bytes'] / mib:.1f} MiB just started)"
        )
        for n, row in f.get("live", {}).items():
            partial = " (the most reached)" if row.get("partial") else ""
            lines.append(
                f"   {int(n):>6,} live calls{partial}: {row['rss_bytes'] / mib:,.1f} MiB total, "
                f"{row['rss_per_call_bytes'] / 1024:,.1f} KiB per live call (ramp {row['ramp_s']:.0f} s)"
            )
        if f.get("live"):
            lines.append("5. heartbeats while calls are live:")
        for n, row in f.get("live", {}).items():
            lines.append(
                f"   {int(n):>6,} live calls: {row['heartbeats_per_s']:,.0f} heartbeats/s done "
                f"({row['heartbeats_due_per_s']:,.0f}/s due), DB {_fmt_ms(row['heartbeat_db_ms_mean'])} and server "
                f"CPU {_fmt_ms(row['heartbeat_cpu_ms'])} per heartbeat; server CPU busy {row['server_cpu_util']:.0%}"
            )
    for note in report.notes:
        lines.append(f"note: {note}")
    t = f.get("targets_met", {})
    if t:
        lines.append("")
        lines.append(
            "targets: "
            + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in t.items())
            + f"   (run took {f['run_s']:.0f} s)"
        )
    return "\n".join(lines)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _fmt_failures(failures: dict[str, int]) -> str:
    return "not bridged: " + ", ".join(f"{k}={v}" for k, v in sorted(failures.items()))
