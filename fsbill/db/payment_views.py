"""What operators read about gateway payments: the notifications received (`fsbill payments
list|unmatched`) and the payments credited (fsbill.db.payments writes both)."""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.money import Money
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import NotFound
from fsbill.instant import iso


@dataclass(frozen=True)
class NoticeView:
    id: int
    provider: str
    key: str
    kind: str
    status: str
    identity: str
    account: str
    amount: Money | None
    currency: str
    reason: str
    payment_id: int | None
    received_us: int
    attempts: int

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "provider": self.provider,
            "key": self.key,
            "kind": self.kind,
            "status": self.status,
            "identity": self.identity,
            "account": self.account,
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "reason": self.reason,
            "payment": self.payment_id,
            "time": iso(self.received_us),
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class PaymentView:
    id: int
    identity: str
    provider: str
    kind: str
    account: str
    amount: Money
    currency: str
    refunded: Money
    owed: Money
    reference: str | None
    created_us: int

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "identity": self.identity,
            "provider": self.provider,
            "kind": self.kind,
            "account": self.account,
            "amount": str(self.amount),
            "currency": self.currency,
            "refunded": str(self.refunded),
            "owed": str(self.owed),
            "reference": self.reference,
            "time": iso(self.created_us),
        }


def _notice_view(row: DbRow) -> NoticeView:
    return NoticeView(
        id=row.id,
        provider=row.provider,
        key=row.key,
        kind=row.kind,
        status=row.status,
        identity=row.identity,
        account=row.account,
        amount=None if row.amount_micros is None else Money(row.amount_micros),
        currency=row.currency,
        reason=row.reason,
        payment_id=row.payment_id,
        received_us=row.received_us,
        attempts=row.attempts,
    )


def notices(store: Store, status: str | None = None, limit: int | None = None) -> list[NoticeView]:
    """Notifications received, oldest first (with `status`, only those)."""
    m = store.models
    with store.reading():
        q = m.PaymentNotice.select()
        if status is not None:
            q = q.where(m.PaymentNotice.status == status)
        q = q.order_by(m.PaymentNotice.id)
        if limit:
            q = q.limit(limit)
        return [_notice_view(r) for r in q]


def unmatched(store: Store) -> list[NoticeView]:
    return notices(store, "unmatched")


def get_payment(store: Store, identity: str) -> PaymentView:
    m = store.models
    with store.reading():
        row = (
            m.Payment.select(m.Payment, m.Account.code)
            .join(m.Account, on=(m.Payment.account_id == m.Account.id))
            .where(m.Payment.identity == identity)
            .first()
        )
        if row is None:
            raise NotFound(f"no payment {identity!r}")
        return PaymentView(
            id=row.id,
            identity=row.identity,
            provider=row.provider,
            kind=row.kind,
            account=row.account.code,
            amount=Money(row.amount_micros),
            currency=row.currency,
            refunded=Money(row.refunded_micros),
            owed=Money(row.owed_micros),
            reference=row.reference,
            created_us=row.created_us,
        )


__all__ = ["NoticeView", "PaymentView", "get_payment", "notices", "unmatched"]
