"""`fsbill simulate`: place emulated FreeSWITCH calls into a running fsbill server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gevent import monkey

if not monkey.is_module_patched("socket"):  # fsbill.entry patches first; be safe when imported alone
    monkey.patch_all()

from fsbill.bench.calls import percentile  # noqa: E402
from fsbill.cli.common import load  # noqa: E402
from fsbill.config import Settings, parse_hostport  # noqa: E402
from fsbill.errors import FsbillError  # noqa: E402


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="place emulated FreeSWITCH calls into a running fsbill server",
        description="Act as FreeSWITCH's `socket` application (async full): place calls into "
        "`fsbill serve` over the outbound event socket and report what happened to each.",
    )
    sim.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="fsbill's listen address (default: `listen` of the config; printed before dialling)",
    )
    sim.add_argument("--calls", type=_positive_int, default=1, metavar="N", help="calls to place (default 1)")
    sim.add_argument("--concurrency", type=_positive_int, default=1, metavar="C", help="calls up at once")
    sim.add_argument(
        "--cps", type=_positive_float, default=None, metavar="R", help="new calls per second (default: no limit)"
    )
    sim.add_argument("--account", metavar="CODE", help="fsbill_account channel variable")
    sim.add_argument("--caller", metavar="NUMBER", default="15551230000", help="caller id number")
    sim.add_argument(
        "--dial-string",
        metavar="TEMPLATE",
        default="sofia/gateway/carrier/{destination}",
        help="fsbill_dial_string as dialplan/fsbill_prepaid.xml sets it (default "
        "sofia/gateway/carrier/{destination}); a dial string from the dialplan always wins, so with "
        "`routing: lcr` use --no-dial-string",
    )
    sim.add_argument(
        "--no-dial-string",
        action="store_true",
        help="set no fsbill_dial_string, as dialplan/fsbill_prepaid_lcr.xml: fsbill picks the bridge "
        "(`routing: lcr` vendors, else the `route` template)",
    )
    sim.add_argument("--destination", metavar="NUMBER", default="4930123456", help="dialled number")
    sim.add_argument(
        "--talk",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="the caller hangs up this long after answer (call time)",
    )
    sim.add_argument(
        "--answer-after",
        type=_non_negative_float,
        default=1.0,
        metavar="S",
        help="the called party answers this long after bridge (call time)",
    )
    sim.add_argument(
        "--time-scale",
        type=_positive_float,
        default=None,
        metavar="X",
        help="run call time X times faster (must match the server's time_scale)",
    )
    sim.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="give up on a call after this many real seconds (default: talk + 120 s call time)",
    )
    sim.set_defaults(func=_simulate)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _address(text: str) -> tuple[str, int]:
    return parse_hostport(text, "--server", connect=True)


def _server(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    """--server, else the configured `listen` (what `fsbill serve` with the same config binds;
    a wildcard host is dialled on loopback). Says where it dials: whoever listens there gets
    the calls."""
    if args.server:
        return _address(args.server)
    host, port = settings.listen_address()
    if port == 0:
        raise FsbillError("the configured listen port is 0 (any free port): give --server HOST:PORT")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    sys.stderr.write(f"dialling fsbill at {host}:{port} (the configured `listen`; --server to change)\n")
    sys.stderr.flush()
    return host, port


def _time_scale(args: argparse.Namespace, settings: Settings) -> float:
    """--time-scale, else the configured `time_scale`: the same settings, found the same way
    (--config, else $FSBILL_CONFIG), as `listen` and as `fsbill serve` uses."""
    return args.time_scale if args.time_scale is not None else settings.time_scale


def outcome(record: Any) -> dict[str, Any]:
    """One call's result as `fsbill simulate` reports it."""
    v = record.variables
    fsbill_result = v.get("fsbill_result", "")
    answered = record.answered_us is not None
    if fsbill_result.startswith("rejected"):
        result = "rejected"
        reason = fsbill_result[len("rejected_") :] or "unknown"
    elif not answered:
        result = "rejected" if record.responded or record.ended_by in ("respond", "app_hangup") else "unanswered"
        reason = record.responded or record.hangup_cause or record.ended_by or ""
    elif record.ended_by in ("sched_hangup", "sched_transfer") or fsbill_result == "cut_off":
        result, reason = "cut_off", ""
    else:
        result, reason = "completed", ""
    talk = record.talk_s
    return {
        "uuid": record.uuid,
        "result": result,
        "reason": reason,
        "hangup_cause": record.hangup_cause or "",
        "ended_by": record.ended_by or "",
        "talk_s": None if talk is None else round(float(talk), 3),
        "billsec": record.billsec,
        "fsbill_result": fsbill_result,
        "fsbill_cost": v.get("fsbill_cost", ""),
        "setup_latency_ms": None if record.setup_latency_s is None else round(record.setup_latency_s * 1000, 2),
        "error": record.app_error or "",
    }


def summarize(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    rejected: dict[str, int] = {}
    for o in outcomes:
        if o["result"] == "rejected":
            rejected[o["reason"] or "unknown"] = rejected.get(o["reason"] or "unknown", 0) + 1
    latencies = [o["setup_latency_ms"] for o in outcomes if o["setup_latency_ms"] is not None]
    return {
        "placed": len(outcomes),
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "cut_off": sum(1 for o in outcomes if o["result"] == "cut_off"),
        "completed": sum(1 for o in outcomes if o["result"] == "completed"),
        "unanswered": sum(1 for o in outcomes if o["result"] == "unanswered"),
        "errors": sum(1 for o in outcomes if o["error"]),
        "setup_latency_ms_p50": percentile(latencies, 0.50),
        "setup_latency_ms_p99": percentile(latencies, 0.99),
    }


def _simulate(args: argparse.Namespace) -> int:
    import gevent

    from fsbill.clock import Clock
    from fsbill.sim import CallSpec, Switch

    settings = load(args)
    address = _server(args, settings)
    scale = _time_scale(args, settings)
    clock = Clock(scale)
    switch = Switch(clock)
    variables = {"fsbill_account": args.account} if args.account else {}
    if args.dial_string and not args.no_dial_string:
        variables["fsbill_dial_string"] = args.dial_string.replace("{destination}", args.destination)
    specs = [
        CallSpec(
            caller_id_number=args.caller,
            destination_number=args.destination,
            variables=dict(variables),
            answer_after_s=args.answer_after,
            talk_s=args.talk,
            # a caller never waits forever, whatever the server does
            max_duration_s=args.talk + args.answer_after + 120.0,
        )
        for _ in range(args.calls)
    ]
    timeout = (
        args.timeout if args.timeout is not None else clock.real_seconds(args.talk + args.answer_after + 180.0) + 10.0
    )
    try:
        with gevent.Timeout(timeout * max(1, -(-args.calls // args.concurrency)), FsbillError("simulation timed out")):
            records = switch.run_load(address, specs, concurrency=args.concurrency, cps=args.cps)
    finally:
        switch.close()
    outcomes = [outcome(r) for r in records if r is not None]
    summary = summarize(outcomes)
    if getattr(args, "json", False):
        json.dump({"calls": outcomes, "summary": summary}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for o in outcomes:
            talk = "-" if o["talk_s"] is None else f"{o['talk_s']:.1f}s"
            extra = " ".join(f"{k}={o[k]}" for k in ("fsbill_result", "fsbill_cost", "reason", "error") if o[k])
            print(f"{o['uuid']}  {o['result']:<10} {o['hangup_cause']:<22} talk={talk:<8} {extra}".rstrip())
        rej = ", ".join(f"{k}={n}" for k, n in sorted(summary["rejected"].items())) or "none"
        p50, p99 = summary["setup_latency_ms_p50"], summary["setup_latency_ms_p99"]
        lat = "-" if p50 is None else f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        print(
            f"placed {summary['placed']}: completed {summary['completed']}, cut off {summary['cut_off']}, "
            f"rejected {summary['rejected_total']} ({rej}), unanswered {summary['unanswered']}, "
            f"errors {summary['errors']}; setup latency {lat}"
        )
    return 0 if summary["errors"] == 0 else 1
