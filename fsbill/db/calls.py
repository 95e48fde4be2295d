"""Live calls in the database: reserve, answer, heartbeat, settle, reap, and CDRs.

Each function is one short transaction that re-reads what it decides on under a lock
(`BEGIN IMMEDIATE` on SQLite; `SELECT … FOR UPDATE` on the account row on PostgreSQL), asks
the pure core (fsbill.core.grant) what to do, and writes the result. So two calls racing for
an account's last money, on one node or many, are serialized on that account's row and can
never both get it; and a call's settlement happens once because it deletes the live-call row
and inserts the CDR (unique per uuid) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import peewee

from fsbill.core import chain
from fsbill.core.bundle import free_seconds
from fsbill.core.call import Beat, Charge, LiveCall, Payer, admit, beat, settlement, unreserved
from fsbill.core.call import recovered as recovered_charge
from fsbill.core.did import INBOUND, OUTBOUND, Did, admit_inbound
from fsbill.core.grant import GrantPolicy, wants_extension
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd, Leg, PayerAccount, RejectionRecord
from fsbill.db import bundles as dbbundles
from fsbill.db import chain as dbchain
from fsbill.db.connection import Store
from fsbill.db.guards import read_guards, read_usage, record_call_start
from fsbill.db.ledger import pay_arrears, post
from fsbill.db.notices import check_low_balance
from fsbill.db.rates import IndexedDeck
from fsbill.db.rows import DbRow, account_state_of, rate_columns, rate_of
from fsbill.db.statements import ACCOUNT_COLUMNS, CDR_COLUMNS, LIVE_CALL_COLUMNS, Statements, cdr_values, one
from fsbill.db.statements import row as as_row
from fsbill.db.vendors import settle_vendors, take_channels
from fsbill.db.views import CdrView, LiveCallView, _cdr_view, cdrs, live_calls


def _locked(store: Store, query: peewee.ModelSelect[DbRow]) -> peewee.ModelSelect[DbRow]:
    return query.for_update() if store.kind == "postgresql" else query


# -- who pays ---------------------------------------------------------------------------------------
def find_payer(store: Store, payer: Payer) -> PayerAccount | None:
    q = store.sql
    with store.reading() as db:
        sql = q.account_by_code_read if payer.by == "code" else q.account_by_cli
        acc = one(db, sql, (payer.value,), ACCOUNT_COLUMNS)
    if acc is None:
        return None
    return PayerAccount(acc.id, acc.code, acc.tariff_id, acc.currency, acc.status)


# -- reading what a decision needs, under the lock --------------------------------------------------
def _live_call(lc: DbRow) -> LiveCall:
    return LiveCall(
        uuid=lc.uuid,
        visit=lc.visit,
        rate=rate_of(lc),
        granted_s=lc.granted_s,
        held=Money(lc.held_micros),
        debited=Money(lc.debited_micros),
        created_us=lc.created_us,
        hold_until_us=lc.hold_until_us,
        answered_us=lc.answered_us,
        cutoff_us=lc.cutoff_us,
        bundle_s=lc.bundle_s or 0,
    )


def _next_visit(db: peewee.Database, q: Statements, uuid: str) -> int:
    """The number of a channel's next socket visit: one more than any leg it already has."""
    last = db.execute_sql(q.last_visit, (uuid, uuid)).fetchone()[0]
    return (last or 0) + 1


# -- authorization ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Authorization:
    reason: str  # "" when admitted, else the rejection reason
    call: LiveCall | None
    balance: Money  # the account's balance when it was decided
    refused_vendors: frozenset[str] = frozenset()  # vendors of the bridge found full or suspended under lock


def reserve(
    store: Store,
    *,
    uuid: str,
    account_id: int,
    rate: Rate,
    policy: GrantPolicy,
    node: str,
    caller: str,
    destination: str,
    now_us: int,
    lease_until_us: int,
    max_ring_s: int,
    vendor_legs: Sequence[Leg] = (),
    instance: str = "",
    accountcode: str = "",
    caller_id_name: str = "",
    context: str = "",
    rate_for: Callable[[int], Rate | None] | None = None,
    did: Did | None = None,
) -> Authorization:
    """Authorize a new call: read the account under its lock, ask the core (admit), hold the
    first grant and write the live-call row, in one transaction. With `vendor_legs` (least-cost
    routing) a channel is taken on each vendor of the bridge in the same transaction; the
    vendors found full or suspended by then are returned in `refused_vendors`, and a call
    that gets none is refused as vendor_unavailable with nothing held. With `did` (an inbound
    call, docs/DIDS.md) the account is the number's owner and the calls live on the number are
    counted under the owner's lock (fsbill.core.did.admit_inbound); an admitted call's reason
    is then "" or free_on_empty. Such a call is billed to the owner alone, not its chain.

    Under resellers (fsbill.core.chain) the levels above the account are rated in their own
    tariffs (`rate_for(tariff_id)`, else the database's index) and locked top first, before
    the account; every level must afford the first block, the grant is the smallest any
    level affords, and each level holds it at its own rate in the same transaction."""
    q = store.sql
    above = dbchain.ancestors(store, account_id) if did is None else []  # inbound: the owner alone
    rates: list[Rate] = []
    if above:
        lookup = rate_for or (lambda tariff_id: IndexedDeck(store, tariff_id).lookup(destination, now_us))
        found = dbchain.rate_levels(store, above, lookup)
        if found is None:
            return Authorization("no_rate", None, Money(0))
        rates = found
    with store.transaction() as db:
        levels = dbchain.lock_levels(store, [a.id for a in above], rates) if above else []
        acc = one(db, q.account_by_id, (account_id,), ACCOUNT_COLUMNS)
        if acc is None:
            return Authorization("unknown_account", None, Money(0))
        visit = _next_visit(db, q, uuid)
        # the fraud guards, read under the same lock: the period's spend, the calls of the last minute
        guards, tz = read_guards(store, db, acc.id)
        state = account_state_of(acc)
        if not guards.is_empty:
            state = replace(state, guards=guards, usage=read_usage(store, db, acc.id, guards, tz, now_us))
        # its bundles of minutes covering the destination, renewed if due (docs/BUNDLES.md)
        usable = dbbundles.covering(store, acc.id, destination, now_us) if did is None else []
        if usable:
            state = replace(state, bundle_free_s=free_seconds(usable))
        cap = None
        if levels:
            levels = dbchain.with_guards(store, levels, now_us, calls=True)
            why = chain.refusal(levels, destination) if state.status == "active" else ""
            cap = chain.cap(levels, 0, policy)
            if not why and cap is not None and cap.granted_s == 0:
                why = chain.short_of(levels, policy)
            if why:
                return Authorization(why, None, Money(acc.balance_micros))
        if did is None:
            admission = admit(uuid, visit, state, rate, policy, now_us, max_ring_s, destination, cap)
        else:
            did_live = db.execute_sql(q.did_live_calls, (did.number,)).fetchone()[0]
            admission = admit_inbound(uuid, visit, state, did, did_live, policy, now_us, max_ring_s)
        call = admission.call
        if call is None:
            return Authorization(admission.reason, None, Money(acc.balance_micros))
        rate = call.rate  # what it was admitted at (an inbound free_on_empty call: zero)
        refused: frozenset[str] = frozenset()
        if vendor_legs:
            refused = frozenset(take_channels(store, uuid, visit, vendor_legs))
            if len(refused) == len(vendor_legs):  # nothing was taken: nothing to roll back
                return Authorization("vendor_unavailable", None, Money(acc.balance_micros))
        db.execute_sql(q.hold, (call.held.micros, 1, acc.id))
        if guards.max_calls_per_minute is not None and visit == 1:  # a new call, not a transfer back
            record_call_start(store, db, acc.id, now_us)
        db.execute_sql(
            q.insert_live_call,
            (
                uuid,
                call.visit,
                acc.id,
                node,
                caller[:255],
                destination[:255],
                rate.prefix,
                rate.rate.micros,
                rate.connect_fee.micros,
                rate.initial_increment_s,
                rate.increment_s,
                rate.min_duration_s,
                rate.rounding.decimals,
                rate.rounding.method.value,
                call.granted_s,
                call.held.micros,
                0,
                acc.balance_micros,
                call.created_us,
                None,
                None,
                lease_until_us,
                call.hold_until_us,
                instance,
                "",
                accountcode[:255],
                caller_id_name[:255],
                context[:255],
                did.number if did is not None else "",
                admission.reason,
                call.bundle_s,
            ),
        )
        if call.bundle_s:  # its bundle part, held on the bundles in their order
            dbbundles.hold(store, uuid, call.visit, usable, call.bundle_s)
        if levels:
            dbchain.hold_first(store, uuid, call.visit, chain.first_holds(levels, call.granted_s))
            if visit == 1:  # a new call, not a transfer back
                dbchain.count_call_start(store, levels, now_us)
        check_low_balance(store, acc.id, now_us)  # docs/NOTICES.md
    return Authorization(admission.reason, call, Money(acc.balance_micros), refused)


def mark_answered(store: Store, call: LiveCall, lease_until_us: int) -> None:
    """Write the answered call's record (its billing start, cut-off instant, hold deadline)."""
    q = store.sql
    with store.transaction() as db:
        db.execute_sql(
            q.answer, (call.answered_us, call.cutoff_us, lease_until_us, call.hold_until_us, call.uuid, call.visit)
        )


def heartbeat(
    store: Store,
    uuid: str,
    visit: int,
    now_us: int,
    policy: GrantPolicy,
    lease_until_us: int,
    extend: bool = True,
    known: LiveCall | None = None,
) -> Beat | None:
    """Read the call and its account under the lock, ask the core (beat), post the debit, hold
    any extension, renew the lease and write the record. None if the call is no longer live
    here (settled elsewhere, e.g. by a reaper after this node lost the database for too long)."""
    q = store.sql
    with store.transaction() as db:
        lc = one(db, q.live_call, (uuid, visit), LIVE_CALL_COLUMNS)
        if lc is None:
            return None
        holds = dbchain.read_holds(store, uuid, visit)  # the levels above the payer (resellers)
        levels = dbchain.lock_held(store, holds) if holds else []
        acc = one(db, q.account_by_id, (lc.account_id,), ACCOUNT_COLUMNS)
        assert acc is not None  # live_call.account_id references account(id): the row exists
        call = _live_call(lc)
        if known is not None:  # what the row does not keep: is the grant final, is the warning armed
            call = replace(call, final=known.final, warned=known.warned)
        state = chain.status_of(account_state_of(acc), levels)
        elapsed_s = max(0, now_us - call.answered_us) // 1_000_000 if call.answered_us is not None else 0
        cap = None
        usable = []
        if extend and wants_extension(call.granted_s, elapsed_s, policy):
            # an extension is asked for: the spend caps bound it (read under the same lock)
            guards, tz = read_guards(store, db, acc.id)
            if guards.has_caps:
                usage = read_usage(store, db, acc.id, guards, tz, now_us, calls=False)
                state = replace(state, guards=guards, usage=usage)
            if levels:  # and every level above the payer, with its own spend caps (resellers)
                levels = dbchain.with_guards(store, levels, now_us, calls=False)
            cap = chain.cap(levels, call.granted_s, policy, elapsed_s)
            if call.bundle_s and call.bundle_s == call.granted_s:  # no paid part yet: bundles first
                usable = dbbundles.covering(store, acc.id, lc.destination, now_us)
                state = replace(state, bundle_free_s=free_seconds(usable))
        result = beat(call, state, now_us, policy, extend, cap)
        if result.extra_bundle_s:
            dbbundles.hold(store, uuid, visit, usable, result.extra_bundle_s, result.call.bundle_s)
        if holds:  # every level's debit and extension, together with the payer's
            beats = chain.extension(holds, call.answered_us, now_us, call.granted_s, result.call.granted_s)
            dbchain.beat_levels(store, uuid, visit, beats, now_us)
        call = result.call
        if result.debit:
            post(
                store,
                acc.id,
                -result.debit,
                "call",
                now_us,
                call_uuid=uuid,
                note="heartbeat",
                release_micros=result.debit.micros,
            )
        if result.extra_hold:
            db.execute_sql(q.hold, (result.extra_hold.micros, 0, acc.id))
        db.execute_sql(
            q.beat,
            (
                call.held.micros,
                call.debited.micros,
                call.granted_s,
                lease_until_us,
                call.hold_until_us,
                call.cutoff_us,
                uuid,
                visit,
            ),
        )
        check_low_balance(store, acc.id, now_us)  # docs/NOTICES.md
    return result


# -- the end of a call --------------------------------------------------------------------------------
# -- CDR columns, by where they come from ----------------------------------------------------------------
def _end_fields(end: CallEnd) -> dict[str, Any]:
    """What FreeSWITCH told of the call's end (and when fsbill wrote it down)."""
    return dict(
        start_us=end.start_us,
        answer_us=end.answered_us,
        end_us=end.end_us,
        billsec=end.billsec,
        hangup_cause=end.hangup_cause,
        created_us=end.now_us,
        bleg_uuid=end.bleg_uuid[:255],
    )


def _charge_fields(charge: Charge) -> dict[str, Any]:
    """What the core decided the call costs and what was collected."""
    return dict(
        billed_s=charge.billed_s,
        cost_micros=charge.cost.micros,
        charged_micros=charge.charged.micros,
        uncollected_micros=charge.uncollected.micros,
    )


def _billed_fields(
    rate: Rate, end: CallEnd, charge: Charge, acc: DbRow, balance_before_micros: int | None, balance_after_micros: int
) -> dict[str, Any]:
    """A charged call's CDR columns: its rate, its end, its charge and the account it was charged to."""
    return (
        rate_columns(rate)
        | _end_fields(end)
        | _charge_fields(charge)
        | dict(
            account_code=acc.code,
            currency=acc.currency,
            balance_before_micros=balance_before_micros,
            balance_after_micros=balance_after_micros,
        )
    )


def settle_call(store: Store, end: CallEnd) -> CdrView | None:
    """Rate the call from FreeSWITCH's times, post the rest, void the hold, write the CDR.
    Exactly once: a second call for the same uuid returns the first CDR and changes nothing.
    None if the call was never reserved here (nothing to settle)."""
    q = store.sql
    with store.transaction() as db:
        existing = one(db, q.cdr_by_leg, (end.uuid, end.visit), CDR_COLUMNS)
        if existing is not None:
            return _cdr_view(existing)
        lc = one(db, q.live_call, (end.uuid, end.visit), LIVE_CALL_COLUMNS)
        if lc is None:
            return None
        return _settle_locked(store, lc, end, recovered=False)


def _settle_locked(store: Store, lc: DbRow, end: CallEnd, recovered: bool) -> CdrView:
    """Read the account under the lock, ask the core (settlement or recovered), write the
    ledger entry, void the hold, delete the live row and insert the CDR."""
    q, db = store.sql, store.db
    holds = dbchain.read_holds(store, lc.uuid, lc.visit)  # the levels above the payer (resellers)
    levels = dbchain.lock_held(store, holds) if holds else []
    acc = one(db, q.account_by_id, (lc.account_id,), ACCOUNT_COLUMNS)
    assert acc is not None  # live_call.account_id references account(id): the row exists
    call = _live_call(lc)
    if recovered:
        charge = recovered_charge(call)
    else:
        charge = settlement(call, end.answered_us, end.end_us, account_state_of(acc))
    balance_after = _charge_account(store, acc, charge, end.now_us, lc.uuid, "recovered" if recovered else "settlement")
    db.execute_sql(q.hold, (0, -1, acc.id))
    if acc.arrears_micros:  # the released hold pays the account's arrears first
        pay_arrears(store, acc.id, end.now_us)
    if holds:  # each level above pays its own rate for the same billed window
        # the payer's bundle covers only the payer's price: every level pays its own for the whole call
        dbchain.settle_levels(
            store,
            replace(call, bundle_s=0),
            holds,
            levels,
            end.answered_us,
            end.end_us,
            end.now_us,
            recovered,
            charge.cost,
            acc.currency,
        )
    bundle_used = 0
    if call.bundle_s:  # consume what it used of its bundle holds, release the rest (docs/BUNDLES.md)
        if recovered:  # nobody saw it end: an answered call used its bundle part (it comes first)
            window = (lc.answered_us, None if lc.answered_us is None else lc.answered_us + call.bundle_s * 1_000_000)
        else:
            window = (end.answered_us, end.end_us)
        bundle_used = dbbundles.settle_holds(store, lc.uuid, lc.visit, acc.id, *window, end.now_us)
    db.execute_sql(q.delete_live_call, (lc.uuid, lc.visit))
    fields = _billed_fields(rate_of(lc), end, charge, acc, lc.balance_before_micros, balance_after) | dict(
        uuid=lc.uuid,
        visit=lc.visit,
        node=lc.node,
        caller=lc.caller,
        destination=lc.destination,
        # the leg's own start when FreeSWITCH gave none; a recovered visit keeps the answer fsbill saw
        start_us=end.start_us or lc.created_us,
        answer_us=end.answered_us if not recovered else lc.answered_us,
        result="recovered" if recovered else end.result,
        reason=(getattr(lc, "reason", "") or "")
        if not recovered
        else "settled by reaper: charged the minimum it provably owes",
        bleg_uuid=(end.bleg_uuid or getattr(lc, "bleg_uuid", "") or "")[:255],
        accountcode=getattr(lc, "accountcode", "") or "",
        caller_id_name=getattr(lc, "caller_id_name", "") or "",
        context=getattr(lc, "context", "") or "",
        direction=INBOUND if getattr(lc, "did", "") else OUTBOUND,
        did=getattr(lc, "did", "") or "",
        bundle_s=bundle_used,
    )
    view = _write_cdr(store, fields)
    if end.bridge is not None or recovered:
        # the vendor side, in the same transaction: carrier, its cost, the margin, attempts, channels
        carried, tried = settle_vendors(
            store,
            lc.uuid,
            lc.visit,
            None if recovered else end.bridge,
            fields["answer_us"],
            end.end_us,
            charge.billed_s,
            charge.cost,
            fields["start_us"],
        )
        if carried is not None or tried:
            view = replace(
                view,
                vendor=carried.vendor if carried else "",
                vendor_cost=carried.cost if carried else None,
                margin=carried.margin if carried else None,
                attempts=tuple(tried),
            )
    return view


def _charge_account(store: Store, acc: DbRow, charge: Charge, now_us: int, call_uuid: str, note: str) -> int:
    """Post what a call is charged and release what it held (under the account's lock); the
    account's balance after."""
    if not charge.post:
        if charge.release:
            store.db.execute_sql(store.sql.hold, (-charge.release.micros, 0, acc.id))
        check_low_balance(store, acc.id, now_us)  # docs/NOTICES.md
        return int(acc.balance_micros)
    _, balance_after = post(
        store,
        acc.id,
        -charge.post,
        "call",
        now_us,
        call_uuid=call_uuid,
        note=note,
        release_micros=charge.release.micros,
    )
    check_low_balance(store, acc.id, now_us)  # docs/NOTICES.md
    return balance_after


def _write_cdr(store: Store, fields: dict[str, Any]) -> CdrView:
    """Insert a CDR (the columns not given take the model's defaults) and return its view."""
    values = cdr_values(**fields)
    store.db.execute_sql(store.sql.insert_cdr, values)
    return _cdr_view(as_row(CDR_COLUMNS, values))


def record_recovery(store: Store, lc: DbRow, now_us: int) -> None:
    """Before settling a visit nobody saw end: keep the grant it held (the most a correction
    from FreeSWITCH's CDR may ever charge it, fsbill.db.recovery) and its rounding rule."""
    m = store.models
    if m.Recovery.get_or_none((m.Recovery.uuid == lc.uuid) & (m.Recovery.visit == lc.visit)) is not None:
        return
    m.Recovery.create(
        uuid=lc.uuid,
        visit=lc.visit,
        account_id=lc.account_id,
        granted_s=lc.granted_s,
        grant_micros=lc.held_micros + lc.debited_micros,
        rounding_decimals=lc.rounding_decimals,
        rounding_method=lc.rounding_method,
        created_us=now_us,
    )


def write_rejection(store: Store, rejection: RejectionRecord, now_us: int, result: str = "rejected") -> CdrView | None:
    """A CDR with cost 0 for a refused call: the channel's next visit (unique per uuid and visit)."""
    m = store.models
    try:
        with store.transaction() as db:
            r = rejection
            row = m.Cdr.create(
                uuid=r.uuid,
                visit=_next_visit(db, store.sql, r.uuid),
                account_code=r.account_code,
                node=r.node,
                caller=r.caller[:255],
                destination=r.destination[:255],
                currency=r.currency,
                start_us=r.start_us,
                result=result,
                reason=r.reason,
                hangup_cause=r.hangup_cause,
                created_us=now_us,
                balance_before_micros=None if r.balance is None else r.balance.micros,
                balance_after_micros=None if r.balance is None else r.balance.micros,
                accountcode=r.accountcode[:255],
                caller_id_name=r.caller_id_name[:255],
                context=r.context[:255],
                direction=r.direction,
                did=r.did[:255],
            )
            return _cdr_view(row)
    except peewee.IntegrityError:
        return None


def settle_unreserved(
    store: Store, payer: Payer, end: CallEnd, node: str, rate_for: Callable[[int], Rate | None], destination: str
) -> CdrView | None:
    """Charge a call that was let through while the database was down (on_db_error: allow).

    The payer is found now as the call named it (account code or caller id); `rate_for(tariff_id)`
    rates the destination at the call's start. Nothing was held for it, so it is charged only
    what the account can still pay without breaking the invariant; the rest of its rated cost
    is recorded on the CDR as uncollected. No rate: nothing is charged; the CDR says so.
    """
    q = store.sql
    found = find_payer(store, payer)
    rate = rate_for(found.tariff_id) if found is not None else None
    with store.transaction() as db:
        leg = dict(uuid=end.uuid, visit=_next_visit(db, q, end.uuid), node=node, destination=destination)
        acc = one(db, q.account_by_id, (found.id,), ACCOUNT_COLUMNS) if found is not None else None
        if acc is None or rate is None:
            reason = "db_error_allowed: " + ("unknown account" if acc is None else "no rate")
            account_code = acc.code if acc is not None else ""
            return _write_cdr(
                store, leg | _end_fields(end) | dict(account_code=account_code, result=end.result, reason=reason)
            )
        charge = unreserved(rate, end.answered_us, end.end_us, account_state_of(acc))
        balance_after = _charge_account(store, acc, charge, end.now_us, end.uuid, "charged after a database outage")
        fields = _billed_fields(rate, end, charge, acc, acc.balance_micros, balance_after)
        return _write_cdr(store, leg | fields | dict(result=end.result, reason="db_error_allowed"))


# -- recovery -----------------------------------------------------------------------------------------------
def reap(
    store: Store,
    now_us: int,
    *,
    node: str | None = None,
    started_us: int | None = None,
    limit: int = 500,
    following: frozenset[tuple[str, int]] = frozenset(),
) -> list[CdrView]:
    """Settle live calls nobody is looking after any more.

    A call is reaped once its lease expired (its node stopped renewing it) — or at once for
    `node`'s own calls created before it (re)started at `started_us` — and only after `hold_until`: the moment by
    which FreeSWITCH's own cut-off has certainly ended it, so the hold is never released while
    the call could still be talking. Safe to run on every node at once: each call is settled
    in its own transaction that re-checks it under lock. `following`: the legs (uuid, visit) the calling
    node is still enforcing itself (a node slowed down past its own lease must not reap its
    own live calls; it will settle them when they end).
    """
    m = store.models
    cond = m.LiveCall.hold_until_us < now_us
    if node is None or started_us is None:
        cond &= m.LiveCall.lease_until_us < now_us
    else:
        cond &= (m.LiveCall.lease_until_us < now_us) | (
            (m.LiveCall.node == node) & (m.LiveCall.created_us < started_us)
        )
    with store.reading():
        legs = [
            (r.uuid, r.visit)
            for r in m.LiveCall.select(m.LiveCall.uuid, m.LiveCall.visit).where(cond).limit(limit)
            if (r.uuid, r.visit) not in following
        ]
    cdrs = []
    for uuid, visit in legs:
        with store.transaction():
            leg = (m.LiveCall.uuid == uuid) & (m.LiveCall.visit == visit)
            lc = _locked(store, m.LiveCall.select().where(leg & cond)).first()
            if lc is None or m.Cdr.get_or_none((m.Cdr.uuid == uuid) & (m.Cdr.visit == visit)) is not None:
                continue
            end = CallEnd(uuid, visit, lc.answered_us, None, lc.created_us, 0, "", "recovered", now_us)
            record_recovery(store, lc, now_us)
            cdrs.append(_settle_locked(store, lc, end, recovered=True))
    return cdrs


__all__ = ["CdrView", "LiveCallView", "cdrs", "live_calls"]
