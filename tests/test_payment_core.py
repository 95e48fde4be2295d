"""fsbill.core.payment: minor units to exact amounts (zero- and three-decimal currencies) and the
refund arithmetic, table-driven and property-based."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsbill.core.money import Money
from fsbill.core.payment import (
    from_minor_units,
    refund_due,
    split_refund,
    stripe_decimals,
    to_minor_units,
)
from fsbill.errors import MoneyError

M = Money.parse


@pytest.mark.parametrize(
    "minor, currency, amount",
    [
        (1050, "usd", "10.50"),
        (1, "EUR", "0.01"),
        (500, "jpy", "500"),  # zero-decimal: 500 is 500 yen, not 5
        (500, "KRW", "500"),
        (1234, "kwd", "1.234"),  # three-decimal
        (100, "ISK", "1.00"),  # two-decimal in Stripe's API
        (0, "usd", "0"),
    ],
)
def test_minor_units_follow_the_currency(minor, currency, amount):
    assert from_minor_units(minor, currency) == M(amount)
    assert to_minor_units(M(amount), currency) == minor


@pytest.mark.parametrize("bad", [10.5, True, -1, "100", None])
def test_minor_units_must_be_a_whole_number(bad):
    with pytest.raises(MoneyError):
        from_minor_units(bad, "usd")


def test_minor_units_beyond_what_fsbill_keeps_are_refused():
    with pytest.raises(MoneyError):
        from_minor_units(10**18, "jpy")


def test_an_amount_finer_than_the_minor_unit_has_no_minor_units():
    with pytest.raises(MoneyError):
        to_minor_units(M("1.5"), "jpy")


def test_decimals():
    assert (stripe_decimals("JPY"), stripe_decimals("usd"), stripe_decimals("BHD")) == (0, 2, 3)


@pytest.mark.parametrize(
    "total, already, credited, due",
    [
        ("3", "0", "10", "3"),  # a first partial refund
        ("3", "3", "10", "0"),  # its redelivery
        ("5", "3", "10", "2"),  # a second refund: the cumulative total grew
        ("3", "5", "10", "0"),  # an older notice after a newer one
        ("12", "0", "10", "10"),  # never more than was credited
    ],
)
def test_refund_due_is_what_was_not_recorded_yet(total, already, credited, due):
    assert refund_due(M(total), M(already), M(credited)) == M(due)


@pytest.mark.parametrize(
    "due, available, take, owed",
    [
        ("5", "10", "5", "0"),
        ("5", "2", "2", "3"),  # live calls hold the rest: owed
        ("5", "0", "0", "5"),
        ("5", "-1", "0", "5"),  # already overdrawn: nothing is taken
    ],
)
def test_a_refund_takes_only_what_is_available(due, available, take, owed):
    split = split_refund(M(due), M(available))
    assert (split.take, split.owed) == (M(take), M(owed))


@given(st.integers(0, 10**12), st.integers(-(10**12), 10**12))
def test_split_refund_never_leaves_less_than_nothing_and_loses_nothing(due, available):
    split = split_refund(Money(due), Money(available))
    assert split.take + split.owed == Money(due)
    assert split.take <= max(Money(available), Money(0))


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=8), st.integers(1, 10_000))
def test_redelivered_cumulative_refunds_add_up_to_the_largest_total(totals, credited):
    """Refund notices arriving in any order, any number of times, record the largest total once."""
    recorded = Money(0)
    for total in totals + totals[::-1]:
        recorded += refund_due(Money(total), recorded, Money(credited))
    assert recorded == min(Money(max(totals)), Money(credited))
