"""Protocol rules of the emulated FreeSWITCH, misbehaviour modes, and greenswitch end to end."""

from __future__ import annotations

import socket
import time

import gevent
import pytest

from fsbill.errors import ProtocolError
from fsbill.esl import parse_event_body
from fsbill.esl import read_frame as esl_read_frame
from fsbill.sim import CallSpec, Misbehaviour, Switch

BRIDGE = "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: sofia/gateway/carrier/4930123456"


def run(switch, app_factory, script, **spec):
    app = app_factory(script)
    spec.setdefault("answer_after_s", 0.4)
    record = switch.place_call(app.address, CallSpec(**spec))
    conn = app.conns[0] if app.conns else None
    if conn is not None:
        assert conn.done.wait(10)
        if conn.error:
            raise conn.error
    return record, conn


def hangup_and_exit(c):
    c.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=15)
    c.command("exit")
    c.eof.wait(5)


def test_replies_and_unknown_commands(switch, app_factory):
    def script(c):
        c.connect()
        assert c.command("nosuchcommand").get("Reply-Text") == "-ERR command not found"
        assert c.command("api no_such_command").body == b"-ERR no_such_command Command not found!\n"
        assert c.command("api uuid_getvar 00000000-0000-0000-0000-000000000000 x").body == b"-ERR No such channel!\n"
        assert c.command(f"api uuid_exists {c.uuid}").body == b"true"
        assert c.command(f"api uuid_setvar {c.uuid} fsbill_result rejected_no_funds").body == b"+OK\n"
        assert c.command(f"api uuid_getvar {c.uuid} fsbill_result").body == b"rejected_no_funds"
        assert c.command(f"api uuid_getvar {c.uuid} nothing_here").body == b"_undef_"
        assert c.command("getvar fsbill_result").get("Reply-Text") == "rejected_no_funds"
        assert c.command("api status").body.startswith(b"UP ")
        assert c.command("linger 5").get("Reply-Text") == "+OK will linger 5 seconds"
        assert c.command("nolinger").get("Reply-Text") == "+OK will not linger"
        assert c.command("myevents").get("Reply-Text") == "+OK Events Enabled"
        assert c.command("myevents").get("Reply-Text") == "-ERR aready enabled."
        assert c.command("event plain CHANNEL_ANSWER").get("Reply-Text") == "+OK event listener enabled plain"
        assert c.command("filter Unique-ID " + c.uuid).get("Reply-Text") == f"+OK filter added. [Unique-ID]=[{c.uuid}]"
        assert c.command("resume").get("Reply-Text") == "+OK"
        bg = c.command("bgapi status")
        assert bg.get("Reply-Text").startswith("+OK Job-UUID: ") and bg.get("Job-UUID")
        bad = c.command("sendmsg 00000000-0000-0000-0000-000000000000\ncall-command: hangup")
        assert bad.get("Reply-Text") == "-ERR invalid session id [00000000-0000-0000-0000-000000000000]"
        assert c.command("sendmsg\ncall-command: hangup\nhangup-cause: CALL_REJECTED").get("Reply-Text") == "+OK"
        c.wait_event("CHANNEL_HANGUP")
        c.eof.wait(5)  # no linger: FreeSWITCH says goodbye and closes

    record, conn = run(switch, app_factory, script)
    assert record.hangup_cause == "CALL_REJECTED"
    assert conn.frames[-1].raw.startswith(b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: ")
    assert conn.frames[-1].body.startswith(b"Disconnected, goodbye.")


def test_not_full_refuses_api_and_linger(switch, app_factory):
    def script(c):
        reply = c.connect()
        assert reply.get("Control") == "single-channel"
        assert c.command("api status").get("Reply-Text") == "-ERR command not found"
        assert c.command("linger").get("Reply-Text") == "-ERR command not found"
        assert c.command("myevents").get("Reply-Text") == "+OK Events Enabled"
        c.execute("hangup", "NORMAL_CLEARING")
        c.eof.wait(5)

    record, _ = run(switch, app_factory, script, full=False)
    assert record.ended_by == "app_hangup"


def test_scheduler_fires_on_whole_seconds(switch, app_factory, clock):
    """sched_hangup +3 fires when the scheduler's epoch second reaches now_s + 3: between 2
    and 3.5 call-seconds after it was set (0.5 s task-thread poll)."""

    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.execute("answer")
        c.wait_event("CHANNEL_ANSWER")
        assert (
            c.command(f"api sched_broadcast +2 {c.uuid} playback::ivr/warn.wav aleg").body == b"+OK Message scheduled\n"
        )
        assert c.command(f"api sched_hangup +9 {c.uuid} ALLOTTED_TIMEOUT").body == b"+OK\n"
        assert c.command(f"api sched_del {c.uuid}").body == b"+OK Deleted: 2\n"
        assert c.command(f"api sched_del {c.uuid}").body == b"+OK Deleted: 0\n"
        c.command(f"api sched_hangup +3 {c.uuid} ALLOTTED_TIMEOUT")
        hangup_and_exit(c)

    record, conn = run(switch, app_factory, script)
    kind, arg, runtime, at_us = record.scheduled_tasks[-1]
    fired = [t for t in record.fired_tasks if t[0] == "sched_hangup"]
    assert len(fired) == 1 and record.ended_by == "sched_hangup"
    assert runtime == at_us // 1_000_000 + 3
    delay = (fired[0][2] - at_us) / 1e6
    assert 2.0 <= delay <= 3.6, delay
    assert fired[0][2] // 1_000_000 >= runtime
    assert not [t for t in record.fired_tasks if t[0] == "sched_broadcast"]


def test_execute_on_answer_prefixes_and_api_on_answer(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.execute("set", "execute_on_answer_1=sched_hangup +30 ALLOTTED_TIMEOUT")
        c.execute("set", "execute_on_answer_fsbill_warning=sched_broadcast +1 ivr/warn.wav aleg")
        c.execute("set", "api_on_answer=uuid_setvar " + c.uuid + " answered_by_api yes")
        c.command(BRIDGE)
        c.wait_event("CHANNEL_BRIDGE")
        c.wait_for(lambda f: f.event_name == "CHANNEL_EXECUTE_COMPLETE" and f.ev("Application") == "playback")
        assert c.command(f"api uuid_getvar {c.uuid} answered_by_api").body == b"yes"
        assert c.command(f"api sched_del {c.uuid}").body == b"+OK Deleted: 1\n"
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        hangup_and_exit(c)

    record, conn = run(switch, app_factory, script)
    labels = conn.labels()
    i = labels.index("CHANNEL_ANSWER")
    assert labels[i + 1 : i + 6] == [
        "CHANNEL_EXECUTE:sched_hangup",
        "CHANNEL_EXECUTE_COMPLETE:sched_hangup",
        "CHANNEL_EXECUTE:sched_broadcast",
        "CHANNEL_EXECUTE_COMPLETE:sched_broadcast",
        "CHANNEL_BRIDGE",
    ]
    assert record.broadcasts and record.broadcasts[0][1] == "ivr/warn.wav"


def test_no_linger_bridged_hangup_loses_the_final_events(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command(BRIDGE)
        c.eof.wait(15)

    record, conn = run(switch, app_factory, script, talk_s=1.0)
    labels = conn.labels()
    assert labels[-2:] == ["CHANNEL_HANGUP", "notice:disconnect"]
    assert "CHANNEL_HANGUP_COMPLETE" not in labels
    assert record.ended_by == "caller" and record.wait(1)


def test_linger_with_timeout_closes_by_itself(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger 2")
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")
        c.eof.wait(10)  # never says exit: FreeSWITCH closes 2 s after the linger notice

    record, conn = run(switch, app_factory, script)
    labels = conn.labels()
    assert labels[-3:] == ["CHANNEL_HANGUP_COMPLETE", "notice:linger", "notice:disconnect"]
    assert conn.frames[-2].get("Linger-Time") == "2"


def test_b_leg_failure_leaves_the_channel_parked(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.command(BRIDGE)
        done = c.wait_for(lambda f: f.event_name == "CHANNEL_EXECUTE_COMPLETE" and f.ev("Application") == "bridge")
        assert done.ev("variable_originate_disposition") == "USER_BUSY"
        assert done.ev("variable_DIALSTATUS") == "BUSY"
        gevent.sleep(0.1)
        assert "CHANNEL_HANGUP" not in c.labels()  # parked until the app decides
        c.command("sendmsg\ncall-command: hangup\nhangup-cause: USER_BUSY")
        hangup_and_exit(c)

    record, _ = run(switch, app_factory, script, answer_after_s=0.5, fail_cause="USER_BUSY")
    assert record.bridge_failed == "USER_BUSY" and record.answered_us is None
    assert record.hangup_cause == "USER_BUSY"


def test_sched_transfer_unbridges_and_plays_the_target(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.execute("set", "execute_on_answer=sched_transfer +2 fsbill_cutoff XML default")
        c.command(BRIDGE)
        hangup_and_exit(c)

    record, conn = run(switch, app_factory, script)
    labels = conn.labels()
    assert (
        labels.index("CHANNEL_UNBRIDGE")
        < labels.index("CHANNEL_EXECUTE_COMPLETE:socket")
        < labels.index("CHANNEL_HANGUP")
    )
    assert record.transferred_to == "fsbill_cutoff" and record.ended_by == "sched_transfer"
    assert record.unbridged_us is not None and 1.0 <= float(record.talk_s) <= 2.6
    hc = [f for f in conn.frames if f.event_name == "CHANNEL_HANGUP_COMPLETE"][0]
    assert hc.ev("Caller-Destination-Number") == "fsbill_cutoff"


def test_uuid_kill_and_exit_while_parked(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        assert c.command(f"api uuid_kill {c.uuid} MANAGER_REQUEST").body == b"+OK\n"
        hangup_and_exit(c)

    record, _ = run(switch, app_factory, script)
    assert record.ended_by == "uuid_kill" and record.hangup_cause == "MANAGER_REQUEST"

    def script2(c):
        c.connect()
        c.command("myevents")
        c.command("exit")  # the dialplan continues after `socket`: respond 503
        c.eof.wait(5)

    record, _ = run(switch, app_factory, script2)
    assert record.ended_by == "peer_closed" and record.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert record.responded == "503 Service Unavailable"


# -- misbehaviour --------------------------------------------------------------------------------------
def test_reply_delay(switch, app_factory):
    def script(c):
        c.connect()
        t0 = time.monotonic()
        c.command("myevents")
        c.elapsed = time.monotonic() - t0
        c.send("sendmsg\ncall-command: hangup")
        c.eof.wait(5)

    _, conn = run(switch, app_factory, script, misbehaviour=Misbehaviour(reply_delay_s=0.3))
    assert conn.elapsed >= 0.3


def test_silent_peer_never_replies(switch, app_factory):
    def script(c):
        c.connect()
        c.send("myevents")
        gevent.sleep(0.3)
        assert c.frames == []
        c.close()

    record, _ = run(switch, app_factory, script, misbehaviour=Misbehaviour(silent=True))
    assert record.socket_closed_by_app_us is not None


@pytest.mark.parametrize("fault", ["garbage", "oversized_content_length", "invalid_utf8"])
def test_byte_faults_break_a_strict_reader(switch, fault, clock):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    result = {}

    def app():
        sock, _ = server.accept()
        stream = sock.makefile("rb")
        sock.sendall(b"connect\n\n")
        esl_read_frame(stream, 1 << 20)
        sock.sendall(b"myevents\n\n")
        try:
            while True:
                frame = esl_read_frame(stream, 1 << 20)
                if frame is None:
                    result["error"] = "eof"
                    break
                if frame.headers.get("Content-Type") == "text/event-plain":
                    parse_event_body(frame.body or b"")
        except ProtocolError as exc:
            result["error"] = str(exc)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    g = gevent.spawn(app)
    record = switch.place_call(server.getsockname(), CallSpec(misbehaviour=Misbehaviour(**{fault: True})))
    g.join(5)
    server.close()
    assert result["error"] != "eof", result
    assert record.ended_by == "peer_closed"


def test_drop_after_answer_keeps_the_call_and_its_cutoff(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.command("linger")
        c.execute("set", "execute_on_answer=sched_hangup +3 ALLOTTED_TIMEOUT")
        c.command(BRIDGE)
        c.eof.wait(10)

    record, conn = run(switch, app_factory, script, misbehaviour=Misbehaviour(drop_after_s=1.0))
    assert "CHANNEL_HANGUP" not in conn.labels()
    assert record.socket_closed_us is not None and record.socket_closed_by_app_us is None
    assert record.ended_by == "sched_hangup" and 2.0 <= float(record.talk_s) <= 3.6


def test_half_close(switch, app_factory):
    def script(c):
        c.connect()
        c.command("myevents")
        c.eof.wait(5)  # the switch stopped sending
        c.send("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING")  # still read
        gevent.sleep(0.2)
        c.close()

    record, _ = run(switch, app_factory, script, misbehaviour=Misbehaviour(half_close=True))
    assert record.ended_by == "app_hangup"


# -- greenswitch drives a call through the emulator ----------------------------------------------------
def test_greenswitch_outbound_server_end_to_end(clock):
    from greenswitch.esl import OutboundESLServer

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    seen = {}

    class App:
        def __init__(self, session):
            self.session = session

        def run(self):
            s = self.session
            seen["uuid"] = s.uuid
            s.myevents()
            s.call_command("set", "execute_on_answer=sched_hangup +2 ALLOTTED_TIMEOUT")
            s.call_command("answer")
            s.call_command("bridge", "sofia/gateway/carrier/4930123456")
            while s.connected and "hangup" not in seen:
                gevent.sleep(0.05)

    server = OutboundESLServer("127.0.0.1", port, application=App, max_connections=5)
    g = gevent.spawn(server.listen)
    gevent.sleep(0.2)
    switch = Switch(clock)
    try:
        call = switch.start_call(("127.0.0.1", port), CallSpec(answer_after_s=0.5))
        record = call.get(timeout=15)
    finally:
        seen["hangup"] = True
        server.stop()
        switch.close()
        g.kill()
    assert seen["uuid"] == record.uuid
    assert [a for a, _ in record.applications][:4] == ["set", "answer", "sched_hangup", "bridge"]
    assert record.ended_by == "sched_hangup" and record.hangup_cause == "ALLOTTED_TIMEOUT"
    assert record.bridged_us is not None
