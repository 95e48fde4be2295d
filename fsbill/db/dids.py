"""Inbound numbers in the database (docs/DIDS.md): `fsbill did add|list|show|set|remove`, and the
lookup an inbound call's authorization makes (`find_did`: the number and its owner).

Every change is audited (entity `did`, fsbill.db.audit) in the transaction that makes it. A
removed number keeps its row (status `removed`) so that old CDRs still name something; adding it
again revives it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fsbill.core.did import ON_EMPTY, Did
from fsbill.core.money import Money
from fsbill.core.records import PayerAccount
from fsbill.db import audit
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound

MAX_NUMBER_DIGITS = 32


@dataclass(frozen=True)
class DidView:
    """An inbound number as operators read it."""

    did: Did
    account: str  # the owner's code
    created_us: int
    updated_us: int

    def as_json(self) -> dict[str, Any]:
        d = self.did
        return {
            "number": d.number,
            "account": self.account,
            "dial_string": d.dial_string,
            "rate": None if d.rate is None else str(d.rate),
            "connect_fee": str(d.connect_fee),
            "increments": f"{d.initial_increment_s}/{d.increment_s}",
            "on_empty": d.on_empty,
            "max_channels": d.max_channels,
            "status": d.status,
        }


def valid_number(text: str) -> str:
    """A number as caller ids are kept: no leading '+', ASCII digits 0-9 only."""
    number = text.strip().lstrip("+")
    # ASCII digits only: str.isdigit() also takes "٣" or "²", which no switch sends as a number
    if not (number.isascii() and number.isdigit()) or len(number) > MAX_NUMBER_DIGITS:
        raise InvalidInput(
            f"a number must be 1-{MAX_NUMBER_DIGITS} digits 0-9 (a leading '+' is dropped), got {text!r}"
        )
    return number


def parse_increments(text: str) -> tuple[int, int]:
    """`INITIAL/NEXT` in seconds, each >= 1 (`60/60`, `30/6`, `1/1`)."""
    first, sep, second = text.partition("/")
    if not sep or not all(p.isascii() and p.isdigit() and int(p) >= 1 for p in (first, second)):
        raise InvalidInput(f"--increments must be INITIAL/NEXT in whole seconds >= 1 (e.g. 60/60), got {text!r}")
    return int(first), int(second)


def _check(did: Did) -> Did:
    if not did.dial_string.strip():
        raise InvalidInput("--dial-string must not be empty (e.g. 'user/1000' or 'sofia/gateway/pbx/{destination}')")
    if did.on_empty not in ON_EMPTY:
        raise InvalidInput(f"--on-empty must be one of {', '.join(ON_EMPTY)}, got {did.on_empty!r}")
    if did.max_channels < 0:
        raise InvalidInput(f"--max-channels must be >= 0 (0 = no limit), got {did.max_channels}")
    for name, amount in (("--rate", did.rate), ("--connect-fee", did.connect_fee)):
        if amount is not None and amount.is_negative():
            raise InvalidInput(f"{name} must not be negative, got {amount}")
    if did.rate is None and did.connect_fee:
        raise InvalidInput("--connect-fee needs --rate (a number without a rate is free inbound)")
    return did


def _did(row: DbRow) -> Did:
    return Did(
        number=row.number,
        account_id=row.account_id,
        dial_string=row.dial_string,
        rate=None if row.rate_micros is None else Money(row.rate_micros),
        connect_fee=Money(row.connect_fee_micros),
        initial_increment_s=row.initial_increment_s,
        increment_s=row.increment_s,
        on_empty=row.on_empty,
        max_channels=row.max_channels,
        status=row.status,
    )


def _fields(did: Did) -> dict[str, Any]:
    return dict(
        account_id=did.account_id,
        dial_string=did.dial_string,
        rate_micros=None if did.rate is None else did.rate.micros,
        connect_fee_micros=did.connect_fee.micros,
        initial_increment_s=did.initial_increment_s,
        increment_s=did.increment_s,
        on_empty=did.on_empty,
        max_channels=did.max_channels,
        status=did.status,
    )


def _audited(did: Did, owner: str) -> dict[str, str | None]:
    return {
        "account": owner,
        "dial_string": did.dial_string,
        "rate": None if did.rate is None else str(did.rate),
        "connect_fee": str(did.connect_fee),
        "increments": f"{did.initial_increment_s}/{did.increment_s}",
        "on_empty": did.on_empty,
        "max_channels": str(did.max_channels),
        "status": did.status,
    }


def _account(store: Store, code: str) -> DbRow:
    acc = store.models.Account.get_or_none(store.models.Account.code == code)
    if acc is None:
        raise NotFound(f"no account {code!r} (see 'fsbill account list')")
    return acc


def _row(store: Store, number: str) -> DbRow:
    m = store.models
    row = m.Did.get_or_none((m.Did.number == number) & (m.Did.status == "active"))
    if row is None:
        raise NotFound(f"no inbound number {number!r} (see 'fsbill did list')")
    return row


def _view(store: Store, row: DbRow) -> DidView:
    acc = store.models.Account.get_by_id(row.account_id)
    return DidView(_did(row), acc.code, row.created_us, row.updated_us)


def add_did(
    store: Store,
    number: str,
    account: str,
    dial_string: str,
    now_us: int,
    *,
    rate: Money | None = None,
    connect_fee: Money = Money(0),
    increments: tuple[int, int] = (1, 1),
    on_empty: str = "reject",
    max_channels: int = 0,
    actor: str = "cli",
) -> DidView:
    number = valid_number(number)
    m = store.models
    with store.transaction():
        acc = _account(store, account)
        did = _check(Did(number, acc.id, dial_string.strip(), rate, connect_fee, *increments, on_empty, max_channels))
        old = m.Did.get_or_none(m.Did.number == number)
        if old is not None and old.status == "active":
            raise Conflict(
                f"number {number} is already in use (owned by {_view(store, old).account}; see 'fsbill did show {number}')"
            )
        if old is not None:  # a removed number, added again
            m.Did.update(**_fields(did), updated_us=now_us).where(m.Did.id == old.id).execute()
        else:
            m.Did.create(number=number, **_fields(did), created_us=now_us, updated_us=now_us)
        changes = [audit.Change(k, None, v) for k, v in _audited(did, acc.code).items()]
        audit.record(store, actor, now_us, "add", "did", number, changes)
        return _view(store, _row(store, number))


def set_did(
    store: Store,
    number: str,
    now_us: int,
    *,
    account: str | None = None,
    dial_string: str | None = None,
    rate: Money | None = None,
    free: bool = False,
    connect_fee: Money | None = None,
    increments: tuple[int, int] | None = None,
    on_empty: str | None = None,
    max_channels: int | None = None,
    actor: str = "cli",
) -> DidView:
    """Change what is given; `free` drops the rate (free inbound, no connect fee)."""
    number = valid_number(number)
    m = store.models
    with store.transaction():
        row = _row(store, number)
        before = _view(store, row)
        did, owner = before.did, before.account
        if account is not None:
            acc = _account(store, account)
            did, owner = replace(did, account_id=acc.id), acc.code
        if dial_string is not None:
            did = replace(did, dial_string=dial_string.strip())
        if free:
            did = replace(did, rate=None, connect_fee=Money(0))
        if rate is not None:
            did = replace(did, rate=rate)
        if connect_fee is not None:
            did = replace(did, connect_fee=connect_fee)
        if increments is not None:
            did = replace(did, initial_increment_s=increments[0], increment_s=increments[1])
        if on_empty is not None:
            did = replace(did, on_empty=on_empty)
        if max_channels is not None:
            did = replace(did, max_channels=max_channels)
        _check(did)
        old, new = _audited(before.did, before.account), _audited(did, owner)
        changes = [audit.Change(k, old[k], new[k]) for k in new if old[k] != new[k]]
        if changes:
            m.Did.update(**_fields(did), updated_us=now_us).where(m.Did.id == row.id).execute()
            audit.record(store, actor, now_us, "set", "did", number, changes)
        return _view(store, _row(store, number))


def remove_did(store: Store, number: str, now_us: int, actor: str = "cli") -> DidView:
    """Calls to the number are refused from now on (unknown_did); live ones finish."""
    number = valid_number(number)
    m = store.models
    with store.transaction():
        row = _row(store, number)
        view = _view(store, row)
        m.Did.update(status="removed", updated_us=now_us).where(m.Did.id == row.id).execute()
        audit.record(store, actor, now_us, "remove", "did", number, [audit.Change("status", "active", "removed")])
    return replace(view, did=replace(view.did, status="removed"))


def get_did(store: Store, number: str) -> DidView:
    number = valid_number(number)
    with store.reading():
        return _view(store, _row(store, number))


def list_dids(store: Store, account: str | None = None) -> list[DidView]:
    m = store.models
    with store.reading():
        q = m.Did.select().where(m.Did.status == "active")
        if account is not None:
            q = q.where(m.Did.account_id == _account(store, account).id)
        return [_view(store, r) for r in q.order_by(m.Did.number)]


def find_did(store: Store, number: str) -> tuple[Did, PayerAccount] | None:
    """An inbound call's number and its owner, or None when the number is not ours."""
    m = store.models
    with store.reading():
        row = m.Did.get_or_none((m.Did.number == number) & (m.Did.status == "active"))
        if row is None:
            return None
        acc = m.Account.get_or_none(m.Account.id == row.account_id)
        if acc is None:
            return None
        return _did(row), PayerAccount(acc.id, acc.code, acc.tariff_id, acc.currency, acc.status)


__all__ = [
    "DidView",
    "add_did",
    "find_did",
    "get_did",
    "list_dids",
    "parse_increments",
    "remove_did",
    "set_did",
    "valid_number",
]
