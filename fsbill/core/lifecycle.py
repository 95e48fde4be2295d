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

The phases live in modules of their own, beside the vocabulary (fsbill.core.commands,
fsbill.core.events): fsbill.core.callstate (the state), admission (payer, rate, route,
reservation, arming), refusal, live (answer, heartbeat, cut-off moves), transfer (a visit
transferred out of its bridge) and settlement. This module is the machine's entry.

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from fsbill.core import events as ev
from fsbill.core.admission import authorizing
from fsbill.core.call import Channel, LiveCall, Payer, payer_of
from fsbill.core.callstate import (
    ARMING,
    DONE,
    LIVE,
    PAYER,
    RATE,
    REFUSED,
    REFUSING,
    RESERVE,
    ROUTE,
    SETTLING,
    TRANSFERRED,
    WRITING_REJECTION,
    CallState,
    Refused,
    Step,
    schedule_beat,
)
from fsbill.core.commands import (
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
from fsbill.core.did import UNKNOWN_DID, did_number, is_inbound
from fsbill.core.frozen import evolve
from fsbill.core.grant import US
from fsbill.core.live import beat, live, on_answer
from fsbill.core.records import PayerAccount
from fsbill.core.refusal import refuse, refused_call, refusing, writing_rejection
from fsbill.core.settlement import finish, settling
from fsbill.core.transfer import after_transfer, transferred


# -- entering the machine ----------------------------------------------------------------------------------
def start(channel: Channel, config: Config, now_us: int) -> Step:
    """A call FreeSWITCH handed to the socket: subscribe, then find who pays."""
    pre_answered = channel.answered_us is not None
    state = CallState(PAYER, channel, pre_answered, config)
    commands: list[Command] = [Subscribe(bridge_events=pre_answered or config.lcr)]
    if is_inbound(channel):  # the number's owner pays, never the caller (docs/DIDS.md)
        number = did_number(channel)
        if number is None:
            return refuse(state, Refused(UNKNOWN_DID, f"not a number: {channel.destination!r}"), commands)
        owner = Payer("did", number, "destination_number")
        return evolve(state, payer=owner), [*commands, FindPayer(owner)]
    payer = payer_of(channel, config.nibblebill_compat)
    if payer is None:
        return refuse(
            evolve(state, phase=PAYER), Refused("unknown_account", "no account variable and no caller id"), commands
        )
    return evolve(state, payer=payer), [*commands, FindPayer(payer)]


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
        evolve(channel, answered_us=answered_us if pre_answered else None),
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
        state, more = finish(state, ended, now_us)
        return state, commands + more
    state = schedule_beat(state, now_us)
    if call.answered_us is None:
        start_us = bridged_us if pre_answered else answered_us
        if start_us is not None:  # answered (bridged) while nobody watched
            state, more = on_answer(state, start_us, now_us)
            return state, commands + more
        return state, commands
    # Answered before: schedule the cut-off again, so that this process knows what FreeSWITCH
    # holds (whether the old process had scheduled a warning is unknown: the heartbeat that
    # follows schedules it afresh if the grant is final, so it plays once). Only while the
    # cut-off is ahead: FreeSWITCH takes an absolute time already past as relative.
    state = evolve(state, call=evolve(call, warned=False))
    if call.cutoff_us is not None and call.cutoff_us > now_us + US:
        commands.append(MoveCutoff(call.cutoff_us, None))
        return state, commands
    # At once, not a heartbeat later: the debits the old process missed, the extension it may
    # have been about to make, the warning of a final grant.
    return beat(state, commands)


# -- the transition -------------------------------------------------------------------------------------------
def step(state: CallState, event: ev.Event, now_us: int) -> Step:
    handler = _HANDLERS.get(state.phase)
    if handler is None:
        return state, []
    return handler(state, event, now_us)


_HANDLERS = {
    PAYER: authorizing,
    RATE: authorizing,
    ROUTE: authorizing,
    RESERVE: authorizing,
    REFUSING: refusing,
    REFUSED: refused_call,
    WRITING_REJECTION: writing_rejection,
    LIVE: live,
    SETTLING: settling,
    TRANSFERRED: after_transfer,
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
