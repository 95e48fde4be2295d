"""Money from payment gateways, as pure arithmetic: minor units to exact amounts, and how much of a
refund can be taken now.

Gateways count in a currency's minor unit (Stripe: `amount_received: 1050` is 10.50 USD, but
`500` is 500 JPY, and `1234` is 1.234 KWD). Which currencies have no or three decimals is the
gateway's own list (https://docs.stripe.com/currencies#zero-decimal and #three-decimal); every
other currency has two. ISK, HUF and TWD are two-decimal in Stripe's API whatever ISO 4217 says.

A refund never takes what live calls hold (docs/DESIGN.md, "Money over time"): what an account
cannot give back now, without leaving its live calls less than they were promised, is owed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.money import MAX_MICROS, MICROS_PER_UNIT, Money
from fsbill.errors import MoneyError

STRIPE_ZERO_DECIMAL = frozenset(
    ("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF")
)
STRIPE_THREE_DECIMAL = frozenset(("BHD", "JOD", "KWD", "OMR", "TND"))


def stripe_decimals(currency: str) -> int:
    """How many decimals one of Stripe's minor units has in `currency` (any case)."""
    code = currency.upper()
    if code in STRIPE_ZERO_DECIMAL:
        return 0
    if code in STRIPE_THREE_DECIMAL:
        return 3
    return 2


def from_minor_units(minor: int, currency: str) -> Money:
    """An integer count of Stripe minor units of `currency` as an exact amount. Refuses anything
    but a non-negative int (a float, a bool, a string) and amounts beyond what fsbill keeps."""
    if type(minor) is not int or minor < 0:
        raise MoneyError(f"a minor-unit amount must be a whole number >= 0, got {minor!r}")
    micros = minor * (MICROS_PER_UNIT // 10 ** stripe_decimals(currency))
    if micros > MAX_MICROS:
        raise MoneyError(f"{minor} minor units of {currency.upper()} is beyond the largest amount fsbill keeps")
    return Money(micros)


def to_minor_units(amount: Money, currency: str) -> int:
    """The inverse of `from_minor_units`; an amount finer than the minor unit is refused."""
    unit = MICROS_PER_UNIT // 10 ** stripe_decimals(currency)
    whole, rest = divmod(amount.micros, int(unit))
    if rest:
        raise MoneyError(f"{amount} {currency.upper()} is finer than the currency's minor unit")
    return whole


def notice_text(value: str, limit: int = 255) -> str:
    """A text field of a gateway's notification as fsbill keeps it: trimmed, at most `limit`
    characters, control characters (a NUL cannot even be stored in PostgreSQL) and lone
    surrogates replaced by U+FFFD, so it matches no account code or reference by accident."""
    kept = "".join("\ufffd" if ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return kept.strip()[:limit]


def refund_due(refunded_total: Money, already: Money, credited: Money) -> Money:
    """What a refund notice adds to a payment's refunds: the gateway's cumulative refunded total
    (never more than was credited) less what fsbill has already recorded; nothing when the notice
    is a redelivery or arrives after a later one."""
    total = min(refunded_total, credited)
    return max(total - already, Money.zero())


@dataclass(frozen=True)
class RefundSplit:
    take: Money  # debited from the balance now
    owed: Money  # recorded as owed: it would have taken what live calls hold

    def __post_init__(self) -> None:
        assert not self.take.is_negative() and not self.owed.is_negative()


def split_refund(due: Money, available: Money) -> RefundSplit:
    """Take `due` from an account that has `available` (balance + credit limit − held by live
    calls) without making `available` negative; the rest is owed."""
    if due.is_negative():
        raise MoneyError(f"a refund is a positive amount, got {due}")
    take = min(due, max(available, Money.zero()))
    return RefundSplit(take=take, owed=due - take)


__all__ = [
    "STRIPE_THREE_DECIMAL",
    "STRIPE_ZERO_DECIMAL",
    "RefundSplit",
    "from_minor_units",
    "notice_text",
    "refund_due",
    "split_refund",
    "stripe_decimals",
    "to_minor_units",
]
