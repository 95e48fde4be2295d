"""`charges run`: post every recurring charge and credit due, exactly once (docs/PLANS.md).

What is due is decided by the pure core (fsbill.core.plans) from the subscription and the
charges already posted. Each charge (or credit) is then posted in its own short transaction
that locks the account's row, re-reads the subscription, inserts the `charge` row — unique per
(subscription, period start, kind) — and writes the ledger entry with it. Nothing else records
progress: there is no counter to advance in a second statement (A2Billing's double charge
after a crash), so a run that crashes, or two nodes running at once, can neither charge a
period twice nor skip one; the next run posts whatever is still missing.

A charge never takes money live calls hold (fsbill.core.arrears): it takes what is available
and records the rest as arrears on the account, which the next money in pays first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import peewee

from fsbill.core.arrears import split_charge
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.notices import ARREARS, CHARGE_POSTED
from fsbill.core.plans import Charged, Due, Period, Terms, charge_due, credit_due, due, finished
from fsbill.db.bundles import renew_due
from fsbill.db.connection import Store
from fsbill.db.ledger import pay_arrears, post
from fsbill.db.notices import check_low_balance, raise_notice
from fsbill.db.rows import DbRow, account_state_of
from fsbill.db.statements import ACCOUNT_COLUMNS, one
from fsbill.db.statements import row as as_row

MAX_US = 2**62  # later than any instant
# One run posts at most this many charges (each its own transaction); the next run continues.
DEFAULT_LIMIT = 10_000


@dataclass
class RunReport:
    charges: int = 0
    credits: int = 0
    skipped: int = 0  # already posted by another run (another node, a concurrent cron)
    arrears_paid: int = 0  # accounts whose arrears were paid from money that became available
    more: bool = False  # stopped at the limit: run again
    bundles_renewed: int = 0  # bundle balances whose period turned (fsbill.db.bundles, docs/BUNDLES.md)
    # per currency: charged (taken + owed), credited, owed as arrears, arrears paid
    charged: Counter[str] = field(default_factory=Counter)
    credited: Counter[str] = field(default_factory=Counter)
    owed: Counter[str] = field(default_factory=Counter)
    paid: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict:
        def amounts(c: Counter[str]) -> dict[str, str]:
            return {cur: str(Money(v)) for cur, v in sorted(c.items()) if v}

        return {
            "charges": self.charges,
            "credits": self.credits,
            "skipped": self.skipped,
            "arrears_paid": self.arrears_paid,
            "more": self.more,
            "bundles_renewed": self.bundles_renewed,
            "charged": amounts(self.charged),
            "credited": amounts(self.credited),
            "arrears": amounts(self.owed),
            "paid": amounts(self.paid),
        }


@dataclass(frozen=True)
class _Sub:
    id: int
    account_id: int
    plan: str
    terms: Terms


def _terms(row: DbRow) -> Terms:
    return Terms(
        fee=Money(row.fee_micros),
        period=Period(row.period),
        quantity=row.quantity,
        start_us=row.start_us,
        end_us=row.end_us,
        tz=row.timezone,
        rounding=RoundingRule(row.rounding_decimals, RoundingMethod(row.rounding_method)),
    )


_SUB_SQL = (
    'SELECT s."id", s."account_id", p."name", p."fee_micros", p."period", s."quantity", s."start_us", s."end_us", '
    't."timezone", t."rounding_decimals", t."rounding_method" '
    'FROM "subscription" s JOIN "plan" p ON p."id" = s."plan_id" '
    'JOIN "account" a ON a."id" = s."account_id" JOIN "tariff" t ON t."id" = a."tariff_id" '
)
_SUB_COLUMNS = (
    "id",
    "account_id",
    "plan",
    "fee_micros",
    "period",
    "quantity",
    "start_us",
    "end_us",
    "timezone",
    "rounding_decimals",
    "rounding_method",
)


def _sub(row: DbRow) -> _Sub:
    return _Sub(row.id, row.account_id, row.plan, _terms(row))


_CHARGE_SQL = 'SELECT "period_start_us", "kind", "amount_micros", "from_us", "until_us" FROM "charge" '


def _posted(
    db: peewee.Database, p: str, sub: _Sub, period_start_us: int | None = None
) -> tuple[dict[int, Charged], set[int]]:
    """What was posted for the subscription, as far as deciding what is due needs it: its last
    charged period (charges are posted in order) and the periods that reach past its end (they
    may owe a credit); or, with `period_start_us`, that one period. Never its whole history,
    which for a daily plan grows by a row a day."""
    params: tuple[int, ...]
    if period_start_us is not None:
        where, params = f'"subscription_id" = {p} AND "period_start_us" = {p}', (sub.id, period_start_us)
    else:
        end = sub.terms.end_us if sub.terms.end_us is not None else MAX_US
        where = (
            f'"subscription_id" = {p} AND ("until_us" > {p} OR "period_start_us" = '
            f'(SELECT MAX("period_start_us") FROM "charge" WHERE "subscription_id" = {p} AND "kind" = \'charge\'))'
        )
        params = (sub.id, end, sub.id)
    rows = db.execute_sql(_CHARGE_SQL + "WHERE " + where, params).fetchall()
    charged = {r[0]: Charged(Money(r[2]), r[3], r[4]) for r in rows if r[1] == "charge"}
    credited = {r[0] for r in rows if r[1] == "credit"}
    return charged, credited


def run_charges(store: Store, now_us: int, *, node: str = "", limit: int = DEFAULT_LIMIT) -> RunReport:
    """Post every charge and credit due by `now_us`; then let accounts in arrears pay them from
    whatever became available. Idempotent; safe on several nodes at once."""
    report = RunReport()
    p = store.db.param
    with store.reading() as db:
        rows = db.execute_sql(
            # a plan of fee 0 is a free bundle allowance: nothing to charge, only its bundle to renew
            _SUB_SQL + f'WHERE s."done_us" IS NULL AND s."start_us" <= {p} AND p."fee_micros" <> 0 ORDER BY s."id"',
            (now_us,),
        ).fetchall()
    subs = [_sub(as_row(_SUB_COLUMNS, r)) for r in rows]
    budget = limit
    for sub in subs:
        with store.reading() as db:
            charged, credited = _posted(db, p, sub)
        items = due(sub.terms, now_us, charged, frozenset(credited), limit=budget)
        for item in items:
            _post_one(store, sub, item, now_us, node, report)
        if len(items) < budget and finished(sub.terms, now_us):
            _mark_done(store, sub.id, now_us)
        budget -= len(items)
        if budget <= 0:  # perhaps more is due: the next run goes on from there
            report.more = True
            break
    _sweep_arrears(store, now_us, report)
    report.bundles_renewed = renew_due(store, now_us)
    return report


def _post_one(store: Store, known: _Sub, item: Due, now_us: int, node: str, report: RunReport) -> None:
    """One charge or credit in one transaction, decided again under the account's lock from the
    subscription as it is now (an unsubscribe, which takes the same lock, may have come in since
    the run read it)."""
    q, p = store.sql, store.db.param
    try:
        with store.transaction() as db:
            acc = one(db, q.account_by_id, (known.account_id,), ACCOUNT_COLUMNS)  # locks the account
            fresh = one(db, _SUB_SQL + f'WHERE s."id" = {p}', (known.id,), _SUB_COLUMNS)
            if acc is None or fresh is None:
                return
            sub = _sub(fresh)
            start = item.span.start_us
            charged, credited = _posted(db, p, sub, start)
            if item.kind == "charge":
                if start in charged:
                    report.skipped += 1
                    return
                if acc.status == "closed":
                    return  # a closed account takes no money in or out; nothing is owed on it
                again = charge_due(sub.terms, item.span)
                if again is None:
                    return
                _charge(store, db, acc, sub, again, now_us, node, report)
            else:
                if start in credited:
                    report.skipped += 1
                    return
                was = charged.get(start)
                again = credit_due(sub.terms, item.span, was) if was is not None else None
                if again is None:
                    return
                _credit(store, db, acc, sub, again, now_us, node, report)
    except peewee.IntegrityError:
        report.skipped += 1  # another node inserted the same (subscription, period, kind) first


def _label(sub: _Sub, item: Due) -> str:
    """The ledger note: which plan, which part of which period (local times of the tariff)."""
    zone = ZoneInfo(sub.terms.tz)

    def local(us: int) -> str:
        return datetime.fromtimestamp(us // 1_000_000, tz=zone).strftime("%Y-%m-%d %H:%M")

    quantity = f" x{sub.terms.quantity}" if sub.terms.quantity != 1 else ""
    return f"plan {sub.plan}{quantity}, {local(item.from_us)} to {local(item.until_us)} {sub.terms.tz}"


def _insert(
    db: peewee.Database, p: str, sub: _Sub, item: Due, taken: Money, owed: Money, now_us: int, node: str
) -> None:
    db.execute_sql(
        'INSERT INTO "charge" ("subscription_id", "account_id", "period_start_us", "kind", "from_us", "until_us", '
        '"amount_micros", "taken_micros", "arrears_micros", "created_us", "node") '
        f"VALUES ({', '.join([p] * 11)})",
        (
            sub.id,
            sub.account_id,
            item.span.start_us,
            item.kind,
            item.from_us,
            item.until_us,
            item.amount.micros,
            taken.micros,
            owed.micros,
            now_us,
            node,
        ),
    )


def _charge(
    store: Store, db: peewee.Database, acc: DbRow, sub: _Sub, item: Due, now_us: int, node: str, report: RunReport
) -> None:
    state = account_state_of(acc)
    split = split_charge(item.amount, state.available)
    _insert(db, store.db.param, sub, item, split.taken, split.arrears, now_us, node)  # first: unique per period
    if split.taken:
        post(store, acc.id, -split.taken, "charge", now_us, note=_label(sub, item))
    if split.arrears:
        db.execute_sql(store.sql.owe, (split.arrears.micros, acc.id))
        report.owed[acc.currency] += split.arrears.micros
    # the account's notices, in the charge's transaction (docs/NOTICES.md)
    period = f"{_iso(item.from_us)} to {_iso(item.until_us)}"
    base = {"account": acc.code, "currency": acc.currency, "plan": sub.plan, "period": period}
    raise_notice(
        store,
        CHARGE_POSTED,
        acc.code,
        base | {"amount": str(item.amount), "taken": str(split.taken), "owed": str(split.arrears)},
        now_us,
    )
    if split.arrears:
        owed = Money(acc.arrears_micros) + split.arrears
        raise_notice(store, ARREARS, acc.code, base | {"arrears": str(owed)}, now_us)
    check_low_balance(store, acc.id, now_us)
    report.charges += 1
    report.charged[acc.currency] += item.amount.micros


def _credit(
    store: Store, db: peewee.Database, acc: DbRow, sub: _Sub, item: Due, now_us: int, node: str, report: RunReport
) -> None:
    _insert(db, store.db.param, sub, item, item.amount, Money(0), now_us, node)
    post(store, acc.id, item.amount, "credit", now_us, note="unused part of " + _label(sub, item))
    paid = pay_arrears(store, acc.id, now_us)  # a credit is money in: it pays arrears first
    report.paid[acc.currency] += paid.micros
    report.credits += 1
    report.credited[acc.currency] += item.amount.micros


def _mark_done(store: Store, sub_id: int, now_us: int) -> None:
    """An ended subscription with everything posted: later runs skip it."""
    m = store.models
    with store.transaction():
        m.Subscription.update(done_us=now_us).where(
            (m.Subscription.id == sub_id) & m.Subscription.done_us.is_null()
        ).execute()


def _sweep_arrears(store: Store, now_us: int, report: RunReport) -> None:
    """Accounts still in arrears pay them from whatever became available by any way (a raised
    credit limit, a credit from a payment gateway): the same rule, caught up on each run."""
    m = store.models
    with store.reading():
        owing = [a for (a,) in m.Account.select(m.Account.id).where(m.Account.arrears_micros > 0).tuples()]
    for account_id in owing:
        with store.transaction() as db:
            acc = one(db, store.sql.account_by_id, (account_id,), ACCOUNT_COLUMNS)  # locks the account
            if acc is None or not acc.arrears_micros or acc.status == "closed":
                continue
            paid = pay_arrears(store, account_id, now_us)
            if paid:
                report.arrears_paid += 1
                report.paid[acc.currency] += paid.micros


# -- one node at a time ------------------------------------------------------------------------------------
def take_lease(store: Store, name: str, holder: str, now_us: int, ttl_us: int) -> bool:
    """Hold lease `name` until now + ttl if it is free, expired, or already ours; False if
    another holder has it. One row per lease, updated under the database's row lock."""
    p = store.db.param
    with store.transaction() as db:
        cursor = db.execute_sql(
            f'UPDATE "lease" SET "holder" = {p}, "until_us" = {p} '
            f'WHERE "name" = {p} AND ("holder" = {p} OR "until_us" < {p})',
            (holder, now_us + ttl_us, name, holder, now_us),
        )
        if cursor.rowcount == 1:
            return True
        exists = db.execute_sql(f'SELECT 1 FROM "lease" WHERE "name" = {p}', (name,)).fetchone()
        if exists is None:
            db.execute_sql(
                f'INSERT INTO "lease" ("name", "holder", "until_us") VALUES ({p}, {p}, {p})',
                (name, holder, now_us + ttl_us),
            )
            return True
        return False


def release_lease(store: Store, name: str, holder: str) -> None:
    p = store.db.param
    with store.transaction() as db:
        db.execute_sql(
            f'UPDATE "lease" SET "until_us" = 0 WHERE "name" = {p} AND "holder" = {p}',
            (name, holder),
        )


__all__ = ["RunReport", "release_lease", "run_charges", "take_lease"]


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
