"""fsbill.core.money: one exact amount type, parsed from strings only, rounded once by a named rule."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.money import MAX_MICROS, MICROS_PER_UNIT, SCALE, Money, RoundingMethod, RoundingRule, money_sum
from fsbill.errors import MoneyError

M = Money.parse


# -- parsing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, micros",
    [
        ("0", 0),
        ("12", 12_000_000),
        ("+12", 12_000_000),
        ("-0.5", -500_000),
        ("-0", 0),
        ("10.000001", 10_000_001),
        ("0.000001", 1),
        ("10.50", 10_500_000),
        ("  7.25\n", 7_250_000),
        ("007.1", 7_100_000),
        ("999999999999.999999", 999_999_999_999_999_999),
        ("-999999999999.999999", -999_999_999_999_999_999),
    ],
)
def test_parse_valid_strings(text, micros):
    assert M(text).micros == micros


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "1e3",
        "1E3",
        "1,5",
        "1,000.00",
        "1.",
        ".5",
        "1.0000001",  # 7 decimals
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "abc",
        "1 000",
        "--1",
        "+-1",
        "0x10",
        "1_000",
        "€5",
        "5 EUR",
        "1234567890123456",  # more than 15 integer digits
        "\u0663",  # ARABIC-INDIC DIGIT THREE: int() and \\d take it as 3
        "1.\u0665",
        "\uff15",  # FULLWIDTH DIGIT FIVE
        "\u0967\u0966",  # Devanagari 10
        "\u00b2",  # SUPERSCRIPT TWO (str.isdigit() says yes)
    ],
)
def test_parse_refuses_malformed_strings(text):
    with pytest.raises(MoneyError):
        M(text)


@pytest.mark.parametrize(
    "value", ["1000000000000", "-1000000000000", "999999999999999.999999", 10**12, Decimal("1E+12"), Decimal("-1e30")]
)
def test_parse_refuses_amounts_a_balance_cannot_hold(value):
    # balances are BIGINT micro-units (~9.2e18): anything beyond 999999999999.999999 is refused
    # with a clear message instead of failing later in the database
    with pytest.raises(MoneyError, match="out of range"):
        M(value)
    assert M(str(MAX_MICROS // MICROS_PER_UNIT)) == Money(MAX_MICROS - MAX_MICROS % MICROS_PER_UNIT)


def test_malformed_message_is_one_clear_line():
    with pytest.raises(MoneyError) as exc:
        M("1,5")
    message = str(exc.value)
    assert "'1,5'" in message and "\n" not in message


@pytest.mark.parametrize("value", [1.5, 0.1, float("nan"), float("inf"), True, False])
def test_parse_refuses_float_and_bool(value):
    with pytest.raises(MoneyError):
        M(value)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("0.0000001")])
def test_parse_refuses_inexact_decimals(value):
    with pytest.raises(MoneyError):
        M(value)


def test_parse_accepts_int_decimal_and_money():
    assert M(3) == Money(3 * MICROS_PER_UNIT)
    assert M(-2) == Money(-2 * MICROS_PER_UNIT)
    assert M(Decimal("1.234567")) == Money(1_234_567)
    assert M(Decimal("-0.10")) == Money(-100_000)
    m = M("4.2")
    assert M(m) is m


@pytest.mark.parametrize("value", [None, [1], b"1", object()])
def test_parse_refuses_other_types(value):
    with pytest.raises(MoneyError):
        M(value)


@pytest.mark.parametrize("value", [1.0, True, "1", Decimal("1"), None])
def test_constructor_takes_integer_micros_only(value):
    with pytest.raises(MoneyError):
        Money(value)


def test_money_error_is_a_value_error():
    # argparse type functions and callers catching ValueError still see it
    with pytest.raises(ValueError):
        M("1e3")


# -- output ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "micros, text",
    [
        (0, "0.00"),
        (10_000_000, "10.00"),
        (10_500_000, "10.50"),
        (16_700, "0.0167"),
        (1, "0.000001"),
        (-1, "-0.000001"),
        (-500_000, "-0.50"),
        (-12_345_678, "-12.345678"),
        (123_000_000_000_000, "123000000.00"),
    ],
)
def test_str_is_canonical(micros, text):
    assert str(Money(micros)) == text


def test_repr_format_and_decimal():
    m = M("-3.1")
    assert repr(m) == "Money('-3.10')"
    assert f"{m:>8}" == "   -3.10"
    assert m.to_decimal() == Decimal("-3.1")
    assert isinstance(m.to_decimal(), Decimal)


def test_immutable_and_hashable():
    m = M("1")
    with pytest.raises(AttributeError):
        m.micros = 5
    assert {M("1.0"), M("1"), M("1.000000")} == {m}
    assert Money.from_micros(7) == Money(7)
    assert Money.zero() == Money(0)


# -- arithmetic and comparison -------------------------------------------------------------------
def test_arithmetic_is_exact():
    assert M("0.1") + M("0.2") == M("0.3")
    assert M("1") - M("0.000001") == M("0.999999")
    assert -M("2.5") == M("-2.5")
    assert abs(M("-2.5")) == M("2.5")
    assert M("0.333333") * 3 == M("0.999999")
    assert 3 * M("0.333333") == M("0.999999")
    assert money_sum([M("0.1")] * 10) == M("1")
    assert money_sum([]) == Money.zero()


@pytest.mark.parametrize("other", [1, 1.5, Decimal("1"), "1"])
def test_adding_non_money_is_refused(other):
    with pytest.raises(TypeError):
        M("1") + other
    with pytest.raises(TypeError):
        M("1") - other


@pytest.mark.parametrize("factor", [1.5, Decimal("2"), True, M("2")])
def test_multiplying_by_non_int_is_refused(factor):
    with pytest.raises(TypeError):
        M("1") * factor


def test_comparison_and_truth():
    a, b = M("1.000001"), M("1.000002")
    assert a < b and a <= b and b > a and b >= a and a != b
    assert a <= M("1.000001") and a >= M("1.000001")
    assert M("0.00") == Money.zero()
    assert M("1") != 1 and M("1") != "1" and M("1") != Decimal(1)
    assert not Money.zero()
    assert M("0.000001")
    assert M("-0.01").is_negative() and not M("0").is_negative()
    assert sorted([M("2"), M("-1"), M("0.5")]) == [M("-1"), M("0.5"), M("2")]


# -- rounding ----------------------------------------------------------------------------------------
HALF_UP, HALF_EVEN, UP, DOWN = RoundingMethod.HALF_UP, RoundingMethod.HALF_EVEN, RoundingMethod.UP, RoundingMethod.DOWN

# value (an exact decimal), decimals, method -> rounded text. UP is the ceiling and DOWN the floor
# (never under-/over-charge); HALF_UP goes away from zero at the midpoint; HALF_EVEN to even.
ROUNDING_CASES = [
    # midpoints, positive
    ("0.00005", 4, HALF_UP, "0.0001"),
    ("0.00005", 4, HALF_EVEN, "0.00"),
    ("0.00015", 4, HALF_EVEN, "0.0002"),
    ("0.00025", 4, HALF_EVEN, "0.0002"),
    ("0.00005", 4, UP, "0.0001"),
    ("0.00005", 4, DOWN, "0.00"),
    ("2.5", 0, HALF_UP, "3.00"),
    ("2.5", 0, HALF_EVEN, "2.00"),
    ("3.5", 0, HALF_EVEN, "4.00"),
    ("2.5", 0, UP, "3.00"),
    ("2.5", 0, DOWN, "2.00"),
    # midpoints, negative
    ("-0.00005", 4, HALF_UP, "-0.0001"),
    ("-0.00005", 4, HALF_EVEN, "0.00"),
    ("-0.00015", 4, HALF_EVEN, "-0.0002"),
    ("-0.00005", 4, UP, "0.00"),
    ("-0.00005", 4, DOWN, "-0.0001"),
    ("-2.5", 0, HALF_UP, "-3.00"),
    ("-2.5", 0, HALF_EVEN, "-2.00"),
    ("-3.5", 0, HALF_EVEN, "-4.00"),
    ("-2.5", 0, UP, "-2.00"),
    ("-2.5", 0, DOWN, "-3.00"),
    # off the midpoint, positive
    ("0.000049", 4, HALF_UP, "0.00"),
    ("0.000051", 4, HALF_UP, "0.0001"),
    ("0.000049", 4, HALF_EVEN, "0.00"),
    ("0.000051", 4, HALF_EVEN, "0.0001"),
    ("0.000001", 4, UP, "0.0001"),
    ("0.000099", 4, DOWN, "0.00"),
    ("1.49", 0, HALF_UP, "1.00"),
    ("1.51", 0, HALF_EVEN, "2.00"),
    # off the midpoint, negative
    ("-0.000049", 4, HALF_UP, "0.00"),
    ("-0.000051", 4, HALF_UP, "-0.0001"),
    ("-0.000051", 4, HALF_EVEN, "-0.0001"),
    ("-0.000001", 4, UP, "0.00"),
    ("-0.000001", 4, DOWN, "-0.0001"),
    ("-1.51", 0, HALF_UP, "-2.00"),
    ("-1.49", 0, HALF_EVEN, "-1.00"),
    # already on the grid: untouched by every method
    ("0.0167", 4, UP, "0.0167"),
    ("-0.0167", 4, DOWN, "-0.0167"),
    ("5", 0, HALF_EVEN, "5.00"),
    # 6 decimals: nothing to round
    ("0.123456", 6, DOWN, "0.123456"),
]


@pytest.mark.parametrize("value, decimals, method, expected", ROUNDING_CASES)
def test_from_ratio_rounds_exact_values(value, decimals, method, expected):
    # value = (value in micros * 10) / 10: a ratio whose exact quotient is `value`
    micros10 = int(Decimal(value) * MICROS_PER_UNIT * 10)
    assert str(Money.from_ratio(micros10, 10, RoundingRule(decimals, method))) == expected


@pytest.mark.parametrize(
    "numerator, denominator, decimals, method, expected",
    [
        # 1 minute at 0.01/min for 1 s: 0.01/60 = 0.000166..
        (10_000, 60, 4, HALF_UP, "0.0002"),
        (10_000, 60, 4, DOWN, "0.0001"),
        (10_000, 60, 6, HALF_EVEN, "0.000167"),
        (10_000, 60, 6, DOWN, "0.000166"),
        (-10_000, 60, 6, HALF_UP, "-0.000167"),
        (-10_000, 60, 6, UP, "-0.000166"),
        # 1/3 of a unit
        (1_000_000, 3, 2, UP, "0.34"),
        (1_000_000, 3, 2, HALF_UP, "0.33"),
        (2_000_000, 3, 2, HALF_EVEN, "0.67"),
        (0, 7, 2, UP, "0.00"),
    ],
)
def test_from_ratio_examples(numerator, denominator, decimals, method, expected):
    assert str(Money.from_ratio(numerator, denominator, RoundingRule(decimals, method))) == expected


@pytest.mark.parametrize("denominator", [0, -1, -60])
def test_from_ratio_refuses_non_positive_denominator(denominator):
    with pytest.raises(MoneyError):
        Money.from_ratio(100, denominator, RoundingRule())


@pytest.mark.parametrize("decimals", [-1, 7, 10])
def test_rounding_rule_refuses_decimals_out_of_range(decimals):
    with pytest.raises(MoneyError):
        RoundingRule(decimals)


def test_rounding_rule_accepts_method_names():
    assert RoundingRule(2, "half_even").method is HALF_EVEN
    assert RoundingRule().method is HALF_UP and RoundingRule().decimals == 4
    with pytest.raises(ValueError):
        RoundingRule(2, "bankers")


# -- properties ---------------------------------------------------------------------------------------
amount_texts = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}" + (f".{frac}" if frac else ""),
    st.sampled_from(["", "-", "+"]),
    st.integers(min_value=0, max_value=10**12 - 1),
    st.one_of(st.just(""), st.text(alphabet="0123456789", min_size=1, max_size=SCALE)),
)

DECIMAL_METHOD = {HALF_UP: ROUND_HALF_UP, HALF_EVEN: ROUND_HALF_EVEN, UP: ROUND_CEILING, DOWN: ROUND_FLOOR}


@given(st.lists(amount_texts, max_size=40))
def test_sum_of_parsed_amounts_equals_decimal_sum(texts):
    total = money_sum([M(t) for t in texts])
    with localcontext() as ctx:
        ctx.prec = 100
        expected = sum((Decimal(t) for t in texts), Decimal(0))
    assert total.to_decimal() == expected
    running = Money.zero()
    for t in texts:
        running = running + M(t)
    assert running == total


@given(amount_texts)
def test_parse_of_str_round_trips(text):
    m = M(text)
    assert M(str(m)) == m
    assert Decimal(str(m)) == Decimal(text)
    assert M(m.to_decimal()) == m


@given(st.integers(min_value=-MAX_MICROS, max_value=MAX_MICROS))
def test_str_round_trips_any_micros(micros):
    assert M(str(Money(micros))).micros == micros


@settings(max_examples=300)
@given(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.integers(min_value=1, max_value=10**7),
    st.integers(min_value=0, max_value=SCALE),
    st.sampled_from(list(RoundingMethod)),
)
def test_from_ratio_matches_fraction_and_decimal_reference(numerator, denominator, decimals, method):
    result = Money.from_ratio(numerator, denominator, RoundingRule(decimals, method))
    exact = Fraction(numerator, denominator * MICROS_PER_UNIT)  # in currency units
    quantum = Fraction(1, 10**decimals)
    # the result is on the grid and within one quantum of the exact value, on the right side
    got = Fraction(result.micros, MICROS_PER_UNIT)
    assert (got / quantum).denominator == 1
    assert abs(got - exact) < quantum
    if method is UP:
        assert got >= exact
    if method is DOWN:
        assert got <= exact
    if method in (HALF_UP, HALF_EVEN):
        assert abs(got - exact) <= quantum / 2
    # and it is exactly what Decimal's rounding of the exact quotient gives
    # (80 digits: a non-terminating quotient cannot land on a rounding boundary by truncation,
    # since distinct fractions with these denominators differ by far more than 10^-60)
    with localcontext() as ctx:
        ctx.prec = 80
        exact_decimal = Decimal(numerator) / Decimal(denominator * MICROS_PER_UNIT)
        reference = exact_decimal.quantize(Decimal(1).scaleb(-decimals), rounding=DECIMAL_METHOD[method])
    assert result.to_decimal() == reference


@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12), max_size=30), st.sampled_from(list(RoundingMethod)))
def test_rounding_on_the_grid_never_drifts(micros_list, method):
    # amounts already at the rule's decimals are returned unchanged, so rounding each and
    # summing equals summing and rounding: no drift accumulates.
    rule = RoundingRule(2, method)
    amounts = [Money((m // 10_000) * 10_000) for m in micros_list]
    rounded = [Money.from_ratio(a.micros, 1, rule) for a in amounts]
    assert rounded == amounts
    assert money_sum(rounded) == Money.from_ratio(money_sum(amounts).micros, 1, rule)
