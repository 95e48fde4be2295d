"""Auto-recharge, decided (issue 23, docs/NOTICES.md "Auto-recharge").

An account may ask for money before it runs dry: `account set --auto-recharge AMOUNT --below
LEVEL [--max-per-day N]`. When what is available (fsbill.core.grant.available: balance + credit
limit − held − arrears) falls under LEVEL, one `recharge.requested` notice carries AMOUNT and a
fresh key for the payment side to charge the saved card with. The money arrives as a normal
credit whose reference is that key, which closes the request; the ledger's unique reference makes
a retried request credit once. Requested money is never counted as available: only a credit is.

Pure: amounts are Money, the time and the time zone are given by the caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from fsbill.core.money import Money
from fsbill.errors import InvalidInput

KEY_PREFIX = "rch_"  # a request's key: the ledger reference its credit carries
DEFAULT_MAX_PER_DAY = 3
MAX_PER_DAY_LIMIT = 100
MAX_FAILURES = 3  # failed charges in a row after which requests stop until a credit arrives
OPEN, CREDITED, FAILED = "open", "credited", "failed"
NONE_WORDS = ("none", "off")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Settings:
    """An account's auto-recharge: request `amount` when available falls under `below`."""

    amount: Money
    below: Money
    max_per_day: int = DEFAULT_MAX_PER_DAY

    def as_json(self) -> dict[str, object]:
        return {"amount": str(self.amount), "below": str(self.below), "max_per_day": self.max_per_day}


def parse_settings(amount: str, below: str | None, max_per_day: int | None) -> Settings | None:
    """`--auto-recharge AMOUNT --below LEVEL [--max-per-day N]`; `--auto-recharge none` -> None
    (cleared; then --below and --max-per-day must not be given). Raises InvalidInput."""
    if amount.strip().lower() in NONE_WORDS:
        if below is not None or max_per_day is not None:
            raise InvalidInput("--auto-recharge none clears auto-recharge: give no --below or --max-per-day with it")
        return None
    if below is None:
        raise InvalidInput("--auto-recharge needs --below LEVEL: the level of available under which to request it")
    return Settings(
        _positive("--auto-recharge", amount),
        _level(below),
        valid_max_per_day(DEFAULT_MAX_PER_DAY if max_per_day is None else max_per_day),
    )


def _positive(option: str, text: str) -> Money:
    try:
        value = Money.parse(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"{option}: {exc} (an amount like 20.00, or 'none')") from None
    if value.micros <= 0:
        raise InvalidInput(f"{option} must be more than zero, got {value}")
    return value


def _level(text: str) -> Money:
    try:
        value = Money.parse(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"--below: {exc} (a level like 5.00)") from None
    if value.is_negative():
        raise InvalidInput(f"--below must not be negative, got {value}")
    return value


def valid_max_per_day(n: int) -> int:
    if not 1 <= n <= MAX_PER_DAY_LIMIT:
        raise InvalidInput(f"--max-per-day must be 1 to {MAX_PER_DAY_LIMIT}, got {n}")
    return n


def stored(settings: Settings | None) -> tuple[int | None, int | None, int | None]:
    """The account's columns (auto_recharge_micros, auto_recharge_below_micros,
    auto_recharge_max_per_day); all NULL when off."""
    if settings is None:
        return None, None, None
    return settings.amount.micros, settings.below.micros, settings.max_per_day


def from_stored(amount: int | None, below: int | None, max_per_day: int | None) -> Settings | None:
    if amount is None or below is None:
        return None
    return Settings(Money(amount), Money(below), max_per_day or DEFAULT_MAX_PER_DAY)


def describe(settings: Settings | None) -> str | None:
    """As the audit trail and `account show` say it, in the words the options take."""
    if settings is None:
        return None
    return f"{settings.amount} below {settings.below}, at most {settings.max_per_day} a day"


class Decision(enum.Enum):
    REQUEST = "request"
    ABOVE = "above"  # available is at or above the level: nothing to do
    OPEN = "open"  # a request is open: wait for its credit or its failure
    FAILING = "failing"  # MAX_FAILURES in a row: wait for a credit
    DAILY_LIMIT = "daily_limit"  # max_per_day requests made today already


def decide(settings: Settings, available: Money, *, open_request: bool, failures: int, today: int) -> Decision:
    """Whether to raise a request now. `failures`: failed charges in a row since the last
    credit; `today`: requests made this local day."""
    if available >= settings.below:
        return Decision.ABOVE
    if open_request:
        return Decision.OPEN
    if failures >= MAX_FAILURES:
        return Decision.FAILING
    if today >= settings.max_per_day:
        return Decision.DAILY_LIMIT
    return Decision.REQUEST


def local_day(at_us: int, tz: str) -> str:
    """The date of `at_us` in time zone `tz` ('2026-03-29'): requests are counted per local day."""
    return (_EPOCH + timedelta(microseconds=at_us)).astimezone(ZoneInfo(tz)).date().isoformat()


def valid_key(key: str) -> str:
    key = key.strip()
    if not key.startswith(KEY_PREFIX) or len(key) > 64:
        raise InvalidInput(f"a recharge key looks like {KEY_PREFIX}<32 hex digits>, got {key!r}")
    return key


def is_key(reference: str | None) -> bool:
    return reference is not None and reference.startswith(KEY_PREFIX)


def requested_payload(
    account: str, currency: str, key: str, settings: Settings, available: Money, balance: Money
) -> dict[str, str]:
    """The `recharge.requested` notice: charge `amount` and credit it with reference `key`."""
    return {
        "account": account,
        "currency": currency,
        "key": key,
        "amount": str(settings.amount),
        "below": str(settings.below),
        "available": str(available),
        "balance": str(balance),
    }
