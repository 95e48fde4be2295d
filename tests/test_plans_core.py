"""The pure rules of recurring charges (fsbill.core.plans, fsbill.core.arrears): calendar
periods in the tariff's time zone, proration, cumulative daily shares, credits, arrears."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.arrears import arrears_payment, split_charge
from fsbill.core.grant import available
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.plans import (
    Charged,
    Period,
    Terms,
    check_fee,
    day_span,
    due,
    month_span,
    parse_period,
    spans,
)
from fsbill.errors import InvalidInput

US = 1_000_000
RULE = RoundingRule(2, RoundingMethod.HALF_UP)


def at(text: str, tz: str = "UTC") -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return int(moment.timestamp()) * US


def terms(fee="31.00", period=Period.MONTHLY, start="2025-01-01", end=None, tz="UTC", quantity=1, rule=RULE):
    return Terms(Money.parse(fee), period, quantity, at(start, tz), None if end is None else at(end, tz), tz, rule)


def run(t: Terms, now: str, charged=None, credited=()):
    """Charge everything due by `now` the way `charges run` does, returning the state."""
    charged = dict(charged or {})
    credited = set(credited)
    items = due(t, at(now, t.tz), charged, frozenset(credited), limit=100_000)
    for d in items:
        if d.kind == "charge":
            charged[d.span.start_us] = Charged(d.amount, d.from_us, d.until_us)
        else:
            credited.add(d.span.start_us)
    return items, charged, credited


# -- periods -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "month,days",
    [("2025-02-10", 28), ("2024-02-10", 29), ("2025-04-10", 30), ("2025-01-10", 31), ("2025-12-31T23:59:59", 31)],
)
def test_month_lengths(month, days):
    span = month_span(at(month), "UTC")
    assert span.length_us == days * 86400 * US


def test_month_span_across_dst_in_the_tariff_zone():
    # Europe/Berlin: March 2025 has 31 days minus one hour (clocks forward on the 30th)
    span = month_span(at("2025-03-15T12:00", "Europe/Berlin"), "Europe/Berlin")
    assert span.start_us == at("2025-03-01T00:00", "Europe/Berlin")
    assert span.end_us == at("2025-04-01T00:00", "Europe/Berlin")
    assert span.length_us == (31 * 24 - 1) * 3600 * US
    assert day_span(at("2025-03-30T12:00", "Europe/Berlin"), "Europe/Berlin").length_us == 23 * 3600 * US
    assert day_span(at("2025-10-26T12:00", "Europe/Berlin"), "Europe/Berlin").length_us == 25 * 3600 * US


def test_midnight_in_a_dst_gap_starts_the_day_at_the_change():
    # America/Havana: clocks jump from 00:00 to 01:00 on 2025-03-09
    span = day_span(at("2025-03-09T12:00", "America/Havana"), "America/Havana")
    assert span.length_us == 23 * 3600 * US
    assert span.end_us == at("2025-03-10T00:00", "America/Havana")


def test_a_month_anchored_on_the_31st_never_skips_one():
    """CGRateS #2255: a schedule anchored on Jan 31 jumped to March/May. Calendar months do not."""
    starts = [s.start_us for s in _take(spans(Period.MONTHLY, at("2025-01-31T10:00"), "UTC"), 5)]
    expected = [at(f"2025-{m:02d}-01") for m in range(1, 6)]
    assert starts == expected


def _take(it, n):
    return [next(it) for _ in range(n)]


ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Havana",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=at("2000-01-01"), max_value=at("2060-01-01")), st.sampled_from(ZONES))
def test_every_instant_lies_in_its_day_and_month_and_periods_tile(t, tz):
    m, d = month_span(t, tz), day_span(t, tz)
    assert m.start_us <= d.start_us <= t < d.end_us <= m.end_us
    assert month_span(m.end_us, tz).start_us == m.end_us
    assert day_span(d.end_us, tz).start_us == d.end_us
    assert 22 * 3600 * US <= d.length_us <= 26 * 3600 * US
    local = datetime.fromtimestamp(m.start_us // US, ZoneInfo(tz))
    assert local.day == 1 and local.hour in (0, 1)


# -- monthly -------------------------------------------------------------------------------------------------
def test_monthly_is_charged_in_advance_at_each_month_start():
    t = terms(fee="10.00", start="2025-01-01")
    items, _, _ = run(t, "2025-03-01T00:00:00")
    assert [(d.kind, d.amount) for d in items] == [("charge", Money.parse("10.00"))] * 3
    items, _, _ = run(t, "2025-02-28T23:59:59")
    assert len(items) == 2


def test_mid_month_start_pays_the_seconds_left_from_midnight_on_the_16th_of_31_days():
    t = terms(fee="31.00", start="2025-01-16")
    items, _, _ = run(t, "2025-01-16T00:00:01")
    assert [d.amount for d in items] == [Money.parse("16.00")]
    t = terms(fee="10.00", start="2025-01-16")
    assert run(t, "2025-01-20")[0][0].amount == Money.parse("5.16")  # 10 × 16/31 = 5.161...


@pytest.mark.parametrize("month,days", [("2025-02", 28), ("2024-02", 29), ("2025-04", 30), ("2025-01", 31)])
def test_mid_month_start_for_every_month_length(month, days):
    t = terms(fee=f"{days}.00", start=f"{month}-11")
    (first,) = run(t, f"{month}-11T00:00:00")[0]
    assert first.amount == Money.parse(f"{days - 10}.00")


def test_mid_month_start_across_dst_counts_real_seconds():
    # Berlin March 2025 is 743 hours; from midnight on the 16th: 15 × 24 + 23 = 383 hours left
    t = terms(fee="743.00", start="2025-03-16", tz="Europe/Berlin")
    (first,) = run(t, "2025-03-16T01:00")[0]
    assert first.amount == Money.parse("383.00")


def test_ended_mid_month_is_credited_the_unused_part_once():
    t = terms(fee="30.00", start="2025-04-01")
    items, charged, credited = run(t, "2025-04-02")
    assert [d.amount for d in items] == [Money.parse("30.00")]
    ended = terms(fee="30.00", start="2025-04-01", end="2025-04-21")
    assert run(ended, "2025-04-20", charged, credited)[0] == []  # not ended yet
    items, charged, credited = run(ended, "2025-04-21", charged, credited)
    assert [(d.kind, d.amount) for d in items] == [("credit", Money.parse("10.00"))]
    assert run(ended, "2026-01-01", charged, credited)[0] == []  # once, and no later months


def test_a_period_started_after_the_end_is_never_charged_and_a_late_run_charges_only_the_used_part():
    ended = terms(fee="30.00", start="2025-04-01", end="2025-04-21")
    items, _, _ = run(ended, "2025-07-01")
    assert [(d.kind, d.amount) for d in items] == [("charge", Money.parse("20.00"))]


def test_quantity_multiplies_before_rounding():
    t = terms(fee="0.01", start="2025-01-16", quantity=3, rule=RoundingRule(2, RoundingMethod.HALF_UP))
    assert run(t, "2025-01-16")[0][0].amount == Money.parse("0.02")  # 0.03 × 16/31 = 0.0154 -> 0.02
    t = terms(fee="0.01", start="2025-01-16", quantity=1)
    assert run(t, "2025-01-16")[0][0].amount == Money.parse("0.01")


def test_each_charge_rounded_once_by_the_rule():
    for method, expected in [("up", "3.23"), ("down", "3.22"), ("half_up", "3.23"), ("half_even", "3.23")]:
        t = terms(fee="10.00", start="2025-01-22", rule=RoundingRule(2, RoundingMethod(method)))
        assert run(t, "2025-01-22")[0][0].amount == Money.parse(expected), method  # 10 × 10/31 = 3.2258


# -- daily ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("month,days", [("2025-02", 28), ("2024-02", 29), ("2025-04", 30), ("2025-01", 31)])
@pytest.mark.parametrize("method", list(RoundingMethod))
def test_a_daily_plans_month_sums_exactly_to_the_fee(month, days, method):
    t = terms(fee="10.00", period=Period.DAILY, start=f"{month}-01", rule=RoundingRule(2, method))
    items, _, _ = run(t, f"{month}-{days}T23:00")
    assert len(items) == days
    assert sum(d.amount.micros for d in items) == Money.parse("10.00").micros
    shares = {d.amount for d in items}
    assert max(shares).micros - min(shares).micros <= 10_000  # each a share, at most one cent apart


def test_daily_across_dst_sums_exactly():
    t = terms(fee="100.00", period=Period.DAILY, start="2025-10-01", tz="Europe/Berlin")
    items, _, _ = run(
        t,
        "2025-10-31T23:00",
    )
    assert len(items) == 31 and sum(d.amount.micros for d in items) == 100 * US


def test_daily_is_charged_at_each_local_midnight():
    t = terms(fee="31.00", period=Period.DAILY, start="2025-01-01", tz="America/New_York")
    assert len(run(t, "2025-01-03T23:59:59")[0]) == 3
    assert len(run(t, "2025-01-04T00:00:00")[0]) == 4


def test_daily_part_day_start_and_end_credit():
    t = terms(fee="31.00", period=Period.DAILY, start="2025-01-01T12:00")
    (first,) = run(t, "2025-01-01T12:00")[0]
    assert first.amount == Money.parse("0.50")
    _, charged, credited = run(t, "2025-01-02T00:00")
    ended = terms(fee="31.00", period=Period.DAILY, start="2025-01-01T12:00", end="2025-01-02T06:00")
    items, _, _ = run(ended, "2025-01-03", charged, credited)
    assert [(d.kind, d.amount) for d in items] == [("credit", Money.parse("0.75"))]


@settings(max_examples=150, deadline=None)
@given(
    fee_micros=st.integers(min_value=1, max_value=10**12),
    year=st.integers(min_value=2000, max_value=2050),
    month=st.integers(min_value=1, max_value=12),
    decimals=st.integers(min_value=0, max_value=6),
    method=st.sampled_from(list(RoundingMethod)),
    tz=st.sampled_from(ZONES),
    quantity=st.integers(min_value=1, max_value=50),
)
def test_property_daily_shares_of_any_month_sum_to_the_rounded_fee(
    fee_micros, year, month, decimals, method, tz, quantity
):
    rule = RoundingRule(decimals, method)
    start = f"{year}-{month:02d}-01"
    t = Terms(Money(fee_micros), Period.DAILY, quantity, at(start, tz), None, tz, rule)
    span = month_span(t.start_us, tz)
    items = due(t, span.end_us - 1, {}, frozenset(), limit=100)
    total = Money.from_ratio(fee_micros * quantity, 1, rule)
    assert sum(d.amount.micros for d in items) == total.micros
    assert all(d.amount.micros >= 0 for d in items)


@settings(max_examples=150, deadline=None)
@given(
    fee_cents=st.integers(min_value=1, max_value=10**8),
    start=st.integers(min_value=at("2020-01-01"), max_value=at("2030-01-01")),
    length_s=st.integers(min_value=1, max_value=400 * 86400),
    period=st.sampled_from(list(Period)),
    tz=st.sampled_from(ZONES),
)
def test_property_a_subscription_ended_later_nets_the_price_of_what_it_used(fee_cents, start, length_s, period, tz):
    """Charged in advance, then ended: charges minus credits == the price of the time it ran,
    every period's net rounded once; nothing charged twice on repeated runs."""
    fee = Money(fee_cents * 10_000)
    running = Terms(fee, period, 1, start, None, tz, RULE)
    end = start + length_s * US
    _, charged, credited = run_us(running, end + US)  # charged up to the end, in advance
    ended = Terms(fee, period, 1, start, end, tz, RULE)
    credits, charged, credited = run_us(ended, end + 2 * US, charged, credited)
    again, _, _ = run_us(ended, end + 400 * 86400 * US, charged, credited)
    assert again == []
    net = sum(c.amount.micros for c in charged.values()) - sum(c.amount.micros for c in credits)
    expected = 0
    for s, c in charged.items():
        span = month_span(s, tz) if period is Period.MONTHLY else day_span(s, tz)
        from fsbill.core.plans import amount

        expected += amount(ended, span, c.from_us, min(max(c.from_us, end), c.until_us)).micros
    assert net == expected >= 0


def run_us(t, now_us, charged=None, credited=()):
    charged = dict(charged or {})
    credited = set(credited)
    items = due(t, now_us, charged, frozenset(credited), limit=100_000)
    for d in items:
        if d.kind == "charge":
            charged[d.span.start_us] = Charged(d.amount, d.from_us, d.until_us)
        else:
            credited.add(d.span.start_us)
    return [d for d in items if d.kind == "credit"], charged, credited


def test_a_future_start_owes_nothing_yet():
    assert run(terms(start="2025-05-10"), "2025-05-09T23:59:59")[0] == []


def test_due_respects_the_limit_and_resumes_in_order():
    t = terms(fee="31.00", period=Period.DAILY, start="2025-01-01")
    first = due(t, at("2025-01-31"), {}, frozenset(), limit=10)
    assert len(first) == 10
    charged = {d.span.start_us: Charged(d.amount, d.from_us, d.until_us) for d in first}
    rest = due(t, at("2025-01-31"), charged, frozenset(), limit=100)
    assert len(rest) == 21 and rest[0].span.start_us == at("2025-01-11")


def test_fee_and_period_validation():
    assert parse_period(" Monthly ") is Period.MONTHLY
    with pytest.raises(InvalidInput):
        parse_period("weekly")
    for fee, q in [("0", 1), ("-1", 1), ("1", 0), ("999999999999", 10**6)]:
        with pytest.raises(InvalidInput):
            check_fee(Money.parse(fee), q)


# -- arrears -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "charge,avail,taken,owed",
    [
        ("10", "25", "10", "0"),
        ("10", "4", "4", "6"),
        ("10", "0", "0", "10"),
        ("10", "-3", "0", "10"),
        ("0", "5", "0", "0"),
    ],
)
def test_a_charge_takes_what_is_available_and_owes_the_rest(charge, avail, taken, owed):
    s = split_charge(Money.parse(charge), Money.parse(avail))
    assert (s.taken, s.arrears) == (Money.parse(taken), Money.parse(owed))


def test_arrears_count_against_available_and_are_paid_from_free_money_only():
    assert available(Money.parse("5"), Money.parse("2"), Money.parse("1"), Money.parse("6")) == Money(0)
    assert arrears_payment(Money.parse("5"), Money(0), Money.parse("3"), Money.parse("6")) == Money.parse("2")
    assert arrears_payment(Money.parse("50"), Money(0), Money.parse("3"), Money.parse("6")) == Money.parse("6")
    assert arrears_payment(Money.parse("1"), Money(0), Money.parse("3"), Money.parse("6")) == Money(0)


@given(
    balance=st.integers(-(10**9), 10**9),
    credit=st.integers(0, 10**9),
    held=st.integers(0, 10**9),
    arrears=st.integers(0, 10**9),
    charge=st.integers(0, 10**9),
)
def test_property_charges_and_payments_never_take_what_live_calls_hold(balance, credit, held, arrears, charge):
    b, c, h, a = Money(balance), Money(credit), Money(held), Money(arrears)
    s = split_charge(Money(charge), available(b, c, h, a))
    assert s.taken + s.arrears == Money(charge)
    if available(b, c, h).micros >= 0:
        assert available(b - s.taken, c, h).micros >= 0
    pay = arrears_payment(b, c, h, a)
    assert Money(0) <= pay <= a
    if available(b, c, h).micros >= 0:
        assert available(b - pay, c, h).micros >= 0
    assert available(b - pay, c, h, a - pay) == available(b, c, h, a)  # paying arrears changes nothing available
