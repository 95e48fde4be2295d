"""Reservation arithmetic: how much of an account a call may hold, debit and finally owe.

Pure: no database, no sockets, no clock. The model is a two-phase transfer (TigerBeetle's
pending/posted): a live call *holds* money apart from the balance; a heartbeat debit is a
partial post of that hold; the final settlement posts what the call was rated at and voids
the rest of the hold, exactly once.

For every live call these hold between operations:

    debited + held == cost(granted_s)       (what the call was promised, all paid for)

and for every account:

    balance + credit_limit - Σ held  >= 0   (the invariant: docs/ARCHITECTURE.md)

A grant is always a *billing boundary* of the call's rate (a duration whose billed seconds
equal itself), so any call that ends within its grant costs at most what was reserved.
FreeSWITCH cuts the call `margin_s` seconds before the grant ends because its scheduler
works in whole seconds and may fire a little late.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.money import Money
from fsbill.core.rating import Rate, billed_seconds, billed_seconds_us, cost, max_seconds

US = 1_000_000
# A budget no account reaches: used to ask the rate alone where its billing boundaries are.
UNLIMITED = Money(10**18)


@dataclass(frozen=True)
class GrantPolicy:
    slice_s: int  # how much talk time a call takes from the balance at a time
    max_call_s: int  # the longest any call may last, whatever the balance
    margin_s: int = 1  # cut-off this long before the grant's end (FreeSWITCH scheduler slack)
    # A live call asks for more once less than this is left of its grant; early enough that
    # a refusal still leaves time to play the warning before the cut-off.
    extend_below_s: int = 60
    warning_s: int = 0  # play the "call will end" prompt this long before a final cut-off (0 = never)

    @classmethod
    def build(cls, slice_s: int, max_call_s: int, margin_s: int, warning_s: int, heartbeat_s: int) -> GrantPolicy:
        return cls(slice_s, max_call_s, margin_s, extend_below(slice_s, margin_s, warning_s, heartbeat_s), warning_s)


def extend_below(slice_s: int, margin_s: int, warning_s: int, heartbeat_s: int) -> int:
    """`GrantPolicy.extend_below_s` from the settings."""
    return max(slice_s // 2, warning_s + margin_s + 2 * heartbeat_s)


# Can a call that still has money be cut off? Only heartbeats extend a grant. A grant of G s
# (counted from answer) is cut off at G - margin_s, scheduled on a whole epoch second, so the
# cut can fire as early as just after G - margin_s - 1. A heartbeat at elapsed e extends it only
# if G - floor(e) < extend_below (wants_extension; elapsed is counted in whole seconds), and the
# extension needs time to move the cut-off (a database transaction and two FreeSWITCH commands):
# 1 s is allowed for that. So some heartbeat must fall in [G - extend_below + 1, G - margin_s - 2].
# A new grant is given at a heartbeat (or at admission) with floor(e) + slice_s, so more than
# slice_s - 1 s are left then, and the window starts no earlier than that moment. Heartbeats come
# every heartbeat_s with any phase relative to answer, and an interval of length >= heartbeat_s
# always holds one. So a funded call is never cut iff
#
#     min(slice_s - 1, extend_below - 1) - margin_s - 2 >= heartbeat_s
#     i.e.  heartbeat_s <= min(slice_s, extend_below) - margin_s - 3
#
# With the defaults (slice 120, heartbeat 10, margin 1, warning 60): extend_below = max(60, 81) =
# 81, and 10 <= min(120, 81) - 4 = 77. `slice_s <= heartbeat_s` (e.g. 10 and 10) cut calls with
# money left at about 8.6 s. (A heartbeat running late under load eats into the 1 s allowed.)
def funded_call_slack_s(slice_s: int, heartbeat_s: int, margin_s: int, warning_s: int) -> int:
    """How many seconds the condition above holds with (>= 0: no funded call is cut)."""
    return min(slice_s, extend_below(slice_s, margin_s, warning_s, heartbeat_s)) - margin_s - 3 - heartbeat_s


def available(balance: Money, credit_limit: Money, held: Money, arrears: Money = Money(0)) -> Money:
    """What an account can still promise: the one formula of the invariant (docs/ARCHITECTURE.md),
    balance + credit_limit − Σ held by its live calls − arrears (recurring charges it could not
    pay yet, fsbill.core.arrears). Negative when money was taken away from under live calls (a
    forced adjustment) or while it is in arrears. Without `arrears` it is the invariant's own
    margin, which nothing may take below zero."""
    return balance + credit_limit - held - arrears


def affordable_s(rate: Rate, budget: Money, cap_s: int | None = None) -> int:
    """The longest answered duration `budget` pays for at `rate` (0 for no money at all)."""
    return max_seconds(rate, budget, cap_s) if budget.micros > 0 else 0


def wants_extension(granted_s: int, elapsed_s: int, policy: GrantPolicy) -> bool:
    """Only top a grant up when it runs low: one slice ahead per call is what fair sharing
    of a balance needs, and moving the cut-off costs two FreeSWITCH API commands."""
    return granted_s - elapsed_s < policy.extend_below_s


@dataclass(frozen=True)
class GrantPlan:
    granted_s: int  # the call's new total grant (a billing boundary), >= the old one
    extra_hold: Money  # what must be newly held for it (0 if nothing changed)
    final: bool  # True when no further extension can ever be granted by this policy/money


def plan_grant(rate: Rate, granted_s: int, available: Money, policy: GrantPolicy, elapsed_s: int = 0) -> GrantPlan:
    """The grant a call can have now: up to one more slice, within the per-call maximum,
    paid for by `available` (the account's balance + credit − everything held by live calls,
    this call's own hold excluded, since it is already part of cost(granted_s)).

    A result with granted_s == 0 means the call cannot be authorized at all. `elapsed_s` is
    how long the call has been answered: the grant reaches one slice beyond it.
    """
    committed = cost(rate, granted_s)
    # The next slice, but never less than the next billing block (a 60/60 rate cannot be
    # granted 30 s) and never past the per-call maximum.
    step_s = max(elapsed_s + policy.slice_s, billed_seconds(rate, granted_s + 1))
    target_s = max_seconds(rate, UNLIMITED, min(step_s, policy.max_call_s))
    budget = committed + (available if available.micros > 0 else Money(0))
    new_s = max(granted_s, max_seconds(rate, budget, target_s))  # never take back a grant
    if granted_s == 0 and new_s <= policy.margin_s:
        return GrantPlan(0, Money(0), True)
    ceiling_s = max_seconds(rate, UNLIMITED, policy.max_call_s)
    final = new_s < target_s or new_s >= ceiling_s
    return GrantPlan(new_s, cost(rate, new_s) - committed, final)


def boundary_at_most(rate: Rate, s: int) -> int:
    """The longest duration up to `s` whose billed seconds equal itself (0 below the first block)."""
    first = billed_seconds(rate, 1)
    if s < first:
        return 0
    return first + (s - first) // rate.increment_s * rate.increment_s


@dataclass(frozen=True)
class Cap:
    """The longest grant the levels above a payer afford (fsbill.core.chain), and whether any
    of them is out of money for more (their grant is final)."""

    granted_s: int
    final: bool


def capped(rate: Rate, granted_s: int, plan: GrantPlan, cap: Cap | None, margin_s: int) -> GrantPlan:
    """`plan` within `cap`: the longest billing boundary of `rate` within it, never less than
    the grant already given. A first grant that shrinks to the margin or less is no grant."""
    if cap is None:
        return plan
    final = plan.final or cap.final
    if plan.granted_s <= cap.granted_s:
        return GrantPlan(plan.granted_s, plan.extra_hold, final)
    new_s = max(granted_s, boundary_at_most(rate, cap.granted_s))
    if granted_s == 0 and new_s <= margin_s:
        return GrantPlan(0, Money(0), True)
    return GrantPlan(new_s, cost(rate, new_s) - cost(rate, granted_s), final)


def cutoff_offset_s(granted_s: int, margin_s: int) -> int:
    """Seconds after answer at which FreeSWITCH must end the call (at least 1)."""
    return max(1, granted_s - margin_s)


def cutoff_epoch_s(answered_us: int, granted_s: int, margin_s: int) -> int:
    """The whole epoch second the cut-off is scheduled at: floored, because FreeSWITCH's
    scheduler fires on the first whole-second tick at or after the task's time."""
    return (answered_us + cutoff_offset_s(granted_s, margin_s) * US) // US


def warning_epoch_s(cutoff_epoch: int, warning_s: int, now_us: int) -> int | None:
    """When to play the 'call will end' prompt, or None if that moment has passed."""
    at = cutoff_epoch - warning_s
    return at if at * US > now_us else None


def accrued_cost(rate: Rate, answered_us: int, now_us: int) -> Money:
    """What the call has consumed by `now_us`: the cost of the billing blocks it has started."""
    return cost(rate, billed_seconds_us(rate, max(0, now_us - answered_us)))


def heartbeat_debit(rate: Rate, answered_us: int, now_us: int, debited: Money, held: Money) -> Money:
    """How much to post from the hold now: consumption so far not yet debited, never more
    than is held and never negative (refunds only happen at settlement)."""
    due = accrued_cost(rate, answered_us, now_us) - debited
    if due.micros <= 0:
        return Money(0)
    return due if due <= held else held


@dataclass(frozen=True)
class Settlement:
    billed_s: int
    cost: Money  # the exact rated cost of the call
    post: Money  # what to move off the balance now (negative of a refund if debits ran ahead)
    release_hold: Money  # the whole remaining hold, voided
    overflow: Money  # cost beyond debited + held: must come from available money, if any

    @property
    def within_hold(self) -> bool:
        return self.overflow.micros == 0


def settle(rate: Rate, answered_us: int | None, end_us: int | None, debited: Money, held: Money) -> Settlement:
    """Final rating from FreeSWITCH's own times (exact uepochs, not the rounded billsec)."""
    if answered_us is None or end_us is None or end_us <= answered_us:
        billed = 0
        total = Money(0)
    else:
        billed = billed_seconds_us(rate, end_us - answered_us)
        total = cost(rate, billed)
    remaining = total - debited
    overflow = remaining - held if remaining > held else Money(0)
    return Settlement(billed, total, remaining - overflow, held, overflow)


def collectable(overflow: Money, available_after_release: Money) -> Money:
    """The part of an overflow the account can still pay without breaking the invariant."""
    if overflow.micros <= 0 or available_after_release.micros <= 0:
        return Money(0)
    return overflow if overflow <= available_after_release else available_after_release
