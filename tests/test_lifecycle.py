"""The call machine (fsbill.core.lifecycle), pure: captures of a real FreeSWITCH 1.10.12 fed
through the ESL translation and the machine, and the flows the captures do not cover."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fsbill.core import events as ev
from fsbill.core import lifecycle as lc
from fsbill.core.call import AccountState, CutoffMark, LiveCall, admit, hold_deadline_us
from fsbill.core.grant import US, GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import PayerAccount
from fsbill.esl import channel_from, event_fields, translate_event

sys.path.insert(0, str(Path(__file__).parent / "sim"))
from scripted import WIRE_DIR, fs_to_app_frames  # noqa: E402

POLICY = GrantPolicy.build(slice_s=60, max_call_s=3600, margin_s=1, warning_s=0, heartbeat_s=1)
ACCOUNT = PayerAccount(1, "acme", 1, "EUR", "active")
RATE = Rate.adhoc(Money.parse("0.60"))


HANGUP_MARK = CutoffMark(hangup_cause="ALLOTTED_TIMEOUT")


def config(mark: CutoffMark = HANGUP_MARK, mode: str = "hangup") -> lc.Config:
    return lc.Config(
        policy=POLICY,
        mark=mark,
        cutoff_mode=mode,
        node="n1",
        heartbeat_s=1,
        max_ring_s=120,
        route_template="loopback/9999/public",  # the captured apps' dialplans named no fsbill_dial_string
    )


def admitted(uuid: str, now_us: int, balance: str = "10.00") -> LiveCall:
    state = AccountState("active", Money.parse(balance), Money(0), Money(0))
    call = admit(uuid, 1, state, RATE, POLICY, now_us, 120).call
    assert call is not None
    return call


def authorize(channel, cfg: lc.Config, now_us: int) -> tuple[lc.CallState, list[lc.Command]]:
    """start, then the lookups and the reservation answered as the database would."""
    state, commands = lc.start(channel, cfg, now_us)
    assert isinstance(commands[-1], lc.FindPayer)
    state, commands = lc.step(state, ev.PayerFound(ACCOUNT), now_us)
    assert isinstance(commands[-1], lc.FindRate)
    state, commands = lc.step(state, ev.RateFound(RATE), now_us)
    assert isinstance(commands[-1], lc.Reserve)
    state, commands = lc.step(state, ev.Reserved("", admitted(channel.uuid, now_us), 10_000_000), now_us)
    assert state.phase == lc.LIVE
    return state, commands


def replay(name: str, cfg: lc.Config):
    """Every FreeSWITCH-to-app frame of a capture through the translation and the machine;
    the machine's work is answered as it would be. Returns the states and commands seen."""
    frames = list(fs_to_app_frames(name))
    channel = channel_from(frames[0].headers)
    start_us = channel.created_us + US
    state, commands = authorize(channel, cfg, start_us)
    seen: list[tuple[ev.Event, lc.CallState, list[lc.Command]]] = [(ev.Tick(), state, commands)]
    for frame in frames[1:]:
        if frame.content_type != "text/event-plain":
            continue
        event = translate_event(event_fields(frame.body))
        if event is None:
            continue
        now_us = int(frame.at * US)
        state, commands = lc.step(state, event, now_us)
        seen.append((event, state, commands))
        while commands and isinstance(commands[-1], (lc.Settle, lc.MoveCutoff, lc.Beat)):
            last = commands[-1]
            result: ev.Event
            if isinstance(last, lc.Settle):
                result = ev.Written(last.end.result)
            elif isinstance(last, lc.MoveCutoff):
                result = ev.CutoffMoved()
            else:
                result = ev.BeatDone(None)
            state, commands = lc.step(state, result, now_us)
            seen.append((result, state, commands))
    return channel, seen


def commands_of(seen, kind):
    return [c for _, _, cs in seen for c in cs if isinstance(c, kind)]


needs_captures = pytest.mark.skipif(not WIRE_DIR.is_dir(), reason="no captures")


@needs_captures
def test_transfer_cutoff_capture_is_settled_at_the_unbridge_and_nothing_ends_the_caller():
    cfg = config(CutoffMark(transfer_extension="fsbill_cutoff"), "transfer")
    channel, seen = replay("transfer-cutoff.txt", cfg)
    settles = commands_of(seen, lc.Settle)
    assert len(settles) == 1
    end = settles[0].end
    # the visit's CDR names the transfer (FreeSWITCH's own bridge_hangup_cause is NORMAL_CLEARING)
    assert end.result == "cut_off" and end.hangup_cause == "BLIND_TRANSFER"
    unbridge = next(e for e, _, _ in seen if isinstance(e, ev.Unbridged))
    assert end.end_us == unbridge.at_us and end.answered_us is not None
    # after the transfer, nothing that ends or touches the caller
    after = False
    for event, _state, commands in seen:
        if isinstance(event, ev.BridgeEnded):
            after = True
            continue
        if after:
            assert not [c for c in commands if isinstance(c, (lc.End, lc.Kill, lc.MoveCutoff, lc.WarnAt, lc.Beat))]
    assert not commands_of(seen, lc.End) and not commands_of(seen, lc.Kill)
    assert seen[-1][1].phase == lc.DONE  # its socket's hang-up complete ended this visit's watch


@needs_captures
def test_bridge_hangup_cause_is_not_what_marks_the_transfer():
    frames = [f for f in fs_to_app_frames("transfer-cutoff.txt") if f.content_type == "text/event-plain"]
    ended = [translate_event(event_fields(f.body)) for f in frames]
    bridge_end = next(e for e in ended if isinstance(e, ev.BridgeEnded))
    assert bridge_end.destination == "fsbill_cutoff" and bridge_end.transfer_history
    connect = channel_from(next(iter(fs_to_app_frames("transfer-cutoff.txt"))).headers)
    assert lc.transferred(connect, bridge_end.destination, bridge_end.transfer_history)


@needs_captures
def test_first_visit_of_a_re_entered_channel_ignores_the_second_visits_events():
    channel, seen = replay("re-entry-visit1.txt", config())
    settles = commands_of(seen, lc.Settle)
    assert [s.end.result for s in settles] == ["completed"]  # a menu, not the cut-off
    assert not commands_of(seen, lc.End) and not commands_of(seen, lc.Kill)
    transferred_at = next(i for i, (e, _, _) in enumerate(seen) if isinstance(e, ev.BridgeEnded))
    # the second visit's CHANNEL_BRIDGE, its hang-up...: heard here, acted on never
    later = [cs for _, _, cs in seen[transferred_at + 2 :]]
    assert all(not cs or cs == [lc.Finish()] for cs in later)


@needs_captures
def test_second_visit_connect_carries_the_earlier_history_which_is_not_a_transfer():
    frames = list(fs_to_app_frames("re-entry-visit2.txt"))
    channel = channel_from(frames[0].headers)
    assert channel.answered_us is not None and channel.transfer_history
    assert not lc.transferred(channel, channel.destination, channel.transfer_history)
    _, seen = replay("re-entry-visit2.txt", config())
    settles = commands_of(seen, lc.Settle)
    assert len(settles) == 1 and settles[0].end.answered_us is not None
    bridged = next(e for e, _, _ in seen if isinstance(e, ev.Bridged))
    assert settles[0].end.answered_us == bridged.at_us  # billed from its own bridge


@needs_captures
def test_pre_answered_capture_bills_from_the_bridge_and_moves_the_cutoff_there():
    channel, seen = replay("pre-answered.txt", config())
    assert channel.answered_us is not None
    first = seen[0][2]
    assert any(isinstance(c, lc.ArmFromNow) for c in first)
    bridged = next(e for e, _, _ in seen if isinstance(e, ev.Bridged))
    moves = commands_of(seen, lc.MoveCutoff)
    assert moves and moves[0].cutoff_us == (bridged.at_us // US + 60 - 1) * US
    answers = commands_of(seen, lc.RecordAnswer)
    assert len(answers) == 1 and answers[0].call.answered_us == bridged.at_us
    # once FreeSWITCH took the move, the hold ends with the real cut-off, not the ring bound
    assert answers[0].call.hold_until_us == hold_deadline_us(bridged.at_us, 60)
    settle = commands_of(seen, lc.Settle)[0]
    assert settle.end.answered_us == bridged.at_us
    assert settle.end.answered_us > channel.answered_us


@needs_captures
def test_lcr_failover_capture_keeps_the_answering_carrier():
    frames = list(fs_to_app_frames("lcr-failover.txt"))
    bridged = [translate_event(event_fields(f.body)) for f in frames if f.content_type == "text/event-plain"]
    peers = [e.peer_uuid for e in bridged if isinstance(e, ev.Bridged)]
    assert peers and peers[0].endswith("552")


# -- flows no capture shows, decided purely -----------------------------------------------------------
CH_CREATED = 1_800_000_000 * US


def channel(answered_us=None):
    from fsbill.core.call import Channel

    return Channel("u-1", "15551230000", "4915112345678", CH_CREATED, answered_us, {"fsbill_dial_string": "x/y"})


def test_an_answered_calls_hold_ends_with_its_answer_relative_cutoff():
    state, _ = authorize(channel(), config(), CH_CREATED + US)
    ring_bound = state.call.hold_until_us
    answered = CH_CREATED + 3 * US
    state, commands = lc.step(state, ev.Answered(answered), answered)
    record = [c for c in commands if isinstance(c, lc.RecordAnswer)][0]
    assert record.call.hold_until_us == hold_deadline_us(answered, 60) < ring_bound
    assert record.call.hold_until_us > record.call.cutoff_us  # never before FreeSWITCH's cut-off


def test_bridge_failure_ends_the_caller_with_the_cause_and_a_hangup_after_talking_clears():
    state, _ = authorize(channel(), config(), CH_CREATED + US)
    _, commands = lc.step(state, ev.BridgeEnded("USER_BUSY", CH_CREATED + 2 * US), CH_CREATED + 2 * US)
    assert commands == [lc.End("USER_BUSY")]
    state, _ = lc.step(state, ev.Answered(CH_CREATED + 2 * US), CH_CREATED + 2 * US)
    _, commands = lc.step(
        state, ev.BridgeEnded("", CH_CREATED + 9 * US, destination="4915112345678"), CH_CREATED + 9 * US
    )
    assert commands == [lc.End("")]


def test_an_adopted_pre_answered_call_bills_from_its_bridge_and_moves_its_cutoff_at_once():
    ivr_answer = CH_CREATED + 2 * US
    taken_at = CH_CREATED + 10 * US
    call = admitted("u-1", taken_at)
    bridged = CH_CREATED + 30 * US
    now = CH_CREATED + 40 * US
    state, commands = lc.adopt(
        channel(ivr_answer), config(), call, ACCOUNT, "4915112345678", now,
        answered_us=ivr_answer, bridged_us=bridged, ended=None,
    )  # fmt: skip
    assert state.pre_answered
    move = [c for c in commands if isinstance(c, lc.MoveCutoff)]
    assert move and move[0].cutoff_us == (bridged // US + 59) * US
    state, commands = lc.step(state, ev.CutoffMoved(), now)
    assert commands[0].call.answered_us == bridged
    end = ev.HangupComplete("NORMAL_CLEARING", CH_CREATED, ivr_answer, bridged + 20 * US, 48, "4915112345678")
    _, commands = lc.step(state, end, bridged + 20 * US)
    settle = [c for c in commands if isinstance(c, lc.Settle)][0]
    assert (settle.end.answered_us, settle.end.end_us) == (bridged, bridged + 20 * US)


def test_an_adopted_pre_answered_call_still_ringing_waits_for_its_bridge():
    ivr_answer = CH_CREATED + 2 * US
    call = admitted("u-1", CH_CREATED + 10 * US)
    state, commands = lc.adopt(
        channel(ivr_answer), config(), call, ACCOUNT, "x", CH_CREATED + 20 * US,
        answered_us=ivr_answer, bridged_us=None, ended=None,
    )  # fmt: skip
    assert not [c for c in commands if isinstance(c, (lc.MoveCutoff, lc.RecordAnswer))]
    state, commands = lc.step(state, ev.Bridged(CH_CREATED + 25 * US), CH_CREATED + 25 * US)
    assert [c for c in commands if isinstance(c, lc.MoveCutoff)]
    assert state.call.answered_us == CH_CREATED + 25 * US


def test_a_refused_call_waits_for_its_end_then_writes_its_cdr_with_the_real_cause():
    state, commands = lc.start(channel(), config(), CH_CREATED)
    state, commands = lc.step(state, ev.PayerFound(None), CH_CREATED)
    assert isinstance(commands[-1], lc.Refuse) and commands[-1].reason == "unknown_account"
    state, commands = lc.step(state, ev.Refusal(""), CH_CREATED)
    assert state.wake_us == CH_CREATED + 10 * US
    end = ev.HangupComplete("CALL_REJECTED", CH_CREATED, None, CH_CREATED + US, 0, "x")
    state, commands = lc.step(state, end, CH_CREATED + US)
    assert isinstance(commands[-1], lc.WriteRejection) and commands[-1].record.hangup_cause == "CALL_REJECTED"
    state, commands = lc.step(state, ev.DatabaseDown("gone"), CH_CREATED + US)
    assert commands[-1] == lc.Finish() and any(isinstance(c, lc.Note) and c.kind == "cdr_lost" for c in commands)


def test_heartbeat_ticks_only_when_due_and_a_lost_socket_releases_the_leg():
    state, _ = authorize(channel(), config(), CH_CREATED)
    _, commands = lc.step(state, ev.Tick(), CH_CREATED + US // 2)
    assert commands == []
    state, commands = lc.step(state, ev.Tick(), CH_CREATED + US)
    assert isinstance(commands[-1], lc.Beat) and state.wake_us == CH_CREATED + 2 * US
    state, commands = lc.step(state, ev.SocketClosed("peer closed"), CH_CREATED + US)
    assert lc.Release(("u-1", 1)) in commands and state.over
