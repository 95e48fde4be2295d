"""`fsbill serve`: run the enforcer on this node."""

from __future__ import annotations

import argparse
import json
import sys
import time

from fsbill.cli.common import load, open_store
from fsbill.clock import Clock
from fsbill.config import Settings
from fsbill.errors import ConfigError
from fsbill.instant import iso
from fsbill.logs import configure
from fsbill.server import Node


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    serve = subparsers.add_parser("serve", parents=[parent], help="run the outbound event-socket enforcer")
    serve.add_argument("--listen", metavar="HOST:PORT", help="override `listen` (default 127.0.0.1:8084)")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT", help="override `metrics_listen` ('' disables)")
    serve.add_argument("--database", metavar="URL", help="override `database`")
    serve.add_argument("--node", help="override `node` (default: the host name)")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from fsbill.config import load_settings

    overrides = {
        "listen": args.listen,
        "metrics_listen": args.metrics_listen,
        "database": args.database,
        "node": args.node,
    }
    settings = (
        load_settings(getattr(args, "config", None), overrides)
        if any(v is not None for v in overrides.values())
        else load(args)
    )
    configure(settings.log_level, settings.log_format)
    if settings.time_scale != 1.0:
        _refuse_scaled_clock_on_real_books(settings)
    node = Node(settings)
    port = node.start()
    listen = f"{node.esl.bind_address}:{port}"
    if settings.log_format == "json":  # the banner is a log line like the others
        banner = json.dumps(
            {
                "time": _stamp(),
                "level": "info",
                "logger": "fsbill",
                "event": "serving",
                "listen": listen,
                "metrics": settings.metrics_listen or "off",
                "node": settings.node,
            },
            separators=(",", ":"),
        )
    else:
        banner = (
            f"fsbill serving FreeSWITCH outbound sockets on {listen}"
            f" (metrics: {settings.metrics_listen or 'off'}, node {settings.node})"
        )
    sys.stderr.write(banner + "\n")
    sys.stderr.flush()
    node.serve_forever()
    return 0


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


# A scaled clock runs from 2024-01-01 at `time_scale` times real speed (fsbill.clock): at 30 it
# is in the next century. Its calls must not land in books that hold real calls.
_REAL_TIME_SLACK_US = 86_400 * 1_000_000


def _refuse_scaled_clock_on_real_books(settings: Settings) -> None:
    store = open_store(settings)
    try:
        m = store.models
        real_now_us = Clock().now_us()
        with store.reading():
            real_cdrs = m.Cdr.select().where(m.Cdr.created_us <= real_now_us + _REAL_TIME_SLACK_US).count()
            real_calls = (
                m.LedgerEntry.select()
                .where((m.LedgerEntry.kind == "call") & (m.LedgerEntry.created_us <= real_now_us + _REAL_TIME_SLACK_US))
                .count()
            )
    finally:
        store.close()
    if real_cdrs or real_calls:
        raise ConfigError(
            f"time_scale: {settings.time_scale:g} would write CDRs and ledger rows dated "
            f"{iso(Clock(settings.time_scale).now_us())[:4]} into {settings.database}, which holds real-time calls "
            f"({real_cdrs} CDRs): give a demo its own `database` (e.g. sqlite:///demo.db)"
        )
