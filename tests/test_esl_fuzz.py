"""Fuzzing the event-socket reader: whatever bytes a peer sends, the per-connection reader
either yields frames or ends the session with ProtocolError — nothing else escapes, nothing
loops, nothing grows without bound."""

import io

import gevent
from gevent import socket as gsocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsbill.errors import ProtocolError
from fsbill.esl import EslSession, SocketClosed, parse_event_body, read_frame, translate_event

MAX_BODY = 4096

EVENT = (
    b"Event-Name: CHANNEL_HANGUP_COMPLETE\n"
    b"Unique-ID: 5b3c2f0e-1111-2222-3333-444455556666\n"
    b"Hangup-Cause: ALLOTTED_TIMEOUT\n"
    b"variable_billsec: 4\n"
    b"variable_answer_uepoch: 1700000000123456\n"
    b"variable_end_uepoch: 1700000003643456\n"
    b"variable_start_uepoch: 1699999998000000\n"
    b"Caller-Destination-Number: 4915112345678\n"
    b"variable_sip_from_display: A%20B%0AInjected%3A%20x\n"
)
VALID_FRAMES = [
    b"Content-Type: command/reply\nReply-Text: +OK\n\n",
    b"Content-Type: api/response\nContent-Length: 14\n\n+OK Deleted: 1",
    b"Content-Type: text/event-plain\nContent-Length: %d\n\n%s" % (len(EVENT), EVENT),
    b"Content-Type: text/disconnect-notice\nController-Type: outbound\nContent-Disposition: linger\n"
    b"Channel-Name: loopback/4915112345678-a\nLinger-Time: -1\nContent-Length: 0\n\n",
]


def drain(data: bytes) -> int:
    """Read frames until the end; returns how many parsed. Only ProtocolError may escape."""
    stream = io.BufferedReader(io.BytesIO(data))
    count = 0
    while True:
        frame = read_frame(stream, MAX_BODY)
        if frame is None:
            return count
        count += 1
        if frame.headers.get("Content-Type") == "text/event-plain":
            translate_event(parse_event_body(frame.body or b""))


def survives(data: bytes) -> None:
    try:
        drain(data)
    except ProtocolError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_as_anything_but_protocol_error(data):
    survives(data)


@st.composite
def mutated_stream(draw):
    frames = draw(st.lists(st.sampled_from(VALID_FRAMES), min_size=1, max_size=5))
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "length"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "length":
            data += b"Content-Length: %d\n\n" % draw(st.sampled_from([0, 1, 10**6, 10**12, MAX_BODY + 1]))
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_stream())
def test_mutated_frames_never_escape_as_anything_but_protocol_error(data):
    survives(data)


def test_valid_frames_parse_and_values_are_decoded_one_by_one():
    assert drain(b"".join(VALID_FRAMES)) == len(VALID_FRAMES)
    stream = io.BufferedReader(io.BytesIO(VALID_FRAMES[2]))
    headers = parse_event_body(read_frame(stream, MAX_BODY).body)
    # an encoded newline stays inside its value instead of injecting a header
    assert headers["variable_sip_from_display"] == "A B\nInjected: x"
    assert "Injected" not in headers
    event = translate_event(headers)
    assert event.answered_us == 1700000000123456 and event.end_us == 1700000003643456
    assert event.cause == "ALLOTTED_TIMEOUT" and event.billsec == 4


def test_oversized_content_length_is_refused_before_reading():
    data = b"Content-Type: api/response\nContent-Length: 99999999999\n\n"
    try:
        drain(data)
    except ProtocolError as exc:
        assert "exceeds" in str(exc)
    else:
        raise AssertionError("oversized Content-Length accepted")


def test_eof_mid_body_ends_instead_of_looping():
    data = b"Content-Type: api/response\nContent-Length: 100\n\n+OK"
    with gevent.Timeout(2):
        try:
            drain(data)
        except ProtocolError as exc:
            assert "mid-body" in str(exc)
        else:
            raise AssertionError("truncated body accepted")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(mutated_stream())
def test_session_reader_over_a_real_socket_ends_cleanly(data):
    """The per-connection reader greenlet, fed hostile bytes over a socket: it ends with a
    SocketClosed event (never an exception, never a spin), and pending commands fail fast."""
    ours, theirs = gsocket.socketpair()
    session = EslSession(("127.0.0.1", 0), ours, command_timeout_s=1.0, max_frame_bytes=MAX_BODY)
    session.connected = True
    session._run = True
    reader = gevent.spawn(session.receive_events)
    theirs.sendall(data)
    theirs.close()
    with gevent.Timeout(5, AssertionError("reader did not end")):
        reader.join()
        while True:
            event = session.next_event(1.0)
            assert event is not None, "no SocketClosed after the peer went away"
            if isinstance(event, SocketClosed):
                break
    assert reader.successful()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_stream())
def test_fast_field_extraction_agrees_with_the_full_parser(data):
    """What the session reads (event_fields) is what the full parser would have given it."""
    from fsbill.esl import EVENT_FIELDS, event_fields

    stream = io.BufferedReader(io.BytesIO(data))
    try:
        while True:
            frame = read_frame(stream, MAX_BODY)
            if frame is None:
                return
            if frame.headers.get("Content-Type") != "text/event-plain":
                continue
            try:
                full = parse_event_body(frame.body or b"")
            except ProtocolError:
                continue
            fast = event_fields(frame.body or b"")
            assert translate_event(fast) == translate_event(full)
            assert {k: fast.get(k, "<absent>") for k in EVENT_FIELDS} == {
                k: full.get(k, "<absent>") for k in EVENT_FIELDS
            }
    except ProtocolError:
        pass
