"""Arrears: what a charge could not take without touching money live calls hold.

A recurring charge takes what the account has available now (balance + credit limit − held −
arrears, fsbill.core.grant.available) and records the rest as arrears. Arrears count against
what is available, so an account in arrears has nothing available: its new calls are refused
and its live calls get no extension, but each finishes the grant it holds. Money that becomes
available later (a top-up, a hold released at settlement, a credit) pays the arrears first.
Both moves keep the invariant balance + credit limit − held ≥ 0: neither ever takes more than
balance + credit limit − held.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.grant import available
from fsbill.core.money import Money

_ZERO = Money(0)


@dataclass(frozen=True)
class Split:
    taken: Money  # moved off the balance now
    arrears: Money  # owed, counted against what is available until paid


def split_charge(charge: Money, available_now: Money) -> Split:
    """A charge takes what is available now, never more, and owes the rest."""
    if charge.micros <= 0:
        return Split(_ZERO, _ZERO)
    taken = min(charge, max(available_now, _ZERO))
    return Split(taken, charge - taken)


def arrears_payment(balance: Money, credit_limit: Money, held: Money, arrears: Money) -> Money:
    """How much of the arrears the account can pay now: all of it, or whatever balance +
    credit limit − held leaves (never money its live calls hold)."""
    if arrears.micros <= 0:
        return _ZERO
    room = available(balance, credit_limit, held)
    return min(arrears, max(room, _ZERO))


__all__ = ["Split", "arrears_payment", "split_charge"]
