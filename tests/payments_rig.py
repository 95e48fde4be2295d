"""What the payment tests share: the gateways' WSGI app served over real HTTP (gevent pywsgi on a
free port) on a real database, a clock the test steps, Stripe events signed as Stripe signs
them, and accounts to credit."""

from __future__ import annotations

import http.client
import json
import logging
import uuid as uuidlib
from dataclasses import dataclass, field

from fsbill.config import Payments, PaypalConfig, StripeConfig
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.metrics import Metrics
from fsbill.payments import PaymentsApp, PaypalVerifier
from fsbill.payments.stripe import sign
from fsbill.wsgi import serve_wsgi

SECRET = "whsec_test_secret"
RECEIVER = "seller@example.com"
NOW_S = 1_750_000_000
US = 1_000_000
M = Money.parse


class SteppedClock:
    """The time is what the test says it is."""

    def __init__(self, now_s: int = NOW_S) -> None:
        self.us = now_s * US

    def now_us(self) -> int:
        return self.us

    def step(self, seconds: float) -> None:
        self.us += int(seconds * US)


@dataclass
class Gateway:
    store: Store
    clock: SteppedClock
    app: PaymentsApp
    server: object
    port: int
    metrics: Metrics
    verifier: PaypalVerifier | None = None
    closers: list = field(default_factory=list)

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            assert response.getheader("Content-Type") in ("application/json", "application/problem+json")
            return response.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def stripe(self, event: dict, *, timestamp_s: int | None = None, secret: str = SECRET) -> tuple[int, dict]:
        body = json.dumps(event).encode()
        t = self.clock.now_us() // US if timestamp_s is None else timestamp_s
        return self.post("/v1/payments/stripe", body, {"Stripe-Signature": sign(body, secret, t)})

    def notices(self, provider: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "fsbill_payment_notices_total", {"provider": provider, "outcome": outcome}
        )
        return value or 0.0

    def close(self) -> None:
        if self.verifier is not None:
            self.verifier.stop()
        self.server.stop(timeout=1)  # type: ignore[attr-defined]


def start_gateway(
    store: Store,
    clock: SteppedClock | None = None,
    *,
    verify_url: str = "http://127.0.0.1:9/none",
    verifier: bool = False,
    retry_base_s: float = 10,
) -> Gateway:
    clock = clock or SteppedClock()
    payments = Payments(
        stripe=StripeConfig(webhook_secret=SECRET),
        paypal=PaypalConfig(receiver_email=RECEIVER, verify_url=verify_url, verify_timeout_s=5),
    )
    metrics = Metrics()
    checker = (
        PaypalVerifier(store, payments.paypal, clock, metrics, retry_base_s=retry_base_s, poll_s=0.05)  # type: ignore[arg-type]
        if verifier
        else None
    )
    app = PaymentsApp(store, payments, clock, metrics, checker)  # type: ignore[arg-type]
    server = serve_wsgi(app, "127.0.0.1", 0, what="payments test", log=logging.getLogger("test"), read_timeout_s=5)
    return Gateway(store, clock, app, server, server.server_port, metrics, checker)


def seed(store: Store, code: str = "acme", currency: str = "USD", balance: str = "0", credit_limit: str = "0") -> int:
    tariff = f"retail-{currency.lower()}"
    if not any(t.name == tariff for t in ledger.list_tariffs(store)):
        ledger.create_tariff(store, tariff, currency, NOW_S * US)
    ledger.create_account(store, code, tariff, NOW_S * US, credit_limit=M(credit_limit))
    if M(balance):
        ledger.topup(store, code, M(balance), NOW_S * US, reference=f"seed-{code}")
    return ledger.get_account(store, code).id


def hold(store: Store, account_id: int, per_minute: str = "1.00") -> dbcalls.Authorization:
    """A live call on the account, holding its first grant (a real reservation)."""
    rate = Rate("1", M(per_minute), Money(0), 1, 1, 0, RoundingRule(4, RoundingMethod.HALF_UP))
    auth = dbcalls.reserve(
        store,
        uuid=str(uuidlib.uuid4()),
        account_id=account_id,
        rate=rate,
        policy=GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60),
        node="n",
        caller="1",
        destination="1555",
        now_us=NOW_S * US,
        lease_until_us=NOW_S * US + 60 * US,
        max_ring_s=0,
    )
    assert auth.reason == "" and auth.call is not None, auth
    return auth


def succeeded(
    pi: str = "pi_1",
    amount: int = 1050,
    currency: str = "usd",
    account: str = "acme",
    event_id: str | None = None,
    recharge: str | None = None,
) -> dict:
    metadata = {"fsbill_account": account} if account else {}
    if recharge:
        metadata["fsbill_recharge"] = recharge
    return {
        "id": event_id or f"evt_{pi}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": currency,
                "metadata": metadata,
            }
        },
    }


def refunded(pi: str = "pi_1", refunded_total: int = 300, currency: str = "usd", event_id: str = "evt_r1") -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": f"ch_{pi}",
                "object": "charge",
                "amount": 1050,
                "amount_refunded": refunded_total,
                "currency": currency,
                "payment_intent": pi,
                "refunded": False,
            }
        },
    }


def balance(store: Store, code: str = "acme") -> Money:
    return ledger.get_account(store, code).balance
