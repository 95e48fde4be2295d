"""Fraud guards: what an account may still spend, where it may call, at what price, how often.

Pure: no database, no sockets, no clock (the instant is given). docs/FRAUD.md is the operator's
view. The one formula the grant uses (`may_spend`):

    may spend = min(available, cap − spent − held)   for each spend cap that is set

where `available` is balance + credit limit − Σ held (fsbill.core.grant.available), `spent` is
what the ledger posted for calls in the cap's period (the day or month in the tariff's time
zone) and `held` is everything the account's live calls hold. A grant bought with that can
never take the period's spend past the cap, whatever its live calls on any node do: they all
hold their grants on the same account row, read under its lock.

Settings come in two layers: a tariff's default for its accounts and the account's own. Each
account value is either unset (NULL: the tariff's applies), `OFF` (this guard is off for this
account, whatever the tariff says) or a value; `resolve_limit`/`resolve_prefixes` decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from fsbill.core.money import Money
from fsbill.errors import InvalidInput

# An account's stored value for "this guard is off here, whatever the tariff's default says":
# -1 for the numeric guards (caps, max rate, calls per minute), "" for the prefix lists.
OFF = -1

# The refusal reasons the guards add (fsbill.config.REJECT_REASONS)
SPEND_CAP = "spend_cap"
DESTINATION_BLOCKED = "destination_blocked"
RATE_TOO_HIGH = "rate_too_high"
CALL_RATE = "call_rate"

CALL_RATE_WINDOW_US = 60_000_000  # max_calls_per_minute counts the calls admitted in the last 60 s


@dataclass(frozen=True)
class Guards:
    """The guards in force for one account (its own settings over its tariff's defaults)."""

    daily_cap: Money | None = None  # None: no cap
    monthly_cap: Money | None = None
    block: tuple[str, ...] = ()  # destination prefixes refused
    allow: tuple[str, ...] = ()  # non-empty: allow-list mode (only these prefixes may be called)
    max_rate: Money | None = None  # price per minute above which a destination is refused
    max_calls_per_minute: int | None = None

    @property
    def has_caps(self) -> bool:
        return self.daily_cap is not None or self.monthly_cap is not None

    @property
    def is_empty(self) -> bool:
        return self == Guards()


@dataclass(frozen=True)
class Usage:
    """What the guards count, read under the account's lock."""

    spent_day: Money = Money(0)  # Σ call charges the ledger posted since the day's start
    spent_month: Money = Money(0)  # ... since the month's start
    calls_last_minute: int = 0  # calls admitted in the last CALL_RATE_WINDOW_US


# -- the one spend formula --------------------------------------------------------------------------
def spend_room(guards: Guards, usage: Usage, held: Money) -> Money | None:
    """What the spend caps still allow to be held: the tightest cap − spent − held, None when
    no cap is set. Negative when the period already spent past a cap (a cap lowered under
    live calls, or charges beyond their holds)."""
    rooms = [
        cap - spent - held
        for cap, spent in ((guards.daily_cap, usage.spent_day), (guards.monthly_cap, usage.spent_month))
        if cap is not None
    ]
    return min(rooms) if rooms else None


def may_spend(available: Money, room: Money | None) -> Money:
    """What a grant may newly hold: the account's available money, within the caps' room."""
    if room is None:
        return available
    return room if room < available else available


# -- destinations ---------------------------------------------------------------------------------------
def destination_allowed(number: str, block: Iterable[str], allow: Iterable[str]) -> bool:
    """Longest prefix wins: the longest block or allow prefix the number starts with decides
    (an allow of equal length to a block wins, so one can open a hole exactly). No match:
    refused in allow-list mode (any allow prefix set), allowed otherwise."""
    allow = tuple(allow)
    best_len, best_allows = -1, not allow
    for prefixes, allows in ((block, False), (allow, True)):
        for p in prefixes:
            if number.startswith(p) and (len(p) > best_len or (len(p) == best_len and allows)):
                best_len, best_allows = len(p), allows
    return best_allows


def destination_verdict(guards: Guards, number: str, price_per_minute: Money) -> str:
    """ "" when the destination may be called, else destination_blocked or rate_too_high."""
    if (guards.block or guards.allow) and not destination_allowed(number, guards.block, guards.allow):
        return DESTINATION_BLOCKED
    if guards.max_rate is not None and price_per_minute > guards.max_rate:
        return RATE_TOO_HIGH
    return ""


def call_rate_exceeded(guards: Guards, calls_last_minute: int) -> bool:
    return guards.max_calls_per_minute is not None and calls_last_minute >= guards.max_calls_per_minute


# -- periods ------------------------------------------------------------------------------------------------
def period_starts_us(now_us: int, tz: str) -> tuple[int, int]:
    """The start of the day and of the month containing `now_us` in the time zone `tz`, as
    epoch microseconds (a day after a DST change is 23 or 25 hours long)."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now_us // 1_000_000, tz=timezone.utc).astimezone(zone)
    # a zoned wall time takes the offset in force at that wall time (not at `now`)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    month = day.replace(day=1)
    return int(day.timestamp()) * 1_000_000, int(month.timestamp()) * 1_000_000


# -- the two layers of settings -----------------------------------------------------------------------------
def resolve_limit(account: int | None, tariff: int | None) -> int | None:
    """An account's value over its tariff's: unset (None) takes the tariff's; OFF is no limit."""
    value = tariff if account is None else account
    return None if value is None or value == OFF else value


def resolve_prefixes(account: str | None, tariff: str | None) -> tuple[str, ...]:
    """An account's prefix list over its tariff's: unset (None) takes the tariff's; "" is none."""
    return split_prefixes(tariff if account is None else account)


def split_prefixes(text: str | None) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split(",") if p)


def parse_prefixes(text: str) -> tuple[str, ...]:
    """An operator's `P,P` list: ASCII digits (a leading + is dropped, as numbers are
    normalised to digits), no duplicates kept, sorted. Raises InvalidInput naming the bad one."""
    out = set()
    for raw in text.split(","):
        p = raw.strip()
        if p.startswith("+"):
            p = p[1:]
        if not p:
            continue
        if not (p.isascii() and p.isdigit()):
            raise InvalidInput(f"prefix {raw.strip()!r} is not digits (write destination prefixes like 882,4470)")
        if p.startswith("00"):
            raise InvalidInput(
                f"prefix {raw.strip()!r} starts with 00: write it as numbers are rated, without the international "
                f"prefix (e.g. {p[2:] or '49'})"
            )
        out.add(p)
    if not out:
        raise InvalidInput(f"no prefix in {text!r}")
    return tuple(sorted(out))


def guards_of(account: dict[str, object], tariff: dict[str, object]) -> Guards:
    """The guards in force from the stored columns of an account and of its tariff
    (daily_cap_micros, monthly_cap_micros, block_prefixes, allow_prefixes, max_rate_micros,
    max_calls_per_minute)."""

    def money(name: str) -> Money | None:
        v = resolve_limit(_int(account.get(name)), _int(tariff.get(name)))
        return None if v is None else Money(v)

    return Guards(
        daily_cap=money("daily_cap_micros"),
        monthly_cap=money("monthly_cap_micros"),
        block=resolve_prefixes(_str(account.get("block_prefixes")), _str(tariff.get("block_prefixes"))),
        allow=resolve_prefixes(_str(account.get("allow_prefixes")), _str(tariff.get("allow_prefixes"))),
        max_rate=money("max_rate_micros"),
        max_calls_per_minute=resolve_limit(
            _int(account.get("max_calls_per_minute")), _int(tariff.get("max_calls_per_minute"))
        ),
    )


def _int(v: object) -> int | None:
    return None if v is None else int(v)  # type: ignore[call-overload]


def _str(v: object) -> str | None:
    return None if v is None else str(v)


GUARD_COLUMNS = (
    "daily_cap_micros",
    "monthly_cap_micros",
    "block_prefixes",
    "allow_prefixes",
    "max_rate_micros",
    "max_calls_per_minute",
)
