"""Exchange rates between reseller levels (fsbill.core.fx): exact rates, one rounding rule
(half-even, once), conversion both ways with one rate, and each level's margin in its own
currency."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsbill.core import fx
from fsbill.core.money import MAX_MICROS, Money
from fsbill.errors import InvalidInput, MoneyError

M = Money.parse


@pytest.mark.parametrize("text", ["90", "90.1234", "0.011", " 1.5 ", "0.000000000001", "999999999.999999999999"])
def test_rates_are_exact_decimal_text(text):
    assert fx.parse_rate(text) == text.strip()


@pytest.mark.parametrize("text", ["", "0", "0.000", "-1", "+1", "1e3", "1,5", "1.", ".5", "NaN", "inf", "1" * 10, "١"])
def test_bad_rates_are_refused(text):
    with pytest.raises(InvalidInput):
        fx.parse_rate(text)


def test_currencies_are_three_ascii_letters():
    assert fx.parse_currency(" usd ") == "USD"
    for bad in ("US", "USDT", "U$D", "ÜSD", ""):
        with pytest.raises(InvalidInput, match="ISO 4217"):
            fx.parse_currency(bad)


def test_minor_units_follow_iso_4217():
    assert [fx.money_decimals(c) for c in ("USD", "RUB", "JPY", "KWD", "CLF")] == [2, 2, 0, 3, 4]


def test_a_rate_converts_its_way_by_multiplication_and_back_by_division():
    rates = {("USD", "RUB"): "90.1234"}
    there = fx.rate_between(rates, "USD", "RUB")
    back = fx.rate_between(rates, "RUB", "USD")
    assert there == back == fx.FxRate("USD", "RUB", "90.1234")
    assert fx.convert(M("10.00"), "USD", there, 2) == M("901.23")  # 901.234 -> 901.23
    assert fx.convert(M("901.234"), "RUB", back, 6) == M("10.00")  # exactly 10
    assert fx.convert(M("1.00"), "RUB", back, 6) == M("0.011096")  # 0.0110959... -> 0.011096
    assert fx.rate_between(rates, "USD", "EUR") is None


def test_the_rate_set_for_the_exact_direction_wins():
    rates = {("USD", "RUB"): "90", ("RUB", "USD"): "0.0112"}
    assert fx.rate_between(rates, "RUB", "USD") == fx.FxRate("RUB", "USD", "0.0112")
    assert fx.rate_between(rates, "USD", "RUB") == fx.FxRate("USD", "RUB", "90")


@pytest.mark.parametrize(
    ("amount", "decimals", "expected"),
    [
        ("0.125", 2, "0.12"),  # exactly half: to the even cent
        ("0.135", 2, "0.14"),
        ("-0.125", 2, "-0.12"),
        ("0.1251", 2, "0.13"),
        ("2.5", 0, "2"),
        ("3.5", 0, "4"),
    ],
)
def test_rounding_is_half_even_once(amount, decimals, expected):
    assert fx.convert(M(amount), "AAA", fx.FxRate("AAA", "BBB", "1"), decimals) == M(expected)


def test_an_absurd_conversion_is_refused_not_wrapped():
    with pytest.raises(MoneyError, match="largest amount"):
        fx.convert(M("999999999999"), "AAA", fx.FxRate("AAA", "BBB", "999999999"), 2)


def expected_half_even(exact: Decimal, decimals: int) -> Money | None:
    """`exact` rounded half-even to `decimals` by Decimal (an independent check), None when beyond
    the largest amount fsbill keeps."""
    rounded = exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)
    return None if abs(rounded) > MAX_MICROS / Decimal(10**6) else Money.parse(rounded)


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**12), st.integers(0, 12), st.sampled_from([0, 2, 3, 6]))
def test_conversion_is_the_exact_product_or_quotient_rounded_half_even(micros, digits, scale, decimals):
    rate = format(Decimal(digits).scaleb(-scale), "f")
    if Decimal(rate) >= 10**9:
        return
    amount = Money(micros).to_decimal()
    with localcontext() as ctx:
        ctx.prec = 60  # exact enough for every product and quotient drawn here
        for source, exact in (("AAA", amount * Decimal(rate)), ("BBB", amount / Decimal(rate))):
            want = expected_half_even(exact, decimals)
            if want is None:
                with pytest.raises(MoneyError):
                    fx.convert(Money(micros), source, fx.FxRate("AAA", "BBB", rate), decimals)
            else:
                assert fx.convert(Money(micros), source, fx.FxRate("AAA", "BBB", rate), decimals) == want


def test_margins_across_currencies_are_in_each_level_s_currency():
    # W (USD) above R (RUB) above the payer C (RUB); 1 USD = 90 RUB
    costs = [(M("0.005"), "USD"), (M("0.30"), "RUB")]
    payer = (M("0.60"), "RUB")
    top, mid = fx.margins(costs, payer, {("USD", "RUB"): "90"})
    assert top == fx.LevelMargin(M("0.003333") - M("0.005"), fx.FxRate("USD", "RUB", "90"))  # 0.30/90, half-even
    assert mid == fx.LevelMargin(M("0.30"), None)  # one currency: no rate needed


def test_without_a_rate_the_margin_is_left_empty():
    top, mid = fx.margins([(M("0.005"), "USD"), (M("0.30"), "RUB")], (M("0.60"), "RUB"), {("EUR", "RUB"): "100"})
    assert top == fx.LevelMargin(None, None)
    assert mid.margin == M("0.30")


def test_a_payer_without_levels_has_no_margins():
    assert fx.margins([], (M("1.00"), "EUR"), {}) == []


def test_a_margin_beyond_what_fsbill_keeps_is_left_empty_never_raised():
    huge = fx.FxRate("AAA", "BBB", "999999999")
    [line] = fx.margins([(M("0"), "BBB")], (M("999999999999"), "AAA"), {("AAA", "BBB"): huge.rate})
    assert line == fx.LevelMargin(None, huge)
