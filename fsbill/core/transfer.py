"""A visit transferred out of its bridge, in the call machine (fsbill.core.lifecycle): how it is
told from what FreeSWITCH sends, and what follows. The visit is settled at the unbridge and its
socket sends nothing more: the caller belongs to the dialplan (the transfer cut-off's
extension, a top-up menu, or a later visit of the same channel to its own socket, which this
socket also hears).

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from fsbill.core import events as ev
from fsbill.core.call import Channel, billing_window
from fsbill.core.callstate import DONE, TRANSFER_CAUSE, TRANSFERRED, CallState, Step
from fsbill.core.commands import Command, End, Finish, Note
from fsbill.core.frozen import evolve
from fsbill.core.grant import US
from fsbill.core.records import BridgeOutcome, CallEnd
from fsbill.core.settlement import settle


def transferred(channel: Channel, destination: str, transfer_history: tuple[str, ...]) -> bool:
    """Whether the channel left this visit's extension: FreeSWITCH's events after a transfer
    out of the bridge carry the new destination and a new transfer_history entry
    (fs-wire/transfer-cutoff.txt). A re-entered channel's history already holds the earlier
    visits' entries: only an entry this visit's connect did not carry counts."""
    if any(entry not in channel.transfer_history for entry in transfer_history):
        return True
    return bool(destination) and destination != channel.destination


def bridge_ended(state: CallState, event: ev.BridgeEnded, now_us: int) -> Step:
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
    state = evolve(state, wake_us=None)
    return settle(state, call_end, commands, after=TRANSFERRED)


def after_transfer(state: CallState, event: ev.Event, now_us: int) -> Step:
    """Transferred out of its bridge and settled: this socket stays connected (closing it
    would end a later visit's socket app) and sends nothing until the channel ends; it also
    hears every event of a later visit of the channel, which are not this visit's."""
    if isinstance(event, (ev.HangupComplete, ev.SocketClosed)):
        return evolve(state, phase=DONE), [Finish()]
    return state, []
