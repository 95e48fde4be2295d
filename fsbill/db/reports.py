"""Reports over settled calls: the margin per vendor, account or prefix, and vendor quality.

The operator's margin (`margin`) is the top account's cost minus the vendor's cost. A
reseller's (`reseller_margin`) is, over the calls of its subtree, what the level below it paid
(in the reseller's currency, at the rate snapshotted on the call's cdr_level line) minus what
the reseller paid its own parent (docs/RESELLERS.md).

Sums are taken by the database over integer micro-units (exact; PostgreSQL returns NUMERIC for a
SUM of BIGINT, converted back to int here). Calls are selected by their start, like
`fsbill cdr export`.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from fsbill.core.money import Money
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import NotFound

MARGIN_GROUPS = ("vendor", "account", "prefix")


@dataclass(frozen=True)
class MarginRow:
    key: str
    currency: str
    calls: int
    billed_s: int
    cost: Money
    vendor_cost: Money
    margin: Money

    def as_json(self, by: str) -> dict:
        return {
            by: self.key,
            "currency": self.currency,
            "calls": self.calls,
            "billed_s": self.billed_s,
            "cost": str(self.cost),
            "vendor_cost": str(self.vendor_cost),
            "margin": str(self.margin),
        }


def _window(query: peewee.ModelSelect[DbRow], field: peewee.Field, since_us: int | None, until_us: int | None):
    if since_us is not None:
        query = query.where(field >= since_us)
    if until_us is not None:
        query = query.where(field < until_us)
    return query


def margin(
    store: Store, by: str = "vendor", since_us: int | None = None, until_us: int | None = None
) -> list[MarginRow]:
    """Σ cost, Σ vendor_cost and Σ margin of the calls a vendor carried, grouped by `by`."""
    m = store.models
    key = {"vendor": m.Cdr.vendor, "account": m.Cdr.account_code, "prefix": m.Cdr.prefix}[by]
    fn = peewee.fn
    query = (
        m.Cdr.select(
            key,
            m.Cdr.currency,
            fn.COUNT(m.Cdr.id),
            fn.SUM(m.Cdr.billed_s),
            fn.SUM(m.Cdr.cost_micros),
            fn.SUM(m.Cdr.vendor_cost_micros),
            fn.SUM(m.Cdr.margin_micros),
        )
        .where((m.Cdr.vendor != "") & m.Cdr.vendor_cost_micros.is_null(False))
        .group_by(key, m.Cdr.currency)
        .order_by(key, m.Cdr.currency)
    )
    query = _window(query, m.Cdr.start_us, since_us, until_us)
    with store.reading():
        rows = query.tuples()
        return [
            MarginRow(k, cur, int(n), int(b or 0), Money(int(c or 0)), Money(int(v or 0)), Money(int(g or 0)))
            for k, cur, n, b, c, v, g in rows
        ]


@dataclass(frozen=True)
class ResellerMarginRow:
    """A reseller's calls of its subtree in one group, in its own currency. `margin` sums the
    calls that have one; `no_rate_calls` counts those without (the level below paid in another
    currency and no exchange rate was set when they settled): None when no call has one."""

    key: str
    currency: str
    calls: int
    billed_s: int
    cost: Money  # what the reseller paid its parent
    margin: Money | None
    no_rate_calls: int

    def as_json(self, by: str) -> dict:
        return {
            by: self.key,
            "currency": self.currency,
            "calls": self.calls,
            "billed_s": self.billed_s,
            "cost": str(self.cost),
            "margin": None if self.margin is None else str(self.margin),
            "no_rate_calls": self.no_rate_calls,
        }


def reseller_margin(
    store: Store, account: str, by: str = "account", since_us: int | None = None, until_us: int | None = None
) -> list[ResellerMarginRow]:
    """`account`'s margin over the calls of its subtree (its lines of cdr_level; its own calls,
    which nobody below it paid for, have none), grouped by `by`: the caller's account, the
    vendor that carried the call, or the prefix of `account`'s own rate."""
    m = store.models
    line = m.CdrLevel
    key = {"vendor": m.Cdr.vendor, "account": m.Cdr.account_code, "prefix": line.prefix}[by]
    fn = peewee.fn
    unpriced = fn.SUM(peewee.Case(None, [(line.margin_micros.is_null(True), 1)], 0))
    query = (
        line.select(
            key,
            line.currency,
            fn.COUNT(line.uuid),
            fn.SUM(line.billed_s),
            fn.SUM(line.cost_micros),
            fn.SUM(line.margin_micros),
            unpriced,
        )
        .join(m.Cdr, on=((m.Cdr.uuid == line.uuid) & (m.Cdr.visit == line.visit)))
        .where(line.account_code == account)
        .group_by(key, line.currency)
        .order_by(key, line.currency)
    )
    query = _window(query, m.Cdr.start_us, since_us, until_us)
    with store.reading():
        if m.Account.get_or_none(m.Account.code == account) is None:
            raise NotFound(f"no account {account!r}")
        rows = query.tuples()
        return [
            ResellerMarginRow(
                k, cur, int(n), int(b or 0), Money(int(c or 0)), None if g is None else Money(int(g)), int(u or 0)
            )
            for k, cur, n, b, c, g, u in rows
        ]


@dataclass(frozen=True)
class QualityRow:
    vendor: str
    attempts: int
    answered: int
    failed: int
    billsec: int  # Σ billsec of the calls it carried
    carried: int  # calls with a CDR naming it

    @property
    def asr_percent(self) -> str:
        """Answer-seizure ratio: answered / attempts, in percent with 2 decimals (half up)."""
        if not self.attempts:
            return "0.00"
        hundredths = (self.answered * 10000 * 2 + self.attempts) // (2 * self.attempts)
        return f"{hundredths // 100}.{hundredths % 100:02d}"

    @property
    def acd_s(self) -> str:
        """Average call duration of the calls it carried, in seconds with 1 decimal (half up)."""
        if not self.carried:
            return "0.0"
        tenths = (self.billsec * 10 * 2 + self.carried) // (2 * self.carried)
        return f"{tenths // 10}.{tenths % 10}"

    def as_json(self) -> dict:
        return {
            "vendor": self.vendor,
            "attempts": self.attempts,
            "answered": self.answered,
            "failed": self.failed,
            "asr": self.asr_percent,
            "acd_s": self.acd_s,
            "billsec": self.billsec,
        }


def quality(store: Store, since_us: int | None = None, until_us: int | None = None) -> list[QualityRow]:
    """Per vendor: attempts, answered, failed (from the attempts each call recorded), ASR and ACD."""
    m = store.models
    fn = peewee.fn
    answered = fn.SUM(peewee.Case(None, [(m.VendorAttempt.result == "answered", 1)], 0))
    attempts = _window(
        m.VendorAttempt.select(m.VendorAttempt.vendor, fn.COUNT(m.VendorAttempt.id), answered).group_by(
            m.VendorAttempt.vendor
        ),
        m.VendorAttempt.start_us,
        since_us,
        until_us,
    )
    carried = _window(
        m.Cdr.select(m.Cdr.vendor, fn.COUNT(m.Cdr.id), fn.SUM(m.Cdr.billsec))
        .where(m.Cdr.vendor != "")
        .group_by(m.Cdr.vendor),
        m.Cdr.start_us,
        since_us,
        until_us,
    )
    with store.reading():
        tried = {v: (int(n), int(a or 0)) for v, n, a in attempts.tuples()}
        durations = {v: (int(n), int(s or 0)) for v, n, s in carried.tuples()}
    out = []
    for vendor in sorted(set(tried) | set(durations)):
        n, a = tried.get(vendor, (0, 0))
        c, s = durations.get(vendor, (0, 0))
        out.append(QualityRow(vendor, n, a, n - a, s, c))
    return out


__all__ = [
    "MARGIN_GROUPS",
    "MarginRow",
    "QualityRow",
    "ResellerMarginRow",
    "margin",
    "quality",
    "reseller_margin",
]
