"""Bundles of minutes in the database (issue 25, docs/BUNDLES.md): durable holds shared by
concurrent calls, extension and settlement exactly once (the reaper too), renewal with rollover
across month ends with a stepped clock (the charges loop and lazily), and resellers, on SQLite
and PostgreSQL."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from fsbill.core.call import answer
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd
from fsbill.db import bundles as dbbundles
from fsbill.db import calls as dbcalls
from fsbill.db import chain as dbchain
from fsbill.db import ledger
from fsbill.db import plans as dbplans
from fsbill.db.charges import run_charges
from fsbill.db.rates import import_deck

M = Money.parse
US = 1_000_000
POLICY = GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60)
HEADER = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n"


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * US


T0 = at("2027-01-15T12:00:00")


def seed(
    store,
    *,
    seconds: int = 20,
    balance: str = "0.10",
    rollover: int = 0,
    per_min: str = "0.60",
    parent: str | None = None,
    code: str = "A",
    start_us: int = T0,
) -> int:
    if parent is None:
        ledger.create_tariff(store, "retail", "EUR", T0)
        import_deck(store, "retail", io.StringIO(HEADER + f"49,{per_min},0,1,1,0,Germany\n33,{per_min},0,1,1,0,F\n"))
    acc = ledger.create_account(store, code, "retail", T0, parent=parent)
    if M(balance):
        ledger.topup(store, code, M(balance), T0, reference=f"seed-{code}")
    dbbundles.create_bundle(store, "de", seconds, T0, prefixes="49", rollover_max_s=rollover)
    dbplans.create_plan(store, "de-minutes", Money(0), "monthly", "EUR", T0, bundle="de")
    dbplans.subscribe(store, code, "de-minutes", T0, start_us=start_us)
    return acc.id


def reserve(
    store, uuid: str, account_id: int, now_us: int = T0, per_min: str = "0.60", destination: str = "4930123"
) -> dbcalls.Authorization:
    return dbcalls.reserve(
        store,
        uuid=uuid,
        account_id=account_id,
        rate=Rate(prefix=destination[:2], rate=M(per_min)),
        policy=POLICY,
        node="n",
        caller="1",
        destination=destination,
        now_us=now_us,
        lease_until_us=now_us + 600 * US,
        max_ring_s=30,
    )


def answered(store, auth: dbcalls.Authorization, at_us: int):
    assert auth.call is not None
    call = answer(auth.call, at_us, POLICY)
    dbcalls.mark_answered(store, call, at_us + 600 * US)
    return call


def end(uuid: str, answered_us: int, talk_s: float) -> CallEnd:
    stop = answered_us + int(talk_s * US)
    return CallEnd(uuid, 1, answered_us, stop, answered_us, int(talk_s), "NORMAL_CLEARING", "completed", stop)


def balance(store, code: str = "A", now_us: int = T0) -> dbbundles.BalanceView:
    [b] = dbbundles.balances(store, code, now_us)
    assert sum(e.delta_s for e in dbbundles.entries(store, code)) == b.seconds  # the bundle ledger adds up
    a = ledger.get_account(store, code)
    assert a.balance == ledger.ledger_sum(store, code) and a.available.micros >= 0  # so does money
    return b


def test_two_calls_share_one_bundle_and_one_balance(store):
    a = seed(store)
    first = reserve(store, "c1", a)
    assert first.call is not None and (first.call.granted_s, first.call.bundle_s) == (30, 20)
    assert reserve(store, "c2", a, T0 + US).reason == "insufficient_funds"  # both are held by c1
    assert balance(store).held_s == 20
    call = answered(store, first, T0 + 2 * US)
    cdr = dbcalls.settle_call(store, end("c1", call.answered_us, 24.5))
    assert cdr is not None and (cdr.bundle_s, cdr.billed_s, cdr.charged) == (20, 5, M("0.05"))
    assert dbcalls.settle_call(store, end("c1", call.answered_us, 24.5)) == cdr  # exactly once
    b = balance(store)
    assert (b.seconds, b.held_s) == (0, 0)
    assert ledger.get_account(store, "A").balance == M("0.05")


def test_a_destination_not_covered_holds_no_bundle_seconds(store):
    a = seed(store)
    auth = reserve(store, "c1", a, destination="33612345")
    assert auth.call is not None and auth.call.bundle_s == 0 and auth.call.granted_s == 10
    assert balance(store).held_s == 0


def test_heartbeats_take_bundle_seconds_then_money(store):
    a = seed(store, seconds=300, balance="1.00")
    auth = reserve(store, "c1", a)
    assert auth.call is not None and (auth.call.granted_s, auth.call.bundle_s, auth.call.held) == (120, 120, Money(0))
    call = answered(store, auth, T0)
    beat = dbcalls.heartbeat(store, "c1", 1, T0 + 70 * US, POLICY, T0 + 700 * US, known=call)
    assert beat is not None and (beat.call.granted_s, beat.call.bundle_s) == (190, 190)
    beat = dbcalls.heartbeat(store, "c1", 1, T0 + 140 * US, POLICY, T0 + 700 * US, known=beat.call)
    beat = dbcalls.heartbeat(store, "c1", 1, T0 + 201 * US, POLICY, T0 + 700 * US, known=beat.call)
    assert beat is not None and (beat.call.granted_s, beat.call.bundle_s) == (321, 300)
    assert balance(store).held_s == 300 and ledger.get_account(store, "A").reserved == M("0.21")
    beat = dbcalls.heartbeat(store, "c1", 1, T0 + 310 * US, POLICY, T0 + 700 * US, known=beat.call)
    assert beat is not None and beat.debit == M("0.10")  # 10 s into paid time
    cdr = dbcalls.settle_call(store, end("c1", T0, 315))
    assert cdr is not None and (cdr.bundle_s, cdr.billed_s, cdr.charged) == (300, 15, M("0.15"))
    assert (balance(store).seconds, ledger.get_account(store, "A").balance) == (0, M("0.85"))


def test_the_reaper_settles_bundle_holds_once(store):
    a = seed(store, seconds=100, balance="1.00")
    auth = reserve(store, "c1", a)
    answered(store, auth, T0)
    [cdr] = dbcalls.reap(store, T0 + 3600 * US)
    assert cdr.result == "recovered" and cdr.bundle_s == 100 and cdr.charged == Money(0)
    assert dbcalls.reap(store, T0 + 7200 * US) == []
    b = balance(store)
    assert (b.seconds, b.held_s) == (0, 0)
    assert ledger.get_account(store, "A").reserved == Money(0)


def test_renewal_with_rollover_across_month_ends_stepped_clock(store):
    a = seed(store, seconds=1000, balance="10.00", rollover=300)
    auth = reserve(store, "c1", a)
    answered(store, auth, T0)
    dbcalls.settle_call(store, end("c1", T0, 100))
    assert balance(store).seconds == 900
    feb = at("2027-02-01T00:00:00")
    assert run_charges(store, feb - US).bundles_renewed == 0  # not yet
    assert run_charges(store, feb + US).bundles_renewed == 1
    assert run_charges(store, feb + 2 * US).bundles_renewed == 0  # idempotent
    b = balance(store, now_us=feb + 3 * US)
    assert (b.seconds, b.period_start_us, b.period_end_us) == (1300, feb, at("2027-03-01T00:00:00"))
    # a call across the next month end: it keeps what it was granted; the unused rest expires
    late = at("2027-02-28T23:59:00")
    auth = reserve(store, "c2", a, late)
    assert auth.call is not None and auth.call.bundle_s == 120
    answered(store, auth, late)
    mar = at("2027-03-01T00:00:00")
    assert run_charges(store, mar + US).bundles_renewed == 1
    # 1300 − 120 held: 1180 free, 300 carried; 120 held stay; 1000 given
    assert balance(store, now_us=mar + US).seconds == 300 + 120 + 1000
    dbcalls.settle_call(store, end("c2", late, 90))
    b = balance(store, now_us=mar + 200 * US)
    assert (b.seconds, b.held_s) == (1300, 0)  # 90 s used, 30 s of February's expired
    kinds = [e.kind for e in dbbundles.entries(store, "A")]
    assert (
        kinds.count("given") == 3 and kinds.count("call") == 2 and kinds.count("expired") == 3
    )  # at two month ends, and the rest of c2
    # lazily: no charges run at all in April, a call still draws on April's seconds
    apr = at("2027-04-10T00:00:00")
    auth = reserve(store, "c3", a, apr)
    assert auth.call is not None and auth.call.bundle_s == 120
    b = balance(store, now_us=apr)
    assert (b.seconds, b.held_s, b.period_start_us) == (1300, 120, at("2027-04-01T00:00:00"))


def test_a_customers_bundle_covers_only_its_own_price(store):
    ledger.create_tariff(store, "wholesale", "EUR", T0)
    import_deck(store, "wholesale", io.StringIO(HEADER + "49,0.60,0,1,1,0,Germany\n"))
    ledger.create_tariff(store, "retail", "EUR", T0)
    import_deck(store, "retail", io.StringIO(HEADER + "49,1.20,0,1,1,0,Germany\n"))
    ledger.create_account(store, "R", "wholesale", T0)
    ledger.topup(store, "R", M("0.30"), T0, reference="seed-R")
    c = seed(store, seconds=20, balance="1.00", per_min="1.20", parent="R", code="C")
    auth = reserve(store, "c1", c, per_min="1.20")
    assert auth.call is not None and (auth.call.granted_s, auth.call.bundle_s) == (30, 20)  # R's 0.30 is the cap
    answered(store, auth, T0)
    cdr = dbcalls.settle_call(store, end("c1", T0, 25))
    assert cdr is not None and (cdr.bundle_s, cdr.billed_s, cdr.charged) == (20, 5, M("0.10"))
    [line] = dbchain.cdr_levels(store, "c1", 1)
    assert (line.account, line.billed_s, line.charged) == ("R", 25, M("0.25"))  # R pays its price in money
    assert balance(store, "C").seconds == 0
