"""Two nodes sharing PostgreSQL, each with its own API server and Store: the same top-up sent to
both at once, ten times, credits once, and both answer with the first reply."""

from __future__ import annotations

import gevent
import pytest
from api_rig import ApiRig

from fsbill.db import ledger


@pytest.fixture
def nodes(pg_url):
    first = ApiRig(pg_url).seed()
    second = ApiRig(pg_url)  # another Store (its own pool) and server on the same database
    second.tokens = dict(first.tokens)
    yield first, second
    second.close()
    first.close()


def test_one_key_sent_to_two_nodes_at_once_credits_once(nodes):
    first, second = nodes
    body = {"amount": "12.34"}

    def send(node: ApiRig):
        return node.call("POST", "/v1/accounts/1001/topups", "admin", body, {"Idempotency-Key": "pg-burst"})

    greenlets = [gevent.spawn(send, first if i % 2 else second) for i in range(10)]
    replies = [g.value for g in gevent.joinall(greenlets, raise_error=True)]
    assert {(r.status, r.text) for r in replies} == {(201, replies[0].text)}
    assert str(ledger.get_account(first.store, "1001").balance) == "62.34"
    assert ledger.ledger_sum(first.store, "1001") == ledger.get_account(first.store, "1001").balance
    conflict = second.call(
        "POST", "/v1/accounts/1001/topups", "admin", {"amount": "1"}, {"Idempotency-Key": "pg-burst"}
    )
    assert conflict.status == 409 and conflict.json["kind"] == "conflict"


def test_adjustments_race_across_nodes_once_per_key(nodes):
    first, second = nodes
    body = {"amount": "-5.00", "reason": "fee"}
    greenlets = [
        gevent.spawn(
            (first if i % 2 else second).call,
            "POST",
            "/v1/accounts/1002/adjustments",
            "admin",
            body,
            {"Idempotency-Key": f"fee-{i % 3}"},
        )
        for i in range(12)
    ]
    replies = [g.value for g in gevent.joinall(greenlets, raise_error=True)]
    assert {r.status for r in replies} == {201}
    assert str(ledger.get_account(first.store, "1002").balance) == "55.00"  # three keys, three fees
