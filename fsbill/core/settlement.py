"""A call's end in the call machine (fsbill.core.lifecycle): its billing window and result from
FreeSWITCH's hang-up, the settlement and its outcome (deferred while the database is down, if
the operator chose so), and a socket lost before the channel's end.

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from fsbill.core import events as ev
from fsbill.core.call import billing_window, result_of
from fsbill.core.callstate import DONE, SETTLING, TRANSFERRED, CallState, Step
from fsbill.core.commands import Command, DeferSettlement, DeferUnreserved, Finish, HoldChanged, Note, Release, Settle
from fsbill.core.frozen import evolve
from fsbill.core.money import Money
from fsbill.core.records import BridgeOutcome, CallEnd


def finish(state: CallState, event: ev.HangupComplete, now_us: int) -> Step:
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
    return settle(evolve(state, wake_us=None), call_end, commands, after=DONE)


def settle(state: CallState, call_end: CallEnd, commands: list[Command], after: str) -> Step:
    if not state.reserved:
        payer = state.payer
        assert payer is not None
        if state.config.defer_writes:
            commands.append(DeferUnreserved(payer, state.number, call_end))
        return _settled(evolve(state, after_settling=after), commands)
    return evolve(state, phase=SETTLING, settlement=call_end, after_settling=after), [*commands, Settle(call_end)]


def _settled(state: CallState, commands: list[Command]) -> Step:
    if state.after_settling == TRANSFERRED:
        return evolve(state, phase=TRANSFERRED), commands
    return evolve(state, phase=DONE), [*commands, Finish()]


def settling(state: CallState, event: ev.Event, now_us: int) -> Step:
    call, account = state.call, state.account
    assert call is not None and account is not None
    if isinstance(event, ev.Written):
        commands: list[Command] = [HoldChanged(account.currency, -call.held)] if call.held else []
        return _settled(evolve(state, call=evolve(call, held=Money(0))), commands)
    if isinstance(event, ev.DatabaseDown):
        commands = [Note("settle_deferred", {"uuid": call.uuid, "error": event.error})]
        if state.config.defer_writes:
            # The hold stays in the database (and in the reserved gauge) until it lands.
            assert state.settlement is not None
            commands.append(DeferSettlement(state.settlement, account.currency, call.held))
        return _settled(state, commands)
    return state, []


def lost(state: CallState, reason: str) -> Step:
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
        state = evolve(state, call=evolve(call, held=Money(0)))
    return evolve(state, phase=DONE, wake_us=None), [*commands, Finish()]
