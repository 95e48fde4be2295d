"""Exact money: one type for every balance, rate, fee and cost.

An amount is an integer count of micro-units (10^-6 of the currency unit). Amounts enter
from strings (CLI, CSV, YAML, JSON), integers or exact Decimals, never from floats, and
leave as strings or integers. Arithmetic between amounts is exact; the only rounding in
fsbill happens in `Money.from_ratio`, once, when a call's cost is computed, following the
tariff's rounding rule (`RoundingRule`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from fsbill.errors import MoneyError

SCALE = 6
MICROS_PER_UNIT = 10**SCALE
# The largest amount taken from outside: 999999999999.999999. Balances are BIGINT micro-units
# (at most ~9.2e18), so a bigger amount could not be stored, let alone summed.
MAX_MICROS = 10**18 - 1

# ASCII digits only: `\d` (and int()) would also take Arabic-Indic, Devanagari, full-width... digits
# ("٣" would be 3), which no operator means to type as an amount.
_AMOUNT_RE = re.compile(r"^([+-]?)([0-9]{1,15})(?:\.([0-9]{1,6}))?\Z")


class RoundingMethod(str, Enum):
    """How a tariff turns an exact cost into an amount with its number of decimals."""

    HALF_UP = "half_up"  # 0.00005 -> 0.0001 (away from zero at the midpoint)
    HALF_EVEN = "half_even"  # banker's rounding
    UP = "up"  # ceiling: never under-charge
    DOWN = "down"  # floor: never over-charge


@dataclass(frozen=True)
class RoundingRule:
    decimals: int = 4
    method: RoundingMethod = RoundingMethod.HALF_UP

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= SCALE:
            raise MoneyError(f"rounding decimals must be 0..{SCALE}, got {self.decimals}")
        object.__setattr__(self, "method", RoundingMethod(self.method))


def _round_div(numerator: int, denominator: int, method: RoundingMethod) -> int:
    """Integer numerator/denominator (denominator > 0) rounded by `method`."""
    quotient, remainder = divmod(numerator, denominator)  # floor division
    if remainder == 0:
        return quotient
    if method is RoundingMethod.DOWN:
        return quotient
    if method is RoundingMethod.UP:
        return quotient + 1
    twice = 2 * remainder
    if twice > denominator:
        return quotient + 1
    if twice < denominator:
        return quotient
    if method is RoundingMethod.HALF_EVEN:
        return quotient + (quotient & 1)
    # HALF_UP: away from zero at the midpoint
    return quotient + 1 if numerator >= 0 else quotient


class Money:
    """An exact amount in micro-units. Immutable and hashable."""

    __slots__ = ("micros",)
    micros: int

    def __init__(self, micros: int = 0) -> None:
        if type(micros) is not int:  # bool and float are refused on purpose
            raise MoneyError(f"Money() takes integer micro-units, not {type(micros).__name__}")
        object.__setattr__(self, "micros", micros)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Money is immutable")

    # -- construction -------------------------------------------------------------
    @classmethod
    def parse(cls, value: str | int | Decimal | Money) -> Money:
        """The one entry point for amounts from outside.

        Accepts '12', '-0.5', '10.000001', integers and exact Decimals. Refuses floats,
        exponents ('1e3'), commas ('1,5'), NaN/Infinity and more than 6 decimals.
        """
        if isinstance(value, Money):
            return value
        money = cls._parse(value)
        if abs(money.micros) > MAX_MICROS:
            raise MoneyError(f"amount {value} is out of range (at most {Money(MAX_MICROS)} either way)")
        return money

    @classmethod
    def _parse(cls, value: str | int | Decimal) -> Money:
        if isinstance(value, bool) or isinstance(value, float):
            raise MoneyError(f"amounts must be exact, not {type(value).__name__} {value!r}")
        if isinstance(value, int):
            return cls(value * MICROS_PER_UNIT)
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise MoneyError(f"not a finite amount: {value}")
            scaled = value * MICROS_PER_UNIT
            if scaled != scaled.to_integral_value():
                raise MoneyError(f"amount {value} has more than {SCALE} decimals")
            return cls(int(scaled))
        if isinstance(value, str):
            text = value.strip()
            match = _AMOUNT_RE.match(text)
            if not match:
                raise MoneyError(
                    f"malformed amount {value!r}: use digits with an optional '.' and "
                    f"at most {SCALE} decimals, e.g. 10.50"
                )
            sign, whole, frac = match.groups()
            micros = int(whole) * MICROS_PER_UNIT + int((frac or "").ljust(SCALE, "0") or 0)
            return cls(-micros if sign == "-" else micros)
        raise MoneyError(f"cannot make an amount from {type(value).__name__}")

    @classmethod
    def from_micros(cls, micros: int) -> Money:
        return cls(micros)

    @classmethod
    def from_ratio(cls, numerator_micros: int, denominator: int, rule: RoundingRule) -> Money:
        """numerator_micros / denominator, rounded once to `rule.decimals` by `rule.method`."""
        if denominator <= 0:
            raise MoneyError("denominator must be positive")
        unit = 10 ** (SCALE - rule.decimals)
        return cls(_round_div(numerator_micros, denominator * unit, rule.method) * unit)

    @classmethod
    def zero(cls) -> Money:
        return _ZERO

    # -- arithmetic -------------------------------------------------------------------
    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.micros + other.micros)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.micros - other.micros)

    def __neg__(self) -> Money:
        return Money(-self.micros)

    def __abs__(self) -> Money:
        return Money(abs(self.micros))

    def __mul__(self, factor: int) -> Money:
        if type(factor) is not int:
            return NotImplemented
        return Money(self.micros * factor)

    __rmul__ = __mul__

    # -- comparison ---------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and self.micros == other.micros

    def __hash__(self) -> int:
        return hash(("Money", self.micros))

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.micros < other.micros

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.micros <= other.micros

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.micros > other.micros

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.micros >= other.micros

    def __bool__(self) -> bool:
        return self.micros != 0

    def is_negative(self) -> bool:
        return self.micros < 0

    # -- output ------------------------------------------------------------------------
    def to_decimal(self) -> Decimal:
        return Decimal(self.micros).scaleb(-SCALE)

    def __str__(self) -> str:
        """Canonical text: at least 2 decimals, no trailing zeros beyond them ('10.00', '0.0167')."""
        sign = "-" if self.micros < 0 else ""
        whole, frac = divmod(abs(self.micros), MICROS_PER_UNIT)
        digits = f"{frac:0{SCALE}d}".rstrip("0").ljust(2, "0")
        return f"{sign}{whole}.{digits}"

    def __repr__(self) -> str:
        return f"Money('{self}')"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_ZERO = Money(0)


def money_sum(amounts: list[Money] | tuple[Money, ...]) -> Money:
    return Money(sum(a.micros for a in amounts))


__all__ = ["Money", "RoundingRule", "RoundingMethod", "money_sum", "SCALE", "MICROS_PER_UNIT", "MAX_MICROS"]
