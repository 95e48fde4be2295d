"""Which live calls nobody is enforcing, and taking one over: once, by one process.

A live call belongs to the process named in its `instance` column (node name + pid + a
random tag, fsbill.server). Another process may take it over when

- its lease ran out (its process stopped renewing it: crashed, stopped, cut off), or
- it is this node's, from an earlier process of this node (created before this one started:
  the node name means one process at a time, as it already does for the reaper), or
- it is this process's own and its follower ended without settling it (its socket died).

The takeover is a compare-and-set of (instance, lease) in one UPDATE: of two processes racing
for one call, exactly one sees a row changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.call import LiveCall
from fsbill.core.records import PayerAccount
from fsbill.db.calls import _live_call
from fsbill.db.connection import Store
from fsbill.db.statements import ACCOUNT_COLUMNS, LIVE_CALL_COLUMNS, one


@dataclass(frozen=True)
class Orphan:
    uuid: str
    visit: int
    node: str
    instance: str
    lease_until_us: int
    created_us: int


@dataclass(frozen=True)
class Adopted:
    """A live call as its new owner takes it up: the record of the leg, and who pays."""

    call: LiveCall
    account: PayerAccount
    caller: str
    destination: str


def orphans(
    store: Store,
    now_us: int,
    *,
    node: str,
    instance: str,
    started_us: int,
    following: frozenset,
    released: frozenset,
    limit: int = 1000,
) -> list[Orphan]:
    m = store.models
    lc = m.LiveCall
    cond = (lc.lease_until_us < now_us) | ((lc.node == node) & (lc.instance != instance) & (lc.created_us < started_us))
    if released:
        cond |= (lc.instance == instance) & lc.uuid.in_(sorted({uuid for uuid, _ in released}))
    with store.reading():
        rows = lc.select(lc.uuid, lc.visit, lc.node, lc.instance, lc.lease_until_us, lc.created_us).where(cond)
        found = [Orphan(r.uuid, r.visit, r.node, r.instance, r.lease_until_us, r.created_us) for r in rows.limit(limit)]
    return [
        o
        for o in found
        if (o.uuid, o.visit) not in following and (o.instance != instance or (o.uuid, o.visit) in released)
    ]


def claim(store: Store, orphan: Orphan, *, node: str, instance: str, lease_until_us: int) -> Adopted | None:
    """Take the call over if nobody else did since `orphan` was read; None if someone did."""
    m = store.models
    q = store.sql
    with store.transaction() as db:
        changed = (
            m.LiveCall.update(node=node, instance=instance, lease_until_us=lease_until_us)
            .where(
                (m.LiveCall.uuid == orphan.uuid)
                & (m.LiveCall.visit == orphan.visit)
                & (m.LiveCall.instance == orphan.instance)
                & (m.LiveCall.node == orphan.node)
                & (m.LiveCall.lease_until_us == orphan.lease_until_us)
            )
            .execute()
        )
        if changed != 1:
            return None
        row = one(db, q.live_call, (orphan.uuid, orphan.visit), LIVE_CALL_COLUMNS)
        assert row is not None  # the UPDATE above just changed this row, under the transaction
        acc = one(db, q.account_by_id, (row.account_id,), ACCOUNT_COLUMNS)
        assert acc is not None  # live_call.account_id references account(id): the row exists
    return Adopted(
        call=_live_call(row),
        account=PayerAccount(acc.id, acc.code, acc.tariff_id, acc.currency, acc.status),
        caller=row.caller,
        destination=row.destination,
    )


__all__ = ["Adopted", "Orphan", "claim", "orphans"]
