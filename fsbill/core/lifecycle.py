"""A call's whole life as one pure state machine, in the sans-I/O manner of h11.

`start` (a call FreeSWITCH hands to the socket) and `adopt` (a live call taken over after its
socket died) give the first state and commands; `step(state, event, now_us)` gives the next
state and the commands to carry out. Events are what FreeSWITCH said (translated by
fsbill.esl) and the results of the work the machine asked for (fsbill.core.events); commands
(below) are everything a call does: look up, reserve, arm, bridge, warn, move the cut-off,
kill, end, keep the carrier, record the answer, beat, settle, refuse, write its CDR, defer a
write while the database is down, and tell the node what to count and log. The driver
(fsbill.enforcer) carries commands out in order; a command whose outcome the machine needs is
the last of its batch, and its outcome comes back as the next event.

The rules that keep the invariant live here, in the order of the commands:
- money is held (Reserve) before FreeSWITCH is told the call may go on (Arm, Bridge), and an
  extension is held (Beat) before the cut-off is moved later (MoveCutoff);
- the cut-off always lives inside FreeSWITCH: armed on answer for a ringing channel, armed
  relative to now for one answered before the socket and moved to its real instant once the
  bridge is up;
- a visit transferred out of its bridge (the transfer cut-off, a top-up menu) is settled at
  the unbridge and nothing more is sent on its socket: the caller belongs to the dialplan,
  and a later visit of the same channel to its own socket (which this socket also hears).

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fsbill.core import events as ev
from fsbill.core.call import (
    Channel,
    LiveCall,
    Payer,
    answer,
    billing_window,
    destination_of,
    dial_string_of,
    hold_deadline_us,
    nibble_rate_of,
    payer_of,
    result_of,
    warning_after_answer_s,
    warning_instant_us,
)
from fsbill.core.commands import (  # the machine's vocabulary, re-exported
    Arm,
    ArmFromNow,
    Beat,
    Bridge,
    Command,
    Config,
    DeferRejection,
    DeferSettlement,
    DeferUnreserved,
    End,
    FindPayer,
    FindRate,
    Finish,
    Follow,
    HoldChanged,
    KeepCarrier,
    Kill,
    MoveCutoff,
    Note,
    PlanRoute,
    RecordAnswer,
    Refuse,
    Release,
    Reserve,
    RoutesStale,
    Settle,
    Subscribe,
    WarnAt,
    WriteRejection,
)
from fsbill.core.grant import US, GrantPolicy, cutoff_offset_s
from fsbill.core.money import Money
from fsbill.core.rating import Rate, normalize_number
from fsbill.core.records import BridgeOutcome, CallEnd, Leg, PayerAccount, RejectionRecord
from fsbill.core.routing import NO_ROUTE, VENDOR_UNAVAILABLE, Route
from fsbill.errors import MoneyError, NumberError

# The hang-up cause written on the CDR of a visit that was transferred out of its bridge (the
# channel itself lives on). FreeSWITCH's own bridge_hangup_cause then is NORMAL_CLEARING.
TRANSFER_CAUSE = "BLIND_TRANSFER"


# -- state ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refused:
    reason: str
    detail: str = ""
    account_code: str = ""
    currency: str = ""
    balance: Money | None = None


# The phases, in the order a call goes through them.
PAYER, RATE, ROUTE, RESERVE = "finding_payer", "rating", "routing", "reserving"
REFUSING, REFUSED, WRITING_REJECTION = "refusing", "refused", "writing_rejection"
ARMING, LIVE, SETTLING, TRANSFERRED, DONE = "arming", "live", "settling", "transferred", "done"


@dataclass(frozen=True)
class CallState:
    phase: str
    channel: Channel
    pre_answered: bool  # answered before the socket: billing starts when the bridge comes up
    config: Config
    payer: Payer | None = None
    account: PayerAccount | None = None
    number: str = ""
    rate: Rate | None = None
    dial: str = ""
    legs: tuple[Leg, ...] = ()
    reserved: bool = True  # False only for a call let through while the database was down
    call: LiveCall | None = None  # THE record of the call while it lives
    refused: Refused | None = None
    refusal_cause: str = ""
    unbridged_us: int | None = None
    hangup_cause: str = ""
    cut_for_suspension: bool = False
    wake_us: int | None = None  # when the driver sends the next Tick (a heartbeat, a wait's end)
    answer_unrecorded: bool = False  # a pre-answered call's answer waits for its cut-off's move
    rejection: RejectionRecord | None = None  # the refused call's CDR, once its end is known
    settlement: CallEnd | None = None  # the settlement in flight
    after_settling: str = DONE  # where a settlement in flight leads (TRANSFERRED for a transfer)

    @property
    def leg(self) -> tuple[str, int] | None:
        return (self.call.uuid, self.call.visit) if self.call is not None else None

    @property
    def over(self) -> bool:
        return self.phase == DONE


Step = tuple[CallState, list[Command]]


# -- entering the machine ----------------------------------------------------------------------------------
def start(channel: Channel, config: Config, now_us: int) -> Step:
    """A call FreeSWITCH handed to the socket: subscribe, then find who pays."""
    pre_answered = channel.answered_us is not None
    state = CallState(PAYER, channel, pre_answered, config)
    commands: list[Command] = [Subscribe(bridge_events=pre_answered or config.lcr)]
    payer = payer_of(channel, config.nibblebill_compat)
    if payer is None:
        return _refuse(
            replace(state, phase=PAYER), Refused("unknown_account", "no account variable and no caller id"), commands
        )
    return replace(state, payer=payer), [*commands, FindPayer(payer)]


def adopt(
    channel: Channel,
    config: Config,
    call: LiveCall,
    account: PayerAccount,
    destination: str,
    now_us: int,
    *,
    answered_us: int | None,
    bridged_us: int | None,
    ended: ev.HangupComplete | None,
) -> Step:
    """A live call taken over through the switch after its socket died: its record is the
    row's, its channel as the switch dumps it (`answered_us`, `bridged_us`).

    A channel answered before the call was reserved was answered before the socket (an IVR):
    its billing starts when the bridge comes up, whatever the answer time says, and its
    cut-off inside FreeSWITCH is still the bound armed when it was taken (ring allowance plus
    grant), so it is moved to its real instant at once."""
    pre_answered = answered_us is not None and answered_us < call.created_us
    state = CallState(
        LIVE,
        replace(channel, answered_us=answered_us if pre_answered else None),
        pre_answered,
        config,
        payer=Payer("code", account.code, "adopted"),
        account=account,
        number=destination,
        rate=call.rate,
        call=call,
    )
    commands: list[Command] = [Follow((call.uuid, call.visit)), HoldChanged(account.currency, call.held)]
    if ended is not None:
        state, more = _finish(state, ended, now_us)
        return state, commands + more
    state = _schedule_beat(state, now_us)
    if call.answered_us is None:
        start_us = bridged_us if pre_answered else answered_us
        if start_us is not None:  # answered (bridged) while nobody watched
            state, more = _on_answer(state, start_us, now_us)
            return state, commands + more
        return state, commands
    # Answered before: schedule the cut-off again, so that this process knows what FreeSWITCH
    # holds (whether the old process had scheduled a warning is unknown: the heartbeat that
    # follows schedules it afresh if the grant is final, so it plays once). Only while the
    # cut-off is ahead: FreeSWITCH takes an absolute time already past as relative.
    state = replace(state, call=replace(call, warned=False))
    if call.cutoff_us is not None and call.cutoff_us > now_us + US:
        commands.append(MoveCutoff(call.cutoff_us, None))
        return state, commands
    # At once, not a heartbeat later: the debits the old process missed, the extension it may
    # have been about to make, the warning of a final grant.
    return _beat(state, commands)


# -- the transition -------------------------------------------------------------------------------------------
def step(state: CallState, event: ev.Event, now_us: int) -> Step:
    handler = _HANDLERS.get(state.phase)
    if handler is None:
        return state, []
    return handler(state, event, now_us)


def _authorizing(state: CallState, event: ev.Event, now_us: int) -> Step:
    if isinstance(event, ev.DatabaseDown):
        return _database_down(state, event.error, now_us)
    if isinstance(event, (ev.SocketClosed, ev.CommandFailed)):
        return replace(state, phase=DONE), [Note("authorization_abandoned", {"uuid": state.channel.uuid}), Finish()]
    if state.phase == PAYER and isinstance(event, ev.PayerFound):
        return _payer_found(state, event.account, now_us)
    if state.phase == RATE and isinstance(event, ev.RateFound):
        if event.rate is None:
            return _refuse(state, _refused(state, "no_rate", f"no rate for {state.number}"))
        return _rated(replace(state, rate=event.rate), now_us)
    if state.phase == ROUTE and isinstance(event, ev.RoutePlanned):
        return _routed(state, event.route, event.legs)
    if state.phase == RESERVE and isinstance(event, ev.Reserved):
        return _reserved(state, event, now_us)
    return state, []  # a channel event before the call is authorized changes nothing yet


def _payer_found(state: CallState, account: PayerAccount | None, now_us: int) -> Step:
    ch, config = state.channel, state.config
    payer = state.payer
    assert payer is not None
    if account is None:
        # no account: the CDR's account stays empty (the caller id is in its own field, the
        # detail says which variable named whom)
        return _refuse(state, Refused("unknown_account", f"{payer.source}={payer.value}"))
    state = replace(state, account=account)
    if account.status != "active":
        reason = "closed" if account.status == "closed" else "suspended"
        return _refuse(state, _refused(state, reason))
    destination = destination_of(ch)
    try:
        number = normalize_number(destination, config.international_prefix)
    except NumberError as exc:
        return _refuse(state, _refused(state, "invalid_number", str(exc)))
    state = replace(state, number=number)
    try:
        nibble = nibble_rate_of(ch, config.nibblebill_compat, config.nibblebill_allow_zero_rate)
    except MoneyError as exc:
        return _refuse(state, _refused(state, "no_rate", f"bad nibble_rate: {exc}"))
    if nibble is not None:
        return _rated(replace(state, rate=Rate.adhoc(nibble)), now_us)
    return replace(state, phase=RATE), [FindRate(account.tariff_id, number, ch.created_us or now_us)]


def _rated(state: CallState, now_us: int) -> Step:
    """Who picks the bridge: the dialplan's fsbill_dial_string, else least-cost routing, else
    the route template."""
    account, rate = state.account, state.rate
    assert account is not None and rate is not None
    dial = dial_string_of(state.channel, "", state.number) or ""
    state = replace(state, dial=dial)
    if not dial and state.config.lcr:
        at = state.channel.created_us or now_us
        return replace(state, phase=ROUTE), [PlanRoute(account.currency, rate, state.number, at)]
    return _routed(state, None, ())


def _routed(state: CallState, route: Route | None, legs: tuple[Leg, ...]) -> Step:
    commands: list[Command] = []
    if route is not None:
        if route.reason == VENDOR_UNAVAILABLE:
            detail = ", ".join(f"{o.vendor}: {o.reason}" for o in route.options)
            return _refuse(state, _refused(state, VENDOR_UNAVAILABLE, detail))
        if route.reason == NO_ROUTE:
            legs = ()  # no vendor has a rate for it: the route template, if any
    dial = state.dial
    if not dial and not legs:
        dial = dial_string_of(state.channel, state.config.route_template, state.number) or ""
        if not dial:
            return _refuse(
                state, _refused(state, "no_route", "no fsbill_dial_string, no vendor and no route configured")
            )
    ch, account, rate = state.channel, state.account, state.rate
    assert account is not None and rate is not None
    commands.append(
        Reserve(
            ch.uuid,
            account.id,
            rate,
            state.number,
            legs,
            ch.caller,
            ch.var("accountcode"),
            ch.caller_id_name,
            ch.context,
        )
    )
    return replace(state, phase=RESERVE, dial=dial, legs=legs), commands


def _reserved(state: CallState, result: ev.Reserved, now_us: int) -> Step:
    commands: list[Command] = []
    if state.legs and (result.refused_vendors or result.reason == VENDOR_UNAVAILABLE):
        commands.append(RoutesStale())
    if result.call is None:
        refused = replace(_refused(state, result.reason), balance=Money(result.balance_micros))
        return _refuse(state, refused, commands)
    call, account, rate = result.call, state.account, state.rate
    assert account is not None and rate is not None
    dial, legs = state.dial, state.legs
    if legs:
        legs = tuple(leg for leg in legs if leg.vendor not in result.refused_vendors)
        dial = ""  # the driver composes the failover bridge from the legs
    state = replace(state, call=call, dial=dial, legs=legs)
    commands += [
        Note(
            "authorized",
            {
                "uuid": call.uuid,
                "account": account.code,
                "destination": state.number,
                "prefix": rate.prefix,
                "rate": rate.rate,
                "granted_s": call.granted_s,
                "held": call.held,
                "final": call.final,
                "vendors": ",".join(leg.vendor for leg in legs) or None,
            },
        ),
        Note("accepted"),
        Follow((call.uuid, call.visit)),
        HoldChanged(account.currency, call.held),
    ]
    return _arm_and_bridge(state, commands, now_us)


def _database_down(state: CallState, error: str, now_us: int) -> Step:
    ch, config = state.channel, state.config
    payer = state.payer
    assert payer is not None
    code = state.account.code if state.account is not None else ""
    name = code or payer.value
    commands: list[Command] = [
        Note("database_unavailable", {"uuid": ch.uuid, "account": name, "error": error, "policy": config.on_db_error})
    ]
    if config.on_db_error != "allow":
        return _refuse(state, Refused("db_error", error, name), commands)
    # The operator chose availability over the invariant for outages: the call gets a short
    # FreeSWITCH-enforced grant with nothing held, and is charged once the database is back
    # (never more than the account then has; the rest is recorded as uncollected).
    destination = destination_of(ch)
    dial = dial_string_of(ch, config.route_template, destination)
    if not dial:
        return _refuse(state, Refused("no_route", "no dial string", name), commands)
    call = LiveCall(
        uuid=ch.uuid,
        visit=0,  # numbered when it is written, after the outage
        rate=Rate.adhoc(Money(0)),
        granted_s=config.db_error_grant_s + config.policy.margin_s,
        held=Money(0),
        debited=Money(0),
        created_us=ch.created_us or now_us,
        hold_until_us=0,
        final=True,
    )
    # Charged later as the call named its payer: by account code, or by caller id (looked up
    # in the caller-id map when the database is back), never the caller id taken as a code.
    state = replace(
        state,
        account=PayerAccount(0, name, 0, "", "active"),
        payer=Payer("code", code, payer.source) if code else payer,
        number=destination,
        dial=dial,
        legs=(),
        reserved=False,
        call=call,
    )
    commands += [Note("accepted", {"reason": "db_error_allowed"}), Follow((call.uuid, call.visit))]
    return _arm_and_bridge(state, commands, now_us)


def _arm_and_bridge(state: CallState, commands: list[Command], now_us: int) -> Step:
    call, account, policy = state.call, state.account, state.config.policy
    assert call is not None and account is not None
    offset = cutoff_offset_s(call.granted_s, policy.margin_s)
    variables = (
        ("fsbill_account", account.code),
        ("fsbill_rate", str(call.rate.rate)),
        ("fsbill_prefix", call.rate.prefix),
        ("fsbill_max_seconds", str(offset)),
        ("fsbill_result", "authorized"),
    )
    if not state.pre_answered:
        warning = warning_after_answer_s(call.granted_s, policy) if call.final else None
        commands.append(Arm(variables, offset, warning))
        if warning is not None:
            state = replace(state, call=replace(call, warned=True))
    else:
        # FreeSWITCH never runs on-answer actions for an answered channel: arm the cut-off now,
        # relative, bounded by the ring allowance plus the grant; it is moved to its real
        # instant when the bridge comes up.
        commands += [Arm(variables, None, None), ArmFromNow(state.config.max_ring_s + offset)]
    commands.append(Bridge(state.dial))
    state = _schedule_beat(replace(state, phase=LIVE), now_us)
    return state, commands


def _schedule_beat(state: CallState, now_us: int) -> CallState:
    return replace(state, wake_us=now_us + state.config.heartbeat_s * US)


# -- refusing ---------------------------------------------------------------------------------------------------
def _refused(state: CallState, reason: str, detail: str = "") -> Refused:
    account = state.account
    return Refused(reason, detail, account.code if account else "", account.currency if account else "")


def _refuse(state: CallState, refused: Refused, commands: list[Command] | None = None) -> Step:
    commands = list(commands or [])
    commands += [
        Note(
            "rejected",
            {
                "uuid": state.channel.uuid,
                "account": refused.account_code,
                "reason": refused.reason,
                "detail": refused.detail,
            },
        ),
        Refuse(refused.reason),
    ]
    return replace(state, phase=REFUSING, refused=refused), commands


def _refusing(state: CallState, event: ev.Event, now_us: int) -> Step:
    if not isinstance(event, ev.Refusal):
        return state, []
    # A prompt takes a while to play; a SIP response ends the channel at once.
    wait_s = 30 if event.prompted else 10
    state = replace(state, phase=REFUSED, refusal_cause=event.cause, wake_us=now_us + wait_s * US)
    if not event.delivered:
        return state, [Note("rejection_not_delivered", {"uuid": state.channel.uuid, "error": event.error})]
    return state, []


def _refused_call(state: CallState, event: ev.Event, now_us: int) -> Step:
    """Waiting for the refused channel to end, to record its real cause."""
    if isinstance(event, ev.HangupComplete):
        return _write_rejection(state, event.cause, now_us)
    if isinstance(event, ev.SocketClosed) or (isinstance(event, ev.Tick) and now_us >= (state.wake_us or 0)):
        return _write_rejection(state, state.refusal_cause, now_us)
    return state, []


def _write_rejection(state: CallState, cause: str, now_us: int) -> Step:
    ch, refused = state.channel, state.refused
    assert refused is not None
    record = RejectionRecord(
        uuid=ch.uuid,
        account_code=refused.account_code,
        node=state.config.node,
        caller=ch.caller,
        destination=destination_of(ch),
        currency=refused.currency,
        start_us=ch.created_us or now_us,
        reason=refused.reason,
        hangup_cause=cause,
        balance=refused.balance,
        accountcode=ch.var("accountcode"),
        caller_id_name=ch.caller_id_name,
        context=ch.context,
    )
    return replace(state, phase=WRITING_REJECTION, wake_us=None, rejection=record), [WriteRejection(record)]


def _writing_rejection(state: CallState, event: ev.Event, now_us: int) -> Step:
    if isinstance(event, ev.Written):
        return replace(state, phase=DONE), [Finish()]
    if isinstance(event, ev.DatabaseDown):
        record = state.rejection
        assert record is not None
        if state.config.defer_writes:
            return replace(state, phase=DONE), [DeferRejection(record), Finish()]
        return replace(state, phase=DONE), [Note("cdr_lost", {"uuid": record.uuid, "reason": record.reason}), Finish()]
    return state, []


# -- while it lives -------------------------------------------------------------------------------------------------
def transferred(channel: Channel, destination: str, transfer_history: tuple[str, ...]) -> bool:
    """Whether the channel left this visit's extension: FreeSWITCH's events after a transfer
    out of the bridge carry the new destination and a new transfer_history entry
    (fs-wire/transfer-cutoff.txt). A re-entered channel's history already holds the earlier
    visits' entries: only an entry this visit's connect did not carry counts."""
    if any(entry not in channel.transfer_history for entry in transfer_history):
        return True
    return bool(destination) and destination != channel.destination


def _live(state: CallState, event: ev.Event, now_us: int) -> Step:
    call = state.call
    assert call is not None
    if isinstance(event, ev.Tick):
        if state.wake_us is not None and now_us < state.wake_us:
            return state, []
        nxt = (state.wake_us or now_us) + state.config.heartbeat_s * US
        state = replace(state, wake_us=nxt if nxt > now_us else now_us + state.config.heartbeat_s * US)
        return _beat(state, [])
    if isinstance(event, ev.Answered):
        if call.answered_us is None and not state.pre_answered:
            return _on_answer(state, event.at_us, now_us)
        return state, []
    if isinstance(event, ev.Bridged):
        commands: list[Command] = []
        if state.legs and event.peer_uuid:
            commands.append(KeepCarrier(call.uuid, call.visit, event.peer_uuid))
        if call.answered_us is None and state.pre_answered:
            state, more = _on_answer(state, event.at_us, now_us)
            commands += more
        return state, commands
    if isinstance(event, ev.Unbridged):
        if state.unbridged_us is None:
            state = replace(state, unbridged_us=event.at_us)
        return state, []
    if isinstance(event, ev.BridgeEnded):
        return _bridge_ended(state, event, now_us)
    if isinstance(event, ev.Hungup):
        return replace(state, hangup_cause=event.cause), []
    if isinstance(event, ev.HangupComplete):
        return _finish(state, event, now_us)
    if isinstance(event, ev.SocketClosed):
        return _lost(state, event.reason)
    if isinstance(event, ev.BeatDone):
        return _beat_done(state, event, now_us)
    if isinstance(event, ev.CutoffMoved):
        return _cutoff_confirmed(state, now_us)
    if isinstance(event, ev.DatabaseDown):
        # FreeSWITCH still holds the cut-off; the heartbeat tries again at the next one.
        return state, [Note("heartbeat_failed", {"uuid": call.uuid, "error": event.error})]
    if isinstance(event, ev.CommandFailed):
        return _command_failed(state, event, now_us)
    return state, []


def _command_failed(state: CallState, event: ev.CommandFailed, now_us: int) -> Step:
    call = state.call
    assert call is not None
    if event.command in ("Arm", "ArmFromNow", "Bridge"):
        # The call was never bridged on this socket: what FreeSWITCH does with it now is the
        # dialplan's; the hold stays until the reaper (or an adopter) settles the leg.
        return _lost(state, f"{event.command} failed: {event.error}")
    if event.command == "MoveCutoff" and state.answer_unrecorded:
        # The bound armed when the call was taken still stands: the hold lasts as long.
        state = replace(state, answer_unrecorded=False)
        return state, [Note("reschedule_failed", {"uuid": call.uuid, "error": event.error}), *_record_answer(state)]
    kind = "cut_failed" if event.command == "Kill" else "reschedule_failed"
    return state, [Note(kind, {"uuid": call.uuid, "error": event.error})]


def _on_answer(state: CallState, answered_us: int, now_us: int) -> Step:
    """Billing starts: the cut-off instant is fixed from this moment and the grant."""
    call = state.call
    assert call is not None
    policy = state.config.policy
    # A ringing channel's cut-off was armed by FreeSWITCH itself at this answer: the hold
    # need last no longer than it. A pre-answered one's is moved
    # here, and only FreeSWITCH's acknowledgement lets its hold shrink (CutoffMoved).
    call = answer(call, answered_us, policy, cutoff_in_switch=not state.pre_answered)
    commands: list[Command] = []
    if state.pre_answered:
        warning = None
        if not call.warned and call.final and call.cutoff_us is not None:
            warning = warning_instant_us(call.cutoff_us, policy.warning_s, now_us)
            if warning is not None:
                call = replace(call, warned=True)
                commands.append(_warning_note(call, policy))
        assert call.cutoff_us is not None
        commands.append(MoveCutoff(call.cutoff_us, warning))
        return replace(state, call=call, answer_unrecorded=True), commands
    if call.warned:
        commands.append(_warning_note(call, policy))
    state = replace(state, call=call)
    return state, commands + _record_answer(state)


def _cutoff_confirmed(state: CallState, now_us: int) -> Step:
    """FreeSWITCH holds the cut-off at its real instant now: a pre-answered call's hold need
    last no longer than it, and its answer is recorded so."""
    call = state.call
    assert call is not None
    if not state.answer_unrecorded or call.answered_us is None:
        return state, []
    call = replace(call, hold_until_us=hold_deadline_us(call.answered_us, call.granted_s))
    state = replace(state, call=call, answer_unrecorded=False)
    return state, _record_answer(state)


def _record_answer(state: CallState) -> list[Command]:
    if not state.reserved or state.call is None:
        return []
    return [RecordAnswer(state.call)]


def _warning_note(call: LiveCall, policy: GrantPolicy) -> Note:
    assert call.cutoff_us is not None
    return Note(
        "warning_scheduled",
        {"uuid": call.uuid, "visit": call.visit, "warning_s": policy.warning_s, "cutoff_epoch": call.cutoff_us // US},
    )


def _beat(state: CallState, commands: list[Command]) -> Step:
    call = state.call
    assert call is not None
    if not state.reserved:
        return state, commands
    return state, [*commands, Beat(call.uuid, call.visit, extend=call.answered_us is not None, known=call)]


def _beat_done(state: CallState, event: ev.BeatDone, now_us: int) -> Step:
    old, account, config = state.call, state.account, state.config
    assert old is not None and account is not None
    if event.beat is None:
        return state, []
    result = event.beat
    call = result.call
    commands: list[Command] = []
    if call.held != old.held:
        commands.append(HoldChanged(account.currency, call.held - old.held))
    kill: list[Command] = []
    if not result.account_active and config.on_suspend == "cut" and not state.cut_for_suspension:
        # on_suspend: cut — the account was suspended: end its calls now, through their own
        # socket (finish_grant, the default, lets them run to the end of what they hold)
        state = replace(state, cut_for_suspension=True)
        commands.append(Note("suspended_cut", {"uuid": call.uuid, "visit": call.visit}))
        kill.append(Kill("suspended"))
    cutoff_us = call.cutoff_us
    if call.answered_us is None or cutoff_us is None:
        return replace(state, call=call), commands + kill
    if result.extended:
        call = replace(call, warned=False)
        commands.append(
            Note("extended", {"uuid": call.uuid, "granted_s": call.granted_s, "cutoff_epoch": cutoff_us // US})
        )
    warning = None
    if call.final and not call.warned:
        warning = warning_instant_us(cutoff_us, config.policy.warning_s, now_us)
        if warning is not None:
            call = replace(call, warned=True)
            commands.append(_warning_note(call, config.policy))
    if result.extended:
        commands.append(MoveCutoff(cutoff_us, warning))
    elif warning is not None:
        commands.append(WarnAt(warning))
    # a move's acknowledgement must come back last, so the kill goes first
    return replace(state, call=call), kill + commands


def _bridge_ended(state: CallState, event: ev.BridgeEnded, now_us: int) -> Step:
    """The bridge ended: the B leg never answered, or it hung up after talking, or the channel
    was transferred out of it. In the first two cases this socket app owns the A leg and must
    end it (there is no dialplan `hangup_after_bridge` while the socket app is in control). A
    transfer (the transfer cut-off, a top-up menu) hands the caller to the dialplan: billing
    stops at the unbridge and nothing is sent that ends the call."""
    call = state.call
    assert call is not None
    if transferred(state.channel, event.destination, event.transfer_history):
        return _transferred_out(state, event, now_us)
    answered = call.answered_us is not None
    return state, [End("" if answered else event.failure_cause)]


def _transferred_out(state: CallState, event: ev.BridgeEnded, now_us: int) -> Step:
    """Settle this visit at once, billed up to the unbridge: its hold is released while the
    caller is in the cut-off extension or a top-up menu (which may send the channel back into
    the socket: a new visit, a new leg)."""
    call, config = state.call, state.config
    assert call is not None
    unbridged_us = state.unbridged_us or event.at_us
    ours = bool(config.mark.transfer_extension) and event.destination == config.mark.transfer_extension
    answered = call.answered_us is not None
    start, end = billing_window(call.answered_us, unbridged_us, unbridged_us)
    billsec = max(0, unbridged_us - call.answered_us) // US if call.answered_us is not None else 0
    result = "cut_off" if ours and answered else ("completed" if answered else "unanswered")
    bridge = BridgeOutcome(event.bridged_to, event.leg_causes)
    call_end = CallEnd(
        call.uuid,
        call.visit,
        start,
        end,
        state.channel.created_us,
        billsec,
        TRANSFER_CAUSE,
        result,
        now_us,
        bridge if state.legs else None,
        event.bridged_to,
    )
    commands: list[Command] = [
        Note("transferred", {"uuid": call.uuid, "visit": call.visit, "to": event.destination, "cutoff": ours})
    ]
    if result == "cut_off":
        commands.append(Note("cut_off", {"mode": "transfer"}))
    state = replace(state, wake_us=None)
    return _settle(state, call_end, commands, after=TRANSFERRED)


def _finish(state: CallState, event: ev.HangupComplete, now_us: int) -> Step:
    call, config = state.call, state.config
    assert call is not None
    if state.pre_answered:
        answered = call.answered_us  # the bridge, not the IVR's answer
    else:
        answered = event.answered_us if event.answered_us else call.answered_us
    start, end = billing_window(answered, event.end_us, state.unbridged_us)
    cause = event.cause or state.hangup_cause
    result = result_of(answered is not None, cause, event.destination, config.mark)
    commands: list[Command] = []
    if result == "cut_off":
        commands.append(Note("cut_off", {"mode": config.cutoff_mode}))
    call_end = CallEnd(
        call.uuid,
        call.visit,
        start,
        end,
        event.start_us or state.channel.created_us,
        event.billsec,
        cause,
        result,
        now_us,
        BridgeOutcome(event.bridged_to, event.leg_causes) if state.legs else None,
        event.bridged_to,
    )
    return _settle(replace(state, wake_us=None), call_end, commands, after=DONE)


def _settle(state: CallState, call_end: CallEnd, commands: list[Command], after: str) -> Step:
    if not state.reserved:
        payer = state.payer
        assert payer is not None
        if state.config.defer_writes:
            commands.append(DeferUnreserved(payer, state.number, call_end))
        return _settled(replace(state, after_settling=after), commands)
    return replace(state, phase=SETTLING, settlement=call_end, after_settling=after), [*commands, Settle(call_end)]


def _settled(state: CallState, commands: list[Command]) -> Step:
    if state.after_settling == TRANSFERRED:
        return replace(state, phase=TRANSFERRED), commands
    return replace(state, phase=DONE), [*commands, Finish()]


def _settling(state: CallState, event: ev.Event, now_us: int) -> Step:
    call, account = state.call, state.account
    assert call is not None and account is not None
    if isinstance(event, ev.Written):
        commands: list[Command] = [HoldChanged(account.currency, -call.held)] if call.held else []
        return _settled(replace(state, call=replace(call, held=Money(0))), commands)
    if isinstance(event, ev.DatabaseDown):
        commands = [Note("settle_deferred", {"uuid": call.uuid, "error": event.error})]
        if state.config.defer_writes:
            # The hold stays in the database (and in the reserved gauge) until it lands.
            assert state.settlement is not None
            commands.append(DeferSettlement(state.settlement, account.currency, call.held))
        return _settled(state, commands)
    return state, []


def _transferred(state: CallState, event: ev.Event, now_us: int) -> Step:
    """Transferred out of its bridge and settled: this socket stays connected (closing it
    would end a later visit's socket app) and sends nothing until the channel ends; it also
    hears every event of a later visit of the channel, which are not this visit's."""
    if isinstance(event, (ev.HangupComplete, ev.SocketClosed)):
        return replace(state, phase=DONE), [Finish()]
    return state, []


def _lost(state: CallState, reason: str) -> Step:
    """The socket died before the channel's end. FreeSWITCH keeps the call and its cut-off;
    the lease stops being renewed and a reaper settles it once the cut-off has certainly fired,
    charging what was provably consumed (or, with `switches:`, a node re-adopts it)."""
    call, account = state.call, state.account
    commands: list[Command] = [Note("socket_lost", {"uuid": state.channel.uuid, "reason": reason})]
    if call is not None and account is not None:
        if state.reserved:
            if call.held:
                commands.append(HoldChanged(account.currency, -call.held))
            commands.append(Release((call.uuid, call.visit)))
        state = replace(state, call=replace(call, held=Money(0)))
    return replace(state, phase=DONE, wake_us=None), [*commands, Finish()]


_HANDLERS = {
    PAYER: _authorizing,
    RATE: _authorizing,
    ROUTE: _authorizing,
    RESERVE: _authorizing,
    REFUSING: _refusing,
    REFUSED: _refused_call,
    WRITING_REJECTION: _writing_rejection,
    LIVE: _live,
    SETTLING: _settling,
    TRANSFERRED: _transferred,
}

__all__ = [
    "ARMING",
    "Arm",
    "ArmFromNow",
    "Beat",
    "Bridge",
    "CallState",
    "Command",
    "Config",
    "DONE",
    "DeferRejection",
    "DeferSettlement",
    "DeferUnreserved",
    "End",
    "FindPayer",
    "FindRate",
    "Finish",
    "Follow",
    "HoldChanged",
    "KeepCarrier",
    "Kill",
    "LIVE",
    "MoveCutoff",
    "Note",
    "PAYER",
    "PlanRoute",
    "RATE",
    "REFUSED",
    "REFUSING",
    "RESERVE",
    "ROUTE",
    "RecordAnswer",
    "Refuse",
    "Refused",
    "Release",
    "Reserve",
    "RoutesStale",
    "SETTLING",
    "Settle",
    "Step",
    "Subscribe",
    "TRANSFERRED",
    "WRITING_REJECTION",
    "WarnAt",
    "WriteRejection",
    "adopt",
    "start",
    "step",
    "transferred",
]
