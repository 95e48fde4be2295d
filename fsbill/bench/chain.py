"""`fsbill bench chain`: what a busy reseller's account row costs (issue 24, docs/RESELLERS.md).

`calls` concurrent calls (default 200) from `calls` customers, all under one top reseller
through `levels` levels (default 3: top -> reseller -> customers), placed through `nodes`
`fsbill serve` processes (default 2) sharing one PostgreSQL database; then the same load from
`calls` independent one-level accounts (`flat`), for comparison. Each call slot places
`rounds` calls in turn (closed loop: a slot's next call starts when its last one ends), each
talking `talk_s` real seconds with a heartbeat every `heartbeat_s / time_scale` real seconds,
so reserves, heartbeats and settlements of the whole subtree run at once.

Every one of them locks the chain's rows top first (fsbill.db.chain): in `chain` mode all of
them queue on the one top row; in `flat` mode each locks only its own account's row.

Figures, per mode: reserve latency p50/p95/p99 (the servers' fsbill_db_seconds{op="reserve"}
histograms summed over the nodes, interpolated inside a bucket as Prometheus does; and its
exact mean), the same for heartbeats and settlements, setup latency as the emulator saw it
(TCP connect -> `bridge`, exact per call), throughput (calls bridged per second, and
database operations per second), and the servers' CPU.

The database is made for the run and dropped after it: `--db` names a PostgreSQL server
(any database on it the user may CREATE DATABASE from); without it, one node on SQLite.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent

from fsbill.bench.calls import (
    Scrape,
    Server,
    free_port,
    histogram_quantile,
    machine,
    percentile,
    raise_nofile,
    self_cpu_s,
)
from fsbill.errors import InvalidInput

CHAIN, FLAT = "chain", "flat"
MODES = (CHAIN, FLAT)
BALANCE = "1000000000.00"  # never the limit
DESTINATION = "4930123456"
DECK = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n49,{},0,1,1,0,Germany\n"
OPS = ("reserve", "heartbeat", "settle")
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Options:
    levels: int = 3  # accounts from the top to a caller, the caller included (1-5)
    calls: int = 200  # concurrent calls, one customer each
    nodes: int = 2
    db: str | None = None  # a PostgreSQL server's URL; None: SQLite (one node)
    rounds: int = 2  # calls each slot places in turn
    talk_s: float = 12.0  # real seconds each call talks
    time_scale: float = 1.0
    heartbeat_s: int = 10  # call seconds: one heartbeat per live call every heartbeat_s / time_scale real s
    modes: tuple[str, ...] = MODES
    pool_size: int = 10  # each node's PostgreSQL connections
    keep_dir: str | None = None


def check(o: Options) -> Options:
    """Refuse options the run cannot honour, naming the one at fault."""
    if not 1 <= o.levels <= 5:
        raise InvalidInput(f"--levels must be 1-5 (a tree has at most 5 levels), got {o.levels}")
    if o.calls < 1 or o.rounds < 1 or o.nodes < 1:
        raise InvalidInput("--calls, --rounds and --nodes must be at least 1")
    if o.nodes > 1 and not (o.db or "").startswith("postgresql://"):
        raise InvalidInput("--nodes above 1 needs --db postgresql://... (nodes share one PostgreSQL database)")
    if o.calls < o.nodes:
        raise InvalidInput(f"--calls ({o.calls}) must be at least --nodes ({o.nodes})")
    if not o.modes or any(m not in MODES for m in o.modes):
        raise InvalidInput(f"modes must be among {', '.join(MODES)}, got {','.join(o.modes) or 'none'}")
    if o.talk_s <= 0 or o.time_scale <= 0:
        raise InvalidInput("--talk and --time-scale must be positive")
    return o


# -- the plan (pure) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seat:
    code: str
    parent: str | None
    tariff: str


def tree(mode: str, levels: int, customers: int) -> list[Seat]:
    """The accounts to create, parents first. `chain`: one account per level above the
    customers (L0 the top, L1 below it, ...), then the customers under the lowest of them;
    `flat`: the customers alone, each at the top of its own tree. Tariffs: `level<depth>`."""
    above = [] if mode == FLAT else [Seat(f"L{d}", f"L{d - 1}" if d else None, f"level{d}") for d in range(levels - 1)]
    parent = above[-1].code if above else None
    depth = len(above)
    return above + [Seat(f"C{i:04d}", parent, f"level{depth}") for i in range(customers)]


def price(depth: int) -> str:
    """What each level pays a minute: the top 0.10, each level below 0.10 more (exact)."""
    return f"{(depth + 1) / 10:.2f}"


def per_node(calls: int, nodes: int) -> list[int]:
    """Concurrent calls through each node: `calls` split as evenly as whole calls allow."""
    return [calls // nodes + (1 if i < calls % nodes else 0) for i in range(nodes)]


def summed(scrapes: Sequence[Scrape]) -> Scrape:
    """One scrape whose every sample is the sum over the nodes' (their counters and histogram
    buckets add up; a quantile of the sum is the quantile over all nodes' observations)."""
    out: dict[tuple[str, tuple], float] = {}
    for s in scrapes:
        for key, value in s.samples.items():
            out[key] = out.get(key, 0.0) + value
    return Scrape(out)


def op_figures(before: Scrape, after: Scrape, op: str) -> dict[str, Any]:
    """An operation's count, mean and interpolated p50/p95/p99 (ms) between two scrapes."""
    count = after.value("fsbill_db_seconds_count", op=op) - before.value("fsbill_db_seconds_count", op=op)
    total = after.value("fsbill_db_seconds_sum", op=op) - before.value("fsbill_db_seconds_sum", op=op)
    row: dict[str, Any] = {"count": int(count), "mean_ms": _ms(total / count) if count else None}
    for q in QUANTILES:
        row[f"p{round(q * 100)}_ms"] = _ms(histogram_quantile(q, before, after, "fsbill_db_seconds", op=op))
    # what lies past the last finite bucket has no upper bound: a quantile there is "> that bucket"
    rows = after.buckets("fsbill_db_seconds", op=op)
    finite = [(le, n) for le, n in rows if le != float("inf")]
    if count and finite:
        last_le, last_n = finite[-1]
        below = last_n - dict(before.buckets("fsbill_db_seconds", op=op)).get(last_le, 0.0)
        row["over_ms"] = _ms(last_le)
        row["over_share"] = round((count - below) / count, 4)
    return row


def exact_figures(values_s: Sequence[float]) -> dict[str, Any]:
    """p50/p95/p99/max (ms) of exact per-call values (nearest rank)."""
    vals = list(values_s)
    row: dict[str, Any] = {f"p{round(q * 100)}_ms": _ms(percentile(vals, q)) for q in QUANTILES}
    row["max_ms"] = _ms(max(vals)) if vals else None
    return row


def spread(values: Sequence[float | None]) -> tuple[float, float] | None:
    """The lowest and highest of several runs' figures (None: none measured)."""
    have = [v for v in values if v is not None]
    return (min(have), max(have)) if have else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# -- one run -----------------------------------------------------------------------------------------
@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Database:
    """A database made for one mode's run and dropped after it."""

    def __init__(self, o: Options, workdir: Path) -> None:
        self.server = o.db
        self.name = f"fsbill_bench_chain_{uuidlib.uuid4().hex[:10]}"
        if self.server:
            import psycopg

            with psycopg.connect(self.server, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            self.url = self.server.rsplit("/", 1)[0] + "/" + self.name
        else:
            self.url = f"sqlite:///{workdir}/{self.name}.db"

    def drop(self) -> None:
        if self.server:
            import psycopg

            with psycopg.connect(self.server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def seed(url: str, seats: Sequence[Seat], time_scale: float) -> None:
    from fsbill.clock import Clock
    from fsbill.core.money import Money
    from fsbill.db import Store, ledger
    from fsbill.db.rates import import_deck

    now = Clock(time_scale).now_us()
    store = Store(url)
    try:
        store.upgrade()
        for name in dict.fromkeys(s.tariff for s in seats):
            ledger.create_tariff(store, name, "EUR", now)
            import_deck(store, name, io.StringIO(DECK.format(price(int(name.removeprefix("level"))))))
        for s in seats:
            ledger.create_account(store, s.code, s.tariff, now, parent=s.parent)
            ledger.topup(store, s.code, Money.parse(BALANCE), now, reference="bench-seed")
    finally:
        store.close()


class ChainBench:
    def __init__(self, options: Options, progress: Callable[[str], None] | None = None) -> None:
        self.o = check(options)
        self.progress = progress or (lambda _msg: None)

    def _spec(self, code: str):
        from fsbill.sim import CallSpec

        return CallSpec(
            caller_id_number="15551230000",
            destination_number=DESTINATION,
            variables={"fsbill_account": code},
            answer_after_s=0.0,
            talk_s=self.o.talk_s * self.o.time_scale,
        )

    def _settings(self, url: str, i: int) -> dict[str, Any]:
        o = self.o
        return dict(
            database=url,
            listen="127.0.0.1:0",
            metrics_listen=f"127.0.0.1:{free_port()}",
            node=f"bench{i}",
            log_level="warning",
            time_scale=o.time_scale,
            heartbeat_s=o.heartbeat_s,
            route="loopback/{destination}",
            pool_size=o.pool_size,
            esl_max_connections=max(1000, o.calls * 4),
            shutdown_grace_s=0,
        )

    def mode(self, mode: str, workdir: Path) -> dict[str, Any]:
        from fsbill.clock import Clock
        from fsbill.sim import Switch

        o = self.o
        seats = tree(mode, o.levels, o.calls)
        customers = [s.code for s in seats if s.code.startswith("C")]
        db = _Database(o, workdir)
        servers: list[Server] = []
        switch = Switch(Clock(o.time_scale))
        try:
            self.progress(f"{mode}: seeding {len(seats)} accounts")
            seed(db.url, seats, o.time_scale)
            servers = [Server(workdir, self._settings(db.url, i), name=f"{mode}-node{i}") for i in range(o.nodes)]
            addresses = [("127.0.0.1", s.start()) for s in servers]
            self.progress(f"{mode}: warm-up, {4 * o.nodes} calls")
            warm = [gevent.spawn(switch.run_load, a, [self._spec(customers[0])] * 4, concurrency=4) for a in addresses]
            gevent.joinall(warm, raise_error=True)
            self._settled(servers, 4 * o.nodes)
            before = [s.scrape() for s in servers]
            cpu0, emu0 = [s.cpu_s() for s in servers], self_cpu_s()
            split = per_node(o.calls, o.nodes)
            loads, first = [], 0
            for address, n in zip(addresses, split, strict=True):
                mine = customers[first : first + n]
                first += n
                specs = [self._spec(mine[j % n]) for _ in range(o.rounds) for j in range(n)]
                loads.append(gevent.spawn(switch.run_load, address, specs, concurrency=n))
            self.progress(f"{mode}: {o.calls} concurrent calls x {o.rounds} rounds through {o.nodes} node(s)")
            t0 = time.perf_counter()
            gevent.joinall(loads, raise_error=True)
            wall = time.perf_counter() - t0
            records = [r for g in loads for r in (g.value or [])]
            expected = 4 * o.nodes + len(records)
            after_each = self._settled(servers, expected)
            cpu = sum(s.cpu_s() for s in servers) - sum(cpu0)
            emu = self_cpu_s() - emu0
        finally:
            for s in servers:
                s.stop()
            switch.close()
            db.drop()
        before_all, after_all = summed(before), summed(after_each)
        bridged = [r.setup_latency_s for r in records if r is not None and r.setup_latency_s is not None]
        row: dict[str, Any] = {
            "accounts": len(seats),
            "calls": len(records),
            "bridged": len(bridged),
            "not_bridged": len(records) - len(bridged),
            "wall_s": round(wall, 2),
            "calls_per_s": round(len(bridged) / wall, 1) if wall else None,
            "setup": exact_figures(bridged),
            "servers_cpu_util": round(cpu / wall, 2) if wall else None,
            "emulator_cpu_util": round(emu / wall, 2) if wall else None,
        }
        for op in OPS:
            row[op] = op_figures(before_all, after_all, op)
        row["db_ops_per_s"] = round(sum(row[op]["count"] for op in OPS) / wall, 1) if wall else None
        return row

    def _settled(self, servers: Sequence[Server], cdrs: int, timeout_s: float = 120.0) -> list[Scrape]:
        deadline = time.monotonic() + timeout_s
        while True:
            scrapes = [s.scrape() for s in servers]
            total = summed(scrapes)
            if total.total("fsbill_cdrs_written_total") >= cdrs and total.value("fsbill_live_calls") == 0:
                return scrapes
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the nodes did not settle: {total.total('fsbill_cdrs_written_total'):.0f} of {cdrs} CDRs"
                )
            gevent.sleep(0.2)

    def run(self) -> Report:
        o = self.o
        raise_nofile()
        report = Report()
        f = report.figures
        f["machine"] = machine()
        f["options"] = {
            "levels": o.levels,
            "calls": o.calls,
            "nodes": o.nodes,
            "rounds": o.rounds,
            "talk_s": o.talk_s,
            "heartbeat_every_real_s": o.heartbeat_s / o.time_scale,
            "database": "postgresql" if o.db else "sqlite",
            "pool_size": o.pool_size,
        }
        workdir = Path(o.keep_dir or tempfile.mkdtemp(prefix="fsbill-bench-chain-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            for mode in o.modes:
                f[mode] = self.mode(mode, workdir)
        finally:
            if not o.keep_dir:
                shutil.rmtree(workdir, ignore_errors=True)
        with open("/proc/loadavg") as fh:
            f["machine"]["loadavg_after"] = " ".join(fh.read().split()[:3])
        if CHAIN in f and FLAT in f:
            c, fl = f[CHAIN]["reserve"]["mean_ms"], f[FLAT]["reserve"]["mean_ms"]
            if c and fl:
                f["reserve_mean_ratio"] = round(c / fl, 2)
        return report


def run(options: Options, progress: Callable[[str], None] | None = None) -> Report:
    return ChainBench(options, progress).run()


def render(report: Report) -> str:
    f = report.figures
    m, o = f["machine"], f["options"]
    lines = [
        f"fsbill bench chain - {m['date']}: {m['nproc']} CPU ({m['cpu']}), Python {m['python']}, "
        f"load average {m['loadavg_before']} before / {m['loadavg_after']} after",
        f"{o['calls']} concurrent calls x {o['rounds']} rounds through {o['nodes']} node(s) on {o['database']} "
        f"(pool {o['pool_size']} each); each call talks {o['talk_s']:g} s with a heartbeat every "
        f"{o['heartbeat_every_real_s']:g} s",
    ]
    for mode in MODES:
        row = f.get(mode)
        if row is None:
            continue
        who = (
            f"{o['levels']} levels, every call under one top reseller"
            if mode == CHAIN
            else f"{o['calls']} independent one-level accounts"
        )
        lines.append("")
        lines.append(f"{mode} ({who}):")
        lines.append(
            f"  throughput: {_num(row['calls_per_s'])} calls/s bridged ({row['bridged']} of {row['calls']} in "
            f"{row['wall_s']:g} s), {_num(row['db_ops_per_s'])} reserve+heartbeat+settle/s; servers' CPU "
            f"{_num(row['servers_cpu_util'])} cores, emulator {_num(row['emulator_cpu_util'])}"
        )
        for op in OPS:
            r = row[op]
            p50, p95, p99 = (_quantile(r, q) for q in QUANTILES)
            lines.append(f"  {op:<9} ({r['count']:>5}): p50 {p50}, p95 {p95}, p99 {p99}, mean {_fmt(r['mean_ms'])}")
        if row["db_ops_per_s"]:
            lines.append(f"  one reserve, heartbeat or settlement every {1000 / row['db_ops_per_s']:.1f} ms on average")
        s = row["setup"]
        lines.append(
            f"  setup, connect -> bridge (emulator): p50 {_fmt(s['p50_ms'])}, p95 {_fmt(s['p95_ms'])}, "
            f"p99 {_fmt(s['p99_ms'])}, max {_fmt(s['max_ms'])}"
        )
    if "reserve_mean_ratio" in f:
        lines.append("")
        lines.append(f"reserve mean, chain / flat: {f['reserve_mean_ratio']:g}x")
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _quantile(row: dict[str, Any], q: float) -> str:
    """A quantile as read from the histogram; past its last finite bucket, a lower bound."""
    if row.get("over_share", 0.0) > 1 - q:
        return f"> {row['over_ms']:.0f} ms"
    return _fmt(row[f"p{round(q * 100)}_ms"])


def _fmt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.2f} ms"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


__all__ = [
    "CHAIN",
    "FLAT",
    "MODES",
    "Options",
    "check",
    "exact_figures",
    "op_figures",
    "per_node",
    "price",
    "render",
    "run",
    "spread",
    "summed",
    "tree",
]
