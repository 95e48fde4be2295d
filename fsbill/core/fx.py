"""Exchange rates between the levels of a reseller tree (docs/RESELLERS.md, "Currencies").

A rate is set by the operator as `fsbill fx set FROM TO RATE`: one unit of FROM is worth RATE
units of TO. RATE is an exact decimal ("90.1234", "0.0111"), kept as the text typed and never
turned into a float. The same rate converts the other way by division, so one rate serves both
a reseller's funding of its child (parent's currency → child's) and the margin of a level over
the level below it (child's currency → parent's); a rate set for the exact direction wins.

One rounding rule, half-even, applied once per conversion:
- money that moves (`fund`) lands in the receiving currency's minor units (ISO 4217: 2 for
  most, 0 for JPY, KRW..., 3 for KWD, BHD...): `money_decimals`;
- a margin (reported, never moved) keeps Money's full precision, 6 decimals: `MARGIN_DECIMALS`.

Pure: no database, no clock, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from fsbill.core.money import MAX_MICROS, SCALE, Money, RoundingMethod, RoundingRule
from fsbill.errors import InvalidInput, MoneyError

# At most 9 digits before the point and 12 after: 1 VND in BTC and 1 BTC in VND both fit.
_RATE_RE = re.compile(r"^[0-9]{1,9}(?:\.[0-9]{1,12})?\Z")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}\Z")

# ISO 4217 currencies whose minor unit is not the cent (every other currency has 2 decimals).
_ZERO_DECIMALS = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
_THREE_DECIMALS = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_FOUR_DECIMALS = frozenset("CLF UYW".split())

MARGIN_DECIMALS = SCALE


def money_decimals(currency: str) -> int:
    """The decimals of `currency`'s minor unit (ISO 4217; 2 unless listed above)."""
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    if currency in _FOUR_DECIMALS:
        return 4
    return 2


def parse_currency(text: str) -> str:
    """A 3-letter ISO 4217 code, upper-cased; anything else refused."""
    code = text.strip().upper()
    if not _CURRENCY_RE.match(code):
        raise InvalidInput(f"currency must be a 3-letter ISO 4217 code such as USD, got {text!r}")
    return code


def parse_rate(text: str) -> str:
    """An exchange rate as the operator typed it, checked: digits with an optional '.', at most 9
    before and 12 after it, greater than zero. Kept as text so it is stored exactly."""
    value = text.strip()
    if not _RATE_RE.match(value):
        raise InvalidInput(
            f"malformed rate {text!r}: use digits with an optional '.' (at most 9 before it and 12 after), "
            "e.g. 90.1234; no exponent, no comma, no sign"
        )
    if Decimal(value) == 0:
        raise InvalidInput("a rate must be greater than zero")
    return value


@dataclass(frozen=True)
class FxRate:
    """1 `source` = `rate` `target`, as set with `fsbill fx set`."""

    source: str
    target: str
    rate: str  # exact decimal text

    @property
    def pair(self) -> str:
        return f"{self.source}/{self.target}"

    def fraction(self) -> Fraction:
        return Fraction(Decimal(self.rate))


Rates = Mapping[tuple[str, str], str]  # (source, target) -> exact rate text


def rate_between(rates: Rates, source: str, target: str) -> FxRate | None:
    """The rate that converts `source` into `target`: the one set that way, else the one set the
    other way (used by division); None without either."""
    if (source, target) in rates:
        return FxRate(source, target, rates[(source, target)])
    if (target, source) in rates:
        return FxRate(target, source, rates[(target, source)])
    return None


def convert(amount: Money, source: str, fx: FxRate, decimals: int) -> Money:
    """`amount` in `source` expressed in the other currency of `fx`, rounded half-even, once, to
    `decimals`. Exact integer arithmetic: never a float."""
    if source not in (fx.source, fx.target):
        raise ValueError(f"{fx.pair} does not convert {source}")
    ratio = fx.fraction() if source == fx.source else 1 / fx.fraction()
    out = Money.from_ratio(
        amount.micros * ratio.numerator, ratio.denominator, RoundingRule(decimals, RoundingMethod.HALF_EVEN)
    )
    if abs(out.micros) > MAX_MICROS:
        raise MoneyError(f"{amount} {source} at {fx.pair} {fx.rate} is beyond the largest amount fsbill keeps")
    return out


@dataclass(frozen=True)
class LevelMargin:
    """A level's margin in its own currency, and the rate it took (None: one currency)."""

    margin: Money | None  # None: the currencies differ and no rate was set
    fx: FxRate | None


def margins(costs: Sequence[tuple[Money, str]], payer: tuple[Money, str], rates: Rates) -> list[LevelMargin]:
    """Each level's margin, top first: what the level below it paid, converted into this level's
    currency (rounded half-even to MARGIN_DECIMALS), minus what this level paid itself. Levels
    sharing a currency need no rate; across currencies without a rate the margin is None (and
    so it is, with the rate, for an absurd rate that takes it beyond MAX_MICROS). Never raises."""
    if not costs:
        return []
    below = list(costs[1:]) + [payer]
    out = []
    for (cost, currency), (below_cost, below_currency) in zip(costs, below, strict=True):
        if below_currency == currency:
            out.append(LevelMargin(below_cost - cost, None))
            continue
        fx = rate_between(rates, below_currency, currency)
        if fx is None:
            out.append(LevelMargin(None, None))
            continue
        try:
            converted = convert(below_cost, below_currency, fx, MARGIN_DECIMALS)
        except MoneyError:  # beyond what fsbill keeps: a report figure must never stop a settlement
            out.append(LevelMargin(None, fx))
            continue
        out.append(LevelMargin(converted - cost, fx))
    return out


__all__ = [
    "MARGIN_DECIMALS",
    "FxRate",
    "LevelMargin",
    "Rates",
    "convert",
    "margins",
    "money_decimals",
    "parse_currency",
    "parse_rate",
    "rate_between",
]
