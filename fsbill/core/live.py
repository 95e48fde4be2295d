"""A call while it lives, in the call machine (fsbill.core.lifecycle): its answer (or, for a
channel answered before the socket, its bridge) starts billing; heartbeats extend the hold and
move the cut-off inside FreeSWITCH; a warning is scheduled before a final cut-off; a suspended
account's call is cut; a failed command is noted or ends the watch.

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from fsbill.core import events as ev
from fsbill.core.call import LiveCall, answer, hold_deadline_us, warning_instant_us
from fsbill.core.callstate import CallState, Step
from fsbill.core.commands import Beat, Command, HoldChanged, KeepCarrier, Kill, MoveCutoff, Note, RecordAnswer, WarnAt
from fsbill.core.frozen import evolve
from fsbill.core.grant import US, GrantPolicy
from fsbill.core.settlement import finish, lost
from fsbill.core.transfer import bridge_ended


def live(state: CallState, event: ev.Event, now_us: int) -> Step:
    call = state.call
    assert call is not None
    if isinstance(event, ev.Tick):
        if state.wake_us is not None and now_us < state.wake_us:
            return state, []
        nxt = (state.wake_us or now_us) + state.config.heartbeat_s * US
        state = evolve(state, wake_us=nxt if nxt > now_us else now_us + state.config.heartbeat_s * US)
        return beat(state, [])
    if isinstance(event, ev.Answered):
        if call.answered_us is None and not state.pre_answered:
            return on_answer(state, event.at_us, now_us)
        return state, []
    if isinstance(event, ev.Bridged):
        commands: list[Command] = []
        if state.legs and event.peer_uuid:
            commands.append(KeepCarrier(call.uuid, call.visit, event.peer_uuid))
        if call.answered_us is None and state.pre_answered:
            state, more = on_answer(state, event.at_us, now_us)
            commands += more
        return state, commands
    if isinstance(event, ev.Unbridged):
        if state.unbridged_us is None:
            state = evolve(state, unbridged_us=event.at_us)
        return state, []
    if isinstance(event, ev.BridgeEnded):
        return bridge_ended(state, event, now_us)
    if isinstance(event, ev.Hungup):
        return evolve(state, hangup_cause=event.cause), []
    if isinstance(event, ev.HangupComplete):
        return finish(state, event, now_us)
    if isinstance(event, ev.SocketClosed):
        return lost(state, event.reason)
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
        return lost(state, f"{event.command} failed: {event.error}")
    if event.command == "MoveCutoff" and state.answer_unrecorded:
        # The bound armed when the call was taken still stands: the hold lasts as long.
        state = evolve(state, answer_unrecorded=False)
        return state, [Note("reschedule_failed", {"uuid": call.uuid, "error": event.error}), *_record_answer(state)]
    kind = "cut_failed" if event.command == "Kill" else "reschedule_failed"
    return state, [Note(kind, {"uuid": call.uuid, "error": event.error})]


def on_answer(state: CallState, answered_us: int, now_us: int) -> Step:
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
                call = evolve(call, warned=True)
                commands.append(_warning_note(call, policy))
        assert call.cutoff_us is not None
        commands.append(MoveCutoff(call.cutoff_us, warning))
        return evolve(state, call=call, answer_unrecorded=True), commands
    if call.warned:
        commands.append(_warning_note(call, policy))
    state = evolve(state, call=call)
    return state, commands + _record_answer(state)


def _cutoff_confirmed(state: CallState, now_us: int) -> Step:
    """FreeSWITCH holds the cut-off at its real instant now: a pre-answered call's hold need
    last no longer than it, and its answer is recorded so."""
    call = state.call
    assert call is not None
    if not state.answer_unrecorded or call.answered_us is None:
        return state, []
    call = evolve(call, hold_until_us=hold_deadline_us(call.answered_us, call.granted_s))
    state = evolve(state, call=call, answer_unrecorded=False)
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


def beat(state: CallState, commands: list[Command]) -> Step:
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
    if not result.account_active and config.on_suspend == "cut" and not state.cut_for_suspension and not state.unbilled:
        # on_suspend: cut — the account was suspended: end its calls now, through their own
        # socket (finish_grant, the default, lets them run to the end of what they hold)
        state = evolve(state, cut_for_suspension=True)
        commands.append(Note("suspended_cut", {"uuid": call.uuid, "visit": call.visit}))
        kill.append(Kill("suspended"))
    cutoff_us = call.cutoff_us
    if call.answered_us is None or cutoff_us is None:
        return evolve(state, call=call), commands + kill
    if result.extended:
        call = evolve(call, warned=False)
        commands.append(
            Note("extended", {"uuid": call.uuid, "granted_s": call.granted_s, "cutoff_epoch": cutoff_us // US})
        )
    warning = None
    if call.final and not call.warned:
        warning = warning_instant_us(cutoff_us, config.policy.warning_s, now_us)
        if warning is not None:
            call = evolve(call, warned=True)
            commands.append(_warning_note(call, config.policy))
    if result.extended:
        commands.append(MoveCutoff(cutoff_us, warning))
    elif warning is not None:
        commands.append(WarnAt(warning))
    # a move's acknowledgement must come back last, so the kill goes first
    return evolve(state, call=call), kill + commands
