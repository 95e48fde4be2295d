"""Payments from gateways, each credited exactly once (issue 22, docs/PAYMENTS.md).

Two records make a redelivery a no-op, and each is written in the transaction that moves the
money (fsbill.db.ledger.post, the only way a balance changes):
- `payment_notice.key` (UNIQUE): a notification already received (a Stripe event id, a PayPal
  notice's digest) is not acted on again;
- `payment.identity` (UNIQUE): a payment already credited (`stripe:<payment intent>`,
  `paypal:<txn_id>`) is not credited again, whatever notification names it.
Concurrent deliveries, on one node or on several sharing PostgreSQL, meet at those unique
indexes: the loser's transaction rolls back whole and is run again, and then finds the winner's
rows. Nothing here checks first and inserts after as the guarantee.

A notice that verifies but cannot be applied (no such account, another currency, a closed
account, a reference already used) is `unmatched`: acknowledged, kept, listed by `fsbill
payments unmatched`, and applied only by an operator naming the account (`apply_unmatched`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee

from fsbill.core.grant import available as available_of
from fsbill.core.money import Money
from fsbill.core.notices import ARREARS, PAYMENT_UNMATCHED
from fsbill.core.payment import refund_due, split_refund
from fsbill.db import audit
from fsbill.db.connection import Store
from fsbill.db.ledger import account_for_update, pay_arrears, post
from fsbill.db.notices import raise_notice
from fsbill.db.payment_views import NoticeView, PaymentView, get_payment, notices, unmatched
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound

MAX_CODE_CHARS = 64  # an account code (fsbill.db.ledger._valid_code)
_RACE_RETRIES = 3  # a unique index refused our row: run the unit again, it then sees the other's


@dataclass(frozen=True)
class Credit:
    """Money a gateway says was paid to an account."""

    provider: str  # stripe | paypal
    identity: str  # stripe:<payment intent> | paypal:<txn_id>, unique per installation
    account: str  # the account code the payment names (metadata.fsbill_account, custom)
    amount: Money
    currency: str
    reference: str  # the ledger entry's (metadata.fsbill_recharge, else the identity)


@dataclass(frozen=True)
class Refund:
    """Money a gateway gave back from an earlier credit (`parent`).

    Stripe says how much of the charge is refunded so far (`total=True`, cumulative: what was not
    recorded yet is due); PayPal sends each refund as its own transaction (`identity`, once)."""

    provider: str
    parent: str  # the credit's identity
    amount: Money
    currency: str
    total: bool  # amount is the cumulative refunded total (Stripe), else this refund alone (PayPal)
    identity: str = ""  # PayPal: paypal:<the refund's txn_id>


@dataclass(frozen=True)
class Outcome:
    outcome: str  # credited | refunded | duplicate | unmatched (metrics.PAYMENT_OUTCOMES)
    notice_id: int | None = None
    payment_id: int | None = None
    detail: str = ""
    owed: Money = Money(0)

    def as_json(self) -> dict:
        out: dict = {"outcome": self.outcome, "notice": self.notice_id, "payment": self.payment_id}
        if self.detail:
            out["detail"] = self.detail
        if self.owed:
            out["owed"] = str(self.owed)
        return out


# -- receiving -------------------------------------------------------------------------------------
def receive(store: Store, provider: str, key: str, body: str, item: Credit | Refund, now_us: int) -> Outcome:
    """A verified notification (Stripe): record it under `key` and apply `item`, in one
    transaction; a key already received is a `duplicate` and changes nothing."""

    def unit() -> Outcome:
        m = store.models
        if m.PaymentNotice.get_or_none(m.PaymentNotice.key == key) is not None:
            return Outcome("duplicate", detail=f"notification {key} was already received")
        notice_id = m.PaymentNotice.insert(
            provider=provider, key=key, status="received", body=body, received_us=now_us, updated_us=now_us
        ).execute()
        return _apply(store, notice_id, item, now_us)

    return _once(store, unit)


def store_pending(store: Store, provider: str, key: str, body: str, now_us: int) -> tuple[int, bool]:
    """Keep a notification that is still to be verified (PayPal IPN) before acknowledging it.
    Returns (notice id, True if it is new); the same notification again is the earlier one."""
    m = store.models
    for _ in range(_RACE_RETRIES):
        try:
            with store.transaction():
                row = m.PaymentNotice.get_or_none(m.PaymentNotice.key == key)
                if row is not None:
                    return row.id, False
                notice_id = m.PaymentNotice.insert(
                    provider=provider,
                    key=key,
                    status="pending",
                    body=body,
                    received_us=now_us,
                    updated_us=now_us,
                    next_attempt_us=now_us,
                ).execute()
                return int(notice_id), True
        except peewee.IntegrityError:
            continue
    raise Conflict(f"notification {key} could not be stored: it kept clashing with another")


def due_pending(store: Store, provider: str, now_us: int, limit: int = 100) -> list[tuple[int, str, int]]:
    """Pending notifications whose verification is due: (id, raw body, attempts so far)."""
    m = store.models
    with store.reading():
        q = (
            m.PaymentNotice.select(m.PaymentNotice.id, m.PaymentNotice.body, m.PaymentNotice.attempts)
            .where(
                (m.PaymentNotice.provider == provider)
                & (m.PaymentNotice.status == "pending")
                & (m.PaymentNotice.next_attempt_us <= now_us)
            )
            .order_by(m.PaymentNotice.next_attempt_us, m.PaymentNotice.id)
            .limit(limit)
        )
        return [(int(r.id), r.body, int(r.attempts)) for r in q]


def claim(store: Store, notice_id: int, attempts: int, now_us: int, until_us: int) -> bool:
    """Take a pending notification for one verification attempt (the next is due at `until_us`
    unless this one settles it). False: another node or greenlet took it first."""
    m = store.models
    with store.transaction():
        taken = (
            m.PaymentNotice.update(attempts=attempts + 1, next_attempt_us=until_us, updated_us=now_us)
            .where(
                (m.PaymentNotice.id == notice_id)
                & (m.PaymentNotice.status == "pending")
                & (m.PaymentNotice.attempts == attempts)
            )
            .execute()
        )
    return bool(taken)


def settle_pending(
    store: Store,
    notice_id: int,
    item: Credit | Refund | None,
    now_us: int,
    *,
    status: str = "ignored",
    reason: str = "",
) -> Outcome:
    """A pending notification the provider has verified: apply `item` once (None: nothing to
    apply, recorded with `status` (ignored, rejected) and `reason`)."""

    def unit() -> Outcome:
        m = store.models
        q = m.PaymentNotice.select().where(m.PaymentNotice.id == notice_id)
        row = (q.for_update() if store.kind == "postgresql" else q).first()
        if row is None:
            raise NotFound(f"no payment notification {notice_id}")
        if row.status != "pending":
            return Outcome("duplicate", notice_id, row.payment_id, f"notification {notice_id} is already {row.status}")
        if item is None:
            _set(store, notice_id, now_us, status=status, reason=reason, next_attempt_us=None)
            return Outcome(status, notice_id, detail=reason)
        return _apply(store, notice_id, item, now_us)

    return _once(store, unit)


def mark(store: Store, notice_id: int, status: str, now_us: int, reason: str) -> None:
    """A pending notification the provider refused (`invalid`): kept, never applied."""
    m = store.models
    with store.transaction():
        m.PaymentNotice.update(status=status, reason=reason, updated_us=now_us, next_attempt_us=None).where(
            (m.PaymentNotice.id == notice_id) & (m.PaymentNotice.status == "pending")
        ).execute()


def note_failure(store: Store, notice_id: int, now_us: int, reason: str) -> None:
    m = store.models
    with store.transaction():
        m.PaymentNotice.update(reason=reason, updated_us=now_us).where(m.PaymentNotice.id == notice_id).execute()


# -- applying -------------------------------------------------------------------------------------
def _apply(store: Store, notice_id: int, item: Credit | Refund, now_us: int, account: str | None = None) -> Outcome:
    """Inside the transaction that holds the notice's row: move the money and record why."""
    if isinstance(item, Credit):
        return _credit(store, notice_id, item, now_us, account)
    return _refund(store, notice_id, item, now_us)


def _credit(store: Store, notice_id: int, c: Credit, now_us: int, forced_account: str | None) -> Outcome:
    m = store.models
    code = forced_account if forced_account is not None else c.account
    fields = {
        "kind": "credit",
        "identity": c.identity,
        "account": c.account,
        "amount_micros": c.amount.micros,
        "currency": c.currency,
        "reference": c.reference,
    }
    earlier = m.Payment.get_or_none(m.Payment.identity == c.identity)
    if earlier is not None:
        _set(store, notice_id, now_us, status="duplicate", payment_id=earlier.id, **fields)
        return Outcome("duplicate", notice_id, earlier.id, f"payment {c.identity} was already credited")
    row = account_for_update(store, code) if code else None
    why = _cannot_credit(store, row, code, c)
    if why:
        if forced_account is not None:  # an operator's choice is checked, never turned into a guess
            raise InvalidInput(f"{why}: nothing was changed")
        _unmatched(store, notice_id, now_us, why, c.amount, c.currency, c.reference or c.identity, fields)
        return Outcome("unmatched", notice_id, detail=why)
    assert row is not None
    payment_id = m.Payment.insert(
        identity=c.identity,
        provider=c.provider,
        kind="credit",
        account_id=row.id,
        currency=c.currency,
        amount_micros=c.amount.micros,
        reference=c.reference,
        notice_id=notice_id,
        created_us=now_us,
    ).execute()
    post(store, row.id, c.amount, "topup", now_us, reference=c.reference, note=f"{c.provider} payment {c.identity}")
    pay_arrears(store, row.id, now_us)  # arrears are paid first (docs/PLANS.md)
    status = "applied" if forced_account is not None else "credited"
    _set(store, notice_id, now_us, status=status, payment_id=payment_id, reason="", **fields)
    return Outcome("credited", notice_id, int(payment_id), f"credited {c.amount} {c.currency} to {code}")


def _cannot_credit(store: Store, row: DbRow | None, code: str, c: Credit) -> str:
    if not code:
        return "the payment names no account"
    if len(code) > MAX_CODE_CHARS:
        return f"the account named, {code[:20]!r}..., is longer than an account code ({MAX_CODE_CHARS} characters)"
    if row is None:
        return f"no account {code!r}"
    if row.status == "closed":
        return f"account {code!r} is closed"
    if row.currency != c.currency:
        return f"paid in {c.currency}, account {code!r} is in {row.currency}"
    if not c.amount:
        return "the payment is of 0"
    m = store.models
    used = m.LedgerEntry.get_or_none((m.LedgerEntry.account == row.id) & (m.LedgerEntry.reference == c.reference))
    if used is not None:
        return f"reference {c.reference!r} was already used on account {code!r} (ledger entry {used.id})"
    return ""


def _refund(store: Store, notice_id: int, r: Refund, now_us: int) -> Outcome:
    m = store.models
    kind = "refund_total" if r.total else "refund"
    fields = {
        "kind": kind,
        "identity": r.identity or r.parent,
        "parent": r.parent,
        "amount_micros": r.amount.micros,
        "currency": r.currency,
    }
    if r.identity:
        earlier = m.Payment.get_or_none(m.Payment.identity == r.identity)
        if earlier is not None:
            _set(store, notice_id, now_us, status="duplicate", payment_id=earlier.id, **fields)
            return Outcome("duplicate", notice_id, earlier.id, f"refund {r.identity} was already recorded")
    q = m.Payment.select().where((m.Payment.identity == r.parent) & (m.Payment.kind == "credit"))
    credit = (q.for_update() if store.kind == "postgresql" else q).first()
    if credit is None or credit.currency != r.currency:
        why = (
            f"no credit {r.parent} to refund"
            if credit is None
            else f"refund in {r.currency} of a credit in {credit.currency}"
        )
        _unmatched(store, notice_id, now_us, why, r.amount, r.currency, r.identity or r.parent, fields)
        return Outcome("unmatched", notice_id, detail=why)
    already, credited = Money(credit.refunded_micros), Money(credit.amount_micros)
    due = refund_due(r.amount if r.total else already + r.amount, already, credited)
    payment_id = credit.id
    if r.identity:
        payment_id = m.Payment.insert(
            identity=r.identity,
            provider=r.provider,
            kind="refund",
            parent_id=credit.id,
            account_id=credit.account_id,
            currency=r.currency,
            amount_micros=-due.micros,
            notice_id=notice_id,
            created_us=now_us,
        ).execute()
    if not due:
        _set(store, notice_id, now_us, status="duplicate", payment_id=payment_id, **fields)
        return Outcome("duplicate", notice_id, int(payment_id), f"nothing more of {r.parent} to refund")
    account = m.Account.select().where(m.Account.id == credit.account_id)
    row = (account.for_update() if store.kind == "postgresql" else account).first()
    arrears = Money(row.arrears_micros)
    split = split_refund(
        due,
        available_of(Money(row.balance_micros), Money(row.credit_limit_micros), Money(row.reserved_micros), arrears),
    )
    total = already + due
    if split.take:
        post(
            store,
            row.id,
            -split.take,
            "refund",
            now_us,
            reference=f"refund:{r.parent}:{total.micros}",  # unique per account: a second debit cannot land
            note=f"{r.provider} refund of {r.parent}" + (f" ({split.owed} owed)" if split.owed else ""),
        )
    if split.owed:  # what live calls hold is not taken: it is owed, as arrears, paid first by the next money in
        store.db.execute_sql(store.sql.owe, (split.owed.micros, row.id))
        owed_now = {"arrears": str(arrears + split.owed), "currency": row.currency, "account": row.code}
        raise_notice(store, ARREARS, row.code, owed_now | {"plan": f"{r.provider} refund of {r.parent}"}, now_us)
    updated = (
        m.Payment.update(refunded_micros=total.micros, owed_micros=m.Payment.owed_micros + split.owed.micros)
        .where((m.Payment.id == credit.id) & (m.Payment.refunded_micros == already.micros))
        .execute()
    )
    if updated != 1:  # another unit refunded it meanwhile (the row lock makes this unreachable)
        raise peewee.IntegrityError(f"payment {r.parent} changed while refunding it")
    _set(store, notice_id, now_us, status="refunded", payment_id=payment_id, reason="", **fields)
    detail = f"refunded {due} {r.currency} of {r.parent}" + (f"; {split.owed} owed" if split.owed else "")
    return Outcome("refunded", notice_id, int(payment_id), detail, owed=split.owed)


def _unmatched(
    store: Store,
    notice_id: int,
    now_us: int,
    why: str,
    amount: Money,
    currency: str,
    reference: str,
    fields: dict[str, object],
) -> None:
    """Keep a notification that verified but cannot be applied, and tell the operator (a
    `payment.unmatched` notice in the same transaction, docs/NOTICES.md)."""
    _set(store, notice_id, now_us, status="unmatched", reason=why, **fields)
    payload = {"id": notice_id, "amount": str(amount), "currency": currency, "reference": reference, "reason": why}
    raise_notice(store, PAYMENT_UNMATCHED, "", payload, now_us)


def _set(store: Store, notice_id: int, now_us: int, **fields: object) -> None:
    m = store.models
    m.PaymentNotice.update(updated_us=now_us, **fields).where(m.PaymentNotice.id == notice_id).execute()


def _once(store: Store, unit: Callable[[], Outcome]) -> Outcome:
    for _ in range(_RACE_RETRIES):
        try:
            with store.transaction():
                return unit()
        except peewee.IntegrityError:
            # another delivery inserted the same notice, payment or ledger reference between our
            # read and our insert; ours rolled back whole. Run again: it now finds theirs.
            continue
    raise Conflict("a payment notification kept clashing with another delivery: retry it")


# -- operators -----------------------------------------------------------------------------------
def apply_unmatched(store: Store, notice_id: int, account: str, actor: str, now_us: int) -> Outcome:
    """An operator applies an unmatched notification to the account they name: once (a second
    apply is a Conflict naming the first), audited, and checked like any credit (the account's
    currency, not closed); a refund only against the account its credit went to."""
    m = store.models

    def unit() -> Outcome:
        q = m.PaymentNotice.select().where(m.PaymentNotice.id == notice_id)
        row = (q.for_update() if store.kind == "postgresql" else q).first()
        if row is None:
            raise NotFound(f"no payment notification {notice_id} (see 'fsbill payments unmatched')")
        if row.status != "unmatched":
            raise Conflict(
                f"notification {notice_id} is {row.status}, not unmatched"
                + (f" (payment {row.payment_id})" if row.payment_id else "")
                + ": nothing was changed"
            )
        item = _item_of(row)
        if isinstance(item, Refund):
            credit = m.Payment.get_or_none((m.Payment.identity == item.parent) & (m.Payment.kind == "credit"))
            target = m.Account.get_or_none(m.Account.code == account)
            if credit is None or target is None or credit.account_id != target.id:
                raise InvalidInput(
                    f"a refund is applied only to the account its credit went to, and {item.parent} "
                    + ("was never credited" if credit is None else f"was not credited to {account!r}")
                    + ": nothing was changed"
                )
            outcome = _refund(store, notice_id, item, now_us)
            if outcome.outcome != "refunded":
                raise InvalidInput(f"{outcome.detail}: nothing was changed")
        else:
            outcome = _credit(store, notice_id, item, now_us, forced_account=account)
            if outcome.outcome != "credited":
                raise Conflict(f"{outcome.detail}: nothing was changed")
        change = f"notice {notice_id} {row.identity} {Money(row.amount_micros or 0)} {row.currency}"
        audit.record(store, actor, now_us, "payment_apply", "account", account, [audit.Change("payment", None, change)])
        m.PaymentNotice.update(status="applied").where(m.PaymentNotice.id == notice_id).execute()
        return outcome

    return _once(store, unit)


def _item_of(row: DbRow) -> Credit | Refund:
    amount, currency = Money(row.amount_micros or 0), row.currency
    if row.kind == "credit":
        return Credit(row.provider, row.identity, row.account, amount, currency, row.reference or row.identity)
    if row.kind in ("refund", "refund_total"):
        identity = row.identity if row.kind == "refund" else ""
        return Refund(row.provider, row.parent, amount, currency, total=row.kind == "refund_total", identity=identity)
    raise InvalidInput(f"notification {row.id} was never read as a payment: nothing to apply")


__all__ = [
    "Credit",
    "NoticeView",
    "Outcome",
    "PaymentView",
    "Refund",
    "apply_unmatched",
    "claim",
    "due_pending",
    "get_payment",
    "mark",
    "note_failure",
    "notices",
    "receive",
    "settle_pending",
    "store_pending",
    "unmatched",
]
