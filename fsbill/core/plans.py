"""Recurring charges: what a subscription to a plan owes for each calendar period.

Pure: the time is an argument, the time zone a name (the account's tariff's). Rules (issue 23,
docs/PLANS.md):

- Periods are calendar months or calendar days in the time zone, each from local midnight to
  the next (a day across a DST change is 23 or 25 hours long). A monthly plan is never anchored
  on the day it started, so nothing skips a month after the 31st (CGRateS #2255).
- Monthly: charged in advance at the start of each month. A subscription that starts mid-month
  pays the rest of that month prorated by the seconds left in it (from midnight on the 16th of
  a 31-day month: 16/31 of the fee); one that ends mid-month is credited the unused part. Each
  amount is the exact fraction rounded once by the tariff's rule; a credit is what was charged
  minus the used part (itself rounded once), so what a period finally costs is rounded once.
- Daily: each day one share of the month's fee, rounded cumulatively: the charges up to the
  end of day d of a D-day month are round(fee × d / D), so a month's shares add up to exactly
  the fee (no remainder dropped as `div` does). A part day is a part of that day's share.
- The quantity multiplies the fee before any rounding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from zoneinfo import ZoneInfo

from fsbill.core.money import MAX_MICROS, Money, RoundingRule
from fsbill.errors import InvalidInput

US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
MAX_QUANTITY = 1_000_000


class Period(str, Enum):
    MONTHLY = "monthly"
    DAILY = "daily"


def parse_period(text: str) -> Period:
    try:
        return Period(text.strip().lower())
    except ValueError:
        raise InvalidInput(f"unknown period {text!r}: use monthly or daily") from None


def check_fee(fee: Money, quantity: int = 1) -> None:
    """A fee is positive, and fee × quantity stays an amount fsbill keeps exact."""
    if fee.micros <= 0:
        raise InvalidInput(f"a plan's fee must be positive, got {fee}")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidInput(f"quantity must be 1..{MAX_QUANTITY}, got {quantity}")
    if fee.micros * quantity > MAX_MICROS:
        raise InvalidInput(f"{quantity} × {fee} is beyond the largest amount fsbill keeps exact ({Money(MAX_MICROS)})")


# -- calendar periods --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """A calendar period [start_us, end_us)."""

    start_us: int
    end_us: int

    @property
    def length_us(self) -> int:
        return self.end_us - self.start_us


def _midnight_us(day: date, zone: ZoneInfo) -> int:
    """The first instant of a local date. fold=0: where midnight falls in a DST gap (clocks jump
    from 00:00 to 01:00) it takes the offset before the change, which is the change's instant."""
    local = datetime(day.year, day.month, day.day, tzinfo=zone)
    return (local - _EPOCH) // _ONE_US


def _local_date(at_us: int, zone: ZoneInfo) -> date:
    return (_EPOCH + timedelta(microseconds=at_us)).astimezone(zone).date()


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def month_span(at_us: int, tz: str) -> Span:
    """The calendar month containing `at_us` in time zone `tz`."""
    zone = ZoneInfo(tz)
    first = _local_date(at_us, zone).replace(day=1)
    return Span(_midnight_us(first, zone), _midnight_us(_next_month(first), zone))


def day_span(at_us: int, tz: str) -> Span:
    """The calendar day containing `at_us` in time zone `tz` (23, 24 or 25 hours)."""
    zone = ZoneInfo(tz)
    day = _local_date(at_us, zone)
    return Span(_midnight_us(day, zone), _midnight_us(day + timedelta(days=1), zone))


def span_of(period: Period, at_us: int, tz: str) -> Span:
    return month_span(at_us, tz) if period is Period.MONTHLY else day_span(at_us, tz)


def spans(period: Period, from_us: int, tz: str) -> Iterator[Span]:
    """The periods from the one containing `from_us` on, each starting where the last ended."""
    span = span_of(period, from_us, tz)
    while True:
        yield span
        span = span_of(period, span.end_us, tz)


# -- what a subscription owes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Terms:
    """A subscription as charging sees it: the plan's monthly fee, the quantity, when it runs,
    and the account's tariff's time zone and rounding rule."""

    fee: Money
    period: Period
    quantity: int
    start_us: int
    end_us: int | None  # None: until unsubscribed
    tz: str
    rounding: RoundingRule

    def covered(self, span: Span) -> tuple[int, int] | None:
        """The part of `span` the subscription runs in, or None."""
        start = max(span.start_us, self.start_us)
        end = span.end_us if self.end_us is None else min(span.end_us, self.end_us)
        return (start, end) if start < end else None


def _monthly(terms: Terms, span: Span, start_us: int, end_us: int) -> Money:
    return Money.from_ratio(terms.fee.micros * terms.quantity * (end_us - start_us), span.length_us, terms.rounding)


def _cumulative_daily(terms: Terms, day: Span, at_us: int) -> Money:
    """The shares of the month up to `at_us` (inside `day`), rounded once: round(fee × q × d / D)
    at the end of day d of a D-day month, and a part of a day's share in between."""
    zone = ZoneInfo(terms.tz)
    local = _local_date(day.start_us, zone)
    days_in_month = (_next_month(local.replace(day=1)) - local.replace(day=1)).days
    before = local.day - 1
    numerator = terms.fee.micros * terms.quantity * (before * day.length_us + (at_us - day.start_us))
    return Money.from_ratio(numerator, days_in_month * day.length_us, terms.rounding)


def amount(terms: Terms, span: Span, start_us: int, end_us: int) -> Money:
    """What [start_us, end_us) of `span` costs (start_us <= end_us, both inside `span`)."""
    if not span.start_us <= start_us <= end_us <= span.end_us:
        raise InvalidInput("a charged interval must lie inside its period")
    if terms.period is Period.MONTHLY:
        return _monthly(terms, span, start_us, end_us)
    return _cumulative_daily(terms, span, end_us) - _cumulative_daily(terms, span, start_us)


@dataclass(frozen=True)
class Charged:
    """A period already charged: what, for which part of it."""

    amount: Money
    from_us: int
    until_us: int


@dataclass(frozen=True)
class Due:
    """A charge (kind "charge", taken from the account) or a credit (kind "credit", given back)
    now due for period `span`."""

    kind: str
    span: Span
    amount: Money
    from_us: int
    until_us: int


def charge_due(terms: Terms, span: Span) -> Due | None:
    """The charge for `span`: the part the subscription runs in, priced."""
    part = terms.covered(span)
    if part is None:
        return None
    return Due("charge", span, amount(terms, span, *part), *part)


def credit_due(terms: Terms, span: Span, charged: Charged) -> Due | None:
    """What goes back for a charged period the subscription ended inside (or before): what was
    charged minus the price of the part it ran in. None when nothing is unused."""
    if terms.end_us is None or terms.end_us >= charged.until_us:
        return None
    used_until = max(charged.from_us, terms.end_us)
    back = charged.amount - amount(terms, span, charged.from_us, used_until)
    if back.micros <= 0:
        return None
    return Due("credit", span, back, used_until, charged.until_us)


def due(
    terms: Terms,
    now_us: int,
    charged: Mapping[int, Charged],
    credited: frozenset[int] | set[int],
    limit: int = 1000,
) -> list[Due]:
    """Everything due by `now_us`, oldest first, at most `limit`: the charge of every period the
    subscription has started by now and that was not charged yet (`charged`, by period start),
    and the credit of every charged period it ended inside, once it has ended (`credited`)."""
    out: list[Due] = []
    if terms.end_us is not None and terms.end_us <= now_us:
        for start_us in sorted(charged):
            if start_us in credited:
                continue
            credit = credit_due(terms, span_of(terms.period, start_us, terms.tz), charged[start_us])
            if credit is not None:
                out.append(credit)
    begin = max([terms.start_us] + [s for s in charged])  # charges are made in order
    for span in spans(terms.period, begin, terms.tz):
        if len(out) >= limit:
            break
        if terms.end_us is not None and span.start_us >= terms.end_us:
            break
        if max(span.start_us, terms.start_us) > now_us:  # charged in advance: at the period's start
            break
        if span.start_us in charged:
            continue
        charge = charge_due(terms, span)
        if charge is not None:
            out.append(charge)
    return out[:limit]


def finished(terms: Terms, now_us: int) -> bool:
    """No charge can ever fall due again (it has ended); its last credits are then due now."""
    return terms.end_us is not None and terms.end_us <= now_us


__all__ = [
    "Charged",
    "Due",
    "Period",
    "Span",
    "Terms",
    "amount",
    "charge_due",
    "check_fee",
    "credit_due",
    "day_span",
    "due",
    "finished",
    "month_span",
    "parse_period",
    "span_of",
    "spans",
]
