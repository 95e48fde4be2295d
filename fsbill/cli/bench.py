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


BENCHMARKS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_rating,
    _add_calls,
    _add_routing,
]
