"""`fsbill bench <name>`: the benchmarks of fsbill.bench, one sub-command each.

To add one, write `_add_<name>(sub, parent)` that registers its parser and a function, and
list it in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fsbill.cli.common import emit, positive_int


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    bench = subparsers.add_parser("bench", help="measure fsbill on this machine")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", parser_class=type(bench))
    sub.required = True
    for add in BENCHMARKS:
        add(sub, parent)


def _say(text: str) -> None:
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


# -- rating ---------------------------------------------------------------------------------------
def _add_rating(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    rating = sub.add_parser(
        "rating",
        parents=[parent],
        help="rate deck import, lookup latency and rating decisions/s on a synthetic deck",
    )
    rating.add_argument("--prefixes", type=positive_int, default=1_000_000, help="deck size (default 1,000,000)")
    rating.add_argument("--lookups", type=positive_int, default=100_000, help="lookups to time (default 100,000)")
    rating.add_argument("--workdir", help="directory for the CSV and SQLite files (default: a temporary one)")
    rating.set_defaults(func=_rating)


def _rating(args: argparse.Namespace) -> int:
    from fsbill.bench.rating import run_rating_bench

    figures = run_rating_bench(args.prefixes, args.lookups, args.workdir, say=_say)
    emit(args, figures, lambda: _rating_text(figures))
    return 0


def _rating_text(f: dict) -> str:
    return "\n".join(
        [
            f"deck: {f['prefixes']:,} prefixes, {f['rows']:,} rows (synthetic CSV written in {f['deck_write_s']} s)",
            f"import (SQLite): {f['import_s']} s  [parse {f['import_parse_s']} s, store {f['import_store_s']} s]"
            f"  {f['import_rows_per_s']:,} rows/s   target <= 30 s",
            f"load into memory: {f['load_s']} s, ~{f['deck_rss_mb']} MB",
            f"lookup ({f['lookups']:,}, {f['lookups_matched']:,} matched): median {f['lookup_median_us']} us,"
            f" p99 {f['lookup_p99_us']} us, max {f['lookup_max_us']} us   target p99 <= 50 us",
            f"decisions (lookup + cost + max_seconds): {f['decisions_per_s']:,}/s   target >= 50,000/s",
        ]
    )


# -- calls ----------------------------------------------------------------------------------------
def _add_calls(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    calls = sub.add_parser(
        "calls",
        parents=[parent],
        help="call setups/s, setup latency, CPU per call, RSS per live call and heartbeat cost of `fsbill serve`",
        description="Start `fsbill serve` on a fresh SQLite database as a subprocess and drive it with the "
        "FreeSWITCH emulator over loopback (see docs/BENCHMARKS.md).",
    )
    calls.add_argument(
        "--setups",
        type=positive_int,
        default=1000,
        metavar="N",
        help="calls for the sustained setups/s figure (default 1000)",
    )
    calls.add_argument(
        "--concurrency", type=positive_int, default=100, metavar="C", help="calls in flight for it (default 100)"
    )
    calls.add_argument(
        "--rate",
        type=_positive_float,
        default=500.0,
        metavar="CPS",
        help="offered setups/s for the latency figure (default 500)",
    )
    calls.add_argument(
        "--duration", type=_positive_float, default=10.0, metavar="S", help="seconds that load is offered (default 10)"
    )
    calls.add_argument(
        "--live",
        type=_counts,
        default=(1000, 10000),
        metavar="N,N",
        help="live-call levels for RSS and heartbeat cost (default 1000,10000; '' skips)",
    )
    calls.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="call time runs X times faster than real time (default 1)",
    )
    calls.add_argument(
        "--heartbeat",
        type=positive_int,
        default=10,
        metavar="S",
        help="the server's heartbeat_s, in call seconds (default 10)",
    )
    calls.add_argument(
        "--ramp-timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="give up on a live-call level after S seconds of ramping (default 60)",
    )
    calls.add_argument(
        "--sqlite-synchronous",
        choices=("off", "normal", "full", "extra"),
        default="full",
        help="the server's sqlite_synchronous (default full, as in production)",
    )
    calls.add_argument("--workdir", help="keep the database and the server log here (default: a temporary directory)")
    calls.set_defaults(func=_calls)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _counts(text: str) -> tuple[int, ...]:
    parts = [p.strip().replace("_", "") for p in text.split(",") if p.strip()]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers separated by commas, got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def _calls(args: argparse.Namespace) -> int:
    from fsbill.bench.calls import Options, render, run

    options = Options(
        setups=args.setups,
        concurrency=args.concurrency,
        rate=args.rate,
        latency_s=args.duration,
        live=args.live,
        time_scale=args.time_scale,
        heartbeat_s=args.heartbeat,
        ramp_timeout_s=args.ramp_timeout,
        sqlite_synchronous=args.sqlite_synchronous,
        keep_dir=args.workdir,
    )
    report = run(options, progress=_say)
    data = dict(report.figures, notes=report.notes)
    emit(args, data, lambda: render(report))
    return 0


# -- switch ---------------------------------------------------------------------------------------
def _add_switch(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    switch = sub.add_parser(
        "switch",
        parents=[parent],
        help="what fsbill costs a real FreeSWITCH: sipp calls through a plain bridge and through fsbill",
        description="Drive an existing FreeSWITCH (with dialplan/fsbill_bench.xml loaded) with sipp at fixed "
        "call rates, through a plain bridge and through an `fsbill serve` started here, and report INVITE->200 "
        "latency, failures and CPU per call of the switch and of fsbill (see docs/BENCHMARKS.md).",
    )
    switch.add_argument(
        "--rates",
        type=_rates,
        default=(20.0, 40.0, 60.0, 80.0),
        metavar="CPS,CPS",
        help="offered call rates, each run in every mode (default 20,40,60,80)",
    )
    switch.add_argument(
        "--modes",
        type=_modes,
        default=("socket", "fsbill"),
        metavar="MODE,MODE",
        help="any of plain, socket (the smallest outbound-socket app: the design's floor), nibblebill "
        "(mod_nibblebill, heartbeat 1; see --print-nibblebill-conf), fsbill (default socket,fsbill)",
    )
    switch.add_argument(
        "--nibblebill-db",
        default="/tmp/fsbill-bench-nibblebill.db",
        metavar="PATH",
        help="mod_nibblebill's accounts table, an SQLite file the benchmark (re)creates: the switch's "
        "nibblebill.conf.xml names it as odbc-dsn sqlite://PATH (default %(default)s)",
    )
    switch.add_argument(
        "--print-nibblebill-conf",
        action="store_true",
        help="print the nibblebill.conf.xml and the accounts table the nibblebill mode needs, and exit",
    )
    switch.add_argument("--ramp", type=_whole, default=5, metavar="S", help="seconds of ramp to the rate (default 5)")
    switch.add_argument(
        "--hold", type=_positive_float, default=10.0, metavar="S", help="seconds held at the rate (default 10)"
    )
    switch.add_argument(
        "--call-ms", type=positive_int, default=500, metavar="MS", help="talk time of each call (default 500)"
    )
    switch.add_argument(
        "--target", default="127.0.0.1:5060", metavar="HOST:PORT", help="the switch's SIP profile (default %(default)s)"
    )
    switch.add_argument(
        "--switch-pid",
        type=positive_int,
        metavar="PID",
        help="FreeSWITCH's pid for its CPU (default: the local process named freeswitch, if the target is local)",
    )
    switch.add_argument(
        "--switch-esl",
        default="127.0.0.1:8021",
        metavar="HOST:PORT",
        help="the switch's inbound event socket, to count and clear channels between runs ('' : none; "
        "default %(default)s)",
    )
    switch.add_argument(
        "--switch-password", default="ClueCon", metavar="PW", help="its password (default FreeSWITCH's)"
    )
    switch.add_argument(
        "--fsbill-listen",
        default="127.0.0.1:18084",
        metavar="HOST:PORT",
        help="where the started fsbill listens: the dialplan's socket address (default %(default)s)",
    )
    switch.add_argument(
        "--fsbill-pid",
        type=positive_int,
        metavar="PID",
        help="measure an fsbill already listening there (with account `bench`) instead of starting one",
    )
    switch.add_argument(
        "--fsbill-database",
        default="",
        metavar="URL",
        help="a postgresql:// URL: the started fsbill gets a fresh database created there (and dropped "
        "after); default a fresh SQLite file",
    )
    switch.add_argument(
        "--fsbill-workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="start fsbill with `workers: N` (its CPU per call then counts every worker; default 1)",
    )
    switch.add_argument(
        "--fsbill-like-switch",
        action="store_true",
        help="give the started fsbill the switch's CPU scheduling class (FreeSWITCH runs realtime by default)",
    )
    switch.add_argument(
        "--p99-limit-ms",
        type=_positive_float,
        default=100.0,
        metavar="MS",
        help="the p99 INVITE->200 a clean rate keeps (default 100)",
    )
    switch.add_argument(
        "--warmup", type=_whole, default=40, metavar="N", help="calls per mode before measuring (default 40)"
    )
    switch.add_argument("--sipp", default="sipp", metavar="PATH", help="the sipp binary (default: sipp on PATH)")
    switch.add_argument(
        "--sqlite-synchronous",
        choices=("off", "normal", "full", "extra"),
        default="full",
        help="the started fsbill's sqlite_synchronous (default full, as in production)",
    )
    switch.add_argument("--workdir", help="keep sipp's files, the database and fsbill's log here")
    switch.set_defaults(func=_switch)


def _rates(text: str) -> tuple[float, ...]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            if not part.isdigit() or int(part) == 0:
                raise argparse.ArgumentTypeError(f"expected whole calls per second > 0, got {part!r}")
            values.append(float(part))
    if not values:
        raise argparse.ArgumentTypeError("expected at least one rate")
    return tuple(sorted(set(values)))


def _modes(text: str) -> tuple[str, ...]:
    from fsbill.bench.switch import MODES

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or any(m not in MODES for m in modes):
        raise argparse.ArgumentTypeError(f"expected {' and/or '.join(MODES)}, got {text!r}")
    return tuple(m for m in MODES if m in modes)


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _switch(args: argparse.Namespace) -> int:
    from fsbill.bench.switch import NIBBLEBILL_TABLE, Options, nibblebill_conf, render, run

    if args.print_nibblebill_conf:
        conf = nibblebill_conf(args.nibblebill_db)
        table = ";\n".join(NIBBLEBILL_TABLE) + ";"
        emit(
            args,
            {"nibblebill_conf_xml": conf, "accounts_sql": table, "database": args.nibblebill_db},
            lambda: (
                f"<!-- autoload_configs/nibblebill.conf.xml -->\n{conf}\n-- {args.nibblebill_db} "
                f"(the benchmark creates it)\n{table}"
            ),
        )
        return 0

    options = Options(
        rates=args.rates,
        modes=args.modes,
        ramp_s=args.ramp,
        hold_s=args.hold,
        call_ms=args.call_ms,
        target=args.target,
        switch_pid=args.switch_pid,
        switch_esl=args.switch_esl,
        switch_password=args.switch_password,
        fsbill_listen=args.fsbill_listen,
        fsbill_pid=args.fsbill_pid,
        fsbill_like_switch=args.fsbill_like_switch,
        fsbill_workers=args.fsbill_workers,
        fsbill_database=args.fsbill_database,
        p99_limit_ms=args.p99_limit_ms,
        sipp=args.sipp,
        warmup=args.warmup,
        sqlite_synchronous=args.sqlite_synchronous,
        keep_dir=args.workdir,
        nibblebill_db=args.nibblebill_db,
    )
    figures = run(options, progress=_say)
    emit(args, figures, lambda: render(figures))
    return 0


# -- routing ----------------------------------------------------------------------------------------
def _add_routing(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    routing = sub.add_parser(
        "routing", parents=[parent], help="least-cost routing: decision latency, reservation with vendor channels"
    )
    routing.add_argument("--vendors", type=positive_int, default=10, help="vendors (default 10)")
    routing.add_argument(
        "--prefixes", type=positive_int, default=20_000, help="prefixes per vendor deck (default 20,000)"
    )
    routing.add_argument("--decisions", type=positive_int, default=5_000, help="routing decisions to time")
    routing.add_argument("--reservations", type=positive_int, default=500, help="reservations to time, each way")
    routing.add_argument("--legs", type=positive_int, default=3, help="vendors in each bridge (default 3)")
    routing.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    routing.set_defaults(func=_routing)


def _routing(args: argparse.Namespace) -> int:
    from fsbill.bench.routing import run_routing_bench

    f = run_routing_bench(
        args.vendors, args.prefixes, args.decisions, args.reservations, args.legs, args.database, say=_say
    )
    emit(
        args,
        f,
        lambda: "\n".join(
            [
                f"routing decision ({f['vendors']} vendors x {f['prefixes']:,} prefixes, {f['decisions']:,} numbers):"
                f" median {f['plan_median_us']} us, p99 {f['plan_p99_us']} us",
                f"reserve ({f['database']}, {f['reservations']:,} each): without vendors median"
                f" {f['reserve_median_us']} us, p99 {f['reserve_p99_us']} us; with {f['legs']} vendor channels"
                f" median {f['reserve_with_legs_median_us']} us, p99 {f['reserve_with_legs_p99_us']} us",
            ]
        ),
    )
    return 0


# -- chain ----------------------------------------------------------------------------------------
def _add_chain(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    chain = sub.add_parser(
        "chain",
        parents=[parent],
        help="a busy reseller: reserve latency and throughput of concurrent calls under one top account",
        description="Place --calls concurrent calls under one top reseller (--levels deep) through --nodes "
        "`fsbill serve` processes sharing one database, then the same load from independent one-level "
        "accounts; print reserve, heartbeat and settlement latency and throughput (docs/BENCHMARKS.md).",
    )
    chain.add_argument("--levels", type=positive_int, default=3, help="levels from the top to a caller (default 3)")
    chain.add_argument("--calls", type=positive_int, default=200, help="concurrent calls (default 200)")
    chain.add_argument("--nodes", type=positive_int, default=2, help="fsbill serve processes (default 2)")
    chain.add_argument(
        "--db",
        metavar="URL",
        help="a PostgreSQL server (postgresql://user@host:port/db); a database is made on it for the run and "
        "dropped after; without it, one node on SQLite",
    )
    chain.add_argument("--rounds", type=positive_int, default=2, help="calls each slot places in turn (default 2)")
    chain.add_argument(
        "--talk", type=_positive_float, default=12.0, metavar="S", help="real seconds each call talks (default 12)"
    )
    chain.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="call time runs X times faster than real time (default 1: a heartbeat every 10 s)",
    )
    chain.add_argument("--pool-size", type=positive_int, default=10, help="each node's pool_size (default 10)")
    chain.add_argument(
        "--modes",
        type=_modes_of_chain,
        default=("chain", "flat"),
        metavar="M,M",
        help="chain (one top reseller), flat (independent accounts) or both (default chain,flat)",
    )
    chain.add_argument("--workdir", help="keep the servers' logs here (default: a temporary directory)")
    chain.set_defaults(func=_chain)


def _modes_of_chain(text: str) -> tuple[str, ...]:
    modes = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not modes or any(m not in ("chain", "flat") for m in modes):
        raise argparse.ArgumentTypeError(f"expected chain, flat or chain,flat, got {text!r}")
    return modes


def _chain(args: argparse.Namespace) -> int:
    from fsbill.bench.chain import Options, check, render, run

    options = check(
        Options(
            levels=args.levels,
            calls=args.calls,
            nodes=args.nodes,
            db=args.db,
            rounds=args.rounds,
            talk_s=args.talk,
            time_scale=args.time_scale,
            pool_size=args.pool_size,
            modes=args.modes,
            keep_dir=args.workdir,
        )
    )
    report = run(options, progress=_say)
    emit(args, dict(report.figures, notes=report.notes), lambda: render(report))
    return 0


BENCHMARKS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_rating,
    _add_calls,
    _add_switch,
    _add_routing,
    _add_chain,
]
