"""Rating: billed seconds, cost, the inverse (max_seconds), number normalization and deck lookup.
Table-driven for the documented examples, hypothesis for the laws, a Fraction reference for
exactness."""

from datetime import datetime, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import (
    FOREVER_S,
    Rate,
    RateDeck,
    billed_seconds,
    billed_seconds_us,
    cost,
    max_seconds,
    normalize_number,
)
from fsbill.errors import NumberError, RatingError


def rate(
    per_minute="1.00", fee="0", initial=1, increment=1, minimum=0, decimals=4, method=RoundingMethod.HALF_UP, **kw
):
    return Rate(
        prefix=kw.pop("prefix", "49"),
        rate=Money.parse(per_minute),
        connect_fee=Money.parse(fee),
        initial_increment_s=initial,
        increment_s=increment,
        min_duration_s=minimum,
        rounding=RoundingRule(decimals, method),
        **kw,
    )


# -- billed seconds and cost: the documented examples -----------------------------------------
@pytest.mark.parametrize(
    "initial, increment, minimum, answered, billed",
    [
        (60, 60, 0, 61, 120),
        (30, 6, 0, 61, 66),
        (1, 1, 0, 61, 61),
        (30, 6, 0, 1, 30),
        (30, 6, 0, 30, 30),
        (30, 6, 0, 31, 36),
        (60, 60, 0, 60, 60),
        (1, 1, 0, 0, 0),  # unanswered
        (60, 60, 0, -5, 0),
        (1, 1, 30, 5, 30),  # minimum duration
        (1, 1, 30, 31, 31),
        (30, 6, 40, 1, 42),  # a minimum off the increment grid rounds up to it
        (60, 60, 90, 1, 120),
    ],
)
def test_billed_seconds(initial, increment, minimum, answered, billed):
    assert billed_seconds(rate(initial=initial, increment=increment, minimum=minimum), answered) == billed


@pytest.mark.parametrize(
    "answered_us, billed",
    [(0, 0), (1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (61_000_000, 61), (-3, 0)],
)
def test_billed_seconds_us_counts_every_started_second(answered_us, billed):
    assert billed_seconds_us(rate(), answered_us) == billed


@pytest.mark.parametrize(
    "r, answered, expected",
    [
        (rate("1.00"), 61, "1.0167"),  # 61/60 = 1.016666.. half-up at 4 decimals
        (rate("1.00", initial=60, increment=60), 61, "2.00"),
        (rate("0.60", initial=30, increment=6), 61, "0.66"),
        (rate("1.00", fee="0.10"), 60, "1.10"),
        (rate("1.00", fee="0.10"), 0, "0"),  # unanswered: no connect fee either
        (rate("1.00", minimum=30), 5, "0.50"),
        (rate("0.0125", fee="0.000049", decimals=4), 1, "0.0003"),  # fee inside the one rounding
        (rate("1.00", decimals=2, method=RoundingMethod.UP), 1, "0.02"),
        (rate("1.00", decimals=2, method=RoundingMethod.DOWN), 59, "0.98"),
        (rate("0.03", decimals=2, method=RoundingMethod.HALF_EVEN), 10, "0.00"),  # 0.005 -> even 0.00
        (rate("0.09", decimals=2, method=RoundingMethod.HALF_EVEN), 10, "0.02"),  # 0.015 -> even 0.02
        (rate("0.03", decimals=2, method=RoundingMethod.HALF_UP), 10, "0.01"),
    ],
)
def test_cost(r, answered, expected):
    assert cost(r, answered) == Money.parse(expected)


def test_cost_of_billed_seconds_is_cost_of_answered_seconds():
    r = rate("0.37", fee="0.05", initial=30, increment=6, minimum=40)
    for d in range(0, 400):
        assert cost(r, billed_seconds(r, d)) == cost(r, d)


def test_adhoc_rate_is_per_second_without_fee():
    r = Rate.adhoc(Money.parse("0.60"))
    assert (r.prefix, r.initial_increment_s, r.increment_s, r.connect_fee) == ("", 1, 1, Money(0))
    assert cost(r, 61) == Money.parse("0.61")


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"increment": 0}, {"minimum": -1}, {"per_minute": "-0.01"}, {"fee": "-1"}],
)
def test_rate_refuses_impossible_values(kwargs):
    with pytest.raises(RatingError):
        rate(**kwargs)


# -- max_seconds: examples -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "r, budget, cap, expected",
    [
        (rate("1.00"), "1.00", None, 60),
        (rate("1.00"), "0.50", None, 30),
        (rate("1.00"), "0.01", None, 0),  # 1 s costs 0.0167
        (rate("1.00"), "0.0333", None, 2),  # 2 s = 0.03333.. rounds to 0.0333
        (rate("1.00", initial=60, increment=60), "1.99", None, 60),
        (rate("1.00", initial=60, increment=60), "2.00", None, 120),
        (rate("0.60", initial=30, increment=6), "0.60", None, 60),
        (rate("0.60", initial=30, increment=6), "0.29", None, 0),
        (rate("1.00", fee="0.10"), "0.60", None, 30),
        (rate("1.00", fee="0.10"), "0.05", None, 0),  # the fee alone is unaffordable
        (rate("1.00", minimum=30), "0.50", None, 30),
        (rate("1.00", minimum=30), "0.49", None, 0),
        (rate("1.00"), "100", 90, 90),
        (rate("1.00", initial=60, increment=60), "100", 90, 90),  # the cap, inside a block
        (rate("1.00", initial=60, increment=60), "100", 30, 30),
        (rate("1.00"), "100", 0, 0),
        (rate("0"), "0", None, FOREVER_S),
        (rate("0"), "0", 3600, 3600),
        (rate("0", fee="0.10"), "0.09", None, 0),
        (rate("1.00"), "-1", None, 0),
    ],
)
def test_max_seconds_examples(r, budget, cap, expected):
    assert max_seconds(r, Money.parse(budget), cap) == expected


# -- properties -----------------------------------------------------------------------------------------
rates = st.builds(
    lambda price, fee, initial, increment, minimum, decimals, method: Rate(
        "1", Money(price), Money(fee), initial, increment, minimum, RoundingRule(decimals, method)
    ),
    price=st.one_of(st.just(0), st.integers(1, 100), st.integers(1, 5_000_000)),
    fee=st.one_of(st.just(0), st.integers(0, 500_000)),
    initial=st.integers(1, 120),
    increment=st.integers(1, 60),
    minimum=st.one_of(st.just(0), st.integers(0, 300)),
    decimals=st.integers(0, 6),
    method=st.sampled_from(list(RoundingMethod)),
)
budgets = st.integers(-1000, 50_000_000).map(Money)


@settings(max_examples=400, deadline=None)
@given(rates, st.integers(0, 5000), st.integers(0, 5000))
def test_longer_is_never_cheaper(r, a, b):
    shorter, longer = sorted((a, b))
    assert cost(r, shorter) <= cost(r, longer)
    assert billed_seconds(r, shorter) <= billed_seconds(r, longer)


@settings(max_examples=400, deadline=None)
@given(rates, st.integers(1, 100_000))
def test_billed_seconds_is_a_boundary_and_covers_the_call(r, d):
    billed = billed_seconds(r, d)
    assert billed >= max(d, r.min_duration_s, r.initial_increment_s)
    assert billed_seconds(r, billed) == billed
    assert billed == r.initial_increment_s or (billed - r.initial_increment_s) % r.increment_s == 0


def reference_cost(r: Rate, d: int) -> Fraction:
    """Cost from the definition, with exact fractions and explicit rounding."""
    if d <= 0:
        return Fraction(0)
    billed = max(d, r.min_duration_s, r.initial_increment_s)
    if billed > r.initial_increment_s:
        over = billed - r.initial_increment_s
        billed = r.initial_increment_s + -(-over // r.increment_s) * r.increment_s
    exact = Fraction(r.connect_fee.micros) + Fraction(billed * r.rate.micros, 60)
    unit = 10 ** (6 - r.rounding.decimals)
    x = exact / unit
    floor = x.numerator // x.denominator
    frac = x - floor
    method = r.rounding.method
    if frac == 0 or method is RoundingMethod.DOWN:
        q = floor
    elif method is RoundingMethod.UP:
        q = floor + 1
    elif frac > Fraction(1, 2):
        q = floor + 1
    elif frac < Fraction(1, 2):
        q = floor
    elif method is RoundingMethod.HALF_EVEN:
        q = floor + (floor % 2)
    else:
        q = floor + 1
    return Fraction(q * unit)


@settings(max_examples=500, deadline=None)
@given(rates, st.integers(0, 20_000))
def test_cost_is_exact_against_a_fraction_reference(r, d):
    assert Fraction(cost(r, d).micros) == reference_cost(r, d)


@settings(max_examples=800, deadline=None)
@given(rates, budgets, st.one_of(st.none(), st.integers(1, 20_000)))
def test_max_seconds_is_the_inverse_of_cost(r, budget, cap):
    d = max_seconds(r, budget, cap)
    assert d >= 0
    if cap is not None:
        assert d <= cap
    if d == 0:
        assert cost(r, 1) > budget or budget.micros < 0
        return
    assert cost(r, d) <= budget
    if d == FOREVER_S and cap is None:
        assert r.rate.micros == 0
        return
    if cap is None or d < cap:
        assert billed_seconds(r, d) == d  # a billing boundary
        assert cost(r, d + 1) > budget  # one more second starts an unaffordable increment
        assert cost(r, d + r.increment_s) > budget


@settings(max_examples=200, deadline=None)
@given(rates, st.integers(0, 3_000_000))
def test_max_seconds_matches_a_linear_scan(r, budget_micros):
    budget = Money(budget_micros)
    cap = 600
    expected = 0
    for d in range(1, cap + 1):
        if cost(r, d) <= budget:
            expected = d
    assert max_seconds(r, budget, cap) == expected


# -- numbers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, prefix, expected",
    [
        ("4930123456", "00", "4930123456"),
        ("+49 30 123456", "00", "4930123456"),
        ("0049-30-123456", "00", "4930123456"),
        ("(030) 123.456", "", "030123456"),
        ("  +1 (555) 010-9999 ", "011", "15550109999"),
        ("01115550109999", "011", "15550109999"),
        ("0049301", "", "0049301"),  # no international prefix configured: kept
        ("1" * 32, "00", "1" * 32),
    ],
)
def test_normalize_number(raw, prefix, expected):
    assert normalize_number(raw, prefix) == expected


@pytest.mark.parametrize("raw", ["", "+", "00", "49a30", "sip:4930@host", "1" * 33, "٤٩٣٠", "49#30", "*49"])
def test_normalize_number_rejects(raw):
    with pytest.raises(NumberError) as info:
        normalize_number(raw)
    assert repr(raw) in str(info.value)


# -- deck lookup ---------------------------------------------------------------------------------------
def us(text: str, zone: str = "UTC") -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp()) * 1_000_000


NOW = us("2026-11-23T12:00:00")  # a Monday


def test_longest_prefix_wins():
    deck = RateDeck([rate("0.10", prefix="4"), rate("0.20", prefix="49"), rate("0.30", prefix="4915")])
    assert deck.lookup("4915112345", NOW).prefix == "4915"
    assert deck.lookup("4930123", NOW).prefix == "49"
    assert deck.lookup("4412345", NOW).prefix == "4"
    assert deck.lookup("3312345", NOW) is None
    assert deck.lookup("49", NOW).prefix == "49"
    assert len(deck) == 3 and {r.prefix for r in deck.rates()} == {"4", "49", "4915"}


def test_empty_deck_has_no_rate():
    assert RateDeck([]).lookup("49", NOW) is None


def test_effective_dates_pick_the_row_in_force():
    old = rate("0.20", effective_until_us=us("2026-12-01T00:00:00"))
    new = rate("0.15", effective_from_us=us("2026-12-01T00:00:00"))
    deck = RateDeck([old, new])
    assert deck.lookup("4930", us("2026-11-30T23:59:59")) == old
    assert deck.lookup("4930", us("2026-12-01T00:00:00")) == new  # from inclusive, until exclusive


def test_a_prefix_not_yet_in_force_falls_back_to_a_shorter_one():
    deck = RateDeck([rate("0.10", prefix="4"), rate("0.20", prefix="49", effective_from_us=us("2027-01-01T00:00:00"))])
    assert deck.lookup("4930", NOW).prefix == "4"
    assert deck.lookup("4930", us("2027-01-02T00:00:00")).prefix == "49"


def test_expired_prefix_and_nothing_shorter_is_no_rate():
    deck = RateDeck([rate(effective_until_us=us("2026-01-01T00:00:00"))])
    assert deck.lookup("4930", NOW) is None


def test_night_band_in_the_tariffs_time_zone():
    day = rate("0.20")
    night = rate("0.05", time_from_min=22 * 60, time_to_min=6 * 60)
    deck = RateDeck([day, night], timezone="Europe/Berlin")
    # 21:30 UTC on 23 Nov is 22:30 in Berlin (CET, UTC+1)
    assert deck.lookup("4930", us("2026-11-23T21:30:00")) == night
    assert deck.lookup("4930", us("2026-11-23T20:59:59")) == day  # 21:59:59 Berlin
    assert deck.lookup("4930", us("2026-11-24T04:59:00")) == night  # 05:59 Berlin
    assert deck.lookup("4930", us("2026-11-24T05:00:00")) == day  # 06:00 Berlin: window end exclusive
    # In summer Berlin is UTC+2: 20:30 UTC is 22:30 local
    assert deck.lookup("4930", us("2026-07-01T20:30:00")) == night


def test_weekend_band_uses_the_local_weekday():
    weekday = rate("0.20")
    weekend = rate("0.08", weekdays=frozenset({6, 7}))
    deck = RateDeck([weekday, weekend], timezone="America/New_York")
    # Saturday 28 Nov 2026 03:00 UTC is still Friday 22:00 in New York
    assert deck.lookup("4955", us("2026-11-28T03:00:00")) == weekday
    assert deck.lookup("4955", us("2026-11-28T06:00:00")) == weekend
    assert deck.lookup("4955", us("2026-11-30T04:59:00")) == weekend  # Sunday 23:59 local


def test_banded_row_without_default_falls_back_to_a_shorter_prefix():
    deck = RateDeck(
        [
            rate("0.30", prefix="4"),
            rate("0.05", prefix="49", weekdays=frozenset({1, 2, 3, 4, 5}), time_from_min=18 * 60, time_to_min=24 * 60),
        ]
    )
    assert deck.lookup("4930", us("2026-11-23T19:00:00")).prefix == "49"
    assert deck.lookup("4930", us("2026-11-23T17:59:00")).prefix == "4"
    assert deck.lookup("4930", us("2026-11-28T19:00:00")).prefix == "4"  # Saturday


def test_in_band_wraps_past_midnight():
    r = rate(time_from_min=22 * 60, time_to_min=6 * 60)
    assert r.in_band(1, 22 * 60) and r.in_band(1, 0) and r.in_band(1, 359)
    assert not r.in_band(1, 360) and not r.in_band(1, 21 * 60 + 59)
    assert rate().in_band(3, 700)
    assert rate(weekdays=frozenset({6})).in_band(6, 0) and not rate(weekdays=frozenset({6})).in_band(5, 0)


def test_a_call_is_rated_at_its_start_band():
    # The deck answers for one instant: the call's start. Nothing is split at 22:00.
    day = rate("0.20")
    night = rate("0.05", time_from_min=22 * 60, time_to_min=6 * 60)
    deck = RateDeck([day, night])
    start = us("2026-11-23T21:59:00")
    chosen = deck.lookup("4930", start)
    assert chosen == day
    assert cost(chosen, 31 * 60) == Money.parse("6.20")


def test_is_effective_bounds():
    r = rate(effective_from_us=10, effective_until_us=20)
    assert not r.is_effective(9) and r.is_effective(10) and r.is_effective(19) and not r.is_effective(20)
    assert rate().is_effective(0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text("0123456789", min_size=1, max_size=6), min_size=1, max_size=30, unique=True),
    st.text("0123456789", min_size=1, max_size=12),
)
def test_lookup_is_the_longest_matching_prefix(prefixes, number):
    deck = RateDeck([rate(prefix=p) for p in prefixes])
    matching = [p for p in prefixes if number.startswith(p)]
    found = deck.lookup(number, NOW)
    if matching:
        assert found is not None and found.prefix == max(matching, key=len)
    else:
        assert found is None


def test_local_time_in_zone():
    deck = RateDeck([], timezone="Asia/Kolkata")
    moment = datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)  # 01:30 Tuesday in India
    assert deck.local_time(int(moment.timestamp()) * 1_000_000) == (2, 90)
