"""The emulator against the captures of a real FreeSWITCH 1.10.12 in ../shared/fs-wire/:
same frames, same event order, same header layout, same encoding, for the same app commands."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from scripted import WIRE_DIR, transcript_frames, transcript_labels

from fsbill.sim import CallSpec, wire

pytestmark = pytest.mark.skipif(not WIRE_DIR.is_dir(), reason="no transcripts in tests/sim/fs-wire")

SET = "sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: "
BRIDGE = "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: sofia/gateway/carrier/4930123456"
EXIT_AFTER_COMPLETE = True


def _place(switch, app_factory, script, **spec):
    app = app_factory(script)
    spec.setdefault("answer_after_s", 0.4)
    record = switch.place_call(app.address, CallSpec(**spec))
    conn = app.conns[0]
    assert conn.done.wait(10)
    if conn.error:
        raise conn.error
    return record, conn


def _start(c, *commands):
    c.connect()
    assert c.command("myevents").get("Reply-Text") == "+OK Events Enabled"
    assert c.command("linger").get("Reply-Text") == "+OK will linger"
    for command in commands:
        c.command(command.replace("UUID", c.uuid))


def before_exit(conn):
    """The frames up to our `exit` (the captures stop there); after it comes the goodbye."""
    labels = conn.labels()
    assert labels[-1] == "notice:disconnect"
    return labels[:-1]


def _finish(c):
    c.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=15)
    reply = c.command("exit")
    assert reply.get("Reply-Text") == "+OK bye"
    c.eof.wait(5)


# -- structure helpers ------------------------------------------------------------------------------
CORE = [
    "Event-Name",
    "Core-UUID",
    "FreeSWITCH-Hostname",
    "FreeSWITCH-Switchname",
    "FreeSWITCH-IPv4",
    "FreeSWITCH-IPv6",
    "Event-Date-Local",
    "Event-Date-GMT",
    "Event-Date-Timestamp",
    "Event-Calling-File",
    "Event-Calling-Function",
    "Event-Calling-Line-Number",
    "Event-Sequence",
]


def layout(headers):
    """Header names with the endpoint-specific profile/variable blocks collapsed."""
    out = []
    for name, _ in headers:
        if name.startswith("variable_"):
            group = "variable_*"
        elif name.startswith("Caller-"):
            group = "Caller-*"
        elif name.startswith("Other-Leg-"):
            group = "Other-Leg-*"
        elif (
            name.startswith("Channel-")
            and name
            not in (
                "Channel-State",
                "Channel-Call-State",
                "Channel-State-Number",
                "Channel-Name",
                "Channel-HIT-Dialplan",
                "Channel-Call-UUID",
            )
            and "Codec" not in name
        ):
            group = "Channel-profile*"
        elif "Codec" in name:
            continue  # endpoint-specific: sofia reports codecs only once media is up
        elif name in CORE[1:]:
            group = "core*"
        else:
            group = name
        if not out or out[-1] != group:
            out.append(group)
    return out


def event_layouts(frames):
    return [(f.label(), layout(f.event)) for f in frames if f.ctype == "text/event-plain"]


def assert_same_layouts(ours, theirs):
    mine = dict(event_layouts(ours))
    for label, their_layout in event_layouts(theirs):
        if label in mine:
            assert mine[label] == their_layout, label


def assert_canonical_encoding(frames):
    for f in frames:
        if f.ctype != "text/event-plain":
            continue
        for name, value in f.event:
            assert value, f"{name} has an empty value (FreeSWITCH writes _undef_)"
            assert wire.url_encode(unquote(value)) == value, (name, value)


# -- the scenarios of the captures ----------------------------------------------------------------------
def test_normal_matches_capture(switch, app_factory):
    def script(c):
        _start(
            c,
            SET + "execute_on_answer=sched_hangup +4 ALLOTTED_TIMEOUT",
            "api sched_broadcast +2 UUID tone_stream://%(100,100,440) aleg",
            BRIDGE,
        )
        _finish(c)

    record, conn = _place(switch, app_factory, script)
    theirs = transcript_frames("normal.txt")
    assert before_exit(conn) == transcript_labels("normal.txt")
    assert_same_layouts(conn.frames, theirs)
    assert_canonical_encoding(conn.frames)
    # replies, byte for byte
    api = [f for f in conn.frames if f.ctype == "api/response"]
    assert api[0].raw == b"Content-Type: api/response\nContent-Length: 22\n\n+OK Message scheduled\n"
    assert record.ended_by == "sched_hangup" and record.hangup_cause == "ALLOTTED_TIMEOUT"
    assert 3.0 <= float(record.talk_s) <= 4.6
    assert [k for k, _, _ in record.fired_tasks] == ["sched_broadcast", "sched_hangup"]
    hc = [f for f in conn.frames if f.event_name == "CHANNEL_HANGUP_COMPLETE"][0]
    assert [k for k, _ in hc.event].count("Hangup-Cause") == 2
    assert int(hc.ev("variable_billsec")) == int(hc.ev("variable_end_epoch")) - int(hc.ev("variable_answer_epoch"))
    assert (
        int(hc.ev("variable_billmsec"))
        == int(hc.ev("variable_end_uepoch")) // 1000 - int(hc.ev("variable_answer_uepoch")) // 1000
    )


def test_extend_matches_capture(switch, app_factory, clock):
    def script(c):
        _start(c, SET + "execute_on_answer=sched_hangup +3 ALLOTTED_TIMEOUT", BRIDGE)
        c.wait_event("CHANNEL_ANSWER")
        clock.sleep(1)
        deleted = c.command(f"api sched_del {c.uuid}")
        assert deleted.body == b"+OK Deleted: 1\n"
        assert deleted.raw == b"Content-Type: api/response\nContent-Length: 15\n\n+OK Deleted: 1\n"
        epoch = clock.now_us() // 1_000_000 + 5
        assert c.command(f"api sched_hangup {epoch} {c.uuid} ALLOTTED_TIMEOUT").body == b"+OK\n"
        _finish(c)

    record, conn = _place(switch, app_factory, script)
    assert before_exit(conn) == transcript_labels("extend.txt")
    assert_same_layouts(conn.frames, transcript_frames("extend.txt"))
    assert record.ended_by == "sched_hangup"
    assert 5.0 <= float(record.talk_s) <= 6.6


def test_drop_keeps_the_call_until_the_cutoff(switch, app_factory, clock):
    def script(c):
        _start(c, SET + "execute_on_answer=sched_hangup +8 ALLOTTED_TIMEOUT", BRIDGE)
        c.wait_event("CHANNEL_ANSWER")
        clock.sleep(1)
        c.close()  # abruptly, no resume

    record, conn = _place(switch, app_factory, script)
    labels = conn.labels()
    theirs = transcript_labels("drop.txt")
    assert labels[: len(theirs)] == theirs
    assert record.socket_closed_by_app_us is not None
    assert record.ended_by == "sched_hangup" and record.hangup_cause == "ALLOTTED_TIMEOUT"
    assert 7.0 <= float(record.talk_s) <= 8.6


def test_respond402_matches_capture(switch, app_factory):
    def script(c):
        _start(c, "sendmsg\ncall-command: execute\nexecute-app-name: respond\nexecute-app-arg: 402 Payment Required")
        _finish(c)

    record, conn = _place(switch, app_factory, script)
    assert before_exit(conn) == transcript_labels("respond402.txt")
    assert_same_layouts(conn.frames, transcript_frames("respond402.txt"))
    assert record.responded == "402 Payment Required"
    assert record.hangup_cause == "CALL_REJECTED" and record.ended_by == "respond"
    assert record.answered_us is None and record.billsec == 0


def test_hangup_barred_matches_capture(switch, app_factory):
    def script(c):
        _start(c, "sendmsg\ncall-command: hangup\nhangup-cause: OUTGOING_CALL_BARRED")
        _finish(c)

    record, conn = _place(switch, app_factory, script)
    assert before_exit(conn) == transcript_labels("hangup-barred.txt")
    assert_same_layouts(conn.frames, transcript_frames("hangup-barred.txt"))
    assert record.hangup_cause == "OUTGOING_CALL_BARRED" and record.ended_by == "app_hangup"
    hc = [f for f in conn.frames if f.event_name == "CHANNEL_HANGUP_COMPLETE"][0]
    assert hc.ev("variable_hangup_cause_q850") == "52"


def test_connect_reply_layout_and_tail(switch, app_factory):
    def script(c):
        c.connect()
        c.command("exit")
        c.eof.wait(5)

    record, conn = _place(switch, app_factory, script, variables={"fsbill_account": "acme co", "nibble_rate": "0.05"})
    raw = conn.connect_reply.raw
    assert raw.endswith(
        b"variable_socket_host: 127.0.0.1\nContent-Type: command/reply\nReply-Text: %2BOK%0A\n"
        b"Socket-Mode: async\nControl: full\n\n"
    )
    ours = layout(conn.connect_reply.headers)
    theirs = layout(transcript_frames("normal.txt")[0].headers)
    assert ours == theirs
    assert conn.connect_reply.get("variable_fsbill_account") == "acme%20co"
    assert conn.connect_reply.get("variable_nibble_rate") == "0.05"


# -- encoding against every value FreeSWITCH wrote -------------------------------------------------------
def test_url_encode_reproduces_every_captured_value():
    checked = 0
    for path in sorted(WIRE_DIR.glob("*.txt")) + sorted((WIRE_DIR / "frames").glob("*.txt")):
        text = path.read_text("utf-8", "replace")
        # disconnect notices are written raw (not an event): leave them out
        text = re.sub(r"Content-Type: text/disconnect-notice\n(?:.+\n)*", "", text)
        for line in text.split("\n"):
            m = re.match(
                r"^((?:variable_|Caller-|Channel-|Event-Date-|Other-Leg-|FreeSWITCH-|Application)[\w-]*): (.+)$", line
            )
            if m:
                value = m.group(2)
                assert wire.url_encode(unquote(value)) == value, (path.name, line)
                checked += 1
    assert checked > 1000


def test_url_encode_rules():
    assert wire.url_encode("+4 ALLOTTED_TIMEOUT") == "%2B4%20ALLOTTED_TIMEOUT"
    assert wire.url_encode("fd00::2") == "fd00%3A%3A2"
    assert wire.url_encode("tone_stream://%(100,100,440)") == "tone_stream%3A//%25(100,100,440)"
    assert wire.url_encode("50%25 off") == "50%25%20off"  # an encoded %XX is left alone
    assert wire.url_encode("a\nb") == "a%0Ab"
    assert wire.url_encode("é") == "%C3%A9"
    assert wire.serialize_event([("A", ""), ("B", "x y")]) == b"A: _undef_\nB: x%20y\n\n"


# -- single frames, byte for byte -------------------------------------------------------------------------
def _frame_file(name):
    return (WIRE_DIR / "frames" / name).read_bytes()


def test_disconnect_notices_are_byte_identical():
    linger = _frame_file("11_disconnect_notice_linger.txt")
    uuid = re.search(rb"Controlled-Session-UUID: (\S+)", linger).group(1).decode()
    name = re.search(rb"Channel-Name: (\S+)", linger).group(1).decode()
    assert wire.linger_notice(uuid, name, -1) == linger
    for fname in ("12_disconnect_notice_nolinger.txt", "13_disconnect_notice_after_exit.txt"):
        raw = _frame_file(fname)
        uuid = re.search(rb"Controlled-Session-UUID: (\S+)", raw).group(1).decode()
        assert wire.disconnect_notice(uuid) == raw


def test_command_and_api_replies_are_byte_identical():
    replies = re.findall(rb"<<<<< RECEIVED:\n(.*?)(?=\n>>>>> SENT:|\Z)", _frame_file("03_command_replies.txt"), re.S)
    assert wire.command_reply("+OK Events Enabled") + b"\n" == replies[0] + b"\n" or replies[0].startswith(
        wire.command_reply("+OK Events Enabled")
    )
    for text in ("+OK Events Enabled", "+OK will linger", "+OK", "+OK bye", "-ERR command not found"):
        assert any(r.startswith(wire.command_reply(text)) for r in replies), text
    job = re.search(rb"Job-UUID: (\S+)", _frame_file("03_command_replies.txt")).group(1).decode()
    assert any(
        r.startswith(wire.command_reply(f"~Reply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n")) for r in replies
    )
    api = _frame_file("04_api_responses.txt")
    for body in (
        "+OK\n",
        "+OK Message scheduled\n",
        "-ERR No such channel!\n",
        "-ERR no_such_command Command not found!\n",
        "+OK Deleted: 1\n",
    ):
        assert wire.api_response(body) in api, body


def test_hangup_complete_frame_layout_matches_sofia_capture(switch, app_factory):
    def script(c):
        _start(c, BRIDGE)
        _finish(c)

    record, conn = _place(switch, app_factory, script, talk_s=1.0)
    assert record.ended_by == "caller" and record.hangup_cause == "NORMAL_CLEARING"
    ours = [f for f in conn.frames if f.event_name == "CHANNEL_HANGUP_COMPLETE"][0]
    import io

    from scripted import read_frame

    theirs = read_frame(io.BytesIO(_frame_file("09_event_plain_CHANNEL_HANGUP_COMPLETE_NORMAL_CLEARING_sofia_bye.txt")))
    assert layout(ours.event) == layout(theirs.event)
    their_vars = {
        k
        for k, _ in theirs.event
        if k.startswith("variable_") and ("epoch" in k or k.endswith("sec") or "hangup_cause" in k)
    }
    our_vars = {k for k, _ in ours.event}
    assert their_vars - our_vars == set()
