"""Two nodes sharing PostgreSQL, each with its own Store and its own HTTP server: the same Stripe
event delivered to both at once, and again later re-signed, credits once; a refund raced on both
debits once."""

from __future__ import annotations

import gevent
from migrated import migrate_fresh
from payments_rig import M, SteppedClock, balance, refunded, seed, start_gateway, succeeded

from fsbill.db import Store, ledger
from fsbill.db import payments as dbpay


def test_two_nodes_credit_and_refund_once(pg_url):
    migrate_fresh(pg_url)
    stores = [Store(pg_url, pool_size=4), Store(pg_url, pool_size=4)]
    stores[0].upgrade()
    seed(stores[0])
    clock = SteppedClock()
    nodes = [start_gateway(s, clock) for s in stores]
    try:
        event = succeeded(amount=2500)
        jobs = [gevent.spawn(node.stripe, event) for node in nodes for _ in range(5)]
        gevent.joinall(jobs, raise_error=True)
        outcomes = sorted(j.value[1]["outcome"] for j in jobs)
        assert outcomes == ["credited"] + ["duplicate"] * 9, outcomes
        clock.step(3600)  # an hour later, re-signed with a fresh timestamp, to each node
        assert [node.stripe(event)[1]["outcome"] for node in nodes] == ["duplicate", "duplicate"]
        assert balance(stores[1]) == M("25.00")

        jobs = [gevent.spawn(node.stripe, refunded(refunded_total=700)) for node in nodes for _ in range(3)]
        jobs += [gevent.spawn(node.stripe, refunded(refunded_total=700, event_id="evt_r1b")) for node in nodes]
        gevent.joinall(jobs, raise_error=True)
        assert sorted(j.value[1]["outcome"] for j in jobs).count("refunded") == 1
        assert balance(stores[0]) == M("18.00")
        assert [e.amount for e in ledger.ledger(stores[0], "acme") if e.kind == "refund"] == [M("-7.00")]
        assert dbpay.get_payment(stores[1], "stripe:pi_1").refunded == M("7.00")
    finally:
        for node in nodes:
            node.close()
        for s in stores:
            s.close()
