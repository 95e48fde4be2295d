"""`fsbill switches`: the FreeSWITCH boxes this node keeps an inbound connection to.

For each configured switch it connects and authenticates itself (so a wrong password or a
closed port shows here, before a restart relies on it), and, when the running node's metrics
address answers, adds that node's own view of its connection (up since, reconnects, calls it
follows through it).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from fsbill.cli.common import emit, load, table
from fsbill.config import Settings, SwitchConfig


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    sw = subparsers.add_parser("switches", parents=[parent], help="the configured FreeSWITCH event-socket links")
    sw.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="per switch (default 3)")
    sw.set_defaults(func=_switches)


def probe(config: SwitchConfig, timeout_s: float) -> dict:
    """Connect, authenticate, ask `status`; what an operator needs to know about the link."""
    import gevent

    from fsbill.esl.inbound import SwitchConnection

    conn = SwitchConnection(config, command_timeout_s=timeout_s, connect_timeout_s=timeout_s)
    conn.start()
    try:
        ready = conn.ready.wait(timeout_s)
        if not ready:
            gevent.sleep(0)
            return {"reachable": False, "error": conn.last_error or f"no connection within {timeout_s:g} s"}
        status = conn.api("status")
        sessions = next((line.split()[0] for line in status.splitlines() if "session(s) -" in line), "")
        return {"reachable": True, "error": "", "channels": int(sessions) if sessions.isdigit() else None}
    except Exception as exc:  # any failure is this switch's state, reported, not raised
        return {"reachable": False, "error": str(exc)}
    finally:
        conn.stop()


def node_view(settings: Settings, timeout_s: float) -> dict[str, dict]:
    address = settings.metrics_address()
    if address is None:
        return {}
    host = "127.0.0.1" if address[0] in ("0.0.0.0", "::") else address[0]
    try:
        with urllib.request.urlopen(f"http://{host}:{address[1]}/healthz?format=json", timeout=timeout_s) as r:
            data = json.loads(r.read().decode())
    except (OSError, ValueError):
        return {}
    return {s["name"]: s for s in data.get("switches", []) if isinstance(s, dict) and "name" in s}


def _switches(args: argparse.Namespace) -> int:
    settings = load(args)
    node = node_view(settings, args.timeout) if settings.switches else {}
    rows = []
    for config in settings.switches:
        found = probe(config, args.timeout)
        link = node.get(config.name)
        rows.append(
            {
                "name": config.name,
                "event_socket": config.event_socket,
                "reachable": found["reachable"],
                "channels": found.get("channels"),
                "error": found["error"],
                "node_connected": None if link is None else bool(link.get("up")),
                "node_connected_since": None if not link or not link.get("up") else link.get("since"),
                "node_following": None if link is None else link.get("following"),
            }
        )

    def text() -> str:
        if not rows:
            return "no switches configured (add `switches:` to the config: name, event_socket, password)"

        def since(r: dict) -> str:
            if r["node_connected"] is None:
                return "node not reachable"
            if not r["node_connected"]:
                return "node: down"
            return "node: up " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["node_connected_since"] or 0))

        return table(
            [
                [
                    r["name"],
                    r["event_socket"],
                    "yes" if r["reachable"] else "NO",
                    "" if r["channels"] is None else r["channels"],
                    since(r),
                    "" if r["node_following"] is None else r["node_following"],
                    r["error"],
                ]
                for r in rows
            ],
            ["NAME", "EVENT_SOCKET", "REACHABLE", "CHANNELS", "NODE_LINK", "FOLLOWING", "ERROR"],
        )

    emit(args, rows, text)
    down = [r for r in rows if not r["reachable"]]
    if down:  # so a monitoring check or a deploy script sees it without parsing the table
        from fsbill.cli.main import EXIT_SWITCH, fail

        names = ", ".join(f"{r['name']} ({r['error']})" for r in down)
        return fail(f"{len(down)} of {len(rows)} switches not reachable: {names}", EXIT_SWITCH)
    return 0
