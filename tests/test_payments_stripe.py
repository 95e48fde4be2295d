"""Stripe webhooks over real HTTP on real databases: verified before anything is read, and every
payment intent and every event credited once, whatever is redelivered, replayed or raced."""

from __future__ import annotations

import json

import gevent
import pytest
from payments_rig import (
    SECRET,
    US,
    M,
    balance,
    hold,
    refunded,
    seed,
    start_gateway,
    succeeded,
)

from fsbill.db import Store, ledger
from fsbill.db import payments as dbpay
from fsbill.payments.stripe import BadSignature, sign, verify_signature


@pytest.fixture
def gateway(store):
    seed(store)
    gw = start_gateway(store)
    yield gw
    gw.close()


def credits(store: Store, code: str = "acme") -> list:
    return [e for e in ledger.ledger(store, code) if e.kind == "topup" and e.reference != f"seed-{code}"]


# -- the signature, as Stripe specifies it -----------------------------------------------------------------
BODY = b'{"id":"evt_1"}'


def test_a_signature_made_with_the_secret_verifies():
    assert verify_signature(BODY, sign(BODY, SECRET, 1000), SECRET, 1000, 300) == 1000


def test_any_v1_may_match_so_a_secret_can_roll():
    old = sign(BODY, "whsec_old", 1000).split(",")[1]
    new = sign(BODY, SECRET, 1000).split(",")[1]
    assert verify_signature(BODY, f"t=1000,{old},{new},v0=abc", SECRET, 1000, 300) == 1000


@pytest.mark.parametrize(
    "header, now_s, why",
    [
        ("", 1000, "no Stripe-Signature"),
        ("v1=abc", 1000, "no timestamp"),
        ("t=1000", 1000, "no timestamp or no v1"),
        ("t=abc,v1=00", 1000, "not a whole number"),
        (sign(BODY, "whsec_other", 1000), 1000, "no v1 signature matches"),
        (sign(BODY + b" ", SECRET, 1000), 1000, "no v1 signature matches"),
        (sign(BODY, SECRET, 1000), 1301, "beyond 300 s"),
        (sign(BODY, SECRET, 1000), 699, "beyond 300 s"),
    ],
)
def test_a_bad_or_stale_signature_is_refused(header, now_s, why):
    with pytest.raises(BadSignature, match=why):
        verify_signature(BODY, header, SECRET, now_s, 300)


def test_the_edge_of_the_tolerance_is_inside():
    assert verify_signature(BODY, sign(BODY, SECRET, 1000), SECRET, 1300, 300) == 1000


# -- over HTTP ----------------------------------------------------------------------------------------------
def test_a_payment_intent_credits_its_account_in_minor_units(gateway):
    status, reply = gateway.stripe(succeeded(amount=1050))
    assert (status, reply["outcome"]) == (200, "credited")
    assert balance(gateway.store) == M("10.50")
    [entry] = credits(gateway.store)
    assert entry.reference == "stripe:pi_1"
    assert dbpay.get_payment(gateway.store, "stripe:pi_1").amount == M("10.50")
    assert gateway.notices("stripe", "credited") == 1


def test_the_recharge_reference_is_the_ledger_reference(gateway):
    gateway.stripe(succeeded(recharge="recharge-42"))
    assert [e.reference for e in credits(gateway.store)] == ["recharge-42"]


def test_the_same_event_ten_times_at_once_credits_once(gateway):
    jobs = [gevent.spawn(gateway.stripe, succeeded(amount=2000)) for _ in range(10)]
    gevent.joinall(jobs, raise_error=True)
    replies = [job.value for job in jobs]
    assert all(status == 200 for status, _ in replies), replies
    assert sorted(r["outcome"] for _, r in replies) == ["credited"] + ["duplicate"] * 9
    assert balance(gateway.store) == M("20.00")
    assert len(credits(gateway.store)) == 1


def test_the_same_event_re_signed_an_hour_later_credits_once(gateway):
    event = succeeded(amount=700)
    assert gateway.stripe(event)[1]["outcome"] == "credited"
    gateway.clock.step(3600)
    status, reply = gateway.stripe(event)  # a fresh timestamp: the signature is good, the event is old
    assert (status, reply["outcome"]) == (200, "duplicate")
    # and another event for the same payment intent (Stripe may send one again) adds nothing
    assert gateway.stripe(succeeded(amount=700, event_id="evt_other"))[1]["outcome"] == "duplicate"
    assert balance(gateway.store) == M("7.00")


def test_a_tampered_body_or_a_stale_timestamp_credits_nothing(gateway):
    body = json.dumps(succeeded(amount=900)).encode()
    good = sign(body, SECRET, gateway.clock.now_us() // US)
    tampered = body.replace(b"900", b"9000")
    status, problem = gateway.post("/v1/payments/stripe", tampered, {"Stripe-Signature": good})
    assert status == 400 and problem["type"] == "urn:fsbill:problem:usage" and problem["status"] == 400
    assert "no v1 signature matches" in problem["detail"]
    stale = sign(body, SECRET, gateway.clock.now_us() // US - 301)
    assert gateway.post("/v1/payments/stripe", body, {"Stripe-Signature": stale})[0] == 400
    assert gateway.post("/v1/payments/stripe", body)[0] == 400  # no header at all
    assert balance(gateway.store) == M("0")
    assert dbpay.notices(gateway.store) == []  # nothing was even recorded


def test_not_json_but_signed_is_a_400(gateway):
    body = b"not json"
    headers = {"Stripe-Signature": sign(body, SECRET, gateway.clock.now_us() // US)}
    assert gateway.post("/v1/payments/stripe", body, headers)[0] == 400


def test_other_events_are_acknowledged_and_ignored(gateway):
    event = {"id": "evt_x", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    assert gateway.stripe(event) == (
        200,
        {"outcome": "ignored", "event": "evt_x", "detail": "fsbill does not act on customer.created"},
    )


def test_zero_decimal_currency(store):
    seed(store, "yen", currency="JPY")
    gw = start_gateway(store)
    try:
        assert gw.stripe(succeeded(pi="pi_jpy", amount=500, currency="jpy", account="yen"))[1]["outcome"] == "credited"
        assert balance(store, "yen") == M("500")
        gw.stripe(refunded(pi="pi_jpy", refunded_total=120, currency="jpy"))
        assert balance(store, "yen") == M("380")
    finally:
        gw.close()


def test_a_partial_refund_then_its_redelivery_debits_once(gateway):
    gateway.stripe(succeeded(amount=1050))
    assert gateway.stripe(refunded(refunded_total=300))[1]["outcome"] == "refunded"
    gateway.clock.step(3600)
    assert gateway.stripe(refunded(refunded_total=300))[1]["outcome"] == "duplicate"
    # a second refund of the same charge: Stripe sends the cumulative total in a new event
    assert gateway.stripe(refunded(refunded_total=500, event_id="evt_r2"))[1]["outcome"] == "refunded"
    # an older event arriving late takes nothing more
    assert gateway.stripe(refunded(refunded_total=300, event_id="evt_r0"))[1]["outcome"] == "duplicate"
    assert balance(gateway.store) == M("5.50")
    refunds = [e for e in ledger.ledger(gateway.store, "acme") if e.kind == "refund"]
    assert [e.amount for e in refunds] == [M("-3.00"), M("-2.00")]
    payment = dbpay.get_payment(gateway.store, "stripe:pi_1")
    assert (payment.refunded, payment.owed) == (M("5.00"), M("0"))


def test_a_refund_never_takes_what_live_calls_hold(gateway):
    gateway.stripe(succeeded(amount=1000))  # 10.00
    account_id = ledger.get_account(gateway.store, "acme").id
    call = hold(gateway.store, account_id)  # the first grant: 120 s at 1.00/min holds 2.00
    held = ledger.get_account(gateway.store, "acme").reserved
    assert held == M("2.00")
    # the customer spends 7.00 elsewhere, then 5.00 is refunded: only 1.00 is free
    with gateway.store.transaction():
        ledger.post(gateway.store, account_id, M("-7.00"), "call", 1, call_uuid="c1", note="t")
    status, reply = gateway.stripe(refunded(refunded_total=500))
    assert (status, reply["outcome"], reply["owed"]) == (200, "refunded", "4.00")
    after = ledger.get_account(gateway.store, "acme")
    assert after.reserved == held  # the live call keeps its hold
    assert after.balance == M("2.00")  # balance + credit - held = 0: nothing live calls hold was taken
    assert after.arrears == M("4.00")  # what could not be taken is owed, paid first by the next money in
    assert after.available == M("-4.00")
    payment = dbpay.get_payment(gateway.store, "stripe:pi_1")
    assert (payment.refunded, payment.owed) == (M("5.00"), M("4.00"))
    assert call.call is not None


def test_a_refund_of_an_unknown_payment_is_unmatched(gateway):
    status, reply = gateway.stripe(refunded(pi="pi_never"))
    assert (status, reply["outcome"]) == (200, "unmatched")
    assert [n.reason for n in dbpay.unmatched(gateway.store)] == ["no credit stripe:pi_never to refund"]


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"account": "nobody"}, "no account 'nobody'"),
        ({"account": ""}, "the payment names no account"),
        ({"currency": "eur"}, "paid in EUR, account 'acme' is in USD"),
    ],
)
def test_what_cannot_be_applied_is_acknowledged_and_kept(gateway, kwargs, why):
    status, reply = gateway.stripe(succeeded(**kwargs))
    assert (status, reply["outcome"]) == (200, "unmatched")
    [notice] = dbpay.unmatched(gateway.store)
    assert notice.reason == why and notice.identity == "stripe:pi_1"
    assert balance(gateway.store) == M("0")
    assert gateway.notices("stripe", "unmatched") == 1


def test_a_closed_account_is_not_credited(gateway):
    from fsbill.db import management

    management.close_account(gateway.store, "acme", 1, actor="t")
    status, reply = gateway.stripe(succeeded())
    assert (status, reply["outcome"], reply["detail"]) == (200, "unmatched", "account 'acme' is closed")


def test_wrong_method_unknown_path_and_big_bodies_are_problems(gateway):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request("GET", "/v1/payments/stripe")
    r = conn.getresponse()
    assert (r.status, r.getheader("Allow"), r.getheader("Content-Type")) == (405, "POST", "application/problem+json")
    r.read()
    conn.close()
    assert gateway.post("/v1/payments/other", b"{}")[0] == 404
    assert gateway.post("/v1/payments/stripe", b"x" * (300 * 1024))[0] == 413


@pytest.mark.parametrize(
    "account, why",
    [
        ("acme\u0000", "no account 'acme\ufffd'"),  # PostgreSQL cannot even store a NUL
        ("a" * 400, "longer than an account code"),
        ("\ud800", "no account"),
    ],
)
def test_hostile_metadata_is_kept_as_unmatched_never_a_500(gateway, account, why):
    status, reply = gateway.stripe(succeeded(account=account))
    assert (status, reply["outcome"]) == (200, "unmatched")
    assert why in dbpay.unmatched(gateway.store)[0].reason


def test_an_absurd_payment_intent_id_is_a_400(gateway):
    assert gateway.stripe(succeeded(pi="pi_" + "x" * 300))[0] == 400
    assert gateway.stripe(succeeded(pi="pi_\u0000"))[0] == 400


def test_fsbill_serve_takes_stripe_on_its_api_listener_and_documents_it(sqlite_url):
    """The wiring of `fsbill serve`: the gateways are mounted on the API server (no bearer token:
    the signature is the authentication) and the API's OpenAPI document lists their routes."""
    import http.client
    import json
    import time

    from fsbill.config import load_settings
    from fsbill.server import Node

    settings = load_settings(
        None,
        {
            "database": sqlite_url,
            "listen": "127.0.0.1:0",
            "metrics_listen": "",
            "api": {"listen": "127.0.0.1:0"},
            "payments": {"stripe": {"webhook_secret": SECRET}},
        },
    )
    node = Node(settings)
    node.start()
    try:
        seed(node.store)
        assert node.api is not None
        port = node.api.port
        body = json.dumps(succeeded(amount=725)).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "POST", "/v1/payments/stripe", body=body, headers={"Stripe-Signature": sign(body, SECRET, int(time.time()))}
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        assert json.loads(response.read())["outcome"] == "credited"
        assert balance(node.store) == M("7.25")
        conn.request("GET", "/v1/openapi.json")
        paths = json.loads(conn.getresponse().read())["paths"]
        assert "/v1/payments/stripe" in paths and "/v1/payments/paypal" in paths
        conn.close()
    finally:
        node.stop()
