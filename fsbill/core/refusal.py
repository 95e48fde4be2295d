"""A refused call in the call machine (fsbill.core.lifecycle): FreeSWITCH is told to refuse it,
the machine waits for the channel's end to learn its real cause, then writes its rejection CDR
(deferred while the database is down, if the operator chose so).

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from fsbill.core import events as ev
from fsbill.core.call import destination_of
from fsbill.core.callstate import DONE, REFUSED, REFUSING, WRITING_REJECTION, CallState, Refused, Step
from fsbill.core.commands import Command, DeferRejection, Finish, Note, Refuse, WriteRejection
from fsbill.core.did import INBOUND, OUTBOUND
from fsbill.core.frozen import evolve
from fsbill.core.grant import US
from fsbill.core.records import RejectionRecord


def refusal_of(state: CallState, reason: str, detail: str = "") -> Refused:
    account = state.account
    return Refused(reason, detail, account.code if account else "", account.currency if account else "")


def refuse(state: CallState, refused: Refused, commands: list[Command] | None = None) -> Step:
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
    return evolve(state, phase=REFUSING, refused=refused), commands


def refusing(state: CallState, event: ev.Event, now_us: int) -> Step:
    if not isinstance(event, ev.Refusal):
        return state, []
    # A prompt takes a while to play; a SIP response ends the channel at once.
    wait_s = 30 if event.prompted else 10
    state = evolve(state, phase=REFUSED, refusal_cause=event.cause, wake_us=now_us + wait_s * US)
    if not event.delivered:
        return state, [Note("rejection_not_delivered", {"uuid": state.channel.uuid, "error": event.error})]
    return state, []


def refused_call(state: CallState, event: ev.Event, now_us: int) -> Step:
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
        direction=INBOUND if state.payer is not None and state.payer.by == "did" else OUTBOUND,
        did=state.payer.value if state.payer is not None and state.payer.by == "did" else "",
    )
    return evolve(state, phase=WRITING_REJECTION, wake_us=None, rejection=record), [WriteRejection(record)]


def writing_rejection(state: CallState, event: ev.Event, now_us: int) -> Step:
    if isinstance(event, ev.Written):
        return evolve(state, phase=DONE), [Finish()]
    if isinstance(event, ev.DatabaseDown):
        record = state.rejection
        assert record is not None
        if state.config.defer_writes:
            return evolve(state, phase=DONE), [DeferRejection(record), Finish()]
        return evolve(state, phase=DONE), [Note("cdr_lost", {"uuid": record.uuid, "reason": record.reason}), Finish()]
    return state, []
