"""What operators read about calls: CDRs and live calls, as plain views of their rows."""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from fsbill.core.money import Money
from fsbill.core.routing import Attempt
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.instant import iso


@dataclass(frozen=True)
class CdrView:
    uuid: str
    visit: int  # the channel's socket visit this leg was (1, then 2 after a transfer back...)
    account: str
    node: str
    caller: str
    destination: str
    prefix: str
    currency: str
    rate: Money
    connect_fee: Money
    initial_increment_s: int
    increment_s: int
    min_duration_s: int
    start_us: int
    answer_us: int | None
    end_us: int | None
    billsec: int
    billed_s: int
    cost: Money
    charged: Money
    uncollected: Money
    balance_before: Money | None
    balance_after: Money | None
    hangup_cause: str
    result: str
    reason: str
    vendor: str = ""  # the vendor that carried the call (least-cost routing), "" if none
    vendor_cost: Money | None = None
    margin: Money | None = None
    attempts: tuple[Attempt, ...] = ()  # vendors tried, when this view comes from the settlement
    # FreeSWITCH's CDR fields (the B leg, the accountcode variable, caller id name, context)
    bleg_uuid: str = ""
    accountcode: str = ""
    caller_id_name: str = ""
    context: str = ""
    direction: str = "outbound"  # outbound | inbound (docs/DIDS.md)
    did: str = ""  # the inbound number called
    bundle_s: int = 0  # seconds taken from bundles (docs/BUNDLES.md); money stays in cost/charged
    # a reseller's view of a call of its subtree (fsbill.db.chain.at_level): the exchange rate its
    # margin was converted at, "" when none was needed or none was set (docs/RESELLERS.md)
    fx_pair: str = ""
    fx_rate: str = ""

    FIELDS = (
        "uuid",
        "visit",
        "account",
        "node",
        "caller",
        "destination",
        "prefix",
        "currency",
        "rate",
        "connect_fee",
        "initial_increment_s",
        "increment_s",
        "min_duration_s",
        "start",
        "answer",
        "end",
        "billsec",
        "billed_s",
        "cost",
        "charged",
        "uncollected",
        "balance_before",
        "balance_after",
        "hangup_cause",
        "result",
        "reason",
        "vendor",
        "vendor_cost",
        "margin",
        "direction",
        "did",
        "bundle_s",
        "fx_pair",
        "fx_rate",
    )

    def as_json(self) -> dict:
        def money(m: Money | None) -> str | None:
            return None if m is None else str(m)

        return {
            "uuid": self.uuid,
            "visit": self.visit,
            "account": self.account,
            "node": self.node,
            "caller": self.caller,
            "destination": self.destination,
            "prefix": self.prefix,
            "currency": self.currency,
            "rate": money(self.rate),
            "connect_fee": money(self.connect_fee),
            "initial_increment_s": self.initial_increment_s,
            "increment_s": self.increment_s,
            "min_duration_s": self.min_duration_s,
            "start": iso(self.start_us),
            "answer": iso(self.answer_us),
            "end": iso(self.end_us),
            "billsec": self.billsec,
            "billed_s": self.billed_s,
            "cost": money(self.cost),
            "charged": money(self.charged),
            "uncollected": money(self.uncollected),
            "balance_before": money(self.balance_before),
            "balance_after": money(self.balance_after),
            "hangup_cause": self.hangup_cause,
            "result": self.result,
            "reason": self.reason,
            "vendor": self.vendor,
            "vendor_cost": money(self.vendor_cost),
            "margin": money(self.margin),
            "direction": self.direction,
            "did": self.did,
            "bundle_s": self.bundle_s,
            "fx_pair": self.fx_pair or None,
            "fx_rate": self.fx_rate or None,
        }


def _cdr_view(row: DbRow) -> CdrView:
    def opt(v: int | None) -> Money | None:
        return None if v is None else Money(v)

    return CdrView(
        uuid=row.uuid,
        visit=row.visit,
        account=row.account_code,
        node=row.node,
        caller=row.caller,
        destination=row.destination,
        prefix=row.prefix,
        currency=row.currency,
        rate=Money(row.rate_micros),
        connect_fee=Money(row.connect_fee_micros),
        initial_increment_s=row.initial_increment_s,
        increment_s=row.increment_s,
        min_duration_s=row.min_duration_s,
        start_us=row.start_us,
        answer_us=row.answer_us,
        end_us=row.end_us,
        billsec=row.billsec,
        billed_s=row.billed_s,
        cost=Money(row.cost_micros),
        charged=Money(row.charged_micros),
        uncollected=Money(row.uncollected_micros),
        balance_before=opt(row.balance_before_micros),
        balance_after=opt(row.balance_after_micros),
        hangup_cause=row.hangup_cause,
        result=row.result,
        reason=row.reason,
        vendor=getattr(row, "vendor", "") or "",
        vendor_cost=opt(getattr(row, "vendor_cost_micros", None)),
        margin=opt(getattr(row, "margin_micros", None)),
        bleg_uuid=getattr(row, "bleg_uuid", "") or "",
        accountcode=getattr(row, "accountcode", "") or "",
        caller_id_name=getattr(row, "caller_id_name", "") or "",
        context=getattr(row, "context", "") or "",
        direction=getattr(row, "direction", "") or "outbound",
        did=getattr(row, "did", "") or "",
        bundle_s=getattr(row, "bundle_s", 0) or 0,
    )


# -- queries for operators ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveCallView:
    uuid: str
    visit: int
    account: str
    node: str
    caller: str
    destination: str
    prefix: str
    rate: Money
    granted_s: int
    held: Money
    debited: Money
    created_us: int
    answered_us: int | None
    cutoff_us: int | None
    lease_until_us: int

    def as_json(self) -> dict:
        return {
            "uuid": self.uuid,
            "visit": self.visit,
            "account": self.account,
            "node": self.node,
            "caller": self.caller,
            "destination": self.destination,
            "prefix": self.prefix,
            "rate": str(self.rate),
            "granted_s": self.granted_s,
            "held": str(self.held),
            "debited": str(self.debited),
            "created": iso(self.created_us),
            "answered": iso(self.answered_us),
            "cutoff": iso(self.cutoff_us),
            "lease_until": iso(self.lease_until_us),
        }


def live_calls(store: Store, account: str | None = None) -> list[LiveCallView]:
    m = store.models
    with store.reading():
        q = m.LiveCall.select(m.LiveCall, m.Account.code).join(m.Account)
        if account:
            q = q.where(m.Account.code == account)
        return [
            LiveCallView(
                r.uuid,
                r.visit,
                r.account.code,
                r.node,
                r.caller,
                r.destination,
                r.prefix,
                Money(r.rate_micros),
                r.granted_s,
                Money(r.held_micros),
                Money(r.debited_micros),
                r.created_us,
                r.answered_us,
                r.cutoff_us,
                r.lease_until_us,
            )
            for r in q.order_by(m.LiveCall.created_us)
        ]


def cdrs(
    store: Store,
    *,
    account: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[CdrView]:
    m = store.models
    with store.reading():
        q = cdr_query(store, account, since_us, until_us)
        return [_cdr_view(r) for r in q.order_by(m.Cdr.start_us, m.Cdr.id)]


def cdr_query(
    store: Store, account: str | None, since_us: int | None, until_us: int | None
) -> peewee.ModelSelect[DbRow]:
    """The CDRs of `account` (all accounts if None) that started in [since_us, until_us)."""
    m = store.models
    q = m.Cdr.select()
    if account:
        q = q.where(m.Cdr.account_code == account)
    if since_us is not None:
        q = q.where(m.Cdr.start_us >= since_us)
    if until_us is not None:
        q = q.where(m.Cdr.start_us < until_us)
    return q
