"""Resellers in the database (issue 24, docs/RESELLERS.md): the tree, and every level holding,
extending and settling its own share of a call, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest

from fsbill.core.call import answer
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd
from fsbill.db import calls as dbcalls
from fsbill.db import chain as dbchain
from fsbill.db import funding, ledger
from fsbill.db.cdr_export import cdr_page
from fsbill.db.guards import set_account_guards
from fsbill.db.management import set_account
from fsbill.db.rates import import_deck
from fsbill.errors import Conflict, InvalidInput, NotFound

M = Money.parse
US = 1_000_000
T0 = 1_790_000_000 * US
POLICY = GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60)
HEADER = "prefix,rate,connect_fee,initial_increment,increment,min_duration,description\n"


def tariff(store, name: str, per_min: str, currency: str = "EUR") -> None:
    ledger.create_tariff(store, name, currency, T0)
    import_deck(store, name, io.StringIO(HEADER + f"49,{per_min},0,1,1,0,Germany\n"))


def account(store, code: str, tariff_name: str, balance: str, parent: str | None = None, **kw) -> int:
    a = ledger.create_account(store, code, tariff_name, T0, parent=parent, **kw)
    if M(balance):
        ledger.topup(store, code, M(balance), T0, reference=f"seed-{code}")
    return a.id


def rate_of(per_min: str) -> Rate:
    return Rate(prefix="49", rate=M(per_min))


def seed(store) -> tuple[int, int]:
    """The issue's example: a reseller holding 0.30 at 0.60/min, its customer 100.00 at 1.20/min."""
    tariff(store, "wholesale", "0.60")
    tariff(store, "retail", "1.20")
    r = account(store, "R", "wholesale", "0.30")
    c = account(store, "C", "retail", "100.00", parent="R")
    return r, c


def reserve(store, uuid: str, account_id: int, per_min: str = "1.20", now_us: int = T0) -> dbcalls.Authorization:
    return dbcalls.reserve(
        store,
        uuid=uuid,
        account_id=account_id,
        rate=rate_of(per_min),
        policy=POLICY,
        node="n",
        caller="1",
        destination="4930123",
        now_us=now_us,
        lease_until_us=now_us + 600 * US,
        max_ring_s=30,
    )


def answered(store, auth: dbcalls.Authorization, at_us: int):
    assert auth.call is not None
    call = answer(auth.call, at_us, POLICY)
    dbcalls.mark_answered(store, call, at_us + 600 * US)
    return call


def end(uuid: str, answered_us: int, talk_s: int) -> CallEnd:
    stop = answered_us + talk_s * US
    return CallEnd(uuid, 1, answered_us, stop, answered_us, talk_s, "NORMAL_CLEARING", "completed", stop)


def books(store, code: str) -> ledger.AccountView:
    a = ledger.get_account(store, code)
    assert a.balance == ledger.ledger_sum(store, code)
    assert a.available.micros >= 0, f"{code} below zero: {a.available}"
    return a


# -- the tree -------------------------------------------------------------------------------------------
def test_parent_is_shown_and_must_exist_and_be_open_in_any_currency(sqlite_store):
    s = sqlite_store
    tariff(s, "wholesale", "0.60")
    tariff(s, "usd", "0.60", currency="USD")
    account(s, "R", "wholesale", "0")
    account(s, "C", "wholesale", "0", parent="R")
    assert ledger.get_account(s, "C").parent == "R" and ledger.get_account(s, "R").parent == ""
    assert ledger.get_account(s, "C").as_json()["parent"] == "R"
    with pytest.raises(NotFound, match="no account 'X'"):
        account(s, "D", "wholesale", "0", parent="X")
    account(s, "U", "usd", "0", parent="R")  # each level pays in its own currency (docs/RESELLERS.md)
    assert ledger.get_account(s, "U").currency == "USD"
    s.models.Account.update(status="closed").where(s.models.Account.code == "R").execute()
    with pytest.raises(InvalidInput, match="closed"):
        account(s, "D", "wholesale", "0", parent="R")
    assert [a.code for a in ledger.list_accounts(s)] == ["C", "R", "U"]  # nothing half-created


def test_a_tree_is_at_most_five_levels_deep(sqlite_store):
    s = sqlite_store
    tariff(s, "t", "0.60")
    account(s, "L1", "t", "0")
    for n in range(2, 6):
        account(s, f"L{n}", "t", "0", parent=f"L{n - 1}")
    with pytest.raises(InvalidInput, match="at most 5 levels"):
        account(s, "L6", "t", "0", parent="L5")
    assert [a.id for a in dbchain.ancestors(s, ledger.get_account(s, "L5").id)] == [
        ledger.get_account(s, f"L{n}").id for n in range(1, 5)
    ]


# -- one call, every level ------------------------------------------------------------------------------
def test_the_grant_is_what_the_poorest_level_affords_and_each_level_pays_its_own_rate(store):
    r, c = seed(store)
    auth = reserve(store, "call-1", c)
    assert auth.reason == "" and auth.call is not None
    assert auth.call.granted_s == 30  # 0.30 at 0.60/min, not the customer's 100.00
    assert (books(store, "R").reserved, books(store, "C").reserved) == (M("0.30"), M("0.60"))
    assert books(store, "R").live_channels == 1  # the reseller counts its subtree's calls
    assert reserve(store, "call-2", c).reason == "insufficient_funds"  # the reseller has nothing left
    call = answered(store, auth, T0 + 2 * US)
    cdr = dbcalls.settle_call(store, end("call-1", call.answered_us, 20))
    assert cdr is not None and cdr.charged == M("0.40") and cdr.billed_s == 20  # 20 s at 1.20/min
    [line] = dbchain.cdr_levels(store, "call-1", 1)
    assert (line.account, line.billed_s, line.cost, line.charged, line.margin) == (
        "R",
        20,
        M("0.20"),
        M("0.20"),
        M("0.20"),
    )
    r_acc, c_acc = books(store, "R"), books(store, "C")
    assert (r_acc.balance, r_acc.reserved, r_acc.live_channels) == (M("0.10"), M("0"), 0)
    assert (c_acc.balance, c_acc.reserved) == (M("99.60"), M("0"))
    assert dbcalls.settle_call(store, end("call-1", call.answered_us, 20)) is not None  # exactly once
    assert books(store, "R").balance == M("0.10") and len(dbchain.cdr_levels(store, "call-1", 1)) == 1


def test_every_level_is_extended_together_and_debited_at_its_own_rate(store):
    r, c = seed(store)
    ledger.topup(store, "R", M("0.90"), T0, reference="more")  # 1.20: 120 s at 0.60/min
    auth = reserve(store, "call-1", c)
    assert auth.call is not None and auth.call.granted_s == 120
    call = answered(store, auth, T0)
    beat = dbcalls.heartbeat(store, "call-1", 1, T0 + 70 * US, POLICY, T0 + 700 * US, known=call)
    assert beat is not None and not beat.extended  # the reseller has nothing more to hold
    assert beat.debit == M("1.40")  # 70 s at 1.20/min
    assert books(store, "R").balance == M("0.50")  # 1.20 − 70 s at 0.60/min
    ledger.topup(store, "R", M("10.00"), T0, reference="again")
    beat = dbcalls.heartbeat(store, "call-1", 1, T0 + 80 * US, POLICY, T0 + 700 * US, known=beat.call)
    assert beat is not None and beat.extended and beat.call.granted_s == 200  # 80 s + one slice
    with store.reading():
        [hold] = dbchain.read_holds(store, "call-1", 1)
    assert hold.debited + hold.held == M("2.00")  # 200 s at 0.60/min: what the reseller promised
    cdr = dbcalls.settle_call(store, end("call-1", T0, 150))
    assert cdr is not None and cdr.charged == M("3.00")
    assert books(store, "R").balance == M("11.20") - M("1.50")
    assert books(store, "R").reserved == M("0") and books(store, "C").reserved == M("0")


def test_a_suspended_reseller_refuses_and_stops_its_subtree(store):
    r, c = seed(store)
    ledger.topup(store, "R", M("10.00"), T0, reference="more")
    auth = reserve(store, "call-1", c)
    call = answered(store, auth, T0)
    ledger.set_status(store, "R", "suspended", T0)
    assert reserve(store, "call-2", c).reason == "suspended"
    beat = dbcalls.heartbeat(store, "call-1", 1, T0 + 70 * US, POLICY, T0 + 700 * US, known=call)
    assert beat is not None and not beat.extended and not beat.account_active
    dbcalls.settle_call(store, end("call-1", T0, 100))
    assert books(store, "R").reserved == M("0")


def test_the_reseller_channel_limit_counts_its_subtree(store):
    tariff(store, "wholesale", "0.60")
    tariff(store, "retail", "1.20")
    account(store, "R", "wholesale", "10.00", max_channels=1)
    c1 = account(store, "C1", "retail", "10.00", parent="R")
    c2 = account(store, "C2", "retail", "10.00", parent="R")
    assert reserve(store, "a", c1).reason == ""
    assert reserve(store, "b", c2).reason == "channel_limit"


def test_a_level_without_a_rate_refuses_the_call(store):
    tariff(store, "wholesale", "0.60")
    ledger.create_tariff(store, "retail", "EUR", T0)
    import_deck(store, "retail", io.StringIO(HEADER + "33,1.20,0,1,1,0,France\n"))
    account(store, "R", "retail", "10.00")
    c = account(store, "C", "wholesale", "10.00", parent="R")
    assert reserve(store, "a", c, per_min="0.60").reason == "no_rate"
    assert books(store, "C").reserved == M("0")


def test_a_call_nobody_saw_end_charges_every_level_its_first_block(store):
    r, c = seed(store)
    auth = reserve(store, "call-1", c)
    answered(store, auth, T0)
    [cdr] = dbcalls.reap(store, T0 + 3600 * US)
    assert cdr.result == "recovered" and cdr.charged == M("0.02")  # 1 s at 1.20/min
    [line] = dbchain.cdr_levels(store, "call-1", 1)
    assert line.charged == M("0.01")
    assert books(store, "R").reserved == M("0") and books(store, "R").live_channels == 0


def test_a_one_level_account_writes_no_level_rows(store):
    tariff(store, "retail", "1.20")
    a = account(store, "A", "retail", "10.00")
    auth = reserve(store, "call-1", a)
    assert auth.call is not None and auth.call.granted_s == 120
    with store.reading():
        assert dbchain.read_holds(store, "call-1", 1) == []
    dbcalls.settle_call(store, end("call-1", T0, 10))
    assert dbchain.cdr_levels(store, "call-1", 1) == []


# -- money between levels -------------------------------------------------------------------------------
def test_fund_moves_money_down_once_per_reference(store):
    r, c = seed(store)
    result = funding.fund(store, "C", M("0.20"), T0, reference="f-1")
    assert result.applied and (result.parent.amount, result.child.amount) == (M("-0.20"), M("0.20"))
    assert (books(store, "R").balance, books(store, "C").balance) == (M("0.10"), M("100.20"))
    again = funding.fund(store, "C", M("0.20"), T0, reference="f-1")
    assert not again.applied and again.child.id == result.child.id
    assert (books(store, "R").balance, books(store, "C").balance) == (M("0.10"), M("100.20"))
    with pytest.raises(Conflict, match="already used"):
        funding.fund(store, "C", M("0.05"), T0, reference="f-1")


def test_fund_never_takes_what_the_parent_does_not_have_or_what_its_calls_hold(store):
    r, c = seed(store)
    with pytest.raises(InvalidInput, match="0.30 EUR available"):
        funding.fund(store, "C", M("0.31"), T0, reference="f-1")
    reserve(store, "call-1", c)  # the reseller's 0.30 is held by its customer's call
    with pytest.raises(InvalidInput, match="0.00 EUR available"):
        funding.fund(store, "C", M("0.01"), T0, reference="f-2")
    with pytest.raises(InvalidInput, match="no parent"):
        funding.fund(store, "R", M("0.01"), T0, reference="f-3")
    assert books(store, "R").balance == M("0.30") and books(store, "C").balance == M("100.00")


def test_a_customer_topup_never_moves_its_reseller(store):
    r, c = seed(store)
    ledger.topup(store, "C", M("50.00"), T0, reference="pay-1")
    assert books(store, "R").balance == M("0.30") and books(store, "C").balance == M("150.00")


def test_an_account_of_a_tree_may_change_currency_like_any_other(sqlite_store):
    s = sqlite_store
    tariff(s, "wholesale", "0.60")
    tariff(s, "usd", "0.60", currency="USD")
    account(s, "R", "wholesale", "0")
    account(s, "C", "wholesale", "0", parent="R")
    set_account(s, "C", T0, "test", tariff="usd")  # a zero balance and no live call, as for anyone
    assert ledger.get_account(s, "C").currency == "USD" and ledger.get_account(s, "C").parent == "R"
    ledger.topup(s, "R", M("1.00"), T0, reference="r")
    with pytest.raises(InvalidInput, match="zero balance"):
        set_account(s, "R", T0, "test", tariff="usd")


def test_a_reseller_export_lists_its_subtree_at_its_own_cost(store):
    r, c = seed(store)
    ledger.topup(store, "R", M("10.00"), T0, reference="more")
    for uuid, payer, per_min in (("own", r, "0.60"), ("sub", c, "1.20")):
        auth = reserve(store, uuid, payer, per_min=per_min)
        assert auth.reason == "", auth.reason
        dbcalls.settle_call(store, end(uuid, answered(store, auth, T0).answered_us, 30))
    rows, _ = cdr_page(store, account="R")
    by_uuid = {v.uuid: v for v in rows}
    assert set(by_uuid) == {"own", "sub"}
    assert (by_uuid["own"].account, by_uuid["own"].cost) == ("R", M("0.30"))
    sub = by_uuid["sub"]
    assert (sub.account, sub.rate, sub.cost, sub.charged, sub.margin) == (
        "C",
        M("0.60"),
        M("0.30"),
        M("0.30"),
        M("0.30"),
    )
    [mine], _ = cdr_page(store, account="C")
    assert (mine.uuid, mine.cost, mine.margin) == ("sub", M("0.60"), None)


def test_an_unknown_account_is_refused_as_before(store):
    seed(store)
    assert reserve(store, "x", 999_999).reason == "unknown_account"


# -- the fraud guards hold per level -----------------------------------------------------------------------
def test_a_reseller_guards_hold_for_its_subtree(store):
    r, c = seed(store)
    ledger.topup(store, "R", M("10.00"), T0, reference="more")
    set_account_guards(store, "R", {"block_prefixes": "4930"}, T0, actor="test")
    assert reserve(store, "a", c).reason == "destination_blocked"
    set_account_guards(store, "R", {"block_prefixes": "none", "max_rate_micros": "0.50"}, T0, actor="test")
    assert reserve(store, "b", c).reason == "rate_too_high"  # 0.60/min at the reseller's own rate
    set_account_guards(store, "R", {"max_rate_micros": "none", "max_calls_per_minute": "1"}, T0, actor="test")
    assert reserve(store, "c", c).reason == ""
    assert reserve(store, "d", c, now_us=T0 + US).reason == "call_rate"
    assert books(store, "R").live_channels == 1


def test_a_reseller_spend_cap_bounds_the_grant(store):
    r, c = seed(store)
    ledger.topup(store, "R", M("10.00"), T0, reference="more")
    set_account_guards(store, "R", {"daily_cap_micros": "0.20"}, T0, actor="test")
    auth = reserve(store, "a", c)
    assert auth.call is not None and auth.call.granted_s == 20  # 0.20 at 0.60/min
    assert reserve(store, "b", c).reason == "spend_cap"
