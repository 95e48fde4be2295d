"""Auto-recharge requests in the database (docs/NOTICES.md "Auto-recharge").

- `consider` is called by fsbill.db.notices.check_low_balance, inside the transaction that
  changed what the account has available and under the account's lock, only once what is
  available is under the account's level: it opens a request (a row in `recharge` with a fresh
  key) when fsbill.core.recharge.decide says so, and the caller raises its notice.
- `credited` is called by fsbill.db.ledger.post for every top-up (the CLI's, the API's, a
  gateway's): a credit whose reference is a request's key closes it, and any credit ends a run
  of failures.
- `fail` records that the payment side could not charge the card.

The decisions are in fsbill.core.recharge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fsbill.core.money import Money
from fsbill.core.recharge import (
    CREDITED,
    FAILED,
    KEY_PREFIX,
    MAX_FAILURES,
    OPEN,
    Decision,
    Settings,
    decide,
    is_key,
    local_day,
    valid_key,
)
from fsbill.db import audit
from fsbill.db.accounts import account_for_update
from fsbill.db.audit import Change
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, NotFound
from fsbill.instant import iso


def consider(
    store: Store, account_id: int, settings: Settings, available: Money, failures: int, tz: str, now_us: int
) -> str | None:
    """Open a request if one is due: returns its key (the caller raises `recharge.requested`),
    else None. Call under the account's lock, with `available` under `settings.below`."""
    db, p = store.db, store.db.param
    day = local_day(now_us, tz)
    open_count, today = db.execute_sql(
        f'SELECT COALESCE(SUM(CASE WHEN "status" = {p} THEN 1 ELSE 0 END), 0), '
        f'COALESCE(SUM(CASE WHEN "day" = {p} THEN 1 ELSE 0 END), 0) '
        f'FROM "recharge" WHERE "account_id" = {p} AND ("status" = {p} OR "day" = {p})',
        (OPEN, day, account_id, OPEN, day),
    ).fetchone()
    decision = decide(settings, available, open_request=bool(open_count), failures=failures, today=int(today))
    if decision is not Decision.REQUEST:
        return None
    key = KEY_PREFIX + uuid.uuid4().hex
    store.models.Recharge.insert(
        uid=key, account_id=account_id, amount_micros=settings.amount.micros, status=OPEN, day=day, created_us=now_us
    ).execute()
    return key


def credited(store: Store, account_id: int, reference: str | None, entry_id: int, now_us: int) -> None:
    """A top-up reached the account (inside its transaction): a run of failed charges ends, and
    the request whose key is `reference` is closed (open or failed: a charge reported failed
    that went through after all is still money in)."""
    db, p = store.db, store.db.param
    db.execute_sql(
        f'UPDATE "account" SET "recharge_failures" = 0 WHERE "id" = {p} AND "recharge_failures" > 0', (account_id,)
    )
    if is_key(reference):
        db.execute_sql(
            f'UPDATE "recharge" SET "status" = {p}, "closed_us" = {p}, "entry_id" = {p} '
            f'WHERE "uid" = {p} AND "account_id" = {p} AND "status" <> {p}',
            (CREDITED, now_us, entry_id, reference, account_id, CREDITED),
        )


@dataclass(frozen=True)
class RechargeView:
    key: str
    account: str
    amount: Money
    currency: str
    status: str
    day: str
    created_us: int
    closed_us: int | None
    entry_id: int | None

    def as_json(self) -> dict:
        return {
            "key": self.key,
            "account": self.account,
            "amount": str(self.amount),
            "currency": self.currency,
            "status": self.status,
            "day": self.day,
            "time": iso(self.created_us),
            "closed": iso(self.closed_us),
            "entry": self.entry_id,
        }


def _view(row: DbRow, account: DbRow) -> RechargeView:
    return RechargeView(
        key=row.uid,
        account=account.code,
        amount=Money(row.amount_micros),
        currency=account.currency,
        status=row.status,
        day=row.day,
        created_us=row.created_us,
        closed_us=row.closed_us,
        entry_id=row.entry_id,
    )


@dataclass(frozen=True)
class FailResult:
    request: RechargeView
    failures: int  # in a row, now
    stopped: bool  # MAX_FAILURES reached: no request until a credit arrives
    changed: bool  # False: it was already reported failed (a retried report)


def fail(store: Store, code: str, key: str, now_us: int, actor: str) -> FailResult:
    """`recharge failed ACCOUNT KEY`: the card could not be charged. The request is closed as
    failed and counts towards MAX_FAILURES in a row; reporting it again changes nothing; a
    request already credited cannot fail (Conflict). Audited."""
    key = valid_key(key)
    m = store.models
    with store.transaction():
        account = account_for_update(store, code)
        if account is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        row = m.Recharge.get_or_none((m.Recharge.uid == key) & (m.Recharge.account_id == account.id))
        if row is None:
            raise NotFound(f"no recharge request {key!r} on account {code!r} (see 'fsbill recharge list {code}')")
        if row.status == CREDITED:
            raise Conflict(
                f"recharge request {key} on account {code!r} was already credited (ledger entry {row.entry_id}): "
                f"it cannot fail; nothing was changed"
            )
        failures = account.recharge_failures
        changed = row.status == OPEN
        if changed:
            failures += 1
            m.Recharge.update(status=FAILED, closed_us=now_us).where(m.Recharge.id == row.id).execute()
            m.Account.update(recharge_failures=failures).where(m.Account.id == account.id).execute()
            audit.record(
                store,
                actor,
                now_us,
                "recharge_failed",
                "account",
                code,
                [
                    Change(f"recharge {key}", OPEN, FAILED),
                    Change("recharge_failures", str(failures - 1), str(failures)),
                ],
            )
            row = m.Recharge.get_by_id(row.id)
        return FailResult(_view(row, account), failures, failures >= MAX_FAILURES, changed)


def list_recharges(store: Store, account: str | None = None) -> list[RechargeView]:
    """Requests, oldest first (one account's, or all)."""
    m = store.models
    with store.reading():
        q = m.Recharge.select(m.Recharge, m.Account).join(
            m.Account, on=(m.Recharge.account_id == m.Account.id), attr="acct"
        )
        if account is not None:
            if m.Account.get_or_none(m.Account.code == account) is None:
                raise NotFound(f"no account {account!r} (see 'fsbill account list')")
            q = q.where(m.Account.code == account)
        return [_view(r, r.acct) for r in q.order_by(m.Recharge.id)]
