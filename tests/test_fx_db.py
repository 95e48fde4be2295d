"""Exchange rates between reseller levels in the database (issue 24, docs/RESELLERS.md): `fx set`
stored exactly and audited; a chain crossing currencies holds and settles each level in its own
currency, snapshots the rate its margin took (or leaves it empty without one); `fund` converts
at the rate; a reseller's margin report. On SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from test_resellers_db import HEADER, T0, US, account, answered, books, end, reserve

from fsbill.cdr_format import record
from fsbill.core.money import Money
from fsbill.db import audit, funding, ledger, reports
from fsbill.db import calls as dbcalls
from fsbill.db import chain as dbchain
from fsbill.db import fx as dbfx
from fsbill.db.cdr_export import cdr_page
from fsbill.db.rates import import_deck
from fsbill.errors import Conflict, InvalidInput, NotFound

M = Money.parse


def tariff(store, name: str, per_min: str, currency: str) -> None:
    ledger.create_tariff(store, name, currency, T0)
    import_deck(store, name, io.StringIO(HEADER + f"49,{per_min},0,1,1,0,Germany\n"))


def rub_under_usd(store, w_balance: str = "0.03") -> int:
    """W pays 0.06 USD/min; R, a RUB reseller under it, 0.60 RUB/min; R's customer C 1.20 RUB/min."""
    tariff(store, "top", "0.06", "USD")
    tariff(store, "wholesale", "0.60", "RUB")
    tariff(store, "retail", "1.20", "RUB")
    account(store, "W", "top", w_balance)
    account(store, "R", "wholesale", "100.00", parent="W")
    return account(store, "C", "retail", "100.00", parent="R")


def talk(store, uuid: str, payer: int, talk_s: int, at_us: int = T0, per_min: str = "1.20"):
    auth = reserve(store, uuid, payer, per_min=per_min, now_us=at_us)
    assert auth.reason == "", auth.reason
    call = answered(store, auth, at_us)
    cdr = dbcalls.settle_call(store, end(uuid, call.answered_us, talk_s))
    assert cdr is not None
    return cdr


def test_a_rate_is_stored_exactly_replaced_and_audited(store):
    v = dbfx.set_rate(store, "usd", "RUB", "90.1234000", T0, actor="ops")
    assert (v.pair, v.rate) == ("USD/RUB", "90.1234000")  # as typed: never a float
    dbfx.set_rate(store, "USD", "RUB", "90.1234000", T0 + US, actor="ops")  # the same: nothing changes
    dbfx.set_rate(store, "USD", "RUB", "91", T0 + 2 * US, actor="ops")
    dbfx.set_rate(store, "EUR", "USD", "1.08", T0 + 3 * US, actor="ops")
    assert [(r.pair, r.rate) for r in dbfx.list_rates(store)] == [("EUR/USD", "1.08"), ("USD/RUB", "91")]
    trail = audit.entries(store, "fx", "USD/RUB")
    assert [(e.actor, e.field, e.old, e.new) for e in trail] == [
        ("ops", "rate", "90.1234000", "91"),
        ("ops", "rate", None, "90.1234000"),
    ]


@pytest.mark.parametrize(
    ("source", "target", "rate", "message"),
    [
        ("USD", "USD", "1", "two currencies"),
        ("USD", "RUB", "0", "greater than zero"),
        ("USD", "RUB", "1e2", "malformed rate"),
        ("USD", "RUB", "90,5", "malformed rate"),
        ("US", "RUB", "90", "ISO 4217"),
    ],
)
def test_bad_rates_are_refused_and_nothing_is_stored(sqlite_store, source, target, rate, message):
    with pytest.raises(InvalidInput, match=message):
        dbfx.set_rate(sqlite_store, source, target, rate, T0, actor="ops")
    assert dbfx.list_rates(sqlite_store) == []


def test_each_level_holds_and_settles_in_its_own_currency_and_margins_snapshot_the_rate(store):
    c = rub_under_usd(store)  # W's 0.03 USD buys 30 s at 0.06/min
    auth = reserve(store, "one", c)
    assert auth.call is not None and auth.call.granted_s == 30  # the USD wholesaler is the limit
    assert [books(store, x).reserved for x in ("W", "R", "C")] == [M("0.03"), M("0.30"), M("0.60")]
    call = answered(store, auth, T0)
    dbcalls.settle_call(store, end("one", call.answered_us, 20))
    top, mid = dbchain.cdr_levels(store, "one", 1)
    assert (top.account, top.currency, top.cost, top.margin, top.fx_pair) == ("W", "USD", M("0.02"), None, None)
    assert (mid.account, mid.currency, mid.cost, mid.margin, mid.fx_pair) == ("R", "RUB", M("0.20"), M("0.20"), None)
    assert [books(store, x).balance for x in ("W", "R", "C")] == [M("0.01"), M("99.80"), M("99.60")]

    dbfx.set_rate(store, "USD", "RUB", "9", T0, actor="ops")  # used RUB -> USD by division
    talk(store, "two", c, 5)
    top, mid = dbchain.cdr_levels(store, "two", 1)
    # R paid 0.05 RUB = 0.0055555... USD -> 0.005556 (half-even, 6 decimals); W paid 0.005 USD
    assert (top.margin, top.fx_pair, top.fx_rate) == (M("0.000556"), "USD/RUB", "9")
    assert top.as_json()["fx_rate"] == "9" and mid.as_json()["fx_pair"] is None
    dbfx.set_rate(store, "USD", "RUB", "10", T0, actor="ops")
    assert dbchain.cdr_levels(store, "two", 1)[0].margin == M("0.000556")  # a snapshot
    assert dbchain.cdr_levels(store, "one", 1)[0].margin is None
    for x in ("W", "R", "C"):
        assert books(store, x).reserved == M("0")


def test_a_reseller_export_shows_its_lines_in_its_currency(store):
    c = rub_under_usd(store)
    dbfx.set_rate(store, "RUB", "USD", "0.011", T0, actor="ops")
    talk(store, "x", c, 10)
    [cdr], _ = cdr_page(store, account="W")
    # R paid 0.10 RUB = 0.0011 USD; W paid 0.01 USD
    assert (cdr.account, cdr.currency, cdr.cost, cdr.margin) == ("C", "USD", M("0.01"), M("0.0011") - M("0.01"))
    exported = record(cdr)
    assert list(exported)[-2:] == ["fx_pair", "fx_rate"]  # after every other field: positions stay put
    assert (exported["fx_pair"], exported["fx_rate"], exported["margin"]) == ("RUB/USD", "0.011", "-0.0089")
    [own], _ = cdr_page(store, account="C")  # the caller's own view: no conversion
    assert (own.currency, own.fx_pair, record(own)["fx_rate"]) == ("RUB", "", None)


def test_fund_across_currencies_converts_at_the_rate_once(store):
    rub_under_usd(store, w_balance="50.00")
    with pytest.raises(InvalidInput, match="fx set USD RUB"):
        funding.fund(store, "R", M("10.00"), T0, reference="f-1")
    dbfx.set_rate(store, "USD", "RUB", "90.1234", T0, actor="ops")
    moved = funding.fund(store, "R", M("10.00"), T0, reference="f-1")
    assert moved.applied and (moved.parent.amount, moved.child.amount) == (M("-10.00"), M("901.23"))
    assert "USD/RUB 90.1234" in moved.child.note and "USD/RUB 90.1234" in moved.parent.note
    again = funding.fund(store, "R", M("10.00"), T0, reference="f-1")
    assert not again.applied and again.child.amount == M("901.23")
    with pytest.raises(Conflict):
        funding.fund(store, "R", M("11.00"), T0, reference="f-1")
    with pytest.raises(InvalidInput, match="less than one minor unit"):
        funding.fund(store, "R", M("0.00001"), T0, reference="f-2")
    assert [books(store, x).balance for x in ("W", "R")] == [M("40.00"), M("1001.23")]


def test_fund_into_a_currency_without_cents_rounds_half_even_to_whole_units(store):
    tariff(store, "usd", "0.60", "USD")
    tariff(store, "jpy", "60", "JPY")
    account(store, "W", "usd", "10.00")
    account(store, "J", "jpy", "0", parent="W")
    dbfx.set_rate(store, "USD", "JPY", "150.5", T0, actor="ops")
    assert funding.fund(store, "J", M("1.00"), T0, reference="a").child.amount == M("150")  # 150.5 -> 150
    assert funding.fund(store, "J", M("3.00"), T0, reference="b").child.amount == M("452")  # 451.5 -> 452


def test_a_reseller_margin_report_says_which_calls_have_no_rate(store):
    c = rub_under_usd(store, w_balance="10.00")
    r = ledger.get_account(store, "R").id
    talk(store, "no-rate", c, 20)
    dbfx.set_rate(store, "USD", "RUB", "9", T0, actor="ops")
    talk(store, "rated", c, 5, at_us=T0 + 60 * US)
    talk(store, "own", r, 7, at_us=T0 + 120 * US, per_min="0.60")  # R's own call: W's subtree, not R's
    w, w_of_r = reports.reseller_margin(store, "W", "account")
    assert w.as_json("account") == {
        "account": "C",
        "currency": "USD",
        "calls": 2,
        "billed_s": 25,
        "cost": "0.025",
        "margin": "0.000556",  # the rated call only
        "no_rate_calls": 1,
    }
    # R paid 0.07 RUB = 0.0077777... USD -> 0.007778; W paid 0.007 USD
    assert (w_of_r.key, w_of_r.calls, w_of_r.margin, w_of_r.no_rate_calls) == ("R", 1, M("0.000778"), 0)
    [rr] = reports.reseller_margin(store, "R", "prefix")
    assert (rr.key, rr.currency, rr.calls, rr.cost, rr.margin, rr.no_rate_calls) == (
        "49",
        "RUB",
        2,
        M("0.25"),
        M("0.25"),
        0,
    )
    [by_vendor] = reports.reseller_margin(store, "R", "vendor")
    assert (by_vendor.key, by_vendor.calls) == ("", 2)
    assert reports.reseller_margin(store, "R", "account", since_us=T0 + 30 * US)[0].calls == 1
    assert reports.reseller_margin(store, "C", "account") == []  # no subtree: nothing earned
    [w_only_unpriced] = reports.reseller_margin(store, "W", "account", until_us=T0 + 30 * US)
    assert (w_only_unpriced.margin, w_only_unpriced.no_rate_calls) == (None, 1)
    with pytest.raises(NotFound):
        reports.reseller_margin(store, "nobody", "account")
