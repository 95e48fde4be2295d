"""Bundles of minutes in the database (issue 25, docs/BUNDLES.md).

A bundle is defined once (`bundle add`), sold through a plan (`plan add --bundle`), and an
account gets one balance (`account_bundle`) per subscription to such a plan. Every function
that changes a balance runs inside a transaction that holds the account's lock (the same one
calls and charges take), so a period turns once and two calls never hold the same second:

- `allowances` reads the balances covering a call, renewing any whose period ended (lazily,
  so a call never draws on an expired period's seconds);
- `hold` writes what a call holds on them (`bundle_hold`, durable like money holds);
- `settle_holds` consumes what the call used and releases the rest, in the transaction that
  deletes the live call and writes its CDR: exactly once, whoever settles it (the enforcer,
  a reaper, a re-adopting node);
- `renew_due` is what the charges loop runs: every balance whose period ended, renewed.

Each movement is a `bundle_entry` with the balance after: Σ delta_s == seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from fsbill.core.bundle import (
    END_OF_TIME,
    Allowance,
    Bundle,
    Draw,
    check_bundle,
    consumed,
    first_period,
    parse_prefixes,
    renewals,
    take,
    usable,
)
from fsbill.core.plans import Period
from fsbill.db import audit
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.db.statements import ACCOUNT_COLUMNS, one
from fsbill.errors import Conflict, NotFound
from fsbill.instant import iso


@dataclass(frozen=True)
class BundleView:
    name: str
    seconds: int
    prefixes: tuple[str, ...]
    rollover_max_s: int
    increment_s: int
    plans: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "prefixes": list(self.prefixes),
            "rollover_max_s": self.rollover_max_s,
            "increment_s": self.increment_s,
            "plans": list(self.plans),
        }


@dataclass(frozen=True)
class BalanceView:
    """One bundle balance of an account (`account show`)."""

    bundle: str
    plan: str
    seconds: int  # left this period
    held_s: int  # held by live calls
    period_start_us: int
    period_end_us: int

    @property
    def remaining_s(self) -> int:
        return max(0, self.seconds - self.held_s)

    def as_json(self) -> dict:
        return {
            "bundle": self.bundle,
            "plan": self.plan,
            "seconds": self.seconds,
            "held_s": self.held_s,
            "remaining_s": self.remaining_s,
            "period_start": iso(self.period_start_us),
            "period_end": None if self.period_end_us >= END_OF_TIME else iso(self.period_end_us),
        }


def _bundle(row: DbRow) -> Bundle:
    prefixes = tuple(p for p in (row.prefixes or "").split(",") if p)
    return Bundle(row.name, int(row.seconds), prefixes, int(row.rollover_max_s), int(row.increment_s))


def _view(store: Store, row: DbRow) -> BundleView:
    m = store.models
    b = _bundle(row)
    plans = tuple(p.name for p in m.Plan.select(m.Plan.name).where(m.Plan.bundle_id == row.id).order_by(m.Plan.name))
    return BundleView(b.name, b.seconds, b.prefixes, b.rollover_max_s, b.increment_s, plans)


def create_bundle(
    store: Store,
    name: str,
    seconds: int,
    now_us: int,
    *,
    prefixes: str | None = None,
    rollover_max_s: int = 0,
    increment_s: int = 1,
    actor: str = "cli",
) -> BundleView:
    bundle = Bundle(name.strip(), seconds, parse_prefixes(prefixes), rollover_max_s, increment_s)
    check_bundle(bundle)
    m = store.models
    try:
        with store.transaction():
            m.Bundle.create(
                name=bundle.name,
                seconds=bundle.seconds,
                prefixes=",".join(bundle.prefixes),
                rollover_max_s=bundle.rollover_max_s,
                increment_s=bundle.increment_s,
                created_us=now_us,
            )
            changes = [
                audit.Change("seconds", None, str(bundle.seconds)),
                audit.Change("prefixes", None, ",".join(bundle.prefixes) or "*"),
                audit.Change("rollover_max_s", None, str(bundle.rollover_max_s)),
                audit.Change("increment_s", None, str(bundle.increment_s)),
            ]
            audit.record(store, actor, now_us, "add", "bundle", bundle.name, changes)
    except peewee.IntegrityError:
        raise Conflict(f"bundle {bundle.name!r} already exists") from None
    return BundleView(bundle.name, bundle.seconds, bundle.prefixes, bundle.rollover_max_s, bundle.increment_s)


def list_bundles(store: Store) -> list[BundleView]:
    m = store.models
    with store.reading():
        return [_view(store, r) for r in m.Bundle.select().order_by(m.Bundle.name)]


def bundle_row(store: Store, name: str) -> DbRow:
    row = store.models.Bundle.get_or_none(store.models.Bundle.name == name)
    if row is None:
        raise NotFound(f"no bundle named {name!r} (see 'fsbill bundle list')")
    return row


def show_bundle(store: Store, name: str) -> BundleView:
    with store.reading():
        return _view(store, bundle_row(store, name))


# -- balances -----------------------------------------------------------------------------------------------
_BALANCE_SQL = (
    'SELECT ab."id", ab."subscription_id", ab."period_start_us", ab."period_end_us", ab."seconds", ab."held_s", '
    'b."name", b."seconds", b."prefixes", b."rollover_max_s", b."increment_s", '
    's."quantity", s."end_us", p."period", t."timezone", p."name" '
    'FROM "account_bundle" ab JOIN "bundle" b ON b."id" = ab."bundle_id" '
    'JOIN "subscription" s ON s."id" = ab."subscription_id" JOIN "plan" p ON p."id" = s."plan_id" '
    'JOIN "account" a ON a."id" = ab."account_id" JOIN "tariff" t ON t."id" = a."tariff_id" '
)


@dataclass
class _Balance:
    id: int
    period_start_us: int
    period_end_us: int
    seconds: int
    held_s: int
    bundle: Bundle
    quantity: int
    sub_end_us: int | None
    period: Period
    tz: str
    plan: str


def _balances(store: Store, where: str, params: tuple) -> list[_Balance]:
    rows = store.db.execute_sql(_BALANCE_SQL + where, params).fetchall()
    out = []
    for r in rows:
        prefixes = tuple(p for p in (r[8] or "").split(",") if p)
        bundle = Bundle(r[6], int(r[7]), prefixes, int(r[9]), int(r[10]))
        out.append(
            _Balance(
                r[0], int(r[2]), int(r[3]), int(r[4]), int(r[5]), bundle, r[11], r[12], Period(r[13]), r[14], r[15]
            )
        )
    return out


def _entry(
    store: Store,
    b: _Balance,
    account_id: int,
    delta_s: int,
    kind: str,
    period_start_us: int,
    now_us: int,
    call_uuid: str = "",
    visit: int = 0,
) -> None:
    store.models.BundleEntry.insert(
        account_bundle_id=b.id,
        account_id=account_id,
        delta_s=delta_s,
        kind=kind,
        period_start_us=period_start_us,
        call_uuid=call_uuid,
        visit=visit,
        seconds_after=b.seconds,
        created_us=now_us,
    ).execute()


def _renew(store: Store, b: _Balance, account_id: int, now_us: int) -> bool:
    """Turn the balance's periods up to now (under the account's lock). True if it changed."""
    turned = False
    for r in renewals(b.bundle, b.quantity, b.seconds, b.held_s, b.period_end_us, now_us, b.period, b.tz, b.sub_end_us):
        if r.expired_s:
            b.seconds -= r.expired_s
            _entry(store, b, account_id, -r.expired_s, "expired", b.period_start_us, now_us)
        if r.given_s:
            b.seconds += r.given_s
            _entry(store, b, account_id, r.given_s, "given", r.period_start_us, now_us)
        assert b.seconds == r.seconds
        b.period_start_us, b.period_end_us = r.period_start_us, r.period_end_us
        turned = True
    if turned:
        store.models.AccountBundle.update(
            seconds=b.seconds, period_start_us=b.period_start_us, period_end_us=b.period_end_us
        ).where(store.models.AccountBundle.id == b.id).execute()
    return turned


def allowances(store: Store, account_id: int, now_us: int) -> list[Allowance]:
    """The account's bundle balances as calls use them, each renewed up to now. Call inside the
    transaction that holds the account's lock."""
    p = store.db.param
    found = _balances(store, f'WHERE ab."account_id" = {p}', (account_id,))
    out = []
    for b in found:
        if b.period_end_us <= now_us:
            _renew(store, b, account_id, now_us)
        if b.period_start_us <= now_us < b.period_end_us:
            out.append(
                Allowance(
                    b.id, b.bundle.name, b.bundle.prefixes, b.bundle.increment_s, b.seconds, b.held_s, b.period_end_us
                )
            )
    return out


def start_balance(
    store: Store,
    account_id: int,
    subscription_id: int,
    bundle_row_: DbRow,
    period: Period,
    tz: str,
    start_us: int,
    quantity: int,
    now_us: int,
) -> None:
    """A new subscription's bundle balance: the whole allowance for the period it starts in
    (not prorated), usable from the subscription's start."""
    m = store.models
    _, end_us = first_period(period, start_us, tz)
    seconds = int(bundle_row_.seconds) * quantity
    row = m.AccountBundle.create(
        account_id=account_id,
        subscription_id=subscription_id,
        bundle_id=bundle_row_.id,
        period_start_us=start_us,
        period_end_us=end_us,
        seconds=seconds,
        held_s=0,
        created_us=now_us,
    )
    b = _Balance(row.id, start_us, end_us, seconds, 0, _bundle(bundle_row_), quantity, None, period, tz, "")
    _entry(store, b, account_id, seconds, "given", start_us, now_us)


def covering(store: Store, account_id: int, destination: str, now_us: int) -> list[Allowance]:
    """The balances a call to `destination` may use, in the order it uses them (renewed first).
    Call inside the transaction that holds the account's lock."""
    found = allowances(store, account_id, now_us)
    return usable(found, destination) if found else []


def hold(
    store: Store, uuid: str, visit: int, usable: list[Allowance], want_s: int, bundle_s: int | None = None
) -> None:
    """Hold `want_s` more seconds for a call on its usable balances, in order; `bundle_s`, when
    given, is the call's whole bundle part after it (written to its live_call row)."""
    m = store.models
    drawn = take(usable, want_s)
    assert sum(n for _, n in drawn) == want_s, (drawn, want_s)
    position = m.BundleHold.select().where((m.BundleHold.uuid == uuid) & (m.BundleHold.visit == visit)).count()
    for allowance_id, n in drawn:
        row = m.BundleHold.get_or_none(
            (m.BundleHold.uuid == uuid)
            & (m.BundleHold.visit == visit)
            & (m.BundleHold.account_bundle_id == allowance_id)
        )
        period = m.AccountBundle.get_by_id(allowance_id).period_start_us
        if row is None:
            m.BundleHold.insert(
                uuid=uuid,
                visit=visit,
                account_bundle_id=allowance_id,
                position=position,
                held_s=n,
                period_start_us=period,
            ).execute()
            position += 1
        else:
            m.BundleHold.update(held_s=m.BundleHold.held_s + n).where(
                (m.BundleHold.uuid == uuid)
                & (m.BundleHold.visit == visit)
                & (m.BundleHold.account_bundle_id == allowance_id)
            ).execute()
        m.AccountBundle.update(held_s=m.AccountBundle.held_s + n).where(m.AccountBundle.id == allowance_id).execute()
    if bundle_s is not None:
        leg = (m.LiveCall.uuid == uuid) & (m.LiveCall.visit == visit)
        m.LiveCall.update(bundle_s=bundle_s).where(leg).execute()


def settle_holds(
    store: Store, uuid: str, visit: int, account_id: int, answered_us: int | None, end_us: int | None, now_us: int
) -> int:
    """Consume what the call used of its bundle holds and release the rest; seconds granted from
    a period that has since ended expire instead of returning. The bundle seconds used."""
    m = store.models
    holds = list(
        m.BundleHold.select()
        .where((m.BundleHold.uuid == uuid) & (m.BundleHold.visit == visit))
        .order_by(m.BundleHold.position)
    )
    if not holds:
        return 0
    p = store.db.param
    by_id = {b.id: b for b in _balances(store, f'WHERE ab."account_id" = {p}', (account_id,))}
    draws = [Draw(h.account_bundle_id, int(h.held_s), by_id[h.account_bundle_id].bundle.increment_s) for h in holds]
    used = consumed(draws, answered_us, end_us)
    total = 0
    for h, n in zip(holds, used, strict=True):
        b = by_id[h.account_bundle_id]
        b.held_s -= int(h.held_s)
        if n:
            b.seconds -= n
            _entry(store, b, account_id, -n, "call", int(h.period_start_us), now_us, uuid, visit)
        unused = int(h.held_s) - n
        if unused and int(h.period_start_us) != b.period_start_us:  # granted from a period now over
            b.seconds -= unused
            _entry(store, b, account_id, -unused, "expired", int(h.period_start_us), now_us, uuid, visit)
        m.AccountBundle.update(seconds=b.seconds, held_s=b.held_s).where(m.AccountBundle.id == b.id).execute()
        total += n
    m.BundleHold.delete().where((m.BundleHold.uuid == uuid) & (m.BundleHold.visit == visit)).execute()
    return total


def renew_due(store: Store, now_us: int, limit: int = 10_000) -> int:
    """Renew every balance whose period has ended (the charges loop): each in its own
    transaction under its account's lock, so it is idempotent and safe on several nodes."""
    m = store.models
    with store.reading():
        due = [
            (r.id, r.account_id)
            for r in m.AccountBundle.select(m.AccountBundle.id, m.AccountBundle.account_id)
            .where(m.AccountBundle.period_end_us <= now_us)
            .order_by(m.AccountBundle.id)
            .limit(limit)
        ]
    turned = 0
    p = store.db.param
    for balance_id, account_id in due:
        with store.transaction() as db:
            one(db, store.sql.account_by_id, (account_id,), ACCOUNT_COLUMNS)  # the account's lock
            [b] = _balances(store, f'WHERE ab."id" = {p}', (balance_id,))
            if b.period_end_us <= now_us and _renew(store, b, account_id, now_us):
                turned += 1
    return turned


def balances(store: Store, code: str, now_us: int) -> list[BalanceView]:
    """An account's bundle balances, as of now (a period that ended shows as renewed)."""
    m = store.models
    with store.transaction():
        account = m.Account.get_or_none(m.Account.code == code)
        if account is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        one(store.db, store.sql.account_by_id, (account.id,), ACCOUNT_COLUMNS)  # the account's lock
        p = store.db.param
        out = []
        for b in _balances(store, f'WHERE ab."account_id" = {p} ORDER BY ab."id"', (account.id,)):
            if b.period_end_us <= now_us:
                _renew(store, b, account.id, now_us)
            out.append(BalanceView(b.bundle.name, b.plan, b.seconds, b.held_s, b.period_start_us, b.period_end_us))
        return out


@dataclass(frozen=True)
class EntryView:
    bundle: str
    delta_s: int
    kind: str
    call_uuid: str
    seconds_after: int
    created_us: int


def entries(store: Store, code: str) -> list[EntryView]:
    """The ledger of an account's bundle seconds, oldest first."""
    m = store.models
    with store.reading():
        account = m.Account.get_or_none(m.Account.code == code)
        if account is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        names = {
            ab.id: b.name
            for ab, b in (
                (ab, m.Bundle.get_by_id(ab.bundle_id))
                for ab in m.AccountBundle.select().where(m.AccountBundle.account_id == account.id)
            )
        }
        rows = m.BundleEntry.select().where(m.BundleEntry.account_id == account.id).order_by(m.BundleEntry.id)
        return [
            EntryView(
                names[r.account_bundle_id], int(r.delta_s), r.kind, r.call_uuid, int(r.seconds_after), r.created_us
            )
            for r in rows
        ]


__all__ = [
    "BalanceView",
    "BundleView",
    "EntryView",
    "allowances",
    "balances",
    "covering",
    "create_bundle",
    "entries",
    "hold",
    "list_bundles",
    "renew_due",
    "settle_holds",
    "show_bundle",
    "start_balance",
]
