"""`fsbill serve`: run the enforcer on this node."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from fsbill.cli.common import load, open_store
from fsbill.clock import Clock
from fsbill.config import Settings, redact_url
from fsbill.errors import ConfigError
from fsbill.instant import iso
from fsbill.logs import configure
from fsbill.server import Node
from fsbill.workers import Supervisor, worker_argv, worker_index, worker_settings


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    serve = subparsers.add_parser("serve", parents=[parent], help="run the outbound event-socket enforcer")
    serve.add_argument("--listen", metavar="HOST:PORT", help="override `listen` (default 127.0.0.1:8084)")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT", help="override `metrics_listen` ('' disables)")
    serve.add_argument("--database", metavar="URL", help="override `database`")
    serve.add_argument("--node", help="override `node` (default: the host name)")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="override `workers`: N serving processes sharing the listening socket (default 1)",
    )
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        "listen": args.listen,
        "metrics_listen": args.metrics_listen,
        "database": args.database,
        "node": args.node,
        "workers": args.workers,
    }
    settings = load(args, overrides)
    configure(settings.log_level, settings.log_format)
    index = worker_index()
    if index is not None:
        settings = worker_settings(settings, index)
    elif settings.time_scale != 1.0:
        _refuse_scaled_clock_on_real_books(settings)
    if settings.workers > 1 and index is None:
        return _supervise(args, settings, overrides)
    node = Node(settings)
    port = node.start()
    _banner(settings, f"{node.esl.bind_address}:{port}")
    node.serve_forever()
    return 0


def _supervise(args: argparse.Namespace, settings: Settings, overrides: dict) -> int:
    """`workers` > 1: this process only holds the listening sockets and runs the workers."""
    import gevent
    import gevent.event

    from fsbill.server import inherited_fd

    for index in range(settings.workers):
        worker_settings(settings, index)  # a bad per-worker setting fails here, once, not in N children
    if settings.auto_migrate:
        open_store(settings).close()  # once, before N processes would each try
    cli_overrides = {f"--{k.replace('_', '-')}": None if v is None else str(v) for k, v in overrides.items()}
    cli_overrides.pop("--workers")
    supervisor = Supervisor(settings, worker_argv(getattr(args, "config", None), cli_overrides), inherited_fd())
    host, port = supervisor.bind()
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    _banner(settings, f"{host}:{port}", workers=settings.workers)
    return supervisor.run(stop)


def _banner(settings: Settings, listen: str, workers: int = 1) -> None:
    """The line operators (and the tests) wait for. With workers, the supervisor's: the
    workers' nodes are `<node>-w<i>`, and worker i's metrics are on the metrics port + i."""
    who = f"node {settings.node}"
    metrics = settings.metrics_listen or "off"
    if workers > 1:
        who = f"{workers} workers, nodes {settings.node}-w0..w{workers - 1}"
        if settings.metrics_listen:
            metrics = f"{settings.metrics_listen} + worker index"
    if settings.log_format == "json":  # the banner is a log line like the others
        record: dict[str, object] = {
            "time": _stamp(),
            "level": "info",
            "logger": "fsbill",
            "event": "serving",
            "listen": listen,
            "metrics": metrics,
            "node": settings.node,
        }
        if workers > 1:
            record["workers"] = workers
        banner = json.dumps(record, separators=(",", ":"))
    else:
        banner = f"fsbill serving FreeSWITCH outbound sockets on {listen} (metrics: {metrics}, {who})"
    sys.stderr.write(banner + "\n")
    sys.stderr.flush()


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
            f"{iso(Clock(settings.time_scale).now_us())[:4]} into {redact_url(settings.database)}, which holds real-time calls "
            f"({real_cdrs} CDRs): give a demo its own `database` (e.g. sqlite:///demo.db)"
        )
