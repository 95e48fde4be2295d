"""Money between levels of the tree (docs/RESELLERS.md): `fund` moves money from an account's
parent to it, as two ledger entries in one transaction, once per reference.

Across currencies the amount is the parent's debit, in the parent's currency; the child is
credited that amount at the exchange rate set with `fsbill fx set`, rounded half-even to the
child's currency's minor units (fsbill.core.fx.convert). Both notes name the rate.

A customer's top-up (fsbill.db.ledger.topup) credits the customer only and never moves its
reseller's balance; funding is the one way money goes down the tree.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from fsbill.core import fx
from fsbill.core.grant import available
from fsbill.core.money import Money
from fsbill.db import fx as dbfx
from fsbill.db.connection import Store
from fsbill.db.ledger import LedgerView, _ledger_view, _same_movement, pay_arrears, post
from fsbill.db.notices import check_low_balance
from fsbill.db.rows import DbRow
from fsbill.errors import InvalidInput, NotFound

KIND = "fund"


@dataclass(frozen=True)
class Funding:
    parent: LedgerView  # the debit of the parent
    child: LedgerView  # the credit of the child
    applied: bool  # False: this reference was already used for this funding; nothing moved


def _locked(store: Store, account_id: int) -> DbRow:
    m = store.models
    q = m.Account.select().where(m.Account.id == account_id)
    return (q.for_update() if store.kind == "postgresql" else q).first()


def fund(
    store: Store, child_code: str, amount: Money, now_us: int, *, reference: str, in_transaction: bool = False
) -> Funding:
    """Move `amount` from `child_code`'s parent to it. Refused (nothing moved) when the amount is
    not positive, the reference is empty, the account has no parent, either is closed, their
    currencies differ and no exchange rate is set, or the parent's available money (balance +
    credit − held − arrears) is less than the amount. The same reference and amount again: the
    first funding, nothing moved. Across currencies `amount` is the parent's debit.
    `in_transaction`: the caller holds the transaction (the HTTP API, whose idempotency record
    commits with the funding or not at all)."""
    if amount.micros <= 0:
        raise InvalidInput(f"amount must be positive, got {amount}")
    if not reference.strip():
        raise InvalidInput("--reference must not be empty: it makes the funding happen once")
    m = store.models
    with contextlib.nullcontext() if in_transaction else store.transaction():
        found = m.Account.get_or_none(m.Account.code == child_code)
        if found is None:
            raise NotFound(f"no account {child_code!r}")
        if found.parent_id is None:
            raise InvalidInput(f"account {child_code!r} has no parent to be funded from (use 'fsbill topup')")
        parent = _locked(store, found.parent_id)  # top first, as every call does (fsbill.db.chain)
        child = _locked(store, found.id)
        earlier = m.LedgerEntry.get_or_none(
            (m.LedgerEntry.account == child.id) & (m.LedgerEntry.reference == reference)
        )
        if earlier is not None:
            debit = m.LedgerEntry.get_or_none(
                (m.LedgerEntry.account == parent.id) & (m.LedgerEntry.reference == reference)
            )
            if parent.currency == child.currency or debit is None:
                credit = _same_movement(_ledger_view(earlier, child.code), KIND, amount)
            else:  # the amount named the parent's debit; the credit was converted
                _same_movement(_ledger_view(debit, parent.code), KIND, -amount)
                credit = _same_movement(_ledger_view(earlier, child.code), KIND, Money(earlier.amount_micros))
            return Funding(_ledger_view(debit, parent.code), credit, applied=False)
        for acc in (parent, child):
            if acc.status == "closed":
                raise InvalidInput(f"account {acc.code!r} is closed: nothing was moved")
        credited, how = _converted(store, parent, child, amount)
        free = available(
            Money(parent.balance_micros),
            Money(parent.credit_limit_micros),
            Money(parent.reserved_micros),
            Money(parent.arrears_micros),
        )
        if free < amount:
            raise InvalidInput(
                f"{parent.code!r} has {free} {parent.currency} available (live calls' holds and arrears "
                f"excluded), less than {amount}: nothing was moved"
            )
        debit_id, _ = post(store, parent.id, -amount, KIND, now_us, reference=reference, note=f"to {child.code}{how}")
        credit_id, _ = post(
            store, child.id, credited, KIND, now_us, reference=reference, note=f"from {parent.code}{how}"
        )
        pay_arrears(store, child.id, now_us)  # arrears are paid first (docs/PLANS.md)
        check_low_balance(store, parent.id, now_us)
        debit_row = m.LedgerEntry.get_by_id(debit_id)
        credit_row = m.LedgerEntry.get_by_id(credit_id)
        return Funding(_ledger_view(debit_row, parent.code), _ledger_view(credit_row, child.code), applied=True)


def _converted(store: Store, parent: DbRow, child: DbRow, amount: Money) -> tuple[Money, str]:
    """What the child is credited for the parent's `amount`, and how (for the ledger notes):
    the same amount in one currency; across currencies, converted at the rate set now."""
    if parent.currency == child.currency:
        return amount, ""
    rate = fx.rate_between(
        dbfx.rates_between(store, (parent.currency, child.currency)), parent.currency, child.currency
    )
    if rate is None:
        raise InvalidInput(
            f"{parent.code!r} pays in {parent.currency} and {child.code!r} in {child.currency}: set an exchange "
            f"rate first (fsbill fx set {parent.currency} {child.currency} RATE); nothing was moved"
        )
    credited = fx.convert(amount, parent.currency, rate, fx.money_decimals(child.currency))
    if credited.micros <= 0:
        raise InvalidInput(
            f"{amount} {parent.currency} at {rate.pair} {rate.rate} is less than one minor unit of "
            f"{child.currency}: nothing was moved"
        )
    return credited, f" ({amount} {parent.currency} = {credited} {child.currency} at {rate.pair} {rate.rate})"
