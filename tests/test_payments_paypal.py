"""PayPal IPN over real HTTP: stored and acknowledged, then verified against a local stand-in of
PayPal's verify endpoint (a real HTTP server), retried from the store while it is down, and
credited once per txn_id."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlencode

import gevent
import pytest
from migrated import migrate_fresh
from payments_rig import RECEIVER, M, balance, seed, start_gateway

from fsbill.db import Store, ledger
from fsbill.db import payments as dbpay
from fsbill.payments import PaypalVerifier
from fsbill.wsgi import serve_wsgi

PAYPAL = "/v1/payments/paypal"


class PaypalStandIn:
    """PayPal's IPN verify endpoint: answers `answer` to every POST and keeps what it was sent."""

    def __init__(self, answer: bytes = b"VERIFIED") -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.port = 0
        self.server = None

    def app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.received.append(environ["wsgi.input"].read(length))
        start_response("200 OK", [("Content-Type", "text/html; charset=UTF-8")])
        return [self.answer]

    def up(self) -> None:
        # port 0 the first time; the same port again after `down` (SO_REUSEADDR)
        self.server = serve_wsgi(self.app, "127.0.0.1", self.port, what="paypal stand-in", log=logging.getLogger("t"))
        self.port = self.server.server_port

    def down(self) -> None:
        self.server.stop(timeout=1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/webscr"


@pytest.fixture
def paypal():
    stand_in = PaypalStandIn()
    stand_in.up()
    yield stand_in
    stand_in.down()


def ipn(**fields: str) -> bytes:
    base = {
        "mc_gross": "10.00",
        "protection_eligibility": "Eligible",
        "payer_id": "LPLWNMTBWMFAY",
        "payment_date": "20:12:59 Jan 13, 2009 PST",
        "payment_status": "Completed",
        "charset": "windows-1252",
        "first_name": "Jos\xe9",  # windows-1252 on the wire
        "mc_fee": "0.59",
        "notify_version": "3.9",
        "custom": "acme",
        "payer_status": "verified",
        "business": RECEIVER,
        "receiver_email": RECEIVER,
        "txn_id": "61E67681CH3238416",
        "txn_type": "express_checkout",
        "mc_currency": "USD",
        "verify_sign": "AtkOfCXbDm2hu0ZELryHFjY-Vb7PAUvS6nMXgysbElEn9v-1XcmSoGtf",
    }
    base.update(fields)
    return urlencode(base, encoding="windows-1252").encode("ascii")


def wait_for(predicate, what: str, limit_s: float = 20.0) -> None:
    """Until `predicate()` holds (a bound on a wait, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        gevent.sleep(0.02)


def settled(store) -> bool:
    return not dbpay.notices(store, "pending")


@pytest.fixture
def gateway(store, paypal):
    seed(store)
    gw = start_gateway(store, verify_url=paypal.url, verifier=True)
    gw.verifier.start()
    yield gw
    gw.close()


def test_a_verified_completed_payment_credits_once(gateway, paypal):
    body = ipn()
    status, reply = gateway.post(PAYPAL, body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, reply["outcome"]) == (200, "pending")
    wait_for(lambda: settled(gateway.store), "the notice verified")
    assert paypal.received == [b"cmd=_notify-validate&" + body]  # posted back unchanged
    assert balance(gateway.store) == M("10.00")
    assert dbpay.get_payment(gateway.store, "paypal:61E67681CH3238416").amount == M("10.00")
    # PayPal sends it again (it had not seen our 200): nothing more
    assert gateway.post(PAYPAL, body)[1]["outcome"] == "duplicate"
    # the same transaction in a notice that differs (another verify_sign): verified, not credited again
    gateway.post(PAYPAL, ipn(verify_sign="other"))
    wait_for(lambda: settled(gateway.store), "the second notice verified")
    assert balance(gateway.store) == M("10.00")
    assert [n.status for n in dbpay.notices(gateway.store)] == ["credited", "duplicate"]
    assert gateway.notices("paypal", "credited") == 1


def test_an_invalid_notice_credits_nothing(gateway, paypal):
    paypal.answer = b"INVALID"
    assert gateway.post(PAYPAL, ipn())[0] == 200
    wait_for(lambda: settled(gateway.store), "the notice refused")
    assert balance(gateway.store) == M("0")
    [notice] = dbpay.notices(gateway.store)
    assert notice.status == "invalid"
    assert gateway.notices("paypal", "invalid") == 1


def test_verify_endpoint_down_then_up_credits_once_after_a_retry(gateway, paypal):
    paypal.down()
    assert gateway.post(PAYPAL, ipn())[0] == 200  # acknowledged: PayPal will not send it again
    wait_for(lambda: dbpay.notices(gateway.store)[0].reason != "", "a first attempt")
    [notice] = dbpay.notices(gateway.store)
    assert (notice.status, notice.attempts) == ("pending", 1) and "could not be reached" in notice.reason
    assert balance(gateway.store) == M("0")
    paypal.up()  # the same port
    gateway.clock.step(11)  # past the first backoff (10 s)
    gateway.verifier.wake()
    wait_for(lambda: settled(gateway.store), "the retry verified")
    assert balance(gateway.store) == M("10.00")
    assert len(paypal.received) == 1
    gateway.clock.step(3600)
    gateway.verifier.run_once()
    assert balance(gateway.store) == M("10.00")


def test_an_error_page_from_paypal_is_retried_not_taken(gateway, paypal):
    paypal.answer = b"<html>maintenance</html>"
    gateway.post(PAYPAL, ipn())
    wait_for(lambda: dbpay.notices(gateway.store)[0].reason != "", "a first attempt")
    assert dbpay.notices(gateway.store)[0].status == "pending"
    paypal.answer = b"VERIFIED"
    gateway.clock.step(11)
    gateway.verifier.wake()
    wait_for(lambda: settled(gateway.store), "the retry verified")
    assert balance(gateway.store) == M("10.00")


def test_pending_notices_are_verified_after_a_restart(store, paypal):
    """`fsbill serve` stored and acknowledged a notice, then stopped before verifying it."""
    seed(store)
    first = start_gateway(store, verify_url=paypal.url)  # no verifier: as if it died right after the 200
    first.post(PAYPAL, ipn())
    first.close()
    assert [n.status for n in dbpay.notices(store)] == ["pending"]
    again = start_gateway(store, verify_url=paypal.url, verifier=True)
    try:
        again.verifier.start()
        wait_for(lambda: settled(store), "the stored notice verified")
        assert balance(store) == M("10.00")
    finally:
        again.close()


def test_a_refund_or_reversal_debits_its_payment_once(gateway):
    gateway.post(PAYPAL, ipn())
    wait_for(lambda: settled(gateway.store), "credited")
    refund = ipn(payment_status="Refunded", txn_id="REFUND1", parent_txn_id="61E67681CH3238416", mc_gross="-4.00")
    gateway.post(PAYPAL, refund)
    gateway.post(PAYPAL, refund + b"&resent=1")  # another notice of the same refund
    wait_for(lambda: settled(gateway.store), "refunded")
    assert balance(gateway.store) == M("6.00")
    chargeback = ipn(payment_status="Reversed", txn_id="REV1", parent_txn_id="61E67681CH3238416", mc_gross="-10.00")
    gateway.post(PAYPAL, chargeback)
    wait_for(lambda: settled(gateway.store), "reversed")
    assert balance(gateway.store) == M("0")  # never more than was credited
    assert [e.amount for e in ledger.ledger(gateway.store, "acme") if e.kind == "refund"] == [M("-4.00"), M("-6.00")]


@pytest.mark.parametrize(
    "fields, status",
    [
        ({"receiver_email": "someone-else@example.com"}, "rejected"),
        ({"mc_gross": "10.0.0"}, "rejected"),
        ({"mc_gross": "1e3"}, "rejected"),
        ({"payment_status": "Pending"}, "ignored"),
        ({"mc_currency": "EUR"}, "unmatched"),
        ({"custom": "nobody"}, "unmatched"),
    ],
)
def test_what_does_not_check_out_is_never_credited(gateway, fields, status):
    gateway.post(PAYPAL, ipn(**fields))
    wait_for(lambda: settled(gateway.store), "verified")
    assert balance(gateway.store) == M("0")
    assert [n.status for n in dbpay.notices(gateway.store)] == [status]


def test_utf8_notices_are_read_in_their_charset(gateway):
    body = urlencode({**dict(_fields(ipn())), "charset": "UTF-8", "custom": "acme"}, encoding="utf-8").encode()
    gateway.post(PAYPAL, body)
    wait_for(lambda: settled(gateway.store), "verified")
    assert balance(gateway.store) == M("10.00")


def _fields(body: bytes):
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode("ascii"), encoding="windows-1252")


def test_two_verifiers_on_one_store_verify_each_notice_once(store, paypal):
    seed(store)
    gw = start_gateway(store, verify_url=paypal.url)
    try:
        gw.post(PAYPAL, ipn())
        a = PaypalVerifier(store, gw.app.payments.paypal, gw.clock, poll_s=0.01)
        b = PaypalVerifier(store, gw.app.payments.paypal, gw.clock, poll_s=0.01)
        jobs = [gevent.spawn(v.run_once) for v in (a, b, a, b)]
        gevent.joinall(jobs, raise_error=True)
        assert sum(j.value for j in jobs) == 1
        assert len(paypal.received) == 1 and balance(store) == M("10.00")
    finally:
        gw.close()


def test_fsbill_serve_verifies_what_an_earlier_process_left_pending(sqlite_url, paypal):
    """The node (`fsbill serve`) starts the verifier when payments.paypal is configured; the app it
    hands the API server shares it."""
    from fsbill.config import load_settings
    from fsbill.server import Node

    migrate_fresh(sqlite_url)
    store = Store(sqlite_url)
    store.upgrade()
    seed(store)
    earlier = start_gateway(store, verify_url=paypal.url)  # stored and acknowledged, then the process died
    earlier.post(PAYPAL, ipn())
    earlier.close()
    settings = load_settings(
        None,
        {
            "database": sqlite_url,
            "listen": "127.0.0.1:0",
            "metrics_listen": "",
            "api": {"listen": "127.0.0.1:0"},
            "payments": {"paypal": {"receiver_email": RECEIVER, "verify_url": paypal.url}},
        },
    )
    node = Node(settings)
    node.start()
    try:
        wait_for(lambda: settled(store), "verified by the node")
        assert balance(store) == M("10.00")
        app = node.payments_app()
        assert app.verifier is node.paypal_verifier and app.metrics is node.metrics
    finally:
        node.stop(grace_s=0)
        store.close()


def test_hostile_notices_are_400s_or_kept_never_500s(gateway):
    assert gateway.post(PAYPAL, b"a=1\x00b")[0] == 400
    assert gateway.post(PAYPAL, b"")[0] == 400
    gateway.post(PAYPAL, ipn(custom="acme%00\u0000", txn_id="T%00"))
    gateway.post(PAYPAL, b"\xff\xfe=%ff&receiver_email=" + RECEIVER.encode() + b"&charset=utf-8")
    wait_for(lambda: settled(gateway.store), "verified")
    assert balance(gateway.store) == M("0")
    assert [n.status for n in dbpay.notices(gateway.store)] == ["unmatched", "rejected"]
