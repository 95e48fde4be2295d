"""Exchange rates in the database (`fsbill fx set|list`; fsbill.core.fx converts).

A rate is one row per (source, target) pair, replaced by the next `fx set` of the same pair and
audited (entity `fx`, name `SOURCE/TARGET`, field `rate`, old and new as typed). What was
converted at a rate keeps it: a settled call's margin snapshots it on its `cdr_level` line, a
funding writes it in its ledger notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fsbill.core import fx
from fsbill.db import audit
from fsbill.db.connection import Store
from fsbill.errors import InvalidInput
from fsbill.instant import iso


@dataclass(frozen=True)
class FxView:
    source: str
    target: str
    rate: str
    updated_us: int

    @property
    def pair(self) -> str:
        return f"{self.source}/{self.target}"

    def as_json(self) -> dict:
        return {"from": self.source, "to": self.target, "rate": self.rate, "updated": iso(self.updated_us)}


def set_rate(store: Store, source: str, target: str, rate: str, now_us: int, *, actor: str) -> FxView:
    """Set (or replace) 1 `source` = `rate` `target`, checked, stored exactly, audited."""
    source, target, rate = fx.parse_currency(source), fx.parse_currency(target), fx.parse_rate(rate)
    if source == target:
        raise InvalidInput(f"a rate converts between two currencies, got {source} to {source}")
    m = store.models
    pair = f"{source}/{target}"
    with store.transaction():
        row = m.FxRate.get_or_none((m.FxRate.source == source) & (m.FxRate.target == target))
        old = None if row is None else str(row.rate)
        if row is None:
            m.FxRate.create(source=source, target=target, rate=rate, created_us=now_us, updated_us=now_us)
        elif old != rate:
            m.FxRate.update(rate=rate, updated_us=now_us).where(m.FxRate.id == row.id).execute()
        if old != rate:
            audit.record(store, actor, now_us, "set", "fx", pair, [audit.Change("rate", old, rate)])
    return get_rate(store, source, target)


def get_rate(store: Store, source: str, target: str) -> FxView:
    m = store.models
    with store.reading():
        row = m.FxRate.get((m.FxRate.source == source) & (m.FxRate.target == target))
        return FxView(row.source, row.target, row.rate, row.updated_us)


def list_rates(store: Store) -> list[FxView]:
    m = store.models
    with store.reading():
        q = m.FxRate.select().order_by(m.FxRate.source, m.FxRate.target)
        return [FxView(r.source, r.target, r.rate, r.updated_us) for r in q]


def rates_between(store: Store, currencies: Iterable[str]) -> fx.Rates:
    """The rates among `currencies`, read in the caller's transaction (or a read) by one query."""
    wanted = sorted(set(currencies))
    if len(wanted) < 2:
        return {}
    m = store.models
    q = m.FxRate.select(m.FxRate.source, m.FxRate.target, m.FxRate.rate).where(
        m.FxRate.source.in_(wanted) & m.FxRate.target.in_(wanted)
    )
    return {(r.source, r.target): r.rate for r in q}


__all__ = ["FxView", "get_rate", "list_rates", "rates_between", "set_rate"]
