"""A call under resellers: every level of the payer's chain pays at its own price, live.

Accounts form a tree (docs/RESELLERS.md). A call made by an account is also a call of every
account above it, each paying for it at its own tariff's rate. The invariant holds at every
level: for every account A, balance + credit − Σ holds − arrears ≥ 0, where A's holds cover
every live call of A's subtree at A's own rate. So a call carries one hold per level:

- the payer's on its live call (fsbill.core.call.LiveCall, exactly as for a one-level account);
- each ancestor's as a `LevelHold`: the same grant (seconds), priced at that level's rate.

Admission asks every level what it affords (`cap`): the grant is the smallest, and the
payer's plan is cut to it (fsbill.core.grant.capped). A heartbeat does the same over the same
levels, so every level's hold is extended together or none is (`extension`). Settlement rates
the same billed window at every level (`settle_level`), so each level pays exactly its rate for
exactly the seconds the others paid for theirs. Each level's margin against the level below
(converted across currencies) is fsbill.core.fx.margins.

Each level's hold stays a cost of the grant at its own rate: debited + held == cost(rate,
granted_s). Since the grant is within what each level's plan_grant allowed (a billing boundary
of that level's rate at or above it), cost(rate, grant) never exceeds what the level affords.

Pure: no database, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fsbill.core.call import AccountState, Charge, LiveCall, recovered, settlement
from fsbill.core.frozen import evolve
from fsbill.core.grant import Cap, GrantPolicy, heartbeat_debit, plan_grant
from fsbill.core.guards import CALL_RATE, SPEND_CAP, call_rate_exceeded, destination_verdict
from fsbill.core.money import Money
from fsbill.core.rating import Rate, cost

# The deepest a tree may be: a payer and four levels above it.
MAX_DEPTH = 5


@dataclass(frozen=True)
class LevelHold:
    """What one ancestor of the payer holds for a live call, at its own rate."""

    account_id: int
    depth: int  # 0 = the top of the chain
    rate: Rate
    held: Money
    debited: Money = Money(0)


@dataclass(frozen=True)
class Level:
    """An ancestor as a decision sees it: its account, read under its lock, and the call's
    rate in its tariff."""

    account_id: int
    account: AccountState
    rate: Rate


def refusal(levels: Sequence[Level], destination: str = "") -> str:
    """Why a level above the payer refuses a new call of its subtree ("" if none does): a
    suspended or closed reseller, one whose subtree uses all its channels, or one of its fraud
    guards (the destination, its price at the level's rate, its subtree's calls per minute)."""
    for level in levels:
        a = level.account
        if a.status != "active":
            return "closed" if a.status == "closed" else "suspended"
        if a.max_channels and a.live_channels >= a.max_channels:
            return "channel_limit"
        if a.guards is not None:
            verdict = destination_verdict(a.guards, destination, level.rate.rate)
            if verdict:
                return verdict
            if call_rate_exceeded(a.guards, a.usage.calls_last_minute):
                return CALL_RATE
    return ""


def short_of(levels: Sequence[Level], policy: GrantPolicy) -> str:
    """Why the levels cannot pay a first grant: a spend cap when the money is there but a level's
    cap stops it, else insufficient_funds."""
    for lv in levels:
        a = lv.account
        if (
            not plan_grant(lv.rate, 0, a.spendable, policy).granted_s
            and plan_grant(lv.rate, 0, a.available, policy).granted_s
        ):
            return SPEND_CAP
    return "insufficient_funds"


def status_of(payer: AccountState, levels: Sequence[Level]) -> AccountState:
    """The payer as a heartbeat must see it: suspended (no more time) when it or any level
    above it is not active."""
    if payer.status != "active":
        return payer
    for level in levels:
        if level.account.status != "active":
            return evolve(payer, status="suspended")
    return payer


def cap(levels: Sequence[Level], granted_s: int, policy: GrantPolicy, elapsed_s: int = 0) -> Cap | None:
    """The longest grant every level above the payer affords at its own rate (its available
    money, this call's own hold excluded as in plan_grant) and whether any of them is final.
    None for a payer with nothing above it."""
    if not levels:
        return None
    plans = [plan_grant(lv.rate, granted_s, lv.account.spendable, policy, elapsed_s) for lv in levels]
    smallest = min(p.granted_s for p in plans)
    return Cap(smallest, any(p.final and p.granted_s == smallest for p in plans))


def first_holds(levels: Sequence[Level], granted_s: int) -> list[LevelHold]:
    """Each level's hold for a call admitted with `granted_s`."""
    return [LevelHold(lv.account_id, depth, lv.rate, cost(lv.rate, granted_s)) for depth, lv in enumerate(levels)]


@dataclass(frozen=True)
class LevelBeat:
    hold: LevelHold  # after this heartbeat
    debit: Money  # posted from the level's hold now
    extra_hold: Money  # newly held for the extension


def extension(
    holds: Sequence[LevelHold], answered_us: int | None, now_us: int, old_granted_s: int, new_granted_s: int
) -> list[LevelBeat]:
    """A heartbeat at every level: debit what the call consumed at the level's rate and hold
    the extension from `old_granted_s` to `new_granted_s` (the payer's new grant, within `cap`)."""
    out = []
    for h in holds:
        debit = Money(0)
        if answered_us is not None:
            debit = heartbeat_debit(h.rate, answered_us, now_us, h.debited, h.held)
        extra = cost(h.rate, new_granted_s) - cost(h.rate, old_granted_s)
        after = evolve(h, held=h.held - debit + extra, debited=h.debited + debit)
        out.append(LevelBeat(after, debit, extra))
    return out


def level_call(call: LiveCall, hold: LevelHold) -> LiveCall:
    """The payer's live call as one level above it pays for it (its rate and its hold)."""
    return evolve(call, rate=hold.rate, held=hold.held, debited=hold.debited)


def settle_level(
    call: LiveCall, hold: LevelHold, account: AccountState, start_us: int | None, end_us: int | None, seen: bool
) -> Charge:
    """What one level is charged for the call: the payer's billed window at its own rate
    (`seen`), or, for a call nobody saw end, the minimum it provably owes (fsbill.core.call.recovered)."""
    lc = level_call(call, hold)
    return settlement(lc, start_us, end_us, account) if seen else recovered(lc)


__all__ = [
    "MAX_DEPTH",
    "Level",
    "LevelBeat",
    "LevelHold",
    "cap",
    "extension",
    "first_holds",
    "level_call",
    "refusal",
    "settle_level",
    "short_of",
    "status_of",
]
