"""Rating: what a call to a number costs, and how long an amount of money lasts.

Pure: no I/O, no clock, no floats. Times are passed in (epoch microseconds); every amount is a
`Money`; the only rounding is `Money.from_ratio`, once per cost, by the tariff's rule.

The semantics (docs/RATE-DECKS.md, "How a call is rated"):

- A *rate* is a deck row: prefix, price per minute, connect fee, initial increment,
  subsequent increment, minimum duration, validity window and an optional time band.
- Billed seconds of a call answered for d seconds: 0 if d <= 0 (not answered); else
  b = max(d, minimum, initial increment), and what exceeds the initial increment is rounded
  up to whole subsequent increments. 61 s at 60/60 bills 120 s, at 30/6 66 s, at 1/1 61 s.
- Cost = connect fee + billed seconds x price / 60, rounded once at the end (the connect fee
  is exact, so it sits inside that single rounding without changing it).
- The inverse (`max_seconds`): the longest answered duration whose cost fits an amount. It is
  always a *billing boundary* (a duration whose billed seconds equal itself) or the cap.
- Lookup (`RateDeck.lookup`): the longest prefix of the normalized number that has a row in
  force at the call's start and whose band contains that start; no such row is a distinct
  result (None), not an exception.

Time bands. A band is a set of ISO weekdays (1 = Monday) and/or a time-of-day window
[from, to) in minutes after local midnight, in the tariff's time zone; a window with
from > to wraps past midnight (22:00-06:00). The weekday is that of the instant itself, so
"1-5 22:00-06:00" contains Monday 23:00 and Saturday 05:00 (still Friday night by the clock
of the window, but a Saturday) is *not* in it. A row without a band is its prefix's default;
a banded row of the same prefix overrides it inside its band.

A call is rated entirely at the row (and so the band) in force at its start: a call that
begins at 21:59 in the day band and ends at 22:30 is billed at the day price for all of its
duration. Rates are never split across band or validity boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fsbill.core.money import SCALE, Money, RoundingMethod, RoundingRule
from fsbill.errors import NumberError, RatingError

# max_seconds of a free rate when no cap is given: longer than any call (about 31 years).
FOREVER_S = 10**9
MAX_NUMBER_DIGITS = 32
US_PER_S = 1_000_000
MINUTES_PER_DAY = 1440

_DEFAULT_ROUNDING = RoundingRule()
_FORMATTING = str.maketrans("", "", " -.()\t")


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of a rate deck (or an ad-hoc rate). Immutable; shared by every call rated at it."""

    prefix: str
    rate: Money  # price per minute
    connect_fee: Money = Money(0)
    initial_increment_s: int = 1
    increment_s: int = 1
    min_duration_s: int = 0
    rounding: RoundingRule = _DEFAULT_ROUNDING
    description: str = ""
    effective_from_us: int | None = None  # inclusive; None = since always
    effective_until_us: int | None = None  # exclusive; None = for ever
    weekdays: frozenset[int] | None = None  # ISO 1=Mon..7=Sun; None = every day
    time_from_min: int | None = None  # minutes after local midnight, inclusive
    time_to_min: int | None = None  # exclusive; from > to wraps past midnight

    def __post_init__(self) -> None:
        if self.rate.micros < 0 or self.connect_fee.micros < 0:
            raise RatingError(f"rate {self.prefix!r}: price and connect fee must not be negative")
        if self.initial_increment_s < 1 or self.increment_s < 1 or self.min_duration_s < 0:
            raise RatingError(f"rate {self.prefix!r}: increments must be >= 1 s and the minimum >= 0 s")
        if (self.time_from_min is None) != (self.time_to_min is None):
            raise RatingError(f"rate {self.prefix!r}: a time window needs both ends")

    @classmethod
    def adhoc(cls, per_minute: Money) -> Rate:
        """A rate given with the call (mod_nibblebill's `nibble_rate`): per second, no fee."""
        return cls(prefix="", rate=per_minute)

    @property
    def banded(self) -> bool:
        return self.weekdays is not None or self.time_from_min is not None

    def is_effective(self, at_us: int) -> bool:
        return (self.effective_from_us is None or self.effective_from_us <= at_us) and (
            self.effective_until_us is None or at_us < self.effective_until_us
        )

    def in_band(self, weekday: int, minute_of_day: int) -> bool:
        """Whether local ISO `weekday` (1=Mon) and `minute_of_day` (0..1439) are in this row's band."""
        if self.weekdays is not None and weekday not in self.weekdays:
            return False
        start, end = self.time_from_min, self.time_to_min
        if start is None or end is None:
            return True
        if start <= end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end  # wraps past midnight


_new = object.__new__
_SETTERS = tuple(getattr(Rate, name).__set__ for name in Rate.__slots__)


def rate_from_values(values: tuple[Any, ...]) -> Rate:
    """A Rate from its 13 field values in declaration order, without re-validating them.

    For rows that were validated when they were stored (loading a deck of a million rows
    from the database); everything else constructs `Rate(...)`, which checks its invariants.
    """
    (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12) = _SETTERS
    rate = _new(Rate)
    s0(rate, values[0])
    s1(rate, values[1])
    s2(rate, values[2])
    s3(rate, values[3])
    s4(rate, values[4])
    s5(rate, values[5])
    s6(rate, values[6])
    s7(rate, values[7])
    s8(rate, values[8])
    s9(rate, values[9])
    s10(rate, values[10])
    s11(rate, values[11])
    s12(rate, values[12])
    return rate


# -- billing arithmetic -----------------------------------------------------------------------
def billed_seconds(rate: Rate, answered_s: int) -> int:
    """Whole seconds billed for a call answered `answered_s` seconds (0 = not answered)."""
    if answered_s <= 0:
        return 0
    initial = rate.initial_increment_s
    billed = max(answered_s, rate.min_duration_s, initial)
    if billed > initial:
        increment = rate.increment_s
        billed = initial + -(-(billed - initial) // increment) * increment
    return billed


def billed_seconds_us(rate: Rate, answered_us: int) -> int:
    """Billed seconds for an answered duration in microseconds: every started second counts."""
    if answered_us <= 0:
        return 0
    return billed_seconds(rate, -(-answered_us // US_PER_S))


def cost(rate: Rate, answered_s: int) -> Money:
    """What a call answered `answered_s` seconds costs: fee + billed x price / 60, rounded once."""
    if answered_s <= 0:
        return Money(0)
    billed = billed_seconds(rate, answered_s)
    return Money.from_ratio(rate.connect_fee.micros * 60 + billed * rate.rate.micros, 60, rate.rounding)


def _largest_numerator(q: int, denominator: int, method: RoundingMethod) -> int:
    """The largest integer n >= 0 with round(n / denominator) <= q under `method` (q >= 0)."""
    if method is RoundingMethod.DOWN:
        return (q + 1) * denominator - 1
    if method is RoundingMethod.UP:
        return q * denominator
    midpoint_twice = (2 * q + 1) * denominator  # 2n < this rounds to <= q
    if method is RoundingMethod.HALF_EVEN and q % 2 == 0:
        return midpoint_twice // 2  # an exact midpoint rounds down to the even q
    return (midpoint_twice - 1) // 2


def max_seconds(rate: Rate, budget: Money, cap_s: int | None = None) -> int:
    """The longest answered duration d (<= cap_s when given) with cost(rate, d) <= budget.

    0 when not even one second is affordable. A free rate with no cap lasts FOREVER_S.
    Constant time and exact: cost <= budget is solved for the billed seconds from the
    rounding rule (`_largest_numerator`), so no scan and no search. The answer is a billing
    boundary (first block + k increments) or the cap.
    """
    if budget.micros < 0 or (cap_s is not None and cap_s <= 0):
        return 0
    unit = 10 ** (SCALE - rate.rounding.decimals)
    # cost(b billed seconds) <= budget  <=>  fee*60 + b*price <= limit   (exact, see above)
    limit = _largest_numerator(budget.micros // unit, 60 * unit, rate.rounding.method) - rate.connect_fee.micros * 60
    first = billed_seconds(rate, 1)  # every d <= first bills the first block
    price = rate.rate.micros
    if first * price > limit:
        return 0
    if price == 0:
        return FOREVER_S if cap_s is None else cap_s
    if cap_s is not None and cap_s <= first:
        return cap_s
    increment = rate.increment_s
    boundary = first + (limit // price - first) // increment * increment
    if cap_s is not None and boundary > cap_s:
        return cap_s
    return boundary


# -- numbers ------------------------------------------------------------------------------------
def normalize_number(number: str, international_prefix: str = "00") -> str:
    """A dialled number as the digits rate decks are keyed by.

    Formatting characters (space, '-', '.', '(', ')') are dropped; a leading '+' or else a
    leading international prefix ('00' by default, '011' in North America) is removed.
    """
    text = number.strip().translate(_FORMATTING)
    if text.startswith("+"):
        text = text[1:]
    elif international_prefix and text.startswith(international_prefix):
        text = text[len(international_prefix) :]
    if not (0 < len(text) <= MAX_NUMBER_DIGITS and text.isascii() and text.isdigit()):
        raise NumberError(
            f"number {number!r} is not 1-{MAX_NUMBER_DIGITS} digits after removing '+', "
            f"{international_prefix!r} and formatting"
        )
    return text


# -- decks ----------------------------------------------------------------------------------------
def _specificity(rate: Rate) -> tuple[int, int, int]:
    """Sort key within one prefix: banded rows before the default, newest validity first."""
    since = rate.effective_from_us
    return (0 if rate.banded else 1, 1 if since is None else 0, 0 if since is None else -since)


class RateDeck:
    """A tariff's rates indexed for longest-prefix lookup, in the tariff's time zone.

    The index is a dict from prefix to the rate (or the tuple of rates, most specific first)
    plus the prefix lengths present, so a lookup costs at most one dict probe per length.
    """

    __slots__ = ("timezone", "_zone", "_index", "_lengths", "_count", "_local_cache")

    def __init__(self, rates: Iterable[Rate], timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._zone = ZoneInfo(timezone)
        grouped: dict[str, Rate | list[Rate]] = {}
        count = 0
        for rate in rates:
            count += 1
            have = grouped.get(rate.prefix)
            if have is None:
                grouped[rate.prefix] = rate
            elif isinstance(have, list):
                have.append(rate)
            else:
                grouped[rate.prefix] = [have, rate]
        index: dict[str, Rate | tuple[Rate, ...]] = {}
        for prefix, entry in grouped.items():
            index[prefix] = tuple(sorted(entry, key=_specificity)) if isinstance(entry, list) else entry
        # Any: a Rate or a tuple of Rates, told apart with `type(entry) is tuple` in lookup (its
        # hottest test), which mypy does not narrow on
        self._index: dict[str, Any] = index
        self._lengths = tuple(sorted({len(p) for p in index}, reverse=True))
        self._count = count
        self._local_cache: tuple[int, int, int] = (-1, 0, 0)  # (epoch second, weekday, minute)

    def __len__(self) -> int:
        return self._count

    def rates(self) -> Iterator[Rate]:
        for entry in self._index.values():
            if isinstance(entry, tuple):
                yield from entry
            else:
                yield entry

    def local_time(self, at_us: int) -> tuple[int, int]:
        """(ISO weekday, minute of day) of `at_us` in the deck's time zone."""
        second = at_us // US_PER_S
        cached = self._local_cache
        if cached[0] == second:
            return cached[1], cached[2]
        moment = datetime.fromtimestamp(second, tz=self._zone)
        weekday, minute = moment.isoweekday(), moment.hour * 60 + moment.minute
        self._local_cache = (second, weekday, minute)
        return weekday, minute

    def lookup(self, number: str, at_us: int) -> Rate | None:
        """The rate for a normalized `number` for a call starting at `at_us`, or None."""
        get = self._index.get
        size = len(number)
        local: tuple[int, int] | None = None
        for length in self._lengths:
            if length > size:
                continue
            entry = get(number[:length])
            if entry is None:
                continue
            for rate in entry if type(entry) is tuple else (entry,):
                since = rate.effective_from_us
                if since is not None and at_us < since:
                    continue
                until = rate.effective_until_us
                if until is not None and at_us >= until:
                    continue
                if rate.weekdays is not None or rate.time_from_min is not None:
                    if local is None:
                        local = self.local_time(at_us)
                    if not rate.in_band(local[0], local[1]):
                        continue
                found: Rate = rate
                return found
        return None


__all__ = [
    "FOREVER_S",
    "Rate",
    "RateDeck",
    "billed_seconds",
    "billed_seconds_us",
    "cost",
    "max_seconds",
    "normalize_number",
]
