"""The call's decisions, free of FreeSWITCH's wire format and of the database.

The ESL adapter turns the `connect` reply into a `Channel`; the database adapter reads an
account into an `AccountState` and a live-call row into a `LiveCall`. This module decides,
from those plain values and the time it is given:

- who pays (`payer_of`), what number is rated (`destination_of`), where it goes (`dial_string_of`);
- admit or reject and why (`admit`: status, channel limit, funds) and the first grant;
- the cut-off and warning instants (`cutoff_instant_us`, `warning_instant_us`);
- what a heartbeat debits and extends (`beat`);
- what the call finally costs, is charged and leaves uncollected (`settlement`), what a call
  nobody saw end owes (`recovered`), and what a call let through during a database outage is
  charged (`unreserved`);
- how it ended (`result_of`) and which part of it is billed (`billing_window`).

Nothing here sends, reads a clock or touches a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fsbill.core.bundle import paid_start_us, plan_mixed
from fsbill.core.frozen import evolve
from fsbill.core.grant import (
    US,
    Cap,
    GrantPlan,
    GrantPolicy,
    affordable_s,
    available,
    capped,
    collectable,
    cutoff_epoch_s,
    cutoff_offset_s,
    heartbeat_debit,
    plan_grant,
    settle,
    wants_extension,
)
from fsbill.core.guards import (
    CALL_RATE,
    SPEND_CAP,
    Guards,
    Usage,
    call_rate_exceeded,
    destination_verdict,
    may_spend,
    spend_room,
)
from fsbill.core.money import Money
from fsbill.core.rating import Rate, billed_seconds, cost
from fsbill.errors import MoneyError

# After the grant's end, how long before a call whose node went silent is certainly over
# inside FreeSWITCH (the cut-off fires before the grant ends; this covers a late scheduler).
HOLD_SLACK_US = 5 * US

# Channel variables fsbill reads (the dialplan contract; see docs/DIALPLAN.md "Channel variables").
READ_VARIABLES = (
    "fsbill_account",
    "nibble_account",
    "accountcode",
    "fsbill_destination",
    "fsbill_dial_string",
    "nibble_rate",
    "fsbill_direction",  # inbound: the called number's owner pays (fsbill.core.did, docs/DIDS.md)
)


@dataclass(frozen=True)
class Channel:
    uuid: str
    caller: str
    destination: str
    created_us: int
    answered_us: int | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    caller_id_name: str = ""  # FreeSWITCH's caller_id_name, for the CDR
    context: str = ""  # the dialplan context the call was routed in, for the CDR
    # the channel's transfers so far (a re-entered channel's earlier visits): a transfer out of
    # this visit's bridge shows as an entry not in here (fsbill.core.lifecycle.transferred)
    transfer_history: tuple[str, ...] = ()

    def var(self, name: str) -> str:
        value = self.variables.get(name, "")
        return "" if value == "_undef_" else value.strip()


@dataclass(frozen=True)
class Payer:
    """How the paying account is named: by its code, or by the caller id mapped to it."""

    by: str  # "code" | "cli"
    value: str
    source: str  # which variable or header it came from (logged, put in the CDR reason)


def payer_of(channel: Channel, nibblebill_compat: bool = False) -> Payer | None:
    """fsbill_account, else nibble_account (mod_nibblebill dialplans, only with
    `nibblebill_compat`), else accountcode, else the caller id number looked up in the
    account caller-id map."""
    names = (
        ("fsbill_account", "nibble_account", "accountcode") if nibblebill_compat else ("fsbill_account", "accountcode")
    )
    for name in names:
        value = channel.var(name)
        if value:
            return Payer("code", value, name)
    caller = channel.caller.strip().lstrip("+")
    if caller:
        return Payer("cli", caller, "caller_id_number")
    return None


def destination_of(channel: Channel) -> str:
    return channel.var("fsbill_destination") or channel.destination


def dial_string_of(channel: Channel, route_template: str, destination: str) -> str | None:
    """`fsbill_dial_string` from the dialplan, else the configured route template."""
    explicit = channel.var("fsbill_dial_string")
    if explicit:
        return explicit
    if route_template:
        return route_template.replace("{destination}", destination)
    return None


def nibble_rate_of(channel: Channel, nibblebill_compat: bool = False, allow_zero: bool = False) -> Money | None:
    """mod_nibblebill's `nibble_rate` (price per minute), when the dialplan sets one and
    `nibblebill_compat` is on (otherwise the channel's price is the deck's, whatever it says).
    Raises MoneyError for a value that is not an exact non-negative amount, and for 0 unless
    `allow_zero` (`nibblebill_allow_zero_rate`): a zero price makes every call free."""
    if not nibblebill_compat:
        return None
    raw = channel.var("nibble_rate")
    if not raw:
        return None
    rate = Money.parse(raw)
    if rate.is_negative():
        raise MoneyError(f"nibble_rate must not be negative, got {raw!r}")
    if not rate and not allow_zero:
        raise MoneyError("nibble_rate 0 would make the call free: set nibblebill_allow_zero_rate: true to allow it")
    return rate


# -- how a call ended ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CutoffMark:
    """How a call that its cut-off ended is recognised: the hangup cause the cut-off uses
    (hangup mode) or the extension it transfers to (transfer mode); the other one is empty."""

    hangup_cause: str = ""
    transfer_extension: str = ""


def result_of(answered: bool, hangup_cause: str, transferred_to: str, mark: CutoffMark) -> str:
    """completed | cut_off | unanswered, for the CDR and the metrics."""
    if not answered:
        return "unanswered"
    if mark.hangup_cause and hangup_cause == mark.hangup_cause:
        return "cut_off"
    if mark.transfer_extension and transferred_to == mark.transfer_extension:
        return "cut_off"
    return "completed"


def transfer_was_cutoff(unbridged_us: int, cutoff_us: int | None) -> bool:
    """Whether a transfer out of the bridge at `unbridged_us` was the call's own cut-off
    (FreeSWITCH's scheduler runs a task up to 1 s before its whole second, so any transfer from
    then on is it) rather than a transfer somebody else made earlier."""
    return cutoff_us is not None and unbridged_us >= cutoff_us - US


def billing_window(
    answered_us: int | None, end_us: int | None, unbridged_us: int | None
) -> tuple[int | None, int | None]:
    """The billed part of a call: from the A leg's answer to its end, or to the end of the
    bridge if that came first (a transfer cut-off tears the bridge down and sends the caller
    to an announcement that is not billed)."""
    if answered_us is None:
        return None, None
    end = end_us
    if unbridged_us is not None and unbridged_us >= answered_us and (end is None or unbridged_us < end):
        end = unbridged_us
    return answered_us, end


# -- the account, as a decision sees it ---------------------------------------------------------------
@dataclass(frozen=True)
class AccountState:
    """What the database says about an account, read under its lock."""

    status: str  # active | suspended | closed
    balance: Money
    credit_limit: Money
    held: Money  # Σ held by its live calls
    live_channels: int = 0
    max_channels: int = 0  # 0 = no limit
    guards: Guards | None = None  # its fraud guards (fsbill.core.guards), None = none read
    usage: Usage = Usage()  # what the guards count, read under the same lock
    arrears: Money = Money(0)  # recurring charges it could not pay yet (fsbill.core.arrears)
    bundle_free_s: int = 0  # seconds its bundles covering the call have that no live call holds

    @property
    def available(self) -> Money:
        return available(self.balance, self.credit_limit, self.held, self.arrears)

    @property
    def spendable(self) -> Money:
        """What a grant may newly hold: available money within the spend caps' room."""
        if self.guards is None:
            return self.available
        return may_spend(self.available, spend_room(self.guards, self.usage, self.held))


# -- the one record of a live call ------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveCall:
    """A live call's money and time: the enforcer holds this record, the live_call row is its
    durable copy. Invariant: debited + held == cost(granted_s) (see fsbill.core.grant)."""

    uuid: str
    visit: int  # which socket visit of the channel this leg is (1 for the first)
    rate: Rate
    granted_s: int
    held: Money
    debited: Money
    created_us: int
    hold_until_us: int  # by then FreeSWITCH's own cut-off has certainly ended the call
    answered_us: int | None = None  # when billing started (the bridge came up)
    cutoff_us: int | None = None  # when FreeSWITCH ends it (a whole second), once answered
    final: bool = False  # no further extension can be granted
    warned: bool = False  # the warning before the final cut-off is scheduled (not persisted)
    # the first bundle_s seconds from answer are paid from bundles (fsbill.core.bundle), the
    # rest of the grant in money: debited + held == cost(granted_s - bundle_s)
    bundle_s: int = 0


@dataclass(frozen=True)
class Admission:
    reason: str  # "" when admitted, else the rejection reason (see fsbill.config.REJECT_REASONS)
    call: LiveCall | None = None


def hold_deadline_us(start_us: int, granted_s: int, ring_s: int = 0) -> int:
    """When a call that started (or was created) at `start_us` with `granted_s` is certainly
    over inside FreeSWITCH, `ring_s` allowed for it to be answered first."""
    return start_us + (ring_s + granted_s) * US + HOLD_SLACK_US


def admit(
    uuid: str,
    visit: int,
    account: AccountState,
    rate: Rate,
    policy: GrantPolicy,
    now_us: int,
    max_ring_s: int,
    destination: str = "",
    cap: Cap | None = None,
) -> Admission:
    """Admit a call or say why not: the account's status, its channel limit, its fraud guards
    (the destination, its price, the rate of new calls), then whether its available money,
    within its spend caps, buys a first grant (the first billing block included). `cap`:
    the longest grant the resellers above the account afford (fsbill.core.chain), None: none."""
    if account.status != "active":
        return Admission("closed" if account.status == "closed" else "suspended")
    if account.max_channels and account.live_channels >= account.max_channels:
        return Admission("channel_limit")
    if account.guards is not None:
        verdict = destination_verdict(account.guards, destination, rate.rate)
        if verdict:
            return Admission(verdict)
        if call_rate_exceeded(account.guards, account.usage.calls_last_minute):
            return Admission(CALL_RATE)
    bundle_s = 0
    if account.bundle_free_s > 0:  # bundle seconds first, money after (fsbill.core.bundle)
        mixed = plan_mixed(rate, 0, 0, account.bundle_free_s, account.spendable, policy, 0, cap)
        plan = GrantPlan(mixed.granted_s, mixed.extra_hold, mixed.final)
        bundle_s = mixed.bundle_s
    else:
        plan = capped(rate, 0, plan_grant(rate, 0, account.spendable, policy), cap, policy.margin_s)
    if plan.granted_s == 0:
        if account.spendable < account.available and plan_grant(rate, 0, account.available, policy).granted_s:
            return Admission(SPEND_CAP)  # the money is there; the cap is what stops it
        return Admission("insufficient_funds")
    call = LiveCall(
        uuid=uuid,
        visit=visit,
        rate=rate,
        granted_s=plan.granted_s,
        held=plan.extra_hold,
        debited=Money(0),
        created_us=now_us,
        hold_until_us=hold_deadline_us(now_us, plan.granted_s, max_ring_s),
        final=plan.final,
        bundle_s=bundle_s,
    )
    return Admission("", call)


def warning_after_answer_s(granted_s: int, policy: GrantPolicy) -> int | None:
    """Seconds after answer at which to warn, for a grant that is already final at authorization."""
    if policy.warning_s <= 0:
        return None
    return max(1, cutoff_offset_s(granted_s, policy.margin_s) - policy.warning_s)


def cutoff_instant_us(answered_us: int, granted_s: int, margin_s: int) -> int:
    """THE cut-off instant: `margin_s` before the grant ends, floored to the whole second
    FreeSWITCH's scheduler works in (fsbill.core.grant.cutoff_epoch_s)."""
    return cutoff_epoch_s(answered_us, granted_s, margin_s) * US


def warning_instant_us(cutoff_us: int, warning_s: int, now_us: int) -> int | None:
    """When to play the warning before a final cut-off at `cutoff_us`: `warning_s` before it,
    or — when the grant became final inside that window (short slices) — at the next whole
    second, so the caller always hears it before the cut-off. None only when warnings are off
    or the cut-off itself is due within the second."""
    if warning_s <= 0:
        return None
    soonest = (now_us // US + 1) * US  # FreeSWITCH schedules whole seconds; a past one never fires
    at = max(cutoff_us - warning_s * US, soonest)
    return at if at < cutoff_us else None


def answer(call: LiveCall, answered_us: int, policy: GrantPolicy, cutoff_in_switch: bool = False) -> LiveCall:
    """Billing starts: the cut-off instant is fixed from this moment and the grant.

    `cutoff_in_switch`: FreeSWITCH already holds the cut-off relative to this answer (it armed
    it itself on answer), so the hold ends with it, not at the take-time bound (ring allowance
    plus grant) that covered a call that might ring for long. Otherwise the bound stands until
    FreeSWITCH acknowledges the cut-off at its real instant."""
    deadline = hold_deadline_us(answered_us, call.granted_s)
    return evolve(
        call,
        answered_us=answered_us,
        cutoff_us=cutoff_instant_us(answered_us, call.granted_s, policy.margin_s),
        hold_until_us=deadline if cutoff_in_switch else max(call.hold_until_us, deadline),
    )


@dataclass(frozen=True)
class Beat:
    call: LiveCall  # the record after this heartbeat
    debit: Money  # posted from the hold now
    extra_hold: Money  # newly held for an extension
    extended: bool
    account_active: bool = True  # False: the account was suspended; the call gets no more time
    extra_bundle_s: int = 0  # newly held on bundles for an extension (fsbill.core.bundle)


def beat(
    call: LiveCall, account: AccountState, now_us: int, policy: GrantPolicy, extend: bool, cap: Cap | None = None
) -> Beat:
    """A heartbeat: debit what the call consumed since the last one and, when its grant runs
    low and the account's status and money allow, extend it by another slice (within `cap`,
    what the resellers above the account afford: fsbill.core.chain)."""
    debit = Money(0)
    if call.answered_us is not None:
        paid_from = call.answered_us + call.bundle_s * US  # the bundle part costs no money
        debit = heartbeat_debit(call.rate, paid_from, now_us, call.debited, call.held)
    held, debited = call.held - debit, call.debited + debit
    granted_s, extra, final = call.granted_s, Money(0), call.final
    bundle_s = call.bundle_s
    elapsed_s = max(0, now_us - call.answered_us) // US if call.answered_us is not None else 0
    if extend and wants_extension(call.granted_s, elapsed_s, policy):
        if account.status != "active":
            final = True  # a suspended account's calls finish their grant, no more
        else:
            # A debit moves money from held to posted: what is available (and what the spend
            # caps allow: spent + held) does not change.
            if call.bundle_s or account.bundle_free_s:  # bundle seconds first (fsbill.core.bundle)
                mixed = plan_mixed(
                    call.rate,
                    call.granted_s,
                    call.bundle_s,
                    account.bundle_free_s,
                    account.spendable,
                    policy,
                    elapsed_s,
                    cap,
                )
                final = mixed.final
                if mixed.granted_s > call.granted_s:
                    granted_s, extra, bundle_s = mixed.granted_s, mixed.extra_hold, mixed.bundle_s
            else:
                plan: GrantPlan = plan_grant(call.rate, call.granted_s, account.spendable, policy, elapsed_s)
                plan = capped(call.rate, call.granted_s, plan, cap, policy.margin_s)
                final = plan.final
                if plan.granted_s > call.granted_s:
                    granted_s, extra = plan.granted_s, plan.extra_hold
    start_us = call.answered_us if call.answered_us is not None else call.created_us
    new = evolve(
        call,
        held=held + extra,
        debited=debited,
        granted_s=granted_s,
        final=final,
        bundle_s=bundle_s,
        hold_until_us=max(call.hold_until_us, hold_deadline_us(start_us, granted_s)),
        cutoff_us=(
            cutoff_instant_us(call.answered_us, granted_s, policy.margin_s) if call.answered_us is not None else None
        ),
    )
    return Beat(new, debit, extra, granted_s > call.granted_s, account.status == "active", bundle_s - call.bundle_s)


# -- the end ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Charge:
    """What settling a call does to the books."""

    billed_s: int
    cost: Money  # the exact rated cost of the call
    post: Money  # to move off the balance now (negative: a refund of debits that ran ahead)
    charged: Money  # everything the call was charged, debits included
    uncollected: Money  # rated cost the account could not pay
    release: Money  # the hold voided


def settlement(call: LiveCall, start_us: int | None, end_us: int | None, account: AccountState) -> Charge:
    """Final rating from FreeSWITCH's own times; a cost beyond what was held is collected
    only as far as the account's available money goes, the rest is uncollected."""
    s = settle(call.rate, paid_start_us(start_us, call.bundle_s), end_us, call.debited, call.held)
    after_release = available(account.balance - s.post, account.credit_limit, account.held - call.held, account.arrears)
    extra = collectable(s.overflow, after_release)
    post = s.post + extra
    return Charge(s.billed_s, s.cost, post, call.debited + post, s.overflow - extra, call.held)


def recovered(call: LiveCall) -> Charge:
    """What a call nobody saw end owes: the minimum it provably owes. Once answered that is at
    least its connect fee and first billing block (the initial increment or minimum duration),
    and at least what its heartbeats already debited; never more than it was promised
    (debited + held). The rest of its hold is voided."""
    owed = call.debited
    if call.answered_us is not None and not call.bundle_s:  # with a bundle part, money may not have started
        first_block = cost(call.rate, billed_seconds(call.rate, 1))
        promised = call.debited + call.held
        owed = max(owed, first_block if first_block <= promised else promised)
    billed = affordable_s(call.rate, owed)
    return Charge(billed, owed, owed - call.debited, owed, Money(0), call.held)


def unreserved(rate: Rate, start_us: int | None, end_us: int | None, account: AccountState) -> Charge:
    """A call let through while the database was down (on_db_error: allow): nothing was held,
    so it is charged only what the account can pay without breaking the invariant."""
    s = settle(rate, start_us, end_us, Money(0), Money(0))
    charged = collectable(s.overflow, account.available)
    return Charge(s.billed_s, s.cost, charged, charged, s.cost - charged, Money(0))
