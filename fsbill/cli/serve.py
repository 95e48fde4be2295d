"""`fsbill serve`: run the enforcer on this node."""

from __future__ import annotations

import argparse
import sys

from fsbill.cli.common import load
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
    node = Node(settings)
    port = node.start()
    sys.stderr.write(
        f"fsbill serving FreeSWITCH outbound sockets on {node.esl.bind_address}:{port}"
        f" (metrics: {settings.metrics_listen or 'off'}, node {settings.node})\n"
    )
    sys.stderr.flush()
    node.serve_forever()
    return 0
