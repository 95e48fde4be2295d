"""`fsbill serve`: one node — the event-socket server, the reaper, pending writes, metrics.

Everything here is wiring; the decisions live in fsbill.enforcer and the core modules.
"""

from __future__ import annotations

import logging
import signal

import gevent
import gevent.event

from fsbill.clock import Clock
from fsbill.config import Settings
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db.rates import DeckCache
from fsbill.enforcer import Enforcer
from fsbill.errors import DatabaseUnavailable
from fsbill.esl import EslServer
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics, cdr_written, serve_metrics
from fsbill.pending import PendingWrites

log = logging.getLogger("fsbill.server")


class Node:
    def __init__(self, settings: Settings, *, store: Store | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock(settings.time_scale)
        self.store = store or Store(
            settings.database,
            pool_size=settings.pool_size,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        self.metrics = Metrics()
        self.decks = DeckCache(self.store, refresh_s=settings.rates_refresh_s, background=True)
        self.enforcer = Enforcer(settings, self.store, self.clock, self.metrics, self.decks)
        self.pending = PendingWrites(self.enforcer)
        self.enforcer.pending = self.pending
        host, port = settings.listen_address()
        self.esl = EslServer(
            host,
            port,
            self.enforcer.handle,
            max_connections=settings.esl_max_connections,
            peer_allowed=settings.peer_allowed,
            command_timeout_s=settings.esl_command_timeout_s,
            max_frame_bytes=settings.esl_max_frame_bytes,
            on_protocol_error=lambda _msg: self.metrics.esl_errors.inc(),
            on_refused=lambda reason: self.metrics.esl_refused.labels(reason).inc(),
        )
        self.started_us = 0
        self._ledger_mark: int | None = None
        self.port = 0
        self.metrics_server = None
        self._greenlets: list[gevent.Greenlet] = []
        self.stopped = gevent.event.Event()

    def start(self) -> int:
        """Migrate (if configured), bind, and start serving. Returns the event-socket port."""
        s = self.settings
        if s.auto_migrate:
            self.store.upgrade()
        self.started_us = self.clock.now_us()
        try:
            loaded = self.decks.preload(self.started_us)  # before the first call, not during it
        except DatabaseUnavailable as exc:
            loaded = 0
            log_event(log, "preload_failed", error=str(exc))
        self.port = self.esl.start()
        address = s.metrics_address()
        if address is not None:
            self.metrics_server = serve_metrics(self.metrics, address[0], address[1], self.store.ping)
        self.follow_topups()  # top-ups from before this start are history, not this node's counter
        self._greenlets = [gevent.spawn(self._reaper), gevent.spawn(self.pending.run, 1.0)]
        log_event(
            log,
            "started",
            node=s.node,
            rates=loaded,
            listen=f"{self.esl.bind_address}:{self.port}",
            metrics=s.metrics_listen or "off",
            database=_redact(s.database),
        )
        return self.port

    def reap_once(self) -> int:
        try:
            cdrs = dbcalls.reap(
                self.store,
                self.clock.now_us(),
                node=self.settings.node,
                started_us=self.started_us,
                following=frozenset(self.enforcer.following),
            )
        except DatabaseUnavailable as exc:
            log_event(log, "reaper_failed", error=str(exc))
            return 0
        for cdr in cdrs:
            cdr_written(self.metrics, cdr)
        return len(cdrs)

    def follow_topups(self) -> None:
        try:
            self._ledger_mark, totals = ledger.topups_since(self.store, self._ledger_mark)
        except DatabaseUnavailable:
            return
        for currency, amount in totals.items():
            self.metrics.topups.labels(currency).inc(amount.micros / 1_000_000)

    def _reaper(self) -> None:
        while True:
            self.reap_once()
            self.follow_topups()
            self.clock.sleep(self.settings.heartbeat_s)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting calls; give live ones `grace_s` to end; flush; close.

        Calls still up after the grace period keep their cut-off inside FreeSWITCH; their
        sockets are closed without `resume`, so FreeSWITCH keeps them bridged, and the reaper
        (here after a restart, or on another node) settles them once the cut-off has fired.
        """
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.esl.stop(drain_timeout_s=grace)
        for greenlet in list(self.esl._greenlets):
            greenlet.kill(block=False)
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        try:
            self.pending.flush()
        except Exception:
            log.exception("flushing pending writes failed")
        if self.metrics_server is not None:
            self.metrics_server.stop(timeout=1)
        self.store.close()
        log_event(log, "stopped", node=self.settings.node, pending=len(self.pending.items))
        self.stopped.set()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        stop_requested = gevent.event.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, stop_requested.set)
        # SIGUSR1: write every greenlet's stack to stderr (what is each call doing right now?)
        gevent.signal_handler(signal.SIGUSR1, _dump_greenlets)
        stop_requested.wait()
        log_event(log, "stopping", live_calls=self.esl.live_sessions)
        self.stop()


def _dump_greenlets() -> None:
    import sys

    from gevent.util import print_run_info

    print_run_info(file=sys.stderr)
    sys.stderr.flush()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
