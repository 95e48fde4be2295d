"""Notices in the database: the outbox, the low-balance levels and their armed state.

Every notice is written by `raise_notice` inside the transaction of its cause, so a cause that
rolls back leaves no notice and none commits without it. `check_low_balance` is the one call
each transaction that changes what an account has available makes at its end (top-up, adjust,
reservation, heartbeat, settlement, a credit limit): one read of the account joined to its tariff
by primary key, nothing more for an account with no level. Delivery (fsbill.notify) claims rows
with a lease, one deliverer per notice at a time on one node or many.

The decisions (which level was crossed, when it is armed again, the retry schedule) are in
fsbill.core.notices.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsbill.core.grant import available as available_of
from fsbill.core.money import Money
from fsbill.core.notices import (
    ACCOUNT_RESUMED,
    ACCOUNT_SUSPENDED,
    BALANCE_LOW,
    ID_PREFIX,
    RECHARGE_REQUESTED,
    balance_low_payload,
    format_levels,
    level_changes,
    parse_levels,
    valid_kind,
)
from fsbill.core.recharge import from_stored as recharge_settings
from fsbill.core.recharge import requested_payload
from fsbill.db import audit
from fsbill.db import recharge as dbrecharge
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import InvalidInput, NotFound
from fsbill.instant import iso

PENDING, DELIVERED = "pending", "delivered"
SENT, NONE = "sent", "none"  # a channel's state besides pending


# -- the outbox ---------------------------------------------------------------------------------------
def raise_notice(store: Store, kind: str, account: str, payload: Mapping[str, Any], now_us: int) -> str:
    """Write a notice to the outbox; call inside the `store.transaction()` of its cause.
    `account`: the account's code ('' when it concerns none, e.g. an unmatched payment);
    `payload`: JSON values (amounts as exact strings). Returns the notice's stable id."""
    notice_id = ID_PREFIX + uuid.uuid4().hex
    store.models.Notice.insert(
        uid=notice_id,
        kind=valid_kind(kind),
        account_code=account,
        payload=json.dumps(dict(payload), sort_keys=True),
        created_us=now_us,
        next_attempt_us=now_us,
    ).execute()
    return notice_id


def status_changed(store: Store, account: str, old: str, new: str, now_us: int) -> None:
    """`account.suspended` / `account.resumed` when an account's status changes that way; call
    inside the transaction that changes it."""
    if old != new and new in ("suspended", "active") and old in ("suspended", "active"):
        kind = ACCOUNT_SUSPENDED if new == "suspended" else ACCOUNT_RESUMED
        raise_notice(store, kind, account, {"account": account, "status": new, "was": old}, now_us)


# -- low balance ----------------------------------------------------------------------------------------
def check_low_balance(store: Store, account_id: int, now_us: int) -> None:
    """Raise `balance.low` for each level what is available has just fallen under, and arm again
    the levels it is back above; and, with auto-recharge on, `recharge.requested` when what is
    available is under its level and a request is due (fsbill.db.recharge). Call at the end of a
    transaction that changed what the account has available, after the change, under the
    account's lock (every caller holds it)."""
    db, p = store.db, store.db.param
    found = db.execute_sql(
        'SELECT a."code", a."currency", a."balance_micros", a."credit_limit_micros", a."reserved_micros", '
        'COALESCE(a."low_balance", t."low_balance"), a."arrears_micros", '
        'a."auto_recharge_micros", a."auto_recharge_below_micros", a."auto_recharge_max_per_day", '
        'a."recharge_failures", t."timezone" '
        'FROM "account" a JOIN "tariff" t ON t."id" = a."tariff_id" '
        f'WHERE a."id" = {p}',
        (account_id,),
    ).fetchone()
    if found is None or not (found[5] or found[7] is not None):
        return  # no level, no auto-recharge: the common case costs this one read
    code, currency, balance_micros, limit_micros, held_micros, text, arrears_micros = found[:7]
    balance = Money(balance_micros)
    available = available_of(balance, Money(limit_micros), Money(held_micros), Money(arrears_micros))
    if text:
        _check_levels(store, account_id, code, currency, _stored_levels(text), available, balance, now_us)
    settings = recharge_settings(*found[7:10])
    if settings is not None and available < settings.below:  # else nothing more is read
        key = dbrecharge.consider(store, account_id, settings, available, found[10] or 0, found[11] or "UTC", now_us)
        if key is not None:
            payload = requested_payload(code, currency, key, settings, available, balance)
            raise_notice(store, RECHARGE_REQUESTED, code, payload, now_us)


def _check_levels(
    store: Store,
    account_id: int,
    code: str,
    currency: str,
    levels: tuple[Money, ...],
    available: Money,
    balance: Money,
    now_us: int,
) -> None:
    db, p = store.db, store.db.param
    disarmed = {
        Money(r[0])
        for r in db.execute_sql(
            f'SELECT "level_micros" FROM "low_balance_state" WHERE "account_id" = {p}', (account_id,)
        ).fetchall()
    }
    changes = level_changes(available, levels, disarmed)
    for level in changes.rearmed:
        db.execute_sql(
            f'DELETE FROM "low_balance_state" WHERE "account_id" = {p} AND "level_micros" = {p}',
            (account_id, level.micros),
        )
    for level in changes.crossed:
        db.execute_sql(
            f'INSERT INTO "low_balance_state" ("account_id", "level_micros", "created_us") VALUES ({p}, {p}, {p})',
            (account_id, level.micros, now_us),
        )
        raise_notice(store, BALANCE_LOW, code, balance_low_payload(code, currency, level, available, balance), now_us)


def _stored_levels(text: str) -> tuple[Money, ...]:
    try:
        return parse_levels(text)
    except InvalidInput:  # written by fsbill, so valid; a hand-edited row must not stop a call
        return ()


@dataclass(frozen=True)
class LevelsView:
    entity: str  # account | tariff
    name: str
    levels: tuple[Money, ...]  # in force
    source: str  # account | tariff | "" (none)
    changes: tuple[audit.Change, ...] = ()

    def as_json(self) -> dict:
        return {"low_balance": [str(v) for v in self.levels], "low_balance_from": self.source or None}


def set_levels(store: Store, entity: str, name: str, text: str, now_us: int, *, actor: str) -> LevelsView:
    """`account set --low-balance` / `tariff set --low-balance`: write the levels ('10.00,2.00';
    on an account 'none' = the tariff's default again, 'off' = no level), audited in the same
    transaction. An account's levels are checked at once: one already above what is available
    raises its notice now."""
    word = text.strip().lower()
    if entity == "account" and word == "none":
        stored: str | None = None
    else:
        stored = format_levels(parse_levels(text))
    m = store.models
    with store.transaction():
        if entity == "account":
            q = m.Account.select().where(m.Account.code == name)
            row = (q.for_update() if store.kind == "postgresql" else q).first()
            if row is None:
                raise NotFound(f"no account {name!r} (see 'fsbill account list')")
            if row.status == "closed":
                raise InvalidInput(f"account {name!r} is closed: a closed account cannot be changed")
            model = m.Account
        else:
            q = m.Tariff.select().where(m.Tariff.name == name)
            row = (q.for_update() if store.kind == "postgresql" else q).first()
            if row is None or name.startswith("vendor:"):
                raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
            if row.status == "closed":
                raise InvalidInput(f"tariff {name!r} is closed: a closed tariff cannot be changed")
            model = m.Tariff
        old, new = _audited(entity, row.low_balance), _audited(entity, stored)
        changes = [audit.Change("low_balance", old, new)] if row.low_balance != stored else []
        if changes:
            model.update(low_balance=stored).where(model.id == row.id).execute()
            audit.record(store, actor, now_us, "set", entity, name, changes)
            if entity == "account":
                check_low_balance(store, row.id, now_us)
    return levels_of(store, entity, name, tuple(changes))


def _audited(entity: str, stored: str | None) -> str | None:
    """Levels as the audit trail shows them, in the words `--low-balance` takes."""
    if entity == "account" and stored is None:
        return "none"  # the tariff's default
    if entity == "account" and stored == "":
        return "off"
    return stored or None


def levels_of(store: Store, entity: str, name: str, changes: tuple[audit.Change, ...] = ()) -> LevelsView:
    m = store.models
    with store.reading():
        if entity == "account":
            row = m.Account.get_or_none(m.Account.code == name)
            if row is None:
                raise NotFound(f"no account {name!r} (see 'fsbill account list')")
            own, default = row.low_balance, m.Tariff.get_by_id(row.tariff_id).low_balance
        else:
            row = m.Tariff.get_or_none(m.Tariff.name == name)
            if row is None:
                raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
            own, default = row.low_balance, None
    if own is not None:
        return LevelsView(entity, name, _stored_levels(own), entity if own else "", changes)
    return LevelsView(entity, name, _stored_levels(default or ""), "tariff" if default else "", changes)


# -- reading the outbox ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoticeView:
    id: str
    kind: str
    account: str
    payload: dict[str, Any]
    created_us: int
    status: str
    webhook: str
    email: str
    attempts: int
    next_attempt_us: int
    last_error: str
    delivered_us: int | None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "account": self.account,
            "time": iso(self.created_us),
            "status": self.status,
            "webhook": self.webhook,
            "email": self.email,
            "attempts": self.attempts,
            "next_attempt": iso(self.next_attempt_us) if self.status == PENDING else None,
            "last_error": self.last_error or None,
            "delivered": iso(self.delivered_us),
            "payload": self.payload,
        }


def notice_view(row: DbRow) -> NoticeView:
    return NoticeView(
        id=row.uid,
        kind=row.kind,
        account=row.account_code,
        payload=json.loads(row.payload),
        created_us=row.created_us,
        status=row.status,
        webhook=row.webhook_status,
        email=row.email_status,
        attempts=row.attempts,
        next_attempt_us=row.next_attempt_us,
        last_error=row.last_error,
        delivered_us=row.delivered_us,
    )


def list_notices(
    store: Store, *, pending: bool = False, account: str | None = None, limit: int | None = None
) -> list[NoticeView]:
    """Notices oldest first (with `limit`, the latest `limit` of them, still oldest first)."""
    m = store.models
    with store.reading():
        q = m.Notice.select()
        if pending:
            q = q.where(m.Notice.status == PENDING)
        if account is not None:
            if (
                m.Account.get_or_none(m.Account.code == account) is None
                and not m.Notice.select().where(m.Notice.account_code == account).exists()
            ):
                raise NotFound(f"no account {account!r} (see 'fsbill account list')")
            q = q.where(m.Notice.account_code == account)
        if limit:
            rows = list(q.order_by(m.Notice.id.desc()).limit(limit))
            rows.reverse()
        else:
            rows = list(q.order_by(m.Notice.id))
        return [notice_view(r) for r in rows]


# -- delivery: claim, then record each attempt -------------------------------------------------------------
def claim(store: Store, deliverer: str, now_us: int, lease_us: int, batch: int) -> list[NoticeView]:
    """Take up to `batch` notices that are due and not held by another deliverer, for
    `lease_us`. Ordered by when they are due (never paged by offset: a page would shift under
    the rows this loop itself changes). PostgreSQL skips rows another node is claiming this
    instant (FOR UPDATE SKIP LOCKED); SQLite's write lock makes the select-and-update atomic."""
    m = store.models
    with store.transaction():
        q = (
            m.Notice.select(m.Notice.id)
            .where(
                (m.Notice.status == PENDING)
                & (m.Notice.next_attempt_us <= now_us)
                & (m.Notice.claimed_until_us <= now_us)
            )
            .order_by(m.Notice.next_attempt_us, m.Notice.id)
            .limit(batch)
        )
        if store.kind == "postgresql":
            q = q.for_update("FOR UPDATE SKIP LOCKED")
        ids = [r.id for r in q]
        if not ids:
            return []
        m.Notice.update(claimed_by=deliverer, claimed_until_us=now_us + lease_us).where(m.Notice.id.in_(ids)).execute()
        rows = m.Notice.select().where(m.Notice.id.in_(ids)).order_by(m.Notice.next_attempt_us, m.Notice.id)
        return [notice_view(r) for r in rows]


def email_address(store: Store, account: str) -> str:
    """Where an account's notices are mailed ('' for none)."""
    m = store.models
    with store.reading():
        row = m.Account.get_or_none(m.Account.code == account) if account else None
        return row.email if row is not None else ""


def record_attempt(
    store: Store,
    notice_id: str,
    deliverer: str,
    now_us: int,
    *,
    webhook: str,
    email: str,
    error: str,
    retry_at_us: int,
) -> bool:
    """Write what one attempt did: each channel's state (`pending` when it failed), and either
    delivered (no channel pending) or a retry at `retry_at_us` with the error. Only the
    deliverer holding the claim writes (False: the lease expired and another took it)."""
    m = store.models
    done = PENDING not in (webhook, email)
    update: dict[str, object] = {
        "webhook_status": webhook,
        "email_status": email,
        "claimed_by": "",
        "claimed_until_us": 0,
    }
    if done:
        update |= {"status": DELIVERED, "delivered_us": now_us, "last_error": ""}
    else:
        update |= {"attempts": m.Notice.attempts + 1, "next_attempt_us": retry_at_us, "last_error": error[:1000]}
    with store.transaction():
        changed = (
            m.Notice.update(update)
            .where((m.Notice.uid == notice_id) & (m.Notice.claimed_by == deliverer) & (m.Notice.status == PENDING))
            .execute()
        )
    return bool(changed)
