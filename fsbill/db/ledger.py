"""Accounts, tariffs and the ledger: every movement of a balance, each in the transaction that
makes it.

The ledger is the truth: an account's `balance_micros` always equals the sum of its ledger
entries' amounts, because the only code that changes a balance is `post()` below, which writes
the entry in the same transaction. Reservations (`reserved_micros`) are not ledgered: they
are holds, not movements, and are maintained by fsbill.db.calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace

import peewee

from fsbill.core.grant import available as available_of
from fsbill.core.money import MAX_MICROS, Money, RoundingMethod, RoundingRule
from fsbill.db import audit
from fsbill.db.connection import Store
from fsbill.db.notices import check_low_balance
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound
from fsbill.instant import iso


@dataclass(frozen=True)
class TariffView:
    id: int
    name: str
    currency: str
    rounding: RoundingRule
    timezone: str
    deck_version: int
    rate_count: int = 0
    status: str = "active"  # active | closed (fsbill.db.management)


@dataclass(frozen=True)
class AccountView:
    id: int
    code: str
    tariff: str
    tariff_id: int
    currency: str
    balance: Money
    credit_limit: Money
    reserved: Money
    max_channels: int
    live_channels: int
    status: str  # active | suspended | closed
    clis: tuple[str, ...]
    email: str = ""

    @property
    def available(self) -> Money:
        return available_of(self.balance, self.credit_limit, self.reserved)

    def as_json(self) -> dict:
        return {
            "code": self.code,
            "tariff": self.tariff,
            "currency": self.currency,
            "status": self.status,
            "balance": str(self.balance),
            "credit_limit": str(self.credit_limit),
            "reserved": str(self.reserved),
            "available": str(self.available),
            "max_channels": self.max_channels,
            "live_calls": self.live_channels,
            "clis": list(self.clis),
            "email": self.email,
        }


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
    return entry_id, balance_after


def _exact(micros: object) -> str:
    if isinstance(micros, int):
        sign, digits = ("-" if micros < 0 else ""), str(abs(micros)).rjust(7, "0")
        return f"{sign}{digits[:-6]}.{digits[-6:]}"
    return str(micros)


# -- tariffs -------------------------------------------------------------------------------------
def _valid_currency(currency: str) -> str:
    currency = currency.strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput(f"currency must be a 3-letter ISO 4217 code, got {currency!r}")
    return currency


def create_tariff(
    store: Store,
    name: str,
    currency: str,
    now_us: int,
    rounding: RoundingRule = RoundingRule(),
    timezone: str = "UTC",
    *,
    actor: str | None = None,
) -> TariffView:
    """`actor`: who creates it, for the audit trail (None: not audited)."""
    if not name.strip():
        raise InvalidInput("tariff name must not be empty")
    currency = _valid_currency(currency)
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(timezone)
    except Exception:
        raise InvalidInput(f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)") from None
    m = store.models
    try:
        with store.transaction():
            row = m.Tariff.create(
                name=name,
                currency=currency,
                rounding_decimals=rounding.decimals,
                rounding_method=rounding.method.value,
                timezone=timezone,
                created_us=now_us,
            )
            if actor is not None:
                fields = {"currency": currency, "decimals": str(rounding.decimals), "rounding": rounding.method.value}
                changes = [audit.Change(k, None, v) for k, v in (fields | {"timezone": timezone}).items()]
                audit.record(store, actor, now_us, "add", "tariff", name, changes)
    except peewee.IntegrityError:
        raise Conflict(f"tariff {name!r} already exists") from None
    return _tariff_view(row, 0)


def _tariff_view(row: DbRow, rate_count: int) -> TariffView:
    return TariffView(
        id=row.id,
        name=row.name,
        currency=row.currency,
        rounding=RoundingRule(row.rounding_decimals, RoundingMethod(row.rounding_method)),
        timezone=row.timezone,
        deck_version=row.deck_version,
        rate_count=rate_count,
        status=row.status,
    )


def list_tariffs(store: Store) -> list[TariffView]:
    m = store.models
    with store.reading():
        counts = dict(m.Rate.select(m.Rate.tariff, peewee.fn.COUNT(m.Rate.id)).group_by(m.Rate.tariff).tuples())
        return [_tariff_view(t, counts.get(t.id, 0)) for t in m.Tariff.select().order_by(m.Tariff.name)]


def get_tariff(store: Store, name: str) -> TariffView:
    m = store.models
    with store.reading():
        row = m.Tariff.get_or_none(m.Tariff.name == name)
        if row is None:
            raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
        return _tariff_view(row, m.Rate.select().where(m.Rate.tariff == row.id).count())


# -- accounts ---------------------------------------------------------------------------------
def _valid_code(code: str) -> str:
    if not code or len(code) > 64 or any(ch.isspace() for ch in code):
        raise InvalidInput(f"account code must be 1-64 characters without spaces, got {code!r}")
    return code


def create_account(
    store: Store,
    code: str,
    tariff_name: str,
    now_us: int,
    *,
    credit_limit: Money = Money(0),
    max_channels: int = 0,
    clis: Iterable[str] = (),
    actor: str | None = None,
) -> AccountView:
    """`actor`: who creates it, for the audit trail (None: not audited)."""
    code = _valid_code(code)
    if credit_limit.is_negative():
        raise InvalidInput("credit limit must not be negative")
    if max_channels < 0:
        raise InvalidInput("max channels must not be negative")
    clis = tuple(dict.fromkeys(_valid_cli(c) for c in clis))
    m = store.models
    with store.transaction():
        tariff = m.Tariff.get_or_none(m.Tariff.name == tariff_name)
        if tariff is None:
            raise NotFound(f"no tariff named {tariff_name!r} (create it with 'fsbill tariff add')")
        if tariff_name.startswith("vendor:"):  # fsbill.db.vendors.DECK_PREFIX: a vendor's cost deck
            raise InvalidInput(f"{tariff_name!r} is a vendor's cost deck, not a tariff customers can be sold")
        if tariff.status == "closed":
            raise InvalidInput(f"tariff {tariff_name!r} is closed: it is no longer given to accounts")
        if m.Account.get_or_none(m.Account.code == code) is not None:
            raise Conflict(f"account {code!r} already exists")
        taken = [c.number for c in m.AccountCli.select().where(m.AccountCli.number.in_(clis))] if clis else []
        if taken:
            raise Conflict(f"caller id {taken[0]} already belongs to another account")
        row = m.Account.create(
            code=code,
            tariff=tariff.id,
            currency=tariff.currency,
            credit_limit_micros=credit_limit.micros,
            max_channels=max_channels,
            created_us=now_us,
            updated_us=now_us,
        )
        for number in clis:
            m.AccountCli.create(number=number, account=row.id)
        if actor is not None:
            changes = [
                audit.Change("tariff", None, tariff_name),
                audit.Change("credit_limit", None, str(credit_limit)),
                audit.Change("max_channels", None, str(max_channels)),
            ] + [audit.Change("cli", None, number) for number in clis]
            audit.record(store, actor, now_us, "add", "account", code, changes)
    return get_account(store, code)


def _valid_cli(number: str) -> str:
    number = number.strip().lstrip("+")
    # ASCII digits only: str.isdigit() also takes "٣" or "²", which no switch sends as a caller id
    if not (number.isascii() and number.isdigit()):
        raise InvalidInput(f"caller id must be digits 0-9, got {number!r}")
    return number


def _account_view(m: SimpleNamespace, row: DbRow) -> AccountView:
    clis = tuple(
        c.number for c in m.AccountCli.select().where(m.AccountCli.account == row.id).order_by(m.AccountCli.number)
    )
    return AccountView(
        id=row.id,
        code=row.code,
        tariff=row.tariff.name,
        tariff_id=row.tariff_id,
        currency=row.currency,
        balance=Money(row.balance_micros),
        credit_limit=Money(row.credit_limit_micros),
        reserved=Money(row.reserved_micros),
        max_channels=row.max_channels,
        live_channels=row.live_channels,
        status=row.status,
        clis=clis,
        email=row.email,
    )


def account_for_update(store: Store, code: str) -> DbRow | None:
    """The account's row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN
    IMMEDIATE already serializes writers). Call inside `store.transaction()`."""
    m = store.models
    q = m.Account.select().where(m.Account.code == code)
    if store.kind == "postgresql":
        q = q.for_update()
    return q.first()


def get_account(store: Store, code: str) -> AccountView:
    m = store.models
    with store.reading():
        row = m.Account.select(m.Account, m.Tariff).join(m.Tariff).where(m.Account.code == code).first()
        if row is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        return _account_view(m, row)


def list_accounts(store: Store) -> list[AccountView]:
    m = store.models
    with store.reading():
        rows = m.Account.select(m.Account, m.Tariff).join(m.Tariff).order_by(m.Account.code)
        return [_account_view(m, r) for r in rows]


def set_status(store: Store, code: str, status: str, now_us: int) -> AccountView:
    if status not in ("active", "suspended"):
        raise InvalidInput(f"unknown status {status!r}")
    m = store.models
    with store.transaction():
        updated = m.Account.update(status=status, updated_us=now_us).where(m.Account.code == code).execute()
    if not updated:
        raise NotFound(f"no account {code!r}")
    return get_account(store, code)


# -- money movements by operators ------------------------------------------------------------
@dataclass(frozen=True)
class TopupResult:
    entry: LedgerView
    applied: bool  # False: this reference was already credited; nothing was added


def topup(
    store: Store, code: str, amount: Money, now_us: int, *, reference: str | None = None, note: str = ""
) -> TopupResult:
    if amount.micros <= 0:
        raise InvalidInput(f"top-up amount must be positive, got {amount}")
    if reference is not None and not reference.strip():
        raise InvalidInput("reference must not be empty")
    m = store.models
    try:
        with store.transaction():
            account = account_for_update(store, code)  # not credited while it is being closed
            if account is None:
                raise NotFound(f"no account {code!r}")
            if reference is not None:
                existing = m.LedgerEntry.get_or_none(
                    (m.LedgerEntry.account == account.id) & (m.LedgerEntry.reference == reference)
                )
                if existing is not None:
                    return TopupResult(_same_movement(_ledger_view(existing, code), "topup", amount), applied=False)
            if account.status == "closed":
                raise InvalidInput(
                    f"account {code!r} is closed: it takes no top-ups (see 'fsbill account show {code}')"
                )
            entry_id, _ = post(store, account.id, amount, "topup", now_us, reference=reference, note=note)
            check_low_balance(store, account.id, now_us)  # docs/NOTICES.md
            entry = m.LedgerEntry.get_by_id(entry_id)
        return TopupResult(_ledger_view(entry, code), applied=True)
    except peewee.IntegrityError:
        # Another process credited the same reference between our check and our insert
        # (PostgreSQL, READ COMMITTED); the unique index kept it to one and ours rolled back.
        return TopupResult(_same_movement(_last_entry(store, code, reference), "topup", amount), applied=False)


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
    if not amount:
        raise InvalidInput("adjustment amount must not be zero")
    if not reason.strip():
        raise InvalidInput("an adjustment needs a --reason")
    if reference is not None and not reference.strip():
        raise InvalidInput("reference must not be empty")
    m = store.models
    try:
        with store.transaction():
            account = account_for_update(store, code)  # not adjusted while it is being closed
            if account is None:
                raise NotFound(f"no account {code!r}")
            if reference is not None:
                existing = m.LedgerEntry.get_or_none(
                    (m.LedgerEntry.account == account.id) & (m.LedgerEntry.reference == reference)
                )
                if existing is not None:
                    return TopupResult(_same_movement(_ledger_view(existing, code), "adjust", amount), applied=False)
            closed = account.status == "closed"
            if closed and not force:
                balance = Money(account.balance_micros)
                raise InvalidInput(
                    f"account {code!r} is closed: an adjustment of {amount} would move its balance from "
                    f"{balance} to {balance + amount} after it was closed; use --force to correct the books "
                    f"of a closed account (written to the audit trail)"
                )
            if amount.is_negative() and not force:
                left = available_of(
                    Money(account.balance_micros) + amount,
                    Money(account.credit_limit_micros),
                    Money(account.reserved_micros),
                )
                if left.is_negative():
                    raise InvalidInput(
                        f"adjustment {amount} would leave {left} available "
                        f"(live calls hold {Money(account.reserved_micros)}); use --force to apply anyway"
                    )
            entry_id, after = post(store, account.id, amount, "adjust", now_us, reference=reference, note=reason)
            check_low_balance(store, account.id, now_us)  # docs/NOTICES.md
            if closed:  # a forced correction of a closed account's books: who did it, and why
                changes = [audit.Change("balance", str(Money(account.balance_micros)), str(Money(after)))]
                audit.record(store, actor, now_us, "adjust", "account", code, changes)
            return TopupResult(_ledger_view(m.LedgerEntry.get_by_id(entry_id), code), applied=True)
    except peewee.IntegrityError:
        # the same reference inserted by another process between our check and our insert
        return TopupResult(_same_movement(_last_entry(store, code, reference), "adjust", amount), applied=False)


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
