"""Prometheus metrics, one registry per server (so tests and benchmarks can run several).

No account identifiers in labels (there is no opt-in yet): label cardinality
must not grow with the customer base. Amounts are exported as floats because that is the
only type Prometheus has; they are observability, never the books (the ledger is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest

from fsbill import __version__
from fsbill.core.money import Money
from fsbill.core.routing import Attempt
from fsbill.logs import event as log_event

if TYPE_CHECKING:
    from fsbill.db.calls import CdrView

log = logging.getLogger("fsbill.metrics")

CUTOFF_KINDS = ("hangup", "transfer")  # cutoff.mode
CDR_RESULTS = ("completed", "cut_off", "unanswered", "rejected", "recovered")
ESL_REFUSALS = ("not_allowed", "capacity")  # fsbill.esl: a peer outside allow_peers, too many sockets
PAYMENT_PROVIDERS = ("stripe", "paypal")
# what became of a gateway's notification (fsbill.db.payments): money moved, nothing to do, or why not
PAYMENT_OUTCOMES = ("credited", "refunded", "duplicate", "unmatched", "rejected", "invalid", "ignored", "pending")
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
        self.switch_up = Gauge(
            "fsbill_switch_up", "Inbound event-socket connection to the switch is up", ["switch"], registry=r
        )
        self.adopted = Counter("fsbill_adopted_calls", "Live calls taken over through a switch connection", registry=r)
        self.cdr_posts = Counter("fsbill_cdr_posts", "CDRs posted by FreeSWITCH, by outcome", ["outcome"], registry=r)
        self.pending_cdrs = Gauge("fsbill_pending_cdrs", "Settlements waiting for the database", registry=r)
        # Vendors (carriers) are few and named by the operator, not customers: fine as labels.
        self.vendor_attempts = Counter(
            "fsbill_vendor_attempts", "Calls offered to a vendor, by how it ended", ["vendor", "result"], registry=r
        )
        self.vendor_sold = Counter(
            "fsbill_vendor_sold_amount",
            "What customers paid for calls a vendor carried",
            ["vendor", "currency"],
            registry=r,
        )
        self.vendor_cost = Counter(
            "fsbill_vendor_cost_amount",
            "What vendors charge for the calls they carried",
            ["vendor", "currency"],
            registry=r,
        )
        self.payment_notices = Counter(
            "fsbill_payment_notices",
            "Payment gateway notifications, by what became of them (unmatched: verified but not applied, see "
            "'fsbill payments unmatched')",
            ["provider", "outcome"],
            registry=r,
        )
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
        for provider in PAYMENT_PROVIDERS:
            for outcome in PAYMENT_OUTCOMES:
                self.payment_notices.labels(provider, outcome)

    def hold_changed(self, currency: str, delta: Money) -> None:
        micros = self._reserved_by_currency.get(currency, 0) + delta.micros
        self._reserved_by_currency[currency] = micros
        self.reserved.labels(currency).set(micros / 1_000_000)

    def charge(self, currency: str, amount: Money) -> None:
        if amount.micros > 0:
            self.charged.labels(currency).inc(_amount(amount))

    def vendor_attempts_seen(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            self.vendor_attempts.labels(attempt.vendor, attempt.result).inc()

    def vendor_settled(self, vendor: str, currency: str, sold: Money, cost: Money | None) -> None:
        """Margin per vendor in Prometheus is sold - cost (two counters: a margin can be negative)."""
        if not vendor:
            return
        if sold.micros > 0:
            self.vendor_sold.labels(vendor, currency).inc(_amount(sold))
        if cost is not None and cost.micros > 0:
            self.vendor_cost.labels(vendor, currency).inc(_amount(cost))

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
    metrics.vendor_attempts_seen(cdr.attempts)
    metrics.vendor_settled(cdr.vendor, cdr.currency, cdr.cost, cdr.vendor_cost)
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
        vendor=cdr.vendor or None,
        vendor_cost=cdr.vendor_cost,
        margin=cdr.margin,
    )


def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    healthy: Callable[[], bool],
    switches: Callable[[], list[dict]] | None = None,
):
    """/metrics (prometheus_client's own WSGI app: OpenMetrics when the scraper asks for it,
    gzip when it accepts it) and /healthz, on their own address, served by a gevent WSGI
    server. /healthz is 503 only when the database is unreachable; it lists each switch
    connection, and `/healthz?format=json` gives the same as JSON."""
    from gevent.pywsgi import WSGIServer
    from prometheus_client import make_wsgi_app

    exposition = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return exposition(environ, start_response)
        if path == "/healthz":
            ok = healthy()
            status = "200 OK" if ok else "503 Service Unavailable"
            links = switches() if switches is not None else []
            if "format=json" in environ.get("QUERY_STRING", ""):
                import json

                start_response(status, [("Content-Type", "application/json")])
                return [json.dumps({"database": ok, "switches": links}).encode() + b"\n"]
            start_response(status, [("Content-Type", "text/plain")])
            text = "ok\n" if ok else "database unreachable\n"
            for link in links:
                state = "up" if link["up"] else f"down ({link['error'] or 'connecting'})"
                text += f"switch {link['name']} {link['event_socket']}: {state}\n"
            return [text.encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    from fsbill.sockets import listening_socket

    # bound here, not by gevent: a taken address is the operator's clean one-line error (exit 2,
    # naming the setting and the address), as for `listen`
    sock = listening_socket(host, port, what="metrics_listen")
    server = WSGIServer(sock, app, log=None, error_log=log)
    server.start()
    return server
