"""Tariffs and accounts: creating them, reading them, an account's status, and the account's
row locked for a change of its money (fsbill.db.ledger moves the money).

Changing and closing what was created is fsbill.db.management.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace

import peewee

from fsbill.core.chain import MAX_DEPTH
from fsbill.core.grant import available as available_of
from fsbill.core.money import Money, RoundingRule
from fsbill.db import audit, subtree
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow, rounding_of
from fsbill.errors import Conflict, InvalidInput, NotFound


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
    owner: str = ""  # the reseller that made it, "" = the operator's (fsbill.db.subtree)


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
    arrears: Money = Money(0)  # recurring charges not yet paid (fsbill.core.arrears)
    parent: str = ""  # the reseller above it, "" = top level (docs/RESELLERS.md)

    @property
    def available(self) -> Money:
        return available_of(self.balance, self.credit_limit, self.reserved, self.arrears)

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
            "arrears": str(self.arrears),
            "max_channels": self.max_channels,
            "live_calls": self.live_channels,
            "clis": list(self.clis),
            "email": self.email,
            "parent": self.parent or None,
        }


# -- tariffs -------------------------------------------------------------------------------------
def _valid_currency(currency: str) -> str:
    currency = currency.strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput(f"currency must be a 3-letter ISO 4217 code, got {currency!r}")
    return currency


def _valid_timezone(timezone: str) -> str:
    try:
        zoneinfo.ZoneInfo(timezone)
    except Exception:
        raise InvalidInput(f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)") from None
    return timezone


def new_tariff_row(store: Store, name: str, currency: str, rounding: RoundingRule, timezone: str, now_us: int) -> DbRow:
    """Insert a tariff's row (a customer tariff, or a vendor's cost deck); call inside
    `store.transaction()`. The name is unique: a taken one raises peewee.IntegrityError."""
    return store.models.Tariff.create(
        name=name,
        currency=currency,
        rounding_decimals=rounding.decimals,
        rounding_method=rounding.method.value,
        timezone=timezone,
        created_us=now_us,
    )


def create_tariff(
    store: Store,
    name: str,
    currency: str,
    now_us: int,
    rounding: RoundingRule = RoundingRule(),
    timezone: str = "UTC",
    *,
    actor: str | None = None,
    owner: str | None = None,
) -> TariffView:
    """`actor`: who creates it, for the audit trail (None: not audited). `owner`: the reseller
    account it belongs to (given only inside its subtree, fsbill.db.subtree); None: the operator's."""
    if not name.strip():
        raise InvalidInput("tariff name must not be empty")
    currency = _valid_currency(currency)
    timezone = _valid_timezone(timezone)
    m = store.models
    try:
        with store.transaction():
            owner_row = None if owner is None else m.Account.get_or_none(m.Account.code == owner)
            if owner is not None and owner_row is None:
                raise NotFound(f"no account {owner!r} to own the tariff (see 'fsbill account list')")
            row = new_tariff_row(store, name, currency, rounding, timezone, now_us)
            if owner_row is not None:
                m.Tariff.update(owner_id=owner_row.id).where(m.Tariff.id == row.id).execute()
                row.owner_id = owner_row.id
            if actor is not None:
                fields = {"currency": currency, "decimals": str(rounding.decimals), "rounding": rounding.method.value}
                if owner is not None:
                    fields["owner"] = owner
                changes = [audit.Change(k, None, v) for k, v in (fields | {"timezone": timezone}).items()]
                audit.record(store, actor, now_us, "add", "tariff", name, changes)
    except peewee.IntegrityError:
        raise Conflict(f"tariff {name!r} already exists") from None
    return _tariff_view(row, 0, {} if owner_row is None else {owner_row.id: owner_row.code})


def _tariff_view(row: DbRow, rate_count: int, owners: dict[int, str] | None = None) -> TariffView:
    return TariffView(
        id=row.id,
        name=row.name,
        currency=row.currency,
        rounding=rounding_of(row),
        timezone=row.timezone,
        deck_version=row.deck_version,
        rate_count=rate_count,
        status=row.status,
        owner="" if row.owner_id is None else (owners or {}).get(row.owner_id, ""),
    )


def _owners(m: SimpleNamespace, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(m.Account.select(m.Account.id, m.Account.code).where(m.Account.id.in_(wanted)).tuples())


def list_tariffs(store: Store) -> list[TariffView]:
    m = store.models
    with store.reading():
        counts = dict(m.Rate.select(m.Rate.tariff, peewee.fn.COUNT(m.Rate.id)).group_by(m.Rate.tariff).tuples())
        rows = list(m.Tariff.select().order_by(m.Tariff.name))
        owners = _owners(m, (t.owner_id for t in rows))
        return [_tariff_view(t, counts.get(t.id, 0), owners) for t in rows]


def get_tariff(store: Store, name: str) -> TariffView:
    m = store.models
    with store.reading():
        row = m.Tariff.get_or_none(m.Tariff.name == name)
        if row is None:
            raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
        return _tariff_view(row, m.Rate.select().where(m.Rate.tariff == row.id).count(), _owners(m, [row.owner_id]))


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
    parent: str | None = None,
) -> AccountView:
    """`actor`: who creates it, for the audit trail (None: not audited). `parent`: the
    reseller it is created under (docs/RESELLERS.md): it must exist, not be closed, and the
    tree stays at most MAX_DEPTH levels deep (its currency may differ from the tariff's)."""
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
        parent_id = _parent_id(store, parent) if parent is not None else None
        subtree.check_tariff_for(store, tariff, parent_id, code)  # a reseller's tariff stays in its subtree
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
            parent_id=parent_id,
        )
        for number in clis:
            m.AccountCli.create(number=number, account=row.id)
        if actor is not None:
            changes = [
                audit.Change("tariff", None, tariff_name),
                audit.Change("credit_limit", None, str(credit_limit)),
                audit.Change("max_channels", None, str(max_channels)),
            ] + [audit.Change("cli", None, number) for number in clis]
            if parent is not None:
                changes.append(audit.Change("parent", None, parent))
            audit.record(store, actor, now_us, "add", "account", code, changes)
    return get_account(store, code)


def _parent_id(store: Store, code: str) -> int:
    """The id of the reseller a new account is created under, checked: it exists, is not
    closed, and a child of it is at most MAX_DEPTH levels deep. Its currency may differ: each
    level pays in its own tariff's currency (`fsbill fx set` prices margins and fundings
    across). Cycles cannot arise: a parent is set once, to an existing account."""
    m = store.models
    parent = m.Account.get_or_none(m.Account.code == code)
    if parent is None:
        raise NotFound(f"no account {code!r} to create it under (see 'fsbill account list')")
    if parent.status == "closed":
        raise InvalidInput(f"account {code!r} is closed: no accounts can be created under it")
    depth, above = 1, parent.parent_id
    while above is not None:
        depth += 1
        above = m.Account.get_by_id(above).parent_id
    if depth >= MAX_DEPTH:
        raise InvalidInput(f"account {code!r} is already {depth} levels deep: a tree has at most {MAX_DEPTH} levels")
    return int(parent.id)


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
        arrears=Money(row.arrears_micros),
        parent=_parent_code(m, row.parent_id),
    )


def _parent_code(m: SimpleNamespace, parent_id: int | None) -> str:
    if parent_id is None:
        return ""
    parent = m.Account.get_or_none(m.Account.id == parent_id)
    return "" if parent is None else str(parent.code)


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


def list_accounts(
    store: Store, after: str | None = None, limit: int | None = None, within: Iterable[int] | None = None
) -> list[AccountView]:
    """Accounts by code; `after` and `limit` read one page of them (the HTTP API's); `within`:
    only these ids (a reseller's subtree, fsbill.db.subtree.member_ids)."""
    m = store.models
    with store.reading():
        rows = m.Account.select(m.Account, m.Tariff).join(m.Tariff)
        if within is not None:
            rows = rows.where(m.Account.id.in_(list(within)))
        if after is not None:
            rows = rows.where(m.Account.code > after)
        rows = rows.order_by(m.Account.code)
        if limit:
            rows = rows.limit(limit)
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
