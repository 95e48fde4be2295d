"""`fsbill serve`: one node — the event-socket server, the reaper, pending writes, metrics.

Everything here is wiring; the decisions live in fsbill.enforcer and the core modules.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid as uuidlib
from typing import TYPE_CHECKING

import gevent
import gevent.event

from fsbill.clock import Clock
from fsbill.config import Settings, redact_url
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db.rates import DeckCache
from fsbill.enforcer import Enforcer
from fsbill.errors import DatabaseUnavailable, FsbillError
from fsbill.esl import EslServer
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics, cdr_written, serve_metrics
from fsbill.pending import PendingWrites

if TYPE_CHECKING:  # imported where used, at start: only a node with switches / CDR intake loads them
    from fsbill.adoption import Adopter, Switches
    from fsbill.api.app import ApiServer
    from fsbill.cdr_intake import CdrIntake
    from fsbill.payments import PaymentsApp, PaypalVerifier

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
            group_commit=True,
        )
        self.metrics = Metrics()
        self.decks = DeckCache(self.store, refresh_s=settings.rates_refresh_s, background=True)
        self.enforcer = Enforcer(settings, self.store, self.clock, self.metrics, self.decks)
        # This process, told apart from an earlier or a sibling one of the same node.
        self.instance = f"{settings.node}:{os.getpid()}:{uuidlib.uuid4().hex[:8]}"
        self.enforcer.instance = self.instance
        self.pending = PendingWrites(self.store, self.clock, self.metrics, self.decks, self.settings)
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
        self.switches: Switches | None = None
        self.adopter: Adopter | None = None
        self.cdr_intake: CdrIntake | None = None
        self.api: ApiServer | None = None
        self.paypal_verifier: PaypalVerifier | None = None
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
        inherited = inherited_listener()
        if inherited is not None:
            self.esl.use_socket(inherited)  # systemd socket activation (deploy/fsbill.socket)
        self.port = self.esl.start()
        if s.switches:
            from fsbill.adoption import Adopter, Switches

            switches = Switches(s.switches, self.metrics, s.esl_command_timeout_s)
            self.switches = switches
            self.adopter = Adopter(self.enforcer, switches, self.started_us)
            switches.start()
        if s.cdr_intake.listen:
            self._start_cdr_intake()
        if s.payments.paypal.receiver_email:
            self._start_paypal_verifier()
        if s.api.listen:
            self._start_api()
        address = s.metrics_address()
        if address is not None:
            self.metrics_server = serve_metrics(
                self.metrics, address[0], address[1], self.store.ping, self.switch_status
            )
        self.follow_topups()  # top-ups from before this start are history, not this node's counter
        self._greenlets = [gevent.spawn(self._reaper), gevent.spawn(self.pending.run, 1.0)]
        if s.charges.enabled:
            self._greenlets.append(gevent.spawn(self._charges))
        if s.notify.enabled:  # notices: webhook and email (fsbill.notify, docs/NOTICES.md)
            from fsbill.notify import Notifier

            self._greenlets.append(gevent.spawn(Notifier(s.notify, self.store, self.instance, self.clock.now_us).run))
        log_event(
            log,
            "started",
            node=s.node,
            rates=loaded,
            listen=f"{self.esl.bind_address}:{self.port}",
            inherited=inherited is not None,
            instance=self.instance,
            switches=",".join(c.name for c in s.switches) or "none",
            cdr_intake=f"{self.cdr_intake.host}:{self.cdr_intake.port}" if self.cdr_intake else "off",
            api=f"{self.api.host}:{self.api.port}" if self.api else "off",
            metrics=s.metrics_listen or "off",
            database=redact_url(s.database),
        )
        return self.port

    def _start_cdr_intake(self) -> None:
        from fsbill.cdr_intake import CdrIntake
        from fsbill.core.call import result_of

        c = self.settings.cdr_intake
        address = c.address()
        assert address is not None  # started only when cdr_intake.listen is set
        host, port = address
        from fsbill.workers import ENV_CDR_INTAKE_FD, take_inherited_fd

        fd = take_inherited_fd(ENV_CDR_INTAKE_FD)  # a worker shares its supervisor's
        intake = CdrIntake(
            self.store,
            host,
            port,
            c.user,
            c.password,
            self.clock.now_us,
            lambda answered, cause, dest: result_of(answered, cause, dest, self.enforcer.mark),
            on_applied=self._cdr_post_applied,
            listener_fd=fd,
        )
        self.cdr_intake = intake
        intake.start()

    def _start_api(self) -> None:
        """The HTTP API (`api.listen`, docs/API.md) on this node's store and clock."""
        from fsbill.api.app import Api, ApiServer
        from fsbill.workers import ENV_API_FD, take_inherited_fd

        address = self.settings.api.address()
        assert address is not None  # started only when api.listen is set
        import fsbill.payments

        api = Api(
            self.store,
            self.clock.now_us,
            international_prefix=self.settings.international_prefix,
            extra={fsbill.payments.PREFIX: self.payments_app()},  # signed by the gateway, not a bearer token
            extra_paths=fsbill.payments.PATHS,
        )
        self.api = ApiServer(
            api, *address, listener_fd=take_inherited_fd(ENV_API_FD)
        )  # a worker shares its supervisor's
        self.api.start()

    def _start_paypal_verifier(self) -> None:
        """PayPal notices stored but not yet verified (this process's, an earlier one's that
        stopped first, another node's whose verify URL was down) are verified from the store."""
        from fsbill.payments import PaypalVerifier

        self.paypal_verifier = PaypalVerifier(self.store, self.settings.payments.paypal, self.clock, self.metrics)
        self.paypal_verifier.start()

    def payments_app(self) -> PaymentsApp:
        """The gateways' WSGI app (POST /v1/payments/stripe, /v1/payments/paypal) on this node's
        store, clock and metrics, for the API server to mount under fsbill.payments.PREFIX."""
        from fsbill.payments import PaymentsApp

        return PaymentsApp(self.store, self.settings.payments, self.clock, self.metrics, self.paypal_verifier)

    def _cdr_post_applied(self, applied) -> None:
        self.metrics.cdr_posts.labels(applied.outcome).inc()
        if applied.cdr is None:
            return
        if applied.outcome == "settled":
            cdr_written(self.metrics, applied.cdr)
        elif applied.outcome == "corrected":
            self.metrics.charge(applied.cdr.currency, applied.posted)  # the recovered part was counted

    def switch_status(self) -> list[dict]:
        return self.switches.status() if self.switches is not None else []

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
        if cdrs and self.cdr_intake is not None:
            self._apply_posts([c.uuid for c in cdrs])
        return len(cdrs)

    def _apply_posts(self, uuids: list[str]) -> None:
        """FreeSWITCH may have posted these calls' CDRs before they were reaped: correct them."""
        from fsbill.db import recovery as dbrecovery

        intake = self.cdr_intake
        assert intake is not None  # called only when the CDR intake runs
        try:
            for uuid in dbrecovery.stored_uuids(self.store, uuids):
                for applied in dbrecovery.apply_stored(self.store, uuid, self.clock.now_us(), intake.result_of):
                    self._cdr_post_applied(applied)
        except DatabaseUnavailable as exc:
            log_event(log, "cdr_correction_failed", error=str(exc))

    def follow_topups(self) -> None:
        try:
            self._ledger_mark, totals = ledger.topups_since(self.store, self._ledger_mark)
        except DatabaseUnavailable:
            return
        for currency, amount in totals.items():
            self.metrics.topups.labels(currency).inc(amount.micros / 1_000_000)

    def _reaper(self) -> None:
        while True:
            if self.adopter is not None:
                self.adopter.scan()  # before the reaper: a call still up is taken over, not reaped
            self.reap_once()
            self.follow_topups()
            self.clock.sleep(self.settings.heartbeat_s)

    def charges_once(self) -> bool:
        """Post the recurring charges due, if this node holds the charges lease (one node at a
        time; the lease outlives a run by an interval, so a node that died frees it then)."""
        from fsbill.db.charges import run_charges, take_lease

        now = self.clock.now_us()
        ttl_us = 2 * self.settings.charges.interval_s * 1_000_000
        try:
            if not take_lease(self.store, "charges", self.instance, now, ttl_us):
                return False
            report = run_charges(self.store, now, node=self.settings.node)
        except DatabaseUnavailable as exc:
            log_event(log, "charges_failed", error=str(exc))
            return False
        if report.charges or report.credits or report.arrears_paid:
            log_event(
                log,
                "charges_posted",
                charges=report.charges,
                credits=report.credits,
                arrears_accounts=report.arrears_paid,
                more=report.more,
            )
        return True

    def _charges(self) -> None:
        while True:
            try:
                self.charges_once()
            except Exception:  # a bug must not stop the runs for good; the next one retries
                log.exception("charges run failed")
            self.clock.sleep(self.settings.charges.interval_s)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting calls; give live ones `grace_s` to end; flush; close.

        Calls still up after the grace period keep their cut-off inside FreeSWITCH; their
        sockets are closed without `resume`, so FreeSWITCH keeps them bridged, and the reaper
        (here after a restart, or on another node) settles them once the cut-off has fired.
        """
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.esl.stop()  # no new sockets (with socket activation they queue for the next process)
        # Calls that end within the grace are settled here, adopted ones included; the rest
        # keep their cut-off inside FreeSWITCH and are re-adopted by the next process.
        calls = list(self.esl._greenlets) + (list(self.adopter.greenlets) if self.adopter else [])
        if grace > 0 and calls:
            gevent.joinall(calls, timeout=self.clock.real_seconds(grace))
        if self.adopter is not None:
            self.adopter.stop()
        if self.switches is not None:
            self.switches.stop()
        if self.cdr_intake is not None:
            self.cdr_intake.stop()
        if self.api is not None:
            self.api.stop()
        if self.paypal_verifier is not None:
            self.paypal_verifier.stop()
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


def inherited_fd() -> int | None:
    """The listening socket systemd passed us (sd_listen_fds: LISTEN_PID = us, LISTEN_FDS >= 1,
    the first one at fd 3), or None. The variables are removed so children do not inherit them."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit() or int(count) < 1:
        return None
    return 3


def inherited_listener():
    """The event-socket listener this process was handed: by its supervisor (fsbill.workers) or
    by systemd's socket activation. None: bind `listen` ourselves."""
    import socket

    from fsbill.workers import ENV_LISTEN_FD, take_inherited_fd

    fd = take_inherited_fd(ENV_LISTEN_FD)
    origin = "the supervisor"
    if fd is None:
        fd, origin = inherited_fd(), "systemd"
    if fd is None:
        return None
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        raise FsbillError(f"the socket passed by {origin} (fd {fd}) is not a stream socket: check deploy/fsbill.socket")
    return sock


def _dump_greenlets() -> None:
    import sys

    from gevent.util import print_run_info

    print_run_info(file=sys.stderr)
    sys.stderr.flush()
