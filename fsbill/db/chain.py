"""The levels above a payer in the database: read the chain, lock it top first, hold, extend
and settle every level's share of a call (fsbill.core.chain decides; docs/RESELLERS.md).

Lock order, the same everywhere: the chain's account rows from the top down, then the payer's
(`lock_levels` before fsbill.db.calls reads the payer under its lock), so calls of sibling
subtrees, and a `fund` from a parent to its child, never wait on each other in a cycle on
PostgreSQL (SQLite's BEGIN IMMEDIATE serializes writers anyway).

A payer without a parent costs one primary-key read here (`ancestors`) at admission, and one
indexed read of `call_hold` (no rows) at each heartbeat and settlement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace

import peewee

from fsbill.core import chain, fx
from fsbill.core.call import Charge, LiveCall
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.db import fx as dbfx
from fsbill.db.connection import Store
from fsbill.db.guards import read_guards, read_usage, record_call_start
from fsbill.db.ledger import pay_arrears, post
from fsbill.db.notices import check_low_balance
from fsbill.db.rows import account_state_of, rate_columns, rate_of
from fsbill.db.statements import ACCOUNT_COLUMNS, one
from fsbill.db.views import CdrView

HOLD_COLUMNS = (
    "account_id",
    "depth",
    "prefix",
    "rate_micros",
    "connect_fee_micros",
    "initial_increment_s",
    "increment_s",
    "min_duration_s",
    "rounding_decimals",
    "rounding_method",
    "held_micros",
    "debited_micros",
)


@dataclass(frozen=True)
class Ancestor:
    id: int
    tariff_id: int


def ancestors(store: Store, account_id: int) -> list[Ancestor]:
    """The accounts above `account_id`, top first (empty for a top-level account). A parent is
    set once, when an account is created, so this needs no lock."""
    p = store.db.param
    sql = f'SELECT "parent_id", "tariff_id" FROM "account" WHERE "id" = {p}'
    out: list[Ancestor] = []
    with store.reading() as db:
        found = db.execute_sql(sql, (account_id,)).fetchone()
        parent = None if found is None else found[0]  # an unknown account: reserve says so
        while parent is not None and len(out) < chain.MAX_DEPTH:
            found = db.execute_sql(sql, (parent,)).fetchone()
            out.append(Ancestor(parent, found[1]))
            parent = found[0]
    out.reverse()
    return out


def lock_levels(store: Store, ids: Sequence[int], rates: Sequence[Rate]) -> list[chain.Level]:
    """Lock the chain's rows top first (inside the caller's transaction) and read them."""
    levels = []
    for account_id, rate in zip(ids, rates, strict=True):
        acc = one(store.db, store.sql.account_by_id, (account_id,), ACCOUNT_COLUMNS)
        assert acc is not None  # an account is closed, never deleted
        levels.append(chain.Level(account_id, account_state_of(acc), rate))
    return levels


def with_guards(store: Store, levels: Sequence[chain.Level], now_us: int, *, calls: bool) -> list[chain.Level]:
    """The levels with their fraud guards and what those count, read under the same locks
    (`calls`: the calls of the last minute too, for admission; heartbeats need only the caps)."""
    out = []
    for lv in levels:
        guards, tz = read_guards(store, store.db, lv.account_id)
        if guards.is_empty or (not calls and not guards.has_caps):
            out.append(lv)
            continue
        usage = read_usage(store, store.db, lv.account_id, guards, tz, now_us, calls=calls)
        out.append(replace(lv, account=replace(lv.account, guards=guards, usage=usage)))
    return out


def count_call_start(store: Store, levels: Sequence[chain.Level], now_us: int) -> None:
    """Count an admitted call at each level whose calls per minute are capped."""
    for lv in levels:
        g = lv.account.guards
        if g is not None and g.max_calls_per_minute is not None:
            record_call_start(store, store.db, lv.account_id, now_us)


def rate_levels(
    store: Store, chain_of: Sequence[Ancestor], rate_for: Callable[[int], Rate | None]
) -> list[Rate] | None:
    """The call's rate in each ancestor's tariff (None: some level has no rate for it)."""
    rates = [rate_for(a.tariff_id) for a in chain_of]
    return None if any(r is None for r in rates) else [r for r in rates if r is not None]


def hold_first(store: Store, uuid: str, visit: int, holds: Sequence[chain.LevelHold]) -> None:
    """Write each level's hold of an admitted call and count it on the level's channels."""
    db, p = store.db, store.db.param
    sql = f'INSERT INTO "call_hold" ("uuid", "visit", {", ".join(HOLD_COLUMNS)}) VALUES ({", ".join([p] * 14)})'
    for h in holds:
        c = rate_columns(h.rate)
        db.execute_sql(
            sql,
            (
                uuid,
                visit,
                h.account_id,
                h.depth,
                c["prefix"],
                c["rate_micros"],
                c["connect_fee_micros"],
                c["initial_increment_s"],
                c["increment_s"],
                c["min_duration_s"],
                h.rate.rounding.decimals,
                h.rate.rounding.method.value,
                h.held.micros,
                0,
            ),
        )
        db.execute_sql(store.sql.hold, (h.held.micros, 1, h.account_id))


def read_holds(store: Store, uuid: str, visit: int) -> list[chain.LevelHold]:
    """A live call's holds above its payer, top first (empty for a one-level call)."""
    p = store.db.param
    sql = f'SELECT {", ".join(HOLD_COLUMNS)} FROM "call_hold" WHERE "uuid" = {p} AND "visit" = {p} ORDER BY "depth"'
    rows = store.db.execute_sql(sql, (uuid, visit)).fetchall()
    out = []
    for values in rows:
        r = dict(zip(HOLD_COLUMNS, values, strict=True))
        rate = rate_of(SimpleNamespace(**r))
        out.append(
            chain.LevelHold(r["account_id"], r["depth"], rate, Money(r["held_micros"]), Money(r["debited_micros"]))
        )
    return out


def lock_held(store: Store, holds: Sequence[chain.LevelHold]) -> list[chain.Level]:
    """Lock the accounts of a live call's holds, top first (they are read top first)."""
    return lock_levels(store, [h.account_id for h in holds], [h.rate for h in holds])


def beat_levels(store: Store, uuid: str, visit: int, beats: Sequence[chain.LevelBeat], now_us: int) -> None:
    """Post each level's heartbeat debit and hold its extension (all in the caller's transaction)."""
    db, p = store.db, store.db.param
    sql = (
        f'UPDATE "call_hold" SET "held_micros" = {p}, "debited_micros" = {p} '
        f'WHERE "uuid" = {p} AND "visit" = {p} AND "account_id" = {p}'
    )
    for b in beats:
        h = b.hold
        if b.debit:
            post(
                store,
                h.account_id,
                -b.debit,
                "call",
                now_us,
                call_uuid=uuid,
                note="heartbeat",
                release_micros=b.debit.micros,
            )
        if b.extra_hold:
            db.execute_sql(store.sql.hold, (b.extra_hold.micros, 0, h.account_id))
        db.execute_sql(sql, (h.held.micros, h.debited.micros, uuid, visit, h.account_id))
        if b.debit:
            check_low_balance(store, h.account_id, now_us)  # docs/NOTICES.md, at every level


def settle_levels(
    store: Store,
    call: LiveCall,
    holds: Sequence[chain.LevelHold],
    levels: Sequence[chain.Level],
    start_us: int | None,
    end_us: int | None,
    now_us: int,
    recovered: bool,
    payer_cost: Money,
    payer_currency: str,
) -> None:
    """Charge every level its own rated cost for the payer's billed window, release its hold
    and channel, and write its line of the CDR (cdr_level), margins against the level below
    (across currencies at the exchange rate set now, snapshotted on the line: fsbill.core.fx)."""
    db, p = store.db, store.db.param
    charges: list[Charge] = []
    for h, lv in zip(holds, levels, strict=True):
        charge = chain.settle_level(call, h, lv.account, start_us, end_us, not recovered)
        note = "recovered" if recovered else "settlement"
        if charge.post:
            post(
                store,
                h.account_id,
                -charge.post,
                "call",
                now_us,
                call_uuid=call.uuid,
                note=note,
                release_micros=charge.release.micros,
            )
            db.execute_sql(store.sql.hold, (0, -1, h.account_id))
        else:
            db.execute_sql(store.sql.hold, (-charge.release.micros, -1, h.account_id))
        if lv.account.arrears:  # the released hold pays the level's arrears first
            pay_arrears(store, h.account_id, now_us)
        check_low_balance(store, h.account_id, now_us)  # docs/NOTICES.md, at every level
        charges.append(charge)
    db.execute_sql(f'DELETE FROM "call_hold" WHERE "uuid" = {p} AND "visit" = {p}', (call.uuid, call.visit))
    codes = {
        r[0]: (r[1], r[2])
        for r in db.execute_sql(
            f'SELECT "id", "code", "currency" FROM "account" WHERE "id" IN ({", ".join([p] * len(holds))})',
            [h.account_id for h in holds],
        ).fetchall()
    }
    currencies = [codes[h.account_id][1] for h in holds]
    rates = dbfx.rates_between(store, [*currencies, payer_currency])  # no query for one currency
    margins = fx.margins(
        list(zip([c.cost for c in charges], currencies, strict=True)), (payer_cost, payer_currency), rates
    )
    m = store.models
    for h, c, lm in zip(holds, charges, margins, strict=True):
        code, currency = codes[h.account_id]
        m.CdrLevel.insert(
            uuid=call.uuid,
            visit=call.visit,
            depth=h.depth,
            account_code=code,
            currency=currency,
            prefix=h.rate.prefix,
            rate_micros=h.rate.rate.micros,
            billed_s=c.billed_s,
            cost_micros=c.cost.micros,
            charged_micros=c.charged.micros,
            uncollected_micros=c.uncollected.micros,
            margin_micros=None if lm.margin is None else lm.margin.micros,
            fx_pair=None if lm.fx is None else lm.fx.pair,
            fx_rate=None if lm.fx is None else lm.fx.rate,
        ).execute()


@dataclass(frozen=True)
class LevelLine:
    """One level above the payer on a settled call's CDR."""

    depth: int
    account: str
    currency: str
    rate: Money  # per minute, in the level's tariff
    billed_s: int
    cost: Money
    charged: Money
    uncollected: Money
    margin: Money | None  # what the level below paid (in this level's currency) minus this level's cost
    fx_pair: str | None = None  # the rate the margin was converted at ("RUB/USD"); None: one currency
    fx_rate: str | None = None

    def as_json(self) -> dict:
        return {
            "depth": self.depth,
            "account": self.account,
            "currency": self.currency,
            "rate": str(self.rate),
            "billed_s": self.billed_s,
            "cost": str(self.cost),
            "charged": str(self.charged),
            "uncollected": str(self.uncollected),
            "margin": None if self.margin is None else str(self.margin),
            "fx_pair": self.fx_pair,
            "fx_rate": self.fx_rate,
        }


def cdr_levels(store: Store, uuid: str, visit: int) -> list[LevelLine]:
    """A settled call's lines for the levels above its payer, top first (empty for one level)."""
    m = store.models
    with store.reading():
        rows = (
            m.CdrLevel.select()
            .where((m.CdrLevel.uuid == uuid) & (m.CdrLevel.visit == visit))
            .order_by(m.CdrLevel.depth)
        )
        return [
            LevelLine(
                r.depth,
                r.account_code,
                r.currency,
                Money(r.rate_micros),
                r.billed_s,
                Money(r.cost_micros),
                Money(r.charged_micros),
                Money(r.uncollected_micros),
                None if r.margin_micros is None else Money(r.margin_micros),
                r.fx_pair,
                r.fx_rate,
            )
            for r in rows
        ]


def of_account(store: Store, account: str) -> peewee.Expression:
    """The CDRs an account's export lists: its own calls and, for a reseller, the calls of its
    subtree, which it paid for at its own rate (a line of cdr_level). Call inside a read."""
    m = store.models
    own = m.Cdr.account_code == account
    acc = m.Account.get_or_none(m.Account.code == account)
    if acc is None or m.Account.get_or_none(m.Account.parent_id == acc.id) is None:
        return own  # no children: the plain, indexed query
    below = m.CdrLevel.select(m.CdrLevel.uuid).where(
        (m.CdrLevel.account_code == account) & (m.CdrLevel.uuid == m.Cdr.uuid) & (m.CdrLevel.visit == m.Cdr.visit)
    )
    return own | peewee.fn.EXISTS(below)


def at_level(store: Store, views: Sequence[CdrView], account: str) -> list[CdrView]:
    """CDRs as `account` sees the calls of its subtree: its own rate, billed seconds, cost,
    charge, currency and margin (what the level below paid minus its cost) in place of the
    caller's. Its own calls, and CDRs it has no line on, are unchanged."""
    out = []
    for v in views:
        if v.account != account:
            mine = [line for line in cdr_levels(store, v.uuid, v.visit) if line.account == account]
            if mine:
                line = mine[0]
                v = replace(
                    v,
                    currency=line.currency,
                    rate=line.rate,
                    billed_s=line.billed_s,
                    cost=line.cost,
                    charged=line.charged,
                    uncollected=line.uncollected,
                    margin=line.margin,
                    fx_pair=line.fx_pair or "",
                    fx_rate=line.fx_rate or "",
                )
        out.append(v)
    return out
