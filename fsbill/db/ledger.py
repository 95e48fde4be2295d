"""Accounts, tariffs and the ledger: every movement of a balance, each in the transaction that
makes it.

The ledger is the truth: an account's `balance_micros` always equals the sum of its ledger
entries' amounts, because the only code that changes a balance is `post()` below, which writes
the entry in the same transaction. Reservations (`reserved_micros`) are not ledgered: they
are holds, not movements, and are maintained by fsbill.db.calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import peewee

from fsbill.core.arrears import arrears_payment
from fsbill.core.grant import available as available_of
from fsbill.core.money import MAX_MICROS, Money
from fsbill.db import audit
from fsbill.db.accounts import (  # re-exported: callers read accounts and tariffs here too
    AccountView,
    TariffView,
    account_for_update,
    create_account,
    create_tariff,
    get_account,
    get_tariff,
    list_accounts,
    list_tariffs,
    set_status,
)
from fsbill.db.connection import Store
from fsbill.db.notices import check_low_balance
from fsbill.db.recharge import credited
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound
from fsbill.instant import iso


@dataclass(frozen=True)
class LedgerView:
    id: int
    account: str
    amount: Money
    kind: str
    reference: str | None
    call_uuid: str | None
    balance_after: Money
    note: str
    created_us: int

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "account": self.account,
            "amount": str(self.amount),
            "kind": self.kind,
            "reference": self.reference,
            "call_uuid": self.call_uuid,
            "balance_after": str(self.balance_after),
            "note": self.note,
            "time": iso(self.created_us),
        }


# -- posting: the only way a balance changes -----------------------------------------------
def post(
    store: Store,
    account_id: int,
    amount: Money,
    kind: str,
    now_us: int,
    *,
    reference: str | None = None,
    call_uuid: str | None = None,
    note: str = "",
    release_micros: int = 0,
) -> tuple[int, int]:
    """Move `amount` onto the account and ledger it; call inside `store.transaction()`.

    `release_micros` is taken off `reserved_micros` in the same statement (a call debit
    consumes its own hold). Returns (ledger entry id, balance after in micros).
    """
    q, db = store.sql, store.db  # hand-written SQL: this runs for every call (fsbill.db.statements)
    found = db.execute_sql(q.post, (amount.micros, release_micros, now_us, account_id)).fetchone()
    if found is None:
        raise NotFound(f"account id {account_id} vanished")
    balance_after = found[0]
    if not isinstance(balance_after, int) or abs(balance_after) > MAX_MICROS:
        # Every amount and every balance stays within MAX_MICROS (10^18 - 1 micro-units), so
        # balance + amount never leaves int64 (no REAL on SQLite, no 'bigint out of range' on
        # PostgreSQL); a movement that would take the balance past it is refused, and the
        # caller's transaction (this UPDATE with it) rolls back.
        raise InvalidInput(
            f"this movement would take the balance to {_exact(balance_after)}, beyond the largest balance "
            f"fsbill keeps exact ({Money(MAX_MICROS)}): refused, nothing was changed"
        )
    entry_id = db.execute_sql(
        q.insert_ledger,
        (account_id, amount.micros, kind, reference, call_uuid, balance_after, note, now_us),
    ).fetchone()[0]
    if kind == "topup":  # money in (CLI, API, gateway): it closes an auto-recharge request it names
        credited(store, account_id, reference, entry_id, now_us)
    return entry_id, balance_after


def pay_arrears(store: Store, account_id: int, now_us: int) -> Money:
    """Pay the account's arrears from money that became available (a top-up, a released hold,
    a credit), as far as balance + credit limit − held allows: ledgered as kind `arrears`.
    Call inside `store.transaction()` with the account's row locked, after the movement that
    freed the money. Returns what was paid."""
    q, db = store.sql, store.db
    row = db.execute_sql(q.account_money, (account_id,)).fetchone()
    if row is None or not row[3]:
        return Money(0)
    balance, credit_limit, held, arrears = (Money(v) for v in row)
    pay = arrears_payment(balance, credit_limit, held, arrears)
    if pay:
        post(store, account_id, -pay, "arrears", now_us, note=f"arrears paid ({arrears - pay} still owed)")
        db.execute_sql(q.owe, (-pay.micros, account_id))
    return pay


def _exact(micros: object) -> str:
    if isinstance(micros, int):
        sign, digits = ("-" if micros < 0 else ""), str(abs(micros)).rjust(7, "0")
        return f"{sign}{digits[:-6]}.{digits[-6:]}"
    return str(micros)


# -- money movements by operators ------------------------------------------------------------
@dataclass(frozen=True)
class TopupResult:
    entry: LedgerView
    applied: bool  # False: this reference was already credited; nothing was added


def topup(
    store: Store, code: str, amount: Money, now_us: int, *, reference: str | None = None, note: str = ""
) -> TopupResult:
    _check_topup(amount, reference)
    return _in_transaction(
        store,
        code,
        amount,
        "topup",
        reference,
        lambda: topup_within(store, code, amount, now_us, reference=reference, note=note),
    )


def _in_transaction(
    store: Store, code: str, amount: Money, kind: str, reference: str | None, move: Callable[[], TopupResult]
) -> TopupResult:
    """`move` in a transaction of its own. A reference raced by another process (PostgreSQL,
    READ COMMITTED) between our check and our insert: the unique index kept it to one and ours
    rolled back; the result is the winner's movement."""
    try:
        with store.transaction():
            return move()
    except peewee.IntegrityError:
        return TopupResult(_same_movement(_last_entry(store, code, reference), kind, amount), applied=False)


def _move_within(
    store: Store,
    code: str,
    amount: Money,
    kind: str,
    now_us: int,
    *,
    reference: str | None,
    note: str,
    check: Callable[[DbRow], None],
) -> tuple[TopupResult, DbRow]:
    """Post an operator's movement onto account `code` inside the caller's transaction, under the
    account's lock (so it is not credited while it is being closed, nor debited past what its
    live calls hold). A `reference` names one movement: used again, the earlier movement is the
    result and nothing is added (`_same_movement`). `check(account)` raises if the movement may
    not be made. Returns the result and the account's row as it was before the movement."""
    m = store.models
    account = account_for_update(store, code)
    if account is None:
        raise NotFound(f"no account {code!r}")
    if reference is not None:
        existing = m.LedgerEntry.get_or_none(
            (m.LedgerEntry.account == account.id) & (m.LedgerEntry.reference == reference)
        )
        if existing is not None:
            return TopupResult(_same_movement(_ledger_view(existing, code), kind, amount), applied=False), account
    check(account)
    entry_id, _ = post(store, account.id, amount, kind, now_us, reference=reference, note=note)
    if amount.micros > 0:
        pay_arrears(store, account.id, now_us)  # arrears are paid first (docs/PLANS.md)
    check_low_balance(store, account.id, now_us)  # docs/NOTICES.md
    return TopupResult(_ledger_view(m.LedgerEntry.get_by_id(entry_id), code), applied=True), account


def _check_topup(amount: Money, reference: str | None) -> None:
    if amount.micros <= 0:
        raise InvalidInput(f"top-up amount must be positive, got {amount}")
    if reference is not None and not reference.strip():
        raise InvalidInput("reference must not be empty")


def topup_within(
    store: Store, code: str, amount: Money, now_us: int, *, reference: str | None = None, note: str = ""
) -> TopupResult:
    """`topup` inside a transaction the caller holds, so that what makes a redelivery a no-op
    (the HTTP API's idempotency record) commits with the credit or not at all. A reference
    raced by another process is the caller's peewee.IntegrityError."""
    _check_topup(amount, reference)

    def open_account(account: DbRow) -> None:
        if account.status == "closed":
            raise InvalidInput(f"account {code!r} is closed: it takes no top-ups (see 'fsbill account show {code}')")

    result, _ = _move_within(store, code, amount, "topup", now_us, reference=reference, note=note, check=open_account)
    return result


def _same_movement(earlier: LedgerView, kind: str, amount: Money) -> LedgerView:
    """A reference names one movement: used again for the same kind and amount it is the same
    movement (a retried payment, nothing added); for anything else it is a mistake (a mistyped
    reference would otherwise silently drop a payment), refused naming the earlier movement."""
    if earlier.kind == kind and earlier.amount == amount:
        return earlier
    raise Conflict(
        f"reference {earlier.reference!r} was already used on account {earlier.account!r} by movement "
        f"{earlier.id} ({earlier.kind} {earlier.amount} at {iso(earlier.created_us)}), not a {kind} of {amount}: "
        f"nothing was changed; use another reference"
    )


def _last_entry(store: Store, code: str, reference: str | None) -> LedgerView:
    m = store.models
    with store.reading():
        q = m.LedgerEntry.select().join(m.Account).where(m.Account.code == code)
        if reference is not None:
            q = q.where(m.LedgerEntry.reference == reference)
        row = q.order_by(m.LedgerEntry.id.desc()).first()
        return _ledger_view(row, code)


def adjust(
    store: Store,
    code: str,
    amount: Money,
    reason: str,
    now_us: int,
    *,
    force: bool = False,
    reference: str | None = None,
    actor: str = "cli",
) -> LedgerView:
    """A signed operator correction. A debit that would leave less than nothing available
    (balance + credit limit − held) is refused unless `force`, since it would put money the
    account's live calls were promised out of reach. So is any adjustment of a closed account
    (it takes no money in or out; `force` is an operator correcting its books, and that is also
    written to the audit trail as `actor`). With a `reference` it is idempotent like a top-up:
    the same reference and amount again is the earlier adjustment (nothing changes); a different
    amount is a Conflict naming it."""
    return adjust_result(store, code, amount, reason, now_us, force=force, reference=reference, actor=actor).entry


def adjust_result(
    store: Store,
    code: str,
    amount: Money,
    reason: str,
    now_us: int,
    *,
    force: bool = False,
    reference: str | None = None,
    actor: str = "cli",
) -> TopupResult:
    """`adjust`, saying whether it was applied (False: its reference was already used for the
    same adjustment)."""
    _check_adjust(amount, reason, reference)
    return _in_transaction(
        store,
        code,
        amount,
        "adjust",
        reference,
        lambda: adjust_within(store, code, amount, reason, now_us, force=force, reference=reference, actor=actor),
    )


def _check_adjust(amount: Money, reason: str, reference: str | None) -> None:
    if not amount:
        raise InvalidInput("adjustment amount must not be zero")
    if not reason.strip():
        raise InvalidInput("an adjustment needs a --reason")
    if reference is not None and not reference.strip():
        raise InvalidInput("reference must not be empty")


def adjust_within(
    store: Store,
    code: str,
    amount: Money,
    reason: str,
    now_us: int,
    *,
    force: bool = False,
    reference: str | None = None,
    actor: str | None = "cli",
) -> TopupResult:
    """`adjust_result` inside a transaction the caller holds (see `topup_within`). `actor`
    None: the caller writes every movement to the audit trail itself (the API does)."""
    _check_adjust(amount, reason, reference)

    def allowed(account: DbRow) -> None:
        balance = Money(account.balance_micros)
        if account.status == "closed" and not force:
            raise InvalidInput(
                f"account {code!r} is closed: an adjustment of {amount} would move its balance from "
                f"{balance} to {balance + amount} after it was closed; use --force to correct the books "
                f"of a closed account (written to the audit trail)"
            )
        if amount.is_negative() and not force:
            held = Money(account.reserved_micros)
            left = available_of(balance + amount, Money(account.credit_limit_micros), held)
            if left.is_negative():
                raise InvalidInput(
                    f"adjustment {amount} would leave {left} available "
                    f"(live calls hold {held}); use --force to apply anyway"
                )

    result, account = _move_within(
        store, code, amount, "adjust", now_us, reference=reference, note=reason, check=allowed
    )
    if result.applied and account.status == "closed" and actor is not None:
        # a forced correction of a closed account's books: who did it, and why
        before = Money(account.balance_micros)
        audit.record(
            store,
            actor,
            now_us,
            "adjust",
            "account",
            code,
            [audit.Change("balance", str(before), str(before + amount))],
        )
    return result


def _ledger_view(row: DbRow, code: str) -> LedgerView:
    return LedgerView(
        id=row.id,
        account=code,
        amount=Money(row.amount_micros),
        kind=row.kind,
        reference=row.reference,
        call_uuid=row.call_uuid,
        balance_after=Money(row.balance_after_micros),
        note=row.note,
        created_us=row.created_us,
    )


def ledger(store: Store, code: str, since_us: int | None = None, limit: int | None = None) -> list[LedgerView]:
    """An account's movements in the order they were made (oldest first); with `limit`, only
    the latest `limit` of them, still oldest first."""
    m = store.models
    with store.reading():
        account = m.Account.get_or_none(m.Account.code == code)
        if account is None:
            raise NotFound(f"no account {code!r}")
        q = m.LedgerEntry.select().where(m.LedgerEntry.account == account.id)
        if since_us is not None:
            q = q.where(m.LedgerEntry.created_us >= since_us)
        if limit:
            # the latest `limit` movements, printed oldest first like the whole ledger
            rows = list(q.order_by(m.LedgerEntry.id.desc()).limit(limit))
            rows.reverse()
        else:
            rows = list(q.order_by(m.LedgerEntry.id))
        return [_ledger_view(r, code) for r in rows]


def ledger_page(
    store: Store,
    code: str,
    *,
    since_us: int | None = None,
    until_us: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[LedgerView]:
    """One page of an account's movements, oldest first, continuing after entry `after_id`."""
    m = store.models
    with store.reading():
        account = m.Account.get_or_none(m.Account.code == code)
        if account is None:
            raise NotFound(f"no account {code!r}")
        q = m.LedgerEntry.select().where(m.LedgerEntry.account == account.id)
        if since_us is not None:
            q = q.where(m.LedgerEntry.created_us >= since_us)
        if until_us is not None:
            q = q.where(m.LedgerEntry.created_us < until_us)
        if after_id is not None:
            q = q.where(m.LedgerEntry.id > after_id)
        return [_ledger_view(r, code) for r in q.order_by(m.LedgerEntry.id).limit(limit)]


def ledger_sum(store: Store, code: str) -> Money:
    m = store.models
    with store.reading():
        total = (
            m.LedgerEntry.select(peewee.fn.COALESCE(peewee.fn.SUM(m.LedgerEntry.amount_micros), 0))
            .join(m.Account)
            .where(m.Account.code == code)
            .scalar()
        )
    return Money(int(total))


def topups_since(store: Store, after_id: int | None) -> tuple[int, dict[str, Money]]:
    """Top-ups ledgered after entry `after_id` (None: only find where the ledger ends now),
    summed per currency. Top-ups are made by the CLI in other processes; the server follows
    the ledger to export them as a metric."""
    m = store.models
    with store.reading():
        last = m.LedgerEntry.select(peewee.fn.COALESCE(peewee.fn.MAX(m.LedgerEntry.id), 0)).scalar()
        if after_id is None or last <= after_id:
            return int(last), {}
        rows = (
            m.LedgerEntry.select(m.Account.currency, peewee.fn.SUM(m.LedgerEntry.amount_micros))
            .join(m.Account)
            .where((m.LedgerEntry.id > after_id) & (m.LedgerEntry.id <= last) & (m.LedgerEntry.kind == "topup"))
            .group_by(m.Account.currency)
            .tuples()
        )
        return int(last), {currency: Money(int(total)) for currency, total in rows}


__all__ = [
    "AccountView",
    "LedgerView",
    "TariffView",
    "TopupResult",
    "account_for_update",
    "adjust",
    "adjust_result",
    "adjust_within",
    "create_account",
    "create_tariff",
    "get_account",
    "get_tariff",
    "ledger",
    "ledger_page",
    "ledger_sum",
    "list_accounts",
    "list_tariffs",
    "post",
    "set_status",
    "topup",
    "topup_within",
    "topups_since",
]
