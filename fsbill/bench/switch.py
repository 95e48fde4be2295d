"""`fsbill bench switch`: what fsbill costs a real FreeSWITCH, measured with sipp.

An existing FreeSWITCH (with dialplan/fsbill_bench.xml in the context its SIP profile uses) is
driven by sipp's built-in `uac` scenario at fixed call rates: a ramp (the rate rises in equal
steps once a second), then a hold at the rate. Each rate is offered, in the same run, to the
plain-bridge extension (no billing: the switch alone), optionally to the same bridge behind the
smallest outbound-socket app (fsbill/bench/socket_app.py: the design's floor), and to the
fsbill extension (the same bridge behind `socket ... async full`, enforced by an `fsbill serve`
this command starts on a fresh SQLite database). Every call talks `--call-ms` and is hung up by
sipp.

Per mode and rate it reports: calls created / answered / failed (sipp's -trace_stat counters),
INVITE→200 p50/p95/p99/max over the calls that started during the hold (sipp's -trace_rtt file,
the scenario's response time 1: from the INVITE sent to the 200 received, in whole ms), the
switch's CPU per call (utime+stime of the FreeSWITCH process from /proc/<pid>/stat, when it is
local, minus its idle rate), fsbill's CPU per call (the same for the `fsbill serve` process), and
per mode the highest rate whose run, and every lower rate's, kept p99 ≤ `--p99-limit-ms` with no
failed call.

Everything that turns sipp's files and /proc into figures is a pure function below, unit-tested
with files from real runs (tests/test_bench_switch.py); CI has neither FreeSWITCH nor sipp.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

from fsbill.errors import FsbillError

if TYPE_CHECKING:
    from fsbill.bench.calls import Server

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MODES = ("plain", "socket", "nibblebill", "fsbill")
# destination numbers of dialplan/fsbill_bench.xml
EXTENSIONS = {
    "plain": "fsbill_bench_plain",
    "socket": "fsbill_bench_socket",
    "nibblebill": "fsbill_bench_nibble",
    "fsbill": "fsbill_bench_billed",
}
# issue 26's targets, on this machine kind (2 cores shared by the switch, sipp and the app)
TARGET_P99_MS = 100.0
TARGET_APP_CPU_MS = 2.0  # fsbill's own CPU per call ...
TARGET_APP_CPU_RATES = (20.0, 40.0)  # ... at these rates
TARGET_CLEAN_RATE = 60.0  # fsbill clean at this rate
TARGET_SOCKET_RATIO = 1.1  # the switch's CPU per call with fsbill / with the smallest socket app
# mod_nibblebill's accounts, as the dialplan's fsbill_bench_nibble extension names them
NIBBLEBILL_ACCOUNT = "bench"
NIBBLEBILL_BALANCE = 1_000_000_000


class BenchError(FsbillError):
    """The benchmark cannot run (no sipp, no switch, a port taken): one line for the operator."""


@dataclass
class Options:
    rates: tuple[float, ...] = (20.0, 100.0, 150.0)
    modes: tuple[str, ...] = ("plain", "fsbill")
    ramp_s: int = 5  # seconds of ramp before the hold (the rate rises once a second)
    hold_s: float = 10.0  # seconds at the full rate; latencies are taken from these calls
    call_ms: int = 500  # how long each call talks before sipp hangs up
    target: str = "127.0.0.1:5060"  # the switch's SIP profile
    switch_pid: int | None = None  # FreeSWITCH's pid (default: the local process named freeswitch)
    switch_esl: str = "127.0.0.1:8021"  # the switch's inbound event socket ('' : not used)
    switch_password: str = "ClueCon"
    fsbill_listen: str = "127.0.0.1:18084"  # where the dialplan's `socket` connects
    fsbill_pid: int | None = None  # use an fsbill already listening there instead of starting one
    fsbill_workers: int = 1  # `workers` of the started fsbill (its CPU is the supervisor's and its workers')
    fsbill_like_switch: bool = False  # give fsbill (and the socket app) the switch's CPU scheduling class
    socket_app_listen: str = "127.0.0.1:18085"  # the minimal socket app (mode `socket`)
    socket_dial_string: str = "loopback/fsbill_bench_echo/{context}"  # socket_app fills in the context
    sqlite_synchronous: str = "full"
    fsbill_database: str = ""  # a postgresql:// server to create a fresh database on; default a fresh SQLite file
    log_level: str = "info"
    sipp: str = "sipp"
    p99_limit_ms: float = TARGET_P99_MS
    recv_timeout_ms: int = 10_000  # a call waiting longer than this for a reply counts as failed
    warmup: int = 40  # calls per mode at 10 cps before anything is measured (imports, caches)
    quiet_timeout_s: float = 30.0  # how long to wait for the switch to go idle between runs
    keep_dir: str | None = None
    nibblebill_db: str = "/tmp/fsbill-bench-nibblebill.db"  # mod_nibblebill's accounts (its odbc-dsn sqlite://PATH)


# -- pure parts (unit-tested) ---------------------------------------------------------------------
def parse_stat_csv(text: str) -> dict[str, str]:
    """The last row of a sipp -trace_stat file, by column name (sipp writes cumulative `(C)`
    counters, so the last row is the run's total)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise BenchError("sipp's statistics file has no data row")
    names = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(names, values, strict=False))


def stat_counts(row: dict[str, str]) -> dict[str, int]:
    """Calls created, answered (sipp's successful calls: 200 received and the scenario run to
    the end), failed, and still open when sipp stopped."""

    def count(name: str) -> int:
        value = row.get(name, "0").strip()
        try:
            return int(float(value))
        except ValueError:
            raise BenchError(f"sipp statistics: bad {name} {value[:20]!r}") from None

    return {
        "created": count("TotalCallCreated"),
        "answered": count("SuccessfulCall(C)"),
        "failed": count("FailedCall(C)"),
        "open": count("CurrentCall"),
        "retransmissions": count("Retransmissions(C)"),
    }


def parse_rtt_csv(text: str) -> list[tuple[float, float]]:
    """sipp -trace_rtt lines `Date_ms;response_time_ms;rtd_no` (Date_ms: ms since sipp started,
    when the response time stopped): (start_ms, rtt_ms) per call for response time 1."""
    samples: list[tuple[float, float]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("Date_ms"):
            continue
        parts = line.split(";")
        if len(parts) < 3:
            raise BenchError(f"sipp rtt file line {number}: expected 3 fields, got {line[:60]!r}")
        try:
            date_ms, rtt_ms = float(parts[0]), float(parts[1])
        except ValueError:
            raise BenchError(f"sipp rtt file line {number}: not numbers: {line[:60]!r}") from None
        if parts[2].strip() not in ("1", "true"):
            continue
        samples.append((date_ms - rtt_ms, rtt_ms))
    return samples


def channel_count(reply: str) -> int:
    """The figure of `show channels count` ("\n12 total.\n")."""
    for line in reply.splitlines():
        words = line.split()
        if len(words) == 2 and words[1] == "total." and words[0].isdigit():
            return int(words[0])
    raise BenchError(f"unexpected reply to 'show channels count': {reply.strip()[:60]!r}")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the value below which q of the samples fall)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_figures(samples: Iterable[tuple[float, float]], from_ms: float) -> dict[str, Any]:
    """INVITE→200 quantiles of the calls that started at or after `from_ms` (the hold)."""
    held = [rtt for start, rtt in samples if start >= from_ms]
    return {
        "samples": len(held),
        "p50_ms": percentile(held, 0.50),
        "p95_ms": percentile(held, 0.95),
        "p99_ms": percentile(held, 0.99),
        "max_ms": max(held) if held else None,
    }


@dataclass(frozen=True)
class Ramp:
    """sipp's `-r start -rate_increase step -rate_interval 1 -rate_max rate -no_rate_quit`:
    `start` calls/s for the first second, `step` more every second until `rate`, then held."""

    rate: float
    start: float
    step: float
    ramp_s: int  # seconds until the rate is reached
    hold_s: float

    @property
    def ramp_calls(self) -> int:
        return round(sum(min(self.rate, self.start + k * self.step) for k in range(self.ramp_s)))

    @property
    def hold_calls(self) -> int:
        return round(self.rate * self.hold_s)

    @property
    def calls(self) -> int:
        return self.ramp_calls + self.hold_calls

    @property
    def hold_from_ms(self) -> float:
        return self.ramp_s * 1000.0


def ramp_plan(rate: float, ramp_s: int, hold_s: float) -> Ramp:
    """`ramp_s` equal whole steps up to `rate` (sipp's -rate_increase takes an integer):
    step = rate // (ramp_s + 1), the first second at rate - ramp_s * step. A rate too low to
    ramp in whole steps (or ramp_s 0) starts at the full rate."""
    if rate <= 0 or hold_s <= 0 or ramp_s < 0:
        raise BenchError("rate and hold must be > 0, ramp >= 0")
    step = float(int(rate // (ramp_s + 1))) if ramp_s else 0.0
    if step < 1:
        return Ramp(rate, rate, 0.0, 0, hold_s)
    return Ramp(rate, rate - ramp_s * step, step, ramp_s, hold_s)


def sipp_command(
    sipp: str,
    target: str,
    extension: str,
    plan: Ramp,
    *,
    call_ms: int,
    local_ip: str,
    local_port: int,
    media_port: int,
    stat_file: str,
    recv_timeout_ms: int,
) -> list[str]:
    """sipp's built-in uac (INVITE, ACK, pause `call_ms`, BYE) at the planned rates, writing its
    statistics (-trace_stat, every second) and every call's INVITE→200 (-trace_rtt)."""
    command = [sipp, target, "-sn", "uac", "-s", extension]
    command += ["-i", local_ip, "-p", str(local_port), "-mp", str(media_port)]
    command += ["-r", f"{plan.start:g}", "-rp", "1000"]
    if plan.step > 0:
        command += ["-rate_increase", f"{plan.step:g}", "-rate_interval", "1", "-rate_max", f"{plan.rate:g}"]
        command += ["-no_rate_quit"]
    command += ["-d", str(call_ms), "-m", str(plan.calls)]
    # enough room for a switch that falls 30 s behind: the collapse shows instead of being throttled
    command += ["-l", str(max(100, int(plan.rate * 30)))]
    command += ["-recv_timeout", str(recv_timeout_ms), "-timeout", f"{int(plan.ramp_s + plan.hold_s + 60)}s"]
    command += ["-trace_stat", "-stf", stat_file, "-fd", "1", "-trace_rtt", "-rtt_freq", "1"]
    command += ["-nostdin", "-trace_err"]
    return command


def cpu_per_call_ms(cpu_s: float, idle_util: float, wall_s: float, calls: int) -> float | None:
    """CPU seconds over a run, less the process's idle rate over the same wall time, per call."""
    if calls <= 0:
        return None
    return round(max(0.0, cpu_s - idle_util * wall_s) / calls * 1000, 2)


def parse_proc_stat(text: str) -> float:
    """utime + stime (fields 14 and 15 of proc_pid_stat(5)) in seconds; the command name in
    parentheses may itself contain spaces or parentheses, so split after the last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def is_clean(run: dict[str, Any], p99_limit_ms: float) -> bool:
    p99 = run["latency"]["p99_ms"]
    c = run["calls"]
    return (
        c["failed"] == 0
        and c["open"] == 0
        and c["answered"] == c["created"]
        and not run.get("channels_left")
        and p99 is not None
        and p99 <= p99_limit_ms
    )


def highest_clean_rate(runs: list[dict[str, Any]], mode: str, p99_limit_ms: float) -> float | None:
    """The highest rate such that it and every lower rate tried in `mode` ran clean."""
    best = None
    for run in sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["rate"]):
        if not is_clean(run, p99_limit_ms):
            break
        best = run["rate"]
    return best


def verdicts(runs: list[dict[str, Any]], clean: dict[str, float | None], p99_limit_ms: float) -> dict[str, bool | None]:
    """Issue 26's targets; None when the run did not include what a target needs.

    - fsbill's own CPU per call <= TARGET_APP_CPU_MS at each of TARGET_APP_CPU_RATES tried;
    - fsbill clean at TARGET_CLEAN_RATE;
    - fsbill's highest clean rate >= mod_nibblebill's in the same run;
    - the switch's CPU per call with fsbill <= TARGET_SOCKET_RATIO x with the smallest socket
      app: the median of the ratios at the rates where the socket app ran clean (a switch that
      collapses spends its CPU on calls that fail, whatever the mode). The issue judges it as
      the median of three interleaved runs: single runs vary by about 20 %.
    """
    by = {(r["mode"], r["rate"]): r for r in runs}
    out: dict[str, bool | None] = {}
    cpu = [
        by[("fsbill", rate)].get("fsbill_cpu_ms_per_call") for rate in TARGET_APP_CPU_RATES if ("fsbill", rate) in by
    ]
    known = [c for c in cpu if c is not None]
    out[f"fsbill_cpu<={TARGET_APP_CPU_MS:g}ms@20,40cps"] = all(c <= TARGET_APP_CPU_MS for c in known) if known else None
    fs = by.get(("fsbill", TARGET_CLEAN_RATE))
    out[f"fsbill_clean@{TARGET_CLEAN_RATE:g}cps"] = None if fs is None else is_clean(fs, p99_limit_ms)
    if "nibblebill" not in clean or "fsbill" not in clean:
        out["clean_rate>=nibblebill"] = None
    else:
        n, f = clean["nibblebill"], clean["fsbill"]
        out["clean_rate>=nibblebill"] = n is None or (f is not None and f >= n)
    ratio = median_socket_ratio(runs, p99_limit_ms)
    out[f"switch_cpu<={TARGET_SOCKET_RATIO:g}x_socket"] = None if ratio is None else ratio <= TARGET_SOCKET_RATIO
    return out


def switch_cpu_ratio(runs: list[dict[str, Any]], rate: float, base: str = "socket") -> float | None:
    """The switch's CPU per call with fsbill over that with `base` (socket, plain) at `rate`."""
    by = {(r["mode"], r["rate"]): r for r in runs}
    fs, other = by.get(("fsbill", rate)), by.get((base, rate))
    if fs is None or other is None:
        return None
    a, b = fs.get("switch_cpu_ms_per_call"), other.get("switch_cpu_ms_per_call")
    return round(a / b, 2) if a is not None and b else None


def median_socket_ratio(runs: list[dict[str, Any]], p99_limit_ms: float) -> float | None:
    """The median of fsbill/socket switch-CPU ratios over the rates where the socket app ran clean."""
    ratios = []
    for run in runs:
        if run["mode"] == "socket" and is_clean(run, p99_limit_ms):
            ratio = switch_cpu_ratio(runs, run["rate"])
            if ratio is not None:
                ratios.append(ratio)
    if not ratios:
        return None
    ordered = sorted(ratios)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else round((ordered[middle - 1] + ordered[middle]) / 2, 3)


def nibblebill_conf(db_path: str) -> str:
    """The nibblebill.conf.xml the `nibblebill` mode needs (autoload_configs/ of the switch).

    mod_nibblebill 1.10.12 opens its `odbc-dsn` with switch_cache_db_get_db_handle_dsn, which
    takes `sqlite://PATH` as FreeSWITCH's own SQLite (switch_core_sqldb.c; an absolute path is
    used as it is): no ODBC driver needed. Balance checks are set out of reach (the benchmark
    measures billing, not cut-offs; its stock lowbal_action "play ding" is no application)."""
    return f"""<configuration name="nibblebill.conf" description="Nibble Billing (fsbill bench switch)">
  <settings>
    <param name="odbc-dsn" value="sqlite://{db_path}"/>
    <param name="db_table" value="accounts"/>
    <param name="db_column_cash" value="cash"/>
    <param name="db_column_account" value="id"/>
    <param name="global_heartbeat" value="1"/>
    <param name="lowbal_amt" value="-{NIBBLEBILL_BALANCE}"/>
    <param name="lowbal_action" value="hangup"/>
    <param name="nobal_amt" value="-{NIBBLEBILL_BALANCE}"/>
    <param name="nobal_action" value="hangup"/>
    <param name="percall_max_amt" value="{NIBBLEBILL_BALANCE}"/>
    <param name="percall_action" value="hangup"/>
  </settings>
</configuration>
"""


NIBBLEBILL_TABLE = (
    "CREATE TABLE IF NOT EXISTS accounts (id VARCHAR(255) PRIMARY KEY, cash DOUBLE PRECISION NOT NULL)",
    f"INSERT OR REPLACE INTO accounts (id, cash) VALUES ('{NIBBLEBILL_ACCOUNT}', {NIBBLEBILL_BALANCE})",
)


def nibblebill_accounts(db_path: str) -> float:
    """Create (or refill) mod_nibblebill's accounts table; returns the balance it starts with."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(db_path)) as db, db:
            for statement in NIBBLEBILL_TABLE:
                db.execute(statement)
    except sqlite3.Error as exc:
        raise BenchError(f"--nibblebill-db {db_path}: cannot write mod_nibblebill's accounts: {exc}") from None
    return float(NIBBLEBILL_BALANCE)


def nibblebill_balance(db_path: str) -> float | None:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            row = db.execute("SELECT cash FROM accounts WHERE id = ?", (NIBBLEBILL_ACCOUNT,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else float(row[0])


def render(figures: dict[str, Any]) -> str:
    """The human-readable report: one line per run, then the highest clean rates and targets."""
    lines = [
        f"switch {figures['target']} (pid {figures.get('switch_pid') or 'not local'},"
        f" {figures.get('switch_sched', '?')}), fsbill pid {figures.get('fsbill_pid') or '-'}"
        f" ({figures.get('fsbill_sched', '?')}); calls of {figures['call_ms']} ms; ramp {figures['ramp_s']} s,"
        f" hold {figures['hold_s']:g} s; load average {figures['machine']['loadavg_before']} before,"
        f" {figures['machine'].get('loadavg_after', '?')} after",
        f"{'rate':>6} {'mode':<7} {'created':>7} {'answered':>8} {'failed':>6} {'left':>5}   INVITE->200 ms (hold)"
        f"{'':12} switch CPU/call  app CPU/call",
        f"{'':>6} {'':<7} {'':>7} {'':>8} {'':>6} {'':>5}   {'p50':>6} {'p95':>6} {'p99':>6} {'max':>7}",
    ]
    for run in figures["runs"]:
        c, lat = run["calls"], run["latency"]
        lines.append(
            f"{run['rate']:>6g} {run['mode']:<7} {c['created']:>7} {c['answered']:>8} {c['failed']:>6} {run.get('channels_left', 0):>5}   "
            f"{_ms(lat['p50_ms']):>6} {_ms(lat['p95_ms']):>6} {_ms(lat['p99_ms']):>6} {_ms(lat['max_ms']):>7}"
            f"   {_cpu_ms(run.get('switch_cpu_ms_per_call')):>10} ms  {_cpu_ms(_app_cpu(run)):>10} ms"
        )
    for mode, rate in figures["highest_clean_rate"].items():
        lines.append(
            f"highest clean rate ({mode}): {'none' if rate is None else f'{rate:g} cps'}"
            f"  (p99 <= {figures['p99_limit_ms']:g} ms, no failed call)"
        )
    for rate, ratio in figures.get("switch_cpu_ratio", {}).items():
        lines.append(f"switch CPU per call, fsbill / socket app at {rate} cps: {'-' if ratio is None else f'{ratio}x'}")
    if figures.get("nibblebill_debited") is not None:
        lines.append(f"mod_nibblebill debited {figures['nibblebill_debited']:g} from account bench (it billed)")
    met = ", ".join(f"{k}: {'-' if v is None else 'met' if v else 'MISSED'}" for k, v in figures["targets"].items())
    lines.append(f"targets: {met}")
    return "\n".join(lines)


def _app_cpu(run: dict[str, Any]) -> float | None:
    value = run.get("fsbill_cpu_ms_per_call")
    return value if value is not None else run.get("app_cpu_ms_per_call")


def _ms(value: float | None) -> str:
    """Whole milliseconds, as sipp measures them (its -trace_rtt file can say 811.999)."""
    return "-" if value is None else f"{value:.0f}"


def _cpu_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


# -- the live parts ---------------------------------------------------------------------------------
def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        return parse_proc_stat(fh.read())


def fresh_postgresql(url: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database on the PostgreSQL server `url` reaches (through its database), and
    how to drop it again: every run starts from the same seeded books."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"fsbill_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(f"--fsbill-database: cannot create a database on {url}: {exc}") from None

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}")), drop


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def tree_cpu_s(pid: int) -> float:
    """A process's CPU and that of its children alive now (fsbill's workers, fsbill.workers)."""
    total = proc_cpu_s(pid)
    for child in children_of(pid):
        try:
            total += proc_cpu_s(child)
        except OSError:
            pass  # it ended between the two reads
    return total


def worker_metrics_url(url: str, index: int) -> str:
    """Worker `index`'s /metrics: the metrics port + index (fsbill.workers.worker_settings)."""
    head, _, rest = url.rpartition(":")
    port, _, path = rest.partition("/")
    return f"{head}:{int(port) + index}/{path}"


def scrape_worker(url: str, index: int) -> float:
    from fsbill.bench.calls import Scrape

    with urlopen(worker_metrics_url(url, index), timeout=30) as response:
        return Scrape.parse(response.read().decode("utf-8")).value("fsbill_live_calls")


def find_switch_pid() -> int | None:
    """The one local process named `freeswitch`, if there is exactly one."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    if fh.read().strip() == "freeswitch":
                        found.append(int(entry))
            except OSError:
                continue
    return found[0] if len(found) == 1 else None


class SwitchConsole:
    """The switch's inbound event socket, for two things between runs: how many channels are
    still up, and hanging up what a collapsed run left behind (an outbound-socket channel
    whose socket fsbill closed before `connect` was answered stays parked in the socket app:
    mod_event_socket.c never hangs it up)."""

    def __init__(self, address: str, password: str, timeout_s: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        try:
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot reach the switch's event socket at {address}: {exc}") from None
        self.file = self.sock.makefile("rb")
        self._read()  # auth/request
        self.sock.sendall(f"auth {password}\n\n".encode())
        headers, _ = self._read()
        if not headers.get("Reply-Text", "").startswith("+OK"):
            self.close()
            raise BenchError(f"the switch's event socket at {address} refused the password")

    def _read(self) -> tuple[dict[str, str], str]:
        headers: dict[str, str] = {}
        while True:
            raw = self.file.readline()
            if not raw:
                raise BenchError("the switch's event socket closed")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if headers:
                    break
                continue
            name, _, value = line.partition(": ")
            headers[name] = value
        length = int(headers.get("Content-Length", "0") or 0)
        body = self.file.read(length).decode("utf-8", "replace") if length else ""
        return headers, body

    def api(self, command: str) -> str:
        self.sock.sendall(f"api {command}\n\n".encode())
        while True:
            headers, body = self._read()
            if headers.get("Content-Type") == "api/response":
                return body

    def channels(self) -> int:
        return channel_count(self.api("show channels count"))

    def hangup_all(self) -> None:
        self.api("hupall NORMAL_CLEARING")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


_POLICIES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE"}


def sched_of(pid: int) -> tuple[int, int]:
    """(policy, realtime priority) of a process (os.sched_getscheduler / sched_getparam)."""
    return os.sched_getscheduler(pid), os.sched_getparam(pid).sched_priority


def sched_name(policy: int, priority: int) -> str:
    name = _POLICIES.get(policy, str(policy))
    return f"{name} {priority}" if policy in (1, 2) else name


def set_sched(pid: int, policy: int, priority: int) -> None:
    """Every thread of `pid` to (policy, priority): FreeSWITCH runs realtime by default
    (switch_core.c set_auto_priority -> SCHED_FIFO; its packaged systemd unit: RR 89), so a
    normal-priority fsbill gets the CPU only when the switch leaves it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setscheduler(int(tid), policy, os.sched_param(priority))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_local(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class SwitchBench:
    def __init__(self, options: Options, progress: Callable[[str], None] | None = None) -> None:
        self.o = options
        self.progress = progress or (lambda _msg: None)
        self.server: Server | None = None
        self.fsbill_pid: int | None = options.fsbill_pid
        self.switch_pid: int | None = None
        self.switch_idle = 0.0
        self.fsbill_idle = 0.0
        self.console: SwitchConsole | None = None
        self.socket_app: subprocess.Popen | None = None
        self.drop_database: Callable[[], None] | None = None

    def _util(self, pid: int | None, window_s: float = 1.0) -> float:
        if pid is None:
            return 0.0
        a = tree_cpu_s(pid)
        time.sleep(window_s)
        return (tree_cpu_s(pid) - a) / window_s

    def _cpu(self, pid: int | None) -> float:
        return tree_cpu_s(pid) if pid is not None else 0.0

    def wait_quiet(self) -> int:
        """Until the switch has no channel and is back to its idle CPU rate, and fsbill has no
        live call. Returns how many channels were still up at the timeout (then hung up)."""
        deadline = time.monotonic() + self.o.quiet_timeout_s
        channels = 0
        while time.monotonic() < deadline:
            live = 0.0
            if self.server is not None:
                live = sum(scrape_worker(self.server.metrics_url, i) for i in range(self.o.fsbill_workers))
            channels = self.console.channels() if self.console is not None else 0
            util = self._util(self.switch_pid, 0.5)
            if live == 0 and channels == 0 and util <= self.switch_idle + 0.03:
                return 0
        if channels and self.console is not None:
            self.progress(f"{channels} channels still up on the switch after {self.o.quiet_timeout_s:g} s: hanging up")
            self.console.hangup_all()
            time.sleep(2)
        else:
            self.progress("the switch did not go quiet; measuring anyway")
        return channels

    def start_fsbill(self, workdir: Path) -> None:
        from fsbill.bench.calls import Server, free_port, seed_database

        if self.o.fsbill_database:
            url, self.drop_database = fresh_postgresql(self.o.fsbill_database)
        else:
            db = workdir / "bench.db"
            for stale in workdir.glob("bench.db*"):  # a kept --workdir from an earlier run: start afresh
                stale.unlink()
            url = f"sqlite:///{db}"
        seed_database(url, 1.0)
        server = Server(
            workdir,
            dict(
                database=url,
                listen=self.o.fsbill_listen,
                metrics_listen=f"127.0.0.1:{free_port()}",
                node="bench-switch",
                log_level=self.o.log_level,
                sqlite_synchronous=self.o.sqlite_synchronous,
                shutdown_grace_s=0,
                workers=self.o.fsbill_workers,
            ),
        )
        self.server = server
        try:
            server.start()
        except RuntimeError as exc:
            raise BenchError(f"fsbill serve did not start on {self.o.fsbill_listen}: {exc}") from None
        self.fsbill_pid = server.pid
        if self.o.fsbill_workers > 1:  # the supervisor's banner comes first: wait for every worker's metrics
            deadline = time.monotonic() + 60
            for index in range(self.o.fsbill_workers):
                while True:
                    try:
                        scrape_worker(server.metrics_url, index)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise BenchError(f"fsbill worker {index} did not start: see serve.log") from None
                        time.sleep(0.1)

    def start_socket_app(self, workdir: Path) -> None:
        import sys

        log = open(workdir / "socket_app.log", "wb")
        self.socket_app = subprocess.Popen(
            [sys.executable, "-m", "fsbill.bench.socket_app", self.o.socket_app_listen, self.o.socket_dial_string],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while b"serving" not in (workdir / "socket_app.log").read_bytes():
            if self.socket_app.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the socket app did not start on {self.o.socket_app_listen}: see socket_app.log")
            time.sleep(0.05)

    def one(self, workdir: Path, mode: str, rate: float, plan: Ramp | None = None) -> dict[str, Any]:
        o = self.o
        plan = plan or ramp_plan(rate, o.ramp_s, o.hold_s)
        rundir = workdir / f"{mode}-{rate:g}"
        rundir.mkdir(parents=True, exist_ok=True)
        stat_file = rundir / "stat.csv"
        command = sipp_command(
            o.sipp,
            o.target,
            EXTENSIONS[mode],
            plan,
            call_ms=o.call_ms,
            local_ip="127.0.0.1",
            local_port=_free_udp_port(),
            media_port=_free_udp_port(),
            stat_file=str(stat_file),
            recv_timeout_ms=o.recv_timeout_ms,
        )
        self.wait_quiet()
        self.progress(f"{mode} at {rate:g} cps: {plan.calls} calls ({plan.ramp_s} s ramp, {plan.hold_s:g} s hold)")
        app = self.socket_app.pid if self.socket_app is not None else None
        sw0, fb0, ap0, t0 = self._cpu(self.switch_pid), self._cpu(self.fsbill_pid), self._cpu(app), time.monotonic()
        with open(rundir / "sipp.out", "wb") as out:
            proc = subprocess.run(command, cwd=rundir, stdout=out, stderr=subprocess.STDOUT, check=False)
        left = self.wait_quiet()
        wall = time.monotonic() - t0
        sw1, fb1, ap1 = self._cpu(self.switch_pid), self._cpu(self.fsbill_pid), self._cpu(app)
        if not stat_file.exists():
            raise BenchError(f"sipp wrote no statistics (exit {proc.returncode}): see {rundir / 'sipp.out'}")
        counts = stat_counts(parse_stat_csv(stat_file.read_text()))
        rtt_files = sorted(rundir.glob("*_rtt.csv"))
        samples = parse_rtt_csv(rtt_files[-1].read_text()) if rtt_files else []
        run: dict[str, Any] = {
            "mode": mode,
            "rate": rate,
            "calls": counts,
            "latency": latency_figures(samples, plan.hold_from_ms),
            "sipp_exit": proc.returncode,
            "channels_left": left,
            "wall_s": round(wall, 1),
            "switch_cpu_ms_per_call": None,
            "fsbill_cpu_ms_per_call": None,
        }
        if self.switch_pid is not None:
            run["switch_cpu_ms_per_call"] = cpu_per_call_ms(sw1 - sw0, self.switch_idle, wall, counts["created"])
        if self.fsbill_pid is not None and mode == "fsbill":
            run["fsbill_cpu_ms_per_call"] = cpu_per_call_ms(fb1 - fb0, self.fsbill_idle, wall, counts["created"])
        if self.socket_app is not None and mode == "socket":
            run["app_cpu_ms_per_call"] = cpu_per_call_ms(ap1 - ap0, 0.0, wall, counts["created"])
        return run

    def run(self) -> dict[str, Any]:
        from fsbill.bench.calls import machine

        o = self.o
        if o.fsbill_database and not o.fsbill_database.startswith("postgresql://"):
            raise BenchError("--fsbill-database: give a postgresql:// URL (the default is a fresh SQLite file)")
        if shutil.which(o.sipp) is None:
            raise BenchError(f"sipp not found ({o.sipp!r}): install sip-tester or pass --sipp PATH")
        host = o.target.rsplit(":", 1)[0].strip("[]")
        self.switch_pid = o.switch_pid or (find_switch_pid() if _is_local(host) else None)
        figures: dict[str, Any] = {
            "machine": machine(),
            "target": o.target,
            "switch_pid": self.switch_pid,
            "call_ms": o.call_ms,
            "ramp_s": o.ramp_s,
            "hold_s": o.hold_s,
            "p99_limit_ms": o.p99_limit_ms,
            "runs": [],
        }
        workdir = Path(o.keep_dir or tempfile.mkdtemp(prefix="fsbill-bench-switch-"))
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            if o.switch_esl:
                self.console = SwitchConsole(o.switch_esl, o.switch_password)
                figures["switch_channels_at_start"] = self.console.channels()
            if "nibblebill" in o.modes:
                if self.console is not None and self.console.api("module_exists mod_nibblebill").strip() != "true":
                    raise BenchError(
                        "mode nibblebill: the switch has no mod_nibblebill loaded; load it with the "
                        "configuration `fsbill bench switch --print-nibblebill-conf` prints"
                    )
                figures["nibblebill_start"] = nibblebill_accounts(o.nibblebill_db)
            if "fsbill" in o.modes and self.fsbill_pid is None:
                self.start_fsbill(workdir)
            figures["fsbill_pid"] = self.fsbill_pid
            if "socket" in o.modes:
                self.start_socket_app(workdir)
            if o.fsbill_like_switch and self.switch_pid is not None:
                policy, priority = sched_of(self.switch_pid)
                pids = [self.fsbill_pid, self.socket_app.pid if self.socket_app else None]
                if self.fsbill_pid is not None:
                    pids += children_of(self.fsbill_pid)  # fsbill's workers, when it has them
                for pid in pids:
                    if pid is not None:
                        set_sched(pid, policy, priority)
            for name, pid in (("switch", self.switch_pid), ("fsbill", self.fsbill_pid)):
                if pid is not None:
                    figures[f"{name}_sched"] = sched_name(*sched_of(pid))
            self.switch_idle = self._util(self.switch_pid)
            self.fsbill_idle = self._util(self.fsbill_pid)
            figures["switch_idle_util"] = round(self.switch_idle, 4)
            if o.warmup:
                for mode in o.modes:
                    self.progress(f"warm-up: {o.warmup} calls ({mode})")
                    self.one(workdir / "warmup", mode, 10.0, Ramp(10.0, 10.0, 0.0, 0, o.warmup / 10.0))
            for rate in o.rates:
                for mode in o.modes:
                    figures["runs"].append(self.one(workdir, mode, rate))
        finally:
            if self.socket_app is not None:
                self.socket_app.kill()
                self.socket_app.wait(timeout=10)
            if self.server is not None:
                self.server.stop()
            if self.drop_database is not None:
                self.drop_database()
            if self.console is not None:
                self.console.close()
            if not o.keep_dir:
                shutil.rmtree(workdir, ignore_errors=True)
        runs = figures["runs"]
        figures["highest_clean_rate"] = {m: highest_clean_rate(runs, m, o.p99_limit_ms) for m in o.modes}
        if "socket" in o.modes and "fsbill" in o.modes:
            figures["switch_cpu_ratio"] = {f"{r:g}": switch_cpu_ratio(runs, r) for r in o.rates}
        if "nibblebill_start" in figures:
            left = nibblebill_balance(o.nibblebill_db)
            figures["nibblebill_debited"] = None if left is None else round(figures["nibblebill_start"] - left, 6)
        figures["targets"] = verdicts(runs, figures["highest_clean_rate"], o.p99_limit_ms)
        figures["run_s"] = round(time.monotonic() - started, 1)
        figures["machine"]["loadavg_after"] = machine()["loadavg_before"]
        return figures


def run(options: Options, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    return SwitchBench(options, progress).run()
