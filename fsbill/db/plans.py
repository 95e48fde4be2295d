"""Plans and subscriptions in the database (issue 23, docs/PLANS.md).

A plan is a recurring fee (a DID rental, a PBX seat, a trunk); a subscription ties an account
to a plan with a quantity, from an instant until it is ended. What is owed for them is decided
by fsbill.core.plans and posted by fsbill.db.charges. Every change here is audited in its
transaction (fsbill.db.audit).
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from fsbill.core.money import Money
from fsbill.core.plans import Period, check_fee, parse_period
from fsbill.db import audit
from fsbill.db import bundles as dbbundles
from fsbill.db.accounts import _valid_currency, account_for_update
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound
from fsbill.instant import iso


@dataclass(frozen=True)
class PlanView:
    id: int
    name: str
    fee: Money
    period: Period
    currency: str
    subscriptions: int = 0  # running ones (not ended)
    bundle: str = ""  # the bundle of minutes it sells (docs/BUNDLES.md), "" if none

    def as_json(self) -> dict:
        out = {
            "name": self.name,
            "fee": str(self.fee),
            "period": self.period.value,
            "currency": self.currency,
            "subscriptions": self.subscriptions,
        }
        return out | {"bundle": self.bundle} if self.bundle else out


@dataclass(frozen=True)
class SubscriptionView:
    id: int
    account: str
    plan: str
    fee: Money
    period: Period
    currency: str
    quantity: int
    start_us: int
    end_us: int | None
    charged: Money = Money(0)  # charges minus credits posted so far

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "account": self.account,
            "plan": self.plan,
            "fee": str(self.fee),
            "period": self.period.value,
            "currency": self.currency,
            "quantity": self.quantity,
            "from": iso(self.start_us),
            "until": iso(self.end_us),
            "charged": str(self.charged),
        }


def _plan_view(row: DbRow, running: int = 0, bundle: str = "") -> PlanView:
    return PlanView(row.id, row.name, Money(row.fee_micros), Period(row.period), row.currency, running, bundle)


def create_plan(
    store: Store,
    name: str,
    fee: Money,
    period: str,
    currency: str,
    now_us: int,
    *,
    actor: str = "cli",
    bundle: str | None = None,
) -> PlanView:
    """A plan; with `bundle`, it sells that bundle of minutes (docs/BUNDLES.md), and a fee of 0
    makes it a free allowance."""
    name = name.strip()
    if not name or len(name) > 64:
        raise InvalidInput(f"plan name must be 1-64 characters, got {name!r}")
    if not (bundle and fee.micros == 0):
        check_fee(fee)
    kind = parse_period(period)
    currency = _valid_currency(currency)
    m = store.models
    try:
        with store.transaction():
            bundle_id = dbbundles.bundle_row(store, bundle).id if bundle else None
            row = m.Plan.create(
                name=name,
                fee_micros=fee.micros,
                period=kind.value,
                currency=currency,
                created_us=now_us,
                bundle_id=bundle_id,
            )
            changes = [
                audit.Change("fee", None, str(fee)),
                audit.Change("period", None, kind.value),
                audit.Change("currency", None, currency),
            ]
            if bundle:
                changes.append(audit.Change("bundle", None, bundle))
            audit.record(store, actor, now_us, "add", "plan", name, changes)
    except peewee.IntegrityError:
        raise Conflict(f"plan {name!r} already exists") from None
    return _plan_view(row, 0, bundle or "")


def list_plans(store: Store) -> list[PlanView]:
    m = store.models
    with store.reading():
        running = dict(
            m.Subscription.select(m.Subscription.plan_id, peewee.fn.COUNT(m.Subscription.id))
            .where(m.Subscription.end_us.is_null())
            .group_by(m.Subscription.plan_id)
            .tuples()
        )
        bundles = dict(m.Bundle.select(m.Bundle.id, m.Bundle.name).tuples())
        return [
            _plan_view(p, running.get(p.id, 0), bundles.get(p.bundle_id, ""))
            for p in m.Plan.select().order_by(m.Plan.name)
        ]


def _plan(store: Store, name: str) -> DbRow:
    m = store.models
    row = m.Plan.get_or_none(m.Plan.name == name)
    if row is None:
        raise NotFound(f"no plan named {name!r} (see 'fsbill plan list')")
    return row


def subscribe(
    store: Store,
    code: str,
    plan_name: str,
    now_us: int,
    *,
    quantity: int = 1,
    start_us: int | None = None,
    actor: str = "cli",
) -> SubscriptionView:
    """Subscribe an account to a plan from `start_us` (default now). Refused: a plan in another
    currency than the account's, a closed account, a second running subscription to the same
    plan (change the quantity by unsubscribing and subscribing again)."""
    start = now_us if start_us is None else start_us
    m = store.models
    with store.transaction():
        account = account_for_update(store, code)
        if account is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        plan = _plan(store, plan_name)
        if not (plan.bundle_id and plan.fee_micros == 0):  # a free allowance has no fee to check
            check_fee(Money(plan.fee_micros), quantity)
        if account.status == "closed":
            raise InvalidInput(f"account {code!r} is closed: it takes no subscriptions")
        if plan.currency != account.currency:
            raise InvalidInput(
                f"plan {plan_name!r} is in {plan.currency} but account {code!r} pays in {account.currency}: "
                f"refused (create a plan in {account.currency})"
            )
        running = m.Subscription.get_or_none(
            (m.Subscription.account_id == account.id)
            & (m.Subscription.plan_id == plan.id)
            & m.Subscription.end_us.is_null()
        )
        if running is not None:
            raise Conflict(
                f"account {code!r} already subscribes to {plan_name!r} (since {iso(running.start_us)}, quantity "
                f"{running.quantity}); to change it, unsubscribe and subscribe again"
            )
        row = m.Subscription.create(
            account_id=account.id, plan_id=plan.id, quantity=quantity, start_us=start, created_us=now_us
        )
        if plan.bundle_id is not None:  # the plan sells a bundle of minutes: its balance starts now
            bundle = m.Bundle.get_by_id(plan.bundle_id)
            tz = m.Tariff.get_by_id(account.tariff_id).timezone
            dbbundles.start_balance(store, account.id, row.id, bundle, Period(plan.period), tz, start, quantity, now_us)
        changes = [audit.Change(f"plan:{plan_name}", None, f"quantity {quantity} from {iso(start)}")]
        audit.record(store, actor, now_us, "subscribe", "account", code, changes)
    return _subscription_view(row, code, plan)


def unsubscribe(
    store: Store, code: str, plan_name: str, now_us: int, *, at_us: int | None = None, actor: str = "cli"
) -> SubscriptionView:
    """End an account's running subscription to a plan at `at_us` (default now): nothing is
    charged for periods starting from then, and the unused part of a period already charged is
    credited (by `charges run`, once `at_us` has passed)."""
    end = now_us if at_us is None else at_us
    m = store.models
    with store.transaction():
        account = account_for_update(store, code)
        if account is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        plan = _plan(store, plan_name)
        row = m.Subscription.get_or_none(
            (m.Subscription.account_id == account.id)
            & (m.Subscription.plan_id == plan.id)
            & m.Subscription.end_us.is_null()
        )
        if row is None:
            raise NotFound(
                f"account {code!r} has no running subscription to {plan_name!r} (see 'fsbill subscriptions')"
            )
        if end < row.start_us:
            raise InvalidInput(
                f"--at {iso(end)} is before the subscription started ({iso(row.start_us)}): nothing was changed"
            )
        m.Subscription.update(end_us=end).where(m.Subscription.id == row.id).execute()
        row.end_us = end
        changes = [
            audit.Change(f"plan:{plan_name}", f"quantity {row.quantity} from {iso(row.start_us)}", f"until {iso(end)}")
        ]
        audit.record(store, actor, now_us, "unsubscribe", "account", code, changes)
    return _subscription_view(row, code, plan)


def _subscription_view(row: DbRow, code: str, plan: DbRow, charged: int = 0) -> SubscriptionView:
    return SubscriptionView(
        id=row.id,
        account=code,
        plan=plan.name,
        fee=Money(plan.fee_micros),
        period=Period(plan.period),
        currency=plan.currency,
        quantity=row.quantity,
        start_us=row.start_us,
        end_us=row.end_us,
        charged=Money(charged),
    )


def subscriptions(store: Store, code: str | None = None) -> list[SubscriptionView]:
    """Every subscription (of one account), running or ended, with what it was charged net."""
    m = store.models
    with store.reading():
        q = m.Subscription.select().order_by(m.Subscription.id)
        if code is not None:
            account = m.Account.get_or_none(m.Account.code == code)
            if account is None:
                raise NotFound(f"no account {code!r} (see 'fsbill account list')")
            q = q.where(m.Subscription.account_id == account.id)
        rows = list(q)
        codes = dict(m.Account.select(m.Account.id, m.Account.code).tuples())
        plans = {p.id: p for p in m.Plan.select()}
        totals: dict[int, int] = {}
        sums = m.Charge.select(m.Charge.subscription_id, m.Charge.kind, peewee.fn.SUM(m.Charge.amount_micros))
        for sub_id, kind, total in sums.group_by(m.Charge.subscription_id, m.Charge.kind).tuples():
            totals[sub_id] = totals.get(sub_id, 0) + (-int(total) if kind == "credit" else int(total))
        return [_subscription_view(r, codes[r.account_id], plans[r.plan_id], totals.get(r.id, 0)) for r in rows]


__all__ = ["PlanView", "SubscriptionView", "create_plan", "list_plans", "subscribe", "subscriptions", "unsubscribe"]
