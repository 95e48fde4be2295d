"""Prometheus metrics, one registry per server (so tests and benchmarks can run several).

No account identifiers in labels (there is no opt-in yet): label cardinality
must not grow with the customer base. Amounts are exported as floats because that is the
only type Prometheus has; they are observability, never the books (the ledger is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest

from fsbill import __version__
from fsbill.core.money import Money
from fsbill.logs import event as log_event

if TYPE_CHECKING:
    from fsbill.db.calls import CdrView

log = logging.getLogger("fsbill.metrics")

CUTOFF_KINDS = ("hangup", "transfer")  # cutoff.mode
CDR_RESULTS = ("completed", "cut_off", "unanswered", "rejected", "recovered")
ESL_REFUSALS = ("not_allowed", "capacity")  # fsbill.esl: a peer outside allow_peers, too many sockets
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _amount(m: Money) -> float:
    return m.micros / 1_000_000  # observability only; see module docstring


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter("fsbill_calls", "Calls authorized or rejected", ["result", "reason"], registry=r)
        self.live_calls = Gauge("fsbill_live_calls", "Calls this node is enforcing now", registry=r)
        self.reserved = Gauge(
            "fsbill_reserved_amount", "Money held by this node's live calls", ["currency"], registry=r
        )
        self.charged = Counter("fsbill_charged_amount", "Money charged for calls", ["currency"], registry=r)
        self.topups = Counter("fsbill_topups_amount", "Money credited by top-ups", ["currency"], registry=r)
        self.cutoffs = Counter("fsbill_cutoffs", "Calls ended by their cut-off", ["kind"], registry=r)
        self.warnings = Counter("fsbill_warnings_scheduled", "Low-balance warnings scheduled", registry=r)
        self.extensions = Counter("fsbill_grant_extensions", "Grants extended by a heartbeat", registry=r)
        self.cdrs = Counter("fsbill_cdrs_written", "CDRs written", ["result"], registry=r)
        self.uncollected = Counter(
            "fsbill_uncollected_amount", "Rated cost the account could not pay", ["currency"], registry=r
        )
        self.setup_seconds = Histogram(
            "fsbill_setup_seconds", "Socket accepted to bridge sent", buckets=LATENCY_BUCKETS, registry=r
        )
        self.db_seconds = Histogram(
            "fsbill_db_seconds", "Database unit-of-work latency", ["op"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.db_errors = Counter("fsbill_db_errors", "Database operations that failed", ["op"], registry=r)
        self.esl_errors = Counter(
            "fsbill_esl_protocol_errors", "Event-socket peers dropped for protocol errors", registry=r
        )
        self.esl_refused = Counter("fsbill_esl_refused", "Event-socket connections refused", ["reason"], registry=r)
        self.recovered = Counter("fsbill_recovered_calls", "Calls settled by the reaper", registry=r)
        self.pending_cdrs = Gauge("fsbill_pending_cdrs", "Settlements waiting for the database", registry=r)
        self.build = Info("fsbill_build", "fsbill version", registry=r)
        self.build.info({"version": __version__})
        self._reserved_by_currency: dict[str, int] = {}
        self._preinitialise()

    def _preinitialise(self) -> None:
        """Every labelled series whose label values are known in advance exists from the start
        at 0, so dashboards and `rate()` show 0 rather than nothing until the first event."""
        from fsbill.config import REJECT_REASONS

        self.calls.labels("accepted", "")
        self.calls.labels("accepted", "db_error_allowed")
        for reason in REJECT_REASONS:
            self.calls.labels("rejected", reason)
        for kind in CUTOFF_KINDS:
            self.cutoffs.labels(kind)
        for result in CDR_RESULTS:
            self.cdrs.labels(result)
        for reason in ESL_REFUSALS:
            self.esl_refused.labels(reason)

    def hold_changed(self, currency: str, delta: Money) -> None:
        micros = self._reserved_by_currency.get(currency, 0) + delta.micros
        self._reserved_by_currency[currency] = micros
        self.reserved.labels(currency).set(micros / 1_000_000)

    def charge(self, currency: str, amount: Money) -> None:
        if amount.micros > 0:
            self.charged.labels(currency).inc(_amount(amount))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def cdr_written(metrics: Metrics, cdr: CdrView) -> None:
    """Record a CDR that was just written: the one place a settled, recovered or rejected call
    reaches the counters and the log. Charges are counted here, once, at settlement: heartbeat
    debits are provisional (a debit taken just after the real hangup is refunded by the
    settlement) and a counter cannot go down."""
    metrics.cdrs.labels(cdr.result).inc()
    if cdr.result == "rejected":
        return
    metrics.charge(cdr.currency, cdr.charged)
    if cdr.uncollected.micros > 0:
        metrics.uncollected.labels(cdr.currency).inc(_amount(cdr.uncollected))
    if cdr.result == "recovered":
        metrics.recovered.inc()
    log_event(
        log,
        "recovered" if cdr.result == "recovered" else "settled",
        uuid=cdr.uuid,
        account=cdr.account,
        node=cdr.node,
        result=cdr.result,
        billsec=cdr.billsec,
        billed_s=cdr.billed_s,
        cost=cdr.cost,
        charged=cdr.charged,
        uncollected=cdr.uncollected,
        balance_after_settlement=cdr.balance_after,
        hangup_cause=cdr.hangup_cause,
    )


def serve_metrics(metrics: Metrics, host: str, port: int, healthy: Callable[[], bool]):
    """/metrics (prometheus_client's own WSGI app: OpenMetrics when the scraper asks for it,
    gzip when it accepts it) and /healthz, on their own address, served by a gevent WSGI
    server."""
    from gevent.pywsgi import WSGIServer
    from prometheus_client import make_wsgi_app

    exposition = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return exposition(environ, start_response)
        if path == "/healthz":
            ok = healthy()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"database unreachable\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    server = WSGIServer((host, port), app, log=None, error_log=log)
    server.start()
    return server
