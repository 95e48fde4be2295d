"""FreeSWITCH's CDR posts in the books: store each once, settle or correct the call from it.

A post (fsbill.cdr_intake) covers one channel. What it does depends on where the call is:

- its CDR is `recovered` (settled by a reaper, charged up to the last debit): corrected to the
  exact rating of the real window, capped at the grant held for it (fsbill.core.recovery);
- it is still a live call nobody follows (its lease ran out): settled from the post's times,
  exactly as from its own CHANNEL_HANGUP_COMPLETE;
- it is followed (its process is alive, or it was just adopted): only stored; whoever settles
  it first does it from FreeSWITCH's times, and `apply_stored` runs again after a reaper pass;
- anything else (already settled from its events, or not a billed call): stored, nothing moves.

A channel can visit the socket several times (transferred back after a top-up menu): each visit
is its own leg, billed for its part of the channel's answer→end (up to the next visit's start).
Idempotent: one row per channel uuid, each leg corrected at most once; once every leg is
settled, posting it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.grant import available as available_of
from fsbill.core.money import Money
from fsbill.core.recovery import correct, visit_window
from fsbill.db import calls as dbcalls
from fsbill.db.calls import CdrView, _locked
from fsbill.db.connection import Store
from fsbill.db.ledger import post
from fsbill.db.rows import DbRow, rate_of, rounding_of
from fsbill.db.statements import ACCOUNT_COLUMNS, one

CORRECTED_REASON = "corrected from FreeSWITCH's CDR (mod_json_cdr)"


@dataclass(frozen=True)
class PostedCdr:
    uuid: str
    answer_us: int | None
    end_us: int | None
    start_us: int
    billsec: int
    hangup_cause: str
    destination: str  # where the channel was when it ended (the cut-off extension after a transfer)
    body: str = ""


@dataclass(frozen=True)
class Applied:
    outcome: str  # corrected | settled | stored | duplicate | already_settled | outside_window
    uuid: str
    visit: int = 0
    posted: Money = Money(0)  # moved off the balance (negative: refunded)
    cdr: CdrView | None = None  # the CDR written or corrected


def store_post(store: Store, cdr: PostedCdr, switch: str, now_us: int) -> bool:
    """Keep the post; False if this channel was posted before."""
    m = store.models
    with store.transaction():
        if m.SwitchCdr.get_or_none(m.SwitchCdr.uuid == cdr.uuid) is not None:
            return False
        m.SwitchCdr.create(
            uuid=cdr.uuid,
            switch=switch,
            answer_us=cdr.answer_us,
            end_us=cdr.end_us,
            start_us=cdr.start_us,
            billsec=cdr.billsec,
            hangup_cause=cdr.hangup_cause,
            destination=cdr.destination[:255],
            received_us=now_us,
            applied="stored",
            body=cdr.body[:65536],
        )
    return True


def apply_stored(store: Store, uuid: str, now_us: int, result_of, *, settle_live: bool = False) -> list[Applied]:
    """Act on a stored post for every visit of its channel (see the module docstring).
    `result_of(answered, cause, destination)` names the CDR result of a visit settled from it.
    `settle_live`: settle live visits even if their lease has not run out (the caller has just
    claimed them and found the channel gone)."""
    m = store.models
    with store.transaction():
        row = m.SwitchCdr.get_or_none(m.SwitchCdr.uuid == uuid)
        if row is None:
            return [Applied("stored", uuid)]
        if row.applied != "stored":
            return [Applied("duplicate", uuid)]
        posted = PostedCdr(
            row.uuid, row.answer_us, row.end_us, row.start_us, row.billsec, row.hangup_cause, row.destination, row.body
        )
        cdrs = {c.visit: c for c in m.Cdr.select().where(m.Cdr.uuid == uuid)}
        lives = {lc.visit: lc for lc in _locked(store, m.LiveCall.select().where(m.LiveCall.uuid == uuid))}
        # A post covers the whole channel; each visit of the socket bills its own part of it:
        # from its own billing start to the start of the next visit.
        starts = {v: (c.start_us or 0) for v, c in cdrs.items()} | {v: lc.created_us for v, lc in lives.items()}
        order = sorted(starts)
        done: list[Applied] = []
        waiting = False
        for i, visit in enumerate(order):
            until = starts[order[i + 1]] if i + 1 < len(order) else None
            if visit in cdrs:
                cdr = cdrs[visit]
                if cdr.result != "recovered":
                    done.append(Applied("already_settled", uuid, visit))
                else:
                    done.append(_correct_locked(store, cdr, posted, until, now_us))
                continue
            lc = lives[visit]
            if lc.lease_until_us >= now_us and not settle_live:
                waiting = True  # someone follows it: it is settled from its own events
                done.append(Applied("stored", uuid, visit))
                continue
            start, end = visit_window(posted.answer_us, posted.end_us, lc.answered_us or lc.created_us, until)
            end_of_call = dbcalls.CallEnd(
                uuid,
                visit,
                start,
                end,
                posted.start_us or lc.created_us,
                posted.billsec,
                posted.hangup_cause,
                result_of(start is not None, posted.hangup_cause, posted.destination),
                now_us,
            )
            view = dbcalls._settle_locked(store, lc, end_of_call, recovered=False)
            done.append(Applied("settled", uuid, visit, view.charged - Money(lc.debited_micros), view))
        if not waiting:
            outcomes = {d.outcome for d in done}
            _mark(
                store, uuid, "corrected" if "corrected" in outcomes else "settled" if "settled" in outcomes else "seen"
            )
        return done or [Applied("stored", uuid)]


def _mark(store: Store, uuid: str, applied: str) -> None:
    m = store.models
    m.SwitchCdr.update(applied=applied).where(m.SwitchCdr.uuid == uuid).execute()


def _correct_locked(store: Store, cdr: DbRow, posted: PostedCdr, until_us: int | None, now_us: int) -> Applied:
    m = store.models
    q, db = store.sql, store.db
    leg = (m.Recovery.uuid == cdr.uuid) & (m.Recovery.visit == cdr.visit)
    recovery = m.Recovery.get_or_none(leg)
    if recovery is None or recovery.corrected_us is not None:
        return Applied("duplicate" if recovery is not None else "already_settled", cdr.uuid, cdr.visit)
    if posted.end_us is not None and cdr.answer_us is not None and posted.end_us < cdr.answer_us:
        return Applied("outside_window", cdr.uuid, cdr.visit)
    start, end = visit_window(posted.answer_us, posted.end_us, cdr.answer_us or cdr.start_us, until_us)
    rate = rate_of(cdr, rounding_of(recovery))
    acc = one(db, q.account_by_id, (recovery.account_id,), ACCOUNT_COLUMNS)
    assert acc is not None  # the recovery row copies a live call's account id; accounts are never deleted
    available = available_of(
        Money(acc.balance_micros), Money(acc.credit_limit_micros), Money(acc.reserved_micros), Money(acc.arrears_micros)
    )
    charged = Money(cdr.charged_micros)
    # a call with a bundle part (docs/BUNDLES.md) pays money only after it
    paid_from = start + cdr.bundle_s * 1_000_000 if start is not None and cdr.bundle_s else start
    fix = correct(rate, paid_from, end, charged, Money(recovery.grant_micros), available)
    balance_after = acc.balance_micros
    if fix.post:
        _, balance_after = post(store, acc.id, -fix.post, "call", now_us, call_uuid=cdr.uuid, note=CORRECTED_REASON)
    fields = dict(
        answer_us=start if start is not None else cdr.answer_us,
        end_us=end if end is not None else posted.end_us,
        billsec=posted.billsec,
        billed_s=fix.billed_s,
        cost_micros=fix.cost.micros,
        charged_micros=(charged + fix.post).micros,
        uncollected_micros=fix.uncollected.micros,
        balance_after_micros=balance_after,
        hangup_cause=posted.hangup_cause or cdr.hangup_cause,
        reason=CORRECTED_REASON,
    )
    m.Cdr.update(**fields).where((m.Cdr.uuid == cdr.uuid) & (m.Cdr.visit == cdr.visit)).execute()
    m.Recovery.update(corrected_us=now_us).where(leg).execute()
    row = m.Cdr.get((m.Cdr.uuid == cdr.uuid) & (m.Cdr.visit == cdr.visit))
    return Applied("corrected", cdr.uuid, cdr.visit, fix.post, dbcalls._cdr_view(row))


def stored_uuids(store: Store, uuids: list[str]) -> list[str]:
    """Which of these channels have a post waiting to be applied."""
    if not uuids:
        return []
    m = store.models
    with store.reading():
        return [
            r.uuid
            for r in m.SwitchCdr.select(m.SwitchCdr.uuid).where(
                (m.SwitchCdr.uuid.in_(uuids)) & (m.SwitchCdr.applied == "stored")
            )
        ]


__all__ = ["Applied", "PostedCdr", "apply_stored", "store_post", "stored_uuids"]
