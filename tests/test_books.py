"""The books balance to the micro-unit after thousands of random calls: Σ CDR charges ==
Σ ledger call debits == balance change, every CDR's cost is exactly the rated cost of the
times FreeSWITCH reported, and no account ever had less than nothing available. Bundle seconds
likewise (docs/BUNDLES.md): Σ CDR bundle seconds == Σ bundle ledger call entries, the bundle
ledger adds up to each balance, none goes below zero, and a call's paid part is rated from the
end of its bundle part."""

import random

import pytest
from rig import Rig

from fsbill.core.money import Money, RoundingRule
from fsbill.core.rating import Rate, billed_seconds_us, cost
from fsbill.db import bundles as dbbundles
from fsbill.db import ledger
from fsbill.db import plans as dbplans

DECK = """prefix,rate,connect_fee,initial_increment,increment,min_duration
49,1.00,0,1,1,0
4915,0.4567,0.0123,30,6,0
44,0.60,0,60,60,0
33,0.30,0.05,30,6,10
1,0.0100,0,6,6,0
7,2.7777,0.1,1,1,30
"""
# (name, seconds, prefixes, increment): sold by free plans of the same name
BUNDLES = [("any", 60, None, 1), ("de", 300, "49", 30), ("fr-mobile", 120, "33,4915", 1)]
DESTINATIONS = ["4930123456", "4915112345678", "442071234567", "33612345678", "12125551234", "74951234567"]


def run_random_traffic(db_url: str, calls: int, seed: int) -> None:
    rnd = random.Random(seed)
    # At 50x a cut-off FreeSWITCH's scheduler runs 30 ms late on a loaded machine is 1.5 s of
    # talk: a margin of 4 s keeps every cut-off inside what was paid (charged == cost, asserted).
    rig = Rig(
        db_url, time_scale=50, deck=DECK, slice_s=rnd.choice([30, 60, 120]), heartbeat_s=10, cutoff={"margin_s": 4}
    )
    try:
        now = rig.clock.now_us()
        for name, seconds, prefixes, increment in BUNDLES:
            dbbundles.create_bundle(rig.store, name, seconds, now, prefixes=prefixes, increment_s=increment)
            dbplans.create_plan(rig.store, name, Money(0), "monthly", "EUR", now, bundle=name)
        # its own stream, so the accounts and calls each seed draws stay what they were before
        # bundles (a seed whose calls talk to a cheap rate until cut-off takes minutes, not seconds)
        bundle_rnd = random.Random(f"bundles-{seed}")
        accounts = {}
        for i in range(8):
            code = f"acct{i}"
            balance = rnd.choice(["0.05", "0.50", "2.00", "7.3333", "25.00"])
            rig.account(
                code,
                balance,
                credit_limit=Money.parse(rnd.choice(["0", "0", "1.00"])),
                max_channels=rnd.choice([0, 0, 3, 10]),
            )
            accounts[code] = Money.parse(balance)
            for name, *_ in bundle_rnd.sample(BUNDLES, bundle_rnd.choice([0, 0, 1, 2])):
                dbplans.subscribe(rig.store, code, name, now)
        specs = []
        for _ in range(calls):
            kind = rnd.random()
            specs.append(
                rig.spec(
                    account=rnd.choice(list(accounts)),
                    destination=rnd.choice(DESTINATIONS),
                    talk_s=rnd.choice([None, rnd.uniform(0.5, 5), rnd.uniform(5, 200)]) if kind > 0.1 else 10,
                    answer_after_s=None if kind < 0.05 else rnd.uniform(0.1, 4),
                    fail_cause="USER_BUSY" if kind < 0.05 else None,
                    ring_s=2,
                )
            )
        records = rig.switch.run_load(rig.address, specs, concurrency=rnd.choice([20, 60]))
        cdrs = rig.settled(calls, timeout_s=120)
        assert len({c.uuid for c in cdrs}) == calls
        by_uuid = {r.uuid: r for r in records}
        for cdr in cdrs:
            rec = by_uuid[cdr.uuid]
            assert cdr.charged == cdr.cost or cdr.result == "rejected", (
                repr(cdr)[:1500],
                rec.commands,
                rec.fired_tasks,
                rec.scheduled_tasks,
            )
            assert not cdr.uncollected, cdr
            if cdr.result == "rejected":
                assert cdr.cost == Money(0)
                continue
            rec = by_uuid[cdr.uuid]
            if rec.answered_us is None:
                assert cdr.cost == Money(0)
                continue
            rate = Rate(
                cdr.prefix,
                cdr.rate,
                cdr.connect_fee,
                cdr.initial_increment_s,
                cdr.increment_s,
                cdr.min_duration_s,
                RoundingRule(),
            )
            assert cdr.answer_us == rec.answered_us
            talked_us = min(rec.ended_us, rec.unbridged_us or rec.ended_us) - rec.answered_us
            if cdr.bundle_s and not cdr.billed_s:  # within its bundle part: every started second used
                assert cdr.bundle_s >= -(-talked_us // 1_000_000), cdr
            else:  # the paid part starts where the bundle part (all of it used) ends
                assert cdr.billed_s == billed_seconds_us(rate, talked_us - cdr.bundle_s * 1_000_000)
            assert cdr.cost == cost(rate, cdr.billed_s)
        for code, initial in accounts.items():
            acct = rig.show(code)
            entries = ledger.ledger(rig.store, code)
            call_debits = sum((e.amount for e in entries if e.kind == "call"), Money(0))
            charged = sum((c.charged for c in cdrs if c.account == code), Money(0))
            assert -call_debits == charged == initial - acct.balance, code
            assert acct.balance == ledger.ledger_sum(rig.store, code)
            assert acct.reserved == Money(0)
            assert acct.balance + acct.credit_limit >= Money(0), code  # never overspent
            # every ledger entry's running balance stayed within the credit limit too
            assert all(e.balance_after + acct.credit_limit >= Money(0) for e in entries)
            # bundle seconds, like money
            moves = dbbundles.entries(rig.store, code)
            used = sum(c.bundle_s for c in cdrs if c.account == code)
            assert -sum(e.delta_s for e in moves if e.kind == "call") == used, code
            assert all(e.seconds_after >= 0 for e in moves)
            held = dbbundles.balances(rig.store, code, rig.clock.now_us())
            for b in held:
                assert b.held_s == 0 and b.seconds >= 0
                assert b.seconds == sum(e.delta_s for e in moves if e.bundle == b.bundle), code
            if not held:
                assert used == 0
        assert any(c.bundle_s for c in cdrs) and any(c.bundle_s and c.billed_s for c in cdrs)  # bundles were used
        assert rig.live() == []
    finally:
        rig.close()


def test_books_balance_after_two_thousand_random_calls_sqlite(sqlite_url):
    run_random_traffic(sqlite_url, calls=2000, seed=2026)


@pytest.mark.parametrize("seed", [11])
def test_books_balance_after_random_calls_postgresql(pg_url, seed):
    run_random_traffic(pg_url, calls=600, seed=seed)
