"""The gateways' endpoints as one WSGI application: `POST /v1/payments/stripe` and
`POST /v1/payments/paypal`.

No bearer token: Stripe's requests are proven by their signature, PayPal's by PayPal itself
(fsbill.payments.verifier). Mounted by the API server under `/v1/payments/` (it can also be
served alone with fsbill.wsgi.serve_wsgi). Errors are RFC 9457 problem details, in the API's
shape (`type` urn:fsbill:problem:<kind>, `title`, `status`, `detail`, `kind`).

What each answer tells the gateway: 2xx, it is done with this delivery (credited, a duplicate,
unmatched and kept for an operator, ignored); 400, the delivery itself is bad (a bad or stale
signature, not an event) and nothing changed; 503, the database could not take it, so the
gateway's own retry will bring it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from fsbill.clock import Clock
from fsbill.config import Payments
from fsbill.db import Store
from fsbill.db import payments as db
from fsbill.errors import DatabaseUnavailable, FsbillError
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics
from fsbill.payments import paypal, stripe
from fsbill.payments.verifier import PaypalVerifier
from fsbill.wsgi import BodyError, read_body

log = logging.getLogger("fsbill.payments")

STRIPE_PATH = "/v1/payments/stripe"
PAYPAL_PATH = "/v1/payments/paypal"
PREFIX = "/v1/payments/"
MAX_BODY_BYTES = 256 * 1024  # Stripe's events are a few KiB, PayPal's notices under 2 KiB
PROBLEM_TYPE = "application/problem+json"
_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
_TITLES |= {503: "Database unavailable", 500: "Internal error"}
_KINDS = {400: "usage", 404: "not_found", 405: "usage", 413: "usage", 500: "internal", 503: "database"}
_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 405: "405 Method Not Allowed"}
_STATUS_LINES |= {413: "413 Payload Too Large", 500: "500 Internal Server Error", 503: "503 Service Unavailable"}


class PaymentsApp:
    """The WSGI application. `verifier`: woken when a PayPal notice is stored (None: the notice
    waits for whichever verifier polls the store, e.g. another node's)."""

    def __init__(
        self,
        store: Store,
        payments: Payments,
        clock: Clock,
        metrics: Metrics | None = None,
        verifier: PaypalVerifier | None = None,
    ) -> None:
        self.store = store
        self.payments = payments
        self.clock = clock
        self.metrics = metrics
        self.verifier = verifier

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body, headers = self._handle(environ)
        ctype = PROBLEM_TYPE if status >= 400 else "application/json"
        data = (json.dumps(body) + "\n").encode()
        start_response(_STATUS_LINES[status], [("Content-Type", ctype), ("Content-Length", str(len(data))), *headers])
        return [data]

    def _handle(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        path = environ.get("PATH_INFO", "")
        handler = {STRIPE_PATH: self._stripe, PAYPAL_PATH: self._paypal}.get(path)
        if handler is None:
            return _problem(404, f"no payment gateway at {path[:100]!r} (POST {STRIPE_PATH} or {PAYPAL_PATH})")
        if environ.get("REQUEST_METHOD") != "POST":
            return _problem(405, f"{path} takes POST only", [("Allow", "POST")])
        configured = self.payments.stripe.webhook_secret if path == STRIPE_PATH else self.payments.paypal.receiver_email
        if not configured:
            key = "payments.stripe.webhook_secret" if path == STRIPE_PATH else "payments.paypal.receiver_email"
            return _problem(404, f"this gateway is off: {key} is not set")
        try:
            payload = read_body(environ, MAX_BODY_BYTES)
        except BodyError as exc:
            return _problem(exc.status, exc.reason, [("Connection", "close")])
        try:
            return handler(environ, payload)
        except DatabaseUnavailable as exc:
            log_event(log, "payment_deferred", path=path, error=str(exc))
            return _problem(503, "database unavailable; retry", [("Retry-After", "5")])
        except FsbillError as exc:  # a delivery that kept clashing with others: the gateway retries
            log_event(log, "payment_deferred", path=path, error=str(exc))
            return _problem(503, str(exc), [("Retry-After", "5")])
        except Exception:  # a bug: one problem reply and the traceback in the log, never a bare 500
            log.exception("payment notification failed: %s", path)
            return _problem(500, "internal error (see the server's log); the gateway will retry")

    def _stripe(self, environ: dict[str, Any], payload: bytes) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        config = self.payments.stripe
        now_us = self.clock.now_us()
        try:
            stripe.verify_signature(
                payload,
                environ.get("HTTP_STRIPE_SIGNATURE", ""),
                config.webhook_secret,
                now_us // 1_000_000,
                config.tolerance_s,
            )
            event = stripe.parse_event(payload)
        except (stripe.BadSignature, stripe.BadEvent) as exc:
            log_event(log, "stripe_rejected", error=str(exc))
            return _problem(400, str(exc))
        if event.item is None:
            self._count("stripe", "ignored")
            return 200, {"outcome": "ignored", "event": event.id, "detail": f"fsbill does not act on {event.type}"}, []
        outcome = db.receive(
            self.store, "stripe", f"stripe-event:{event.id}", payload.decode("utf-8"), event.item, now_us
        )
        self._count("stripe", outcome.outcome)
        log_event(log, "stripe_event", event=event.id, type=event.type, outcome=outcome.outcome, detail=outcome.detail)
        return 200, outcome.as_json() | {"event": event.id}, []

    def _paypal(self, environ: dict[str, Any], payload: bytes) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        if not payload or b"\x00" in payload:  # a form is percent-encoded: a raw NUL is not PayPal's
            return _problem(400, "not an IPN notice (empty, or holding a NUL byte)")
        notice_id, new = db.store_pending(
            self.store, "paypal", paypal.notice_key(payload), paypal.as_text(payload), self.clock.now_us()
        )
        if new:
            self._count("paypal", "pending")
            if self.verifier is not None:
                self.verifier.wake()
        return 200, {"outcome": "pending" if new else "duplicate", "notice": notice_id}, []

    def _count(self, provider: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.payment_notices.labels(provider, outcome).inc()


def _problem(
    status: int, detail: str, headers: list[tuple[str, str]] | None = None
) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    kind = _KINDS[status]
    body = {"type": f"urn:fsbill:problem:{kind}", "title": _TITLES[status], "status": status, "detail": detail}
    return status, body | {"kind": kind}, list(headers or [])


__all__ = ["MAX_BODY_BYTES", "PAYPAL_PATH", "PREFIX", "STRIPE_PATH", "PaymentsApp"]
