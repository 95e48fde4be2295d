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


# -- large frames (the connect reply): headers looked up when asked for ---------------------------------
_NAME_CHARS = st.sampled_from(list("ab-_:%Z") + [" ", "\t", "\u00e9", "\u2003"])
_VALUE_CHARS = st.sampled_from(list("ab: %0aAFg2") + ["\u00e9", "\r"])


def _tokens(*tokens: str, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(tokens), max_size=max_size).map("".join)


_VALUE = st.one_of(
    st.text(_VALUE_CHARS, max_size=8), _tokens("a", " ", "%0A", "%3A%20", "%C3%A9", "%zz", "%", max_size=6)
)
_GOOD_NAME = st.text(st.sampled_from(list("ab-_:%Z\u00e9")), min_size=1, max_size=5)
_GOOD_LINE = st.one_of(
    st.tuples(_GOOD_NAME, _VALUE).map(lambda nv: f"{nv[0]}: {nv[1]}"), _GOOD_NAME.map(lambda n: f"{n}:")
)
_ANY_LINE = st.one_of(  # names with whitespace, empty names, no colon at all
    st.tuples(st.text(_NAME_CHARS, max_size=5), _VALUE).map(lambda nv: f"{nv[0]}: {nv[1]}"),
    st.text(_NAME_CHARS, max_size=5).map(lambda n: f"{n}:"),
    st.text(st.sampled_from(list("ab: %")), max_size=6),
)
_BLOCK = st.tuples(
    st.lists(_GOOD_LINE, min_size=17, max_size=40), st.lists(st.tuples(st.integers(0, 40), _ANY_LINE), max_size=2)
).map(lambda b: _inserted(b[0], b[1]))


def _inserted(lines: list[str], extra: list[tuple[int, str]]) -> list[str]:
    for at, line in extra:
        lines.insert(at, line)
    return lines


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BLOCK, st.lists(st.text(_NAME_CHARS, max_size=5), max_size=5))
def test_a_large_frame_reads_as_the_full_parser_would(lines, other_names):
    """A frame of more than 16 header lines (the connect reply) has its headers found when asked
    for: the same values as the full parser, the same lines refused."""
    from fsbill.esl import LazyHeaders, parse_header_lines

    lines = [line.replace("\n", "") for line in lines if line]
    if len(lines) <= 16:
        return
    try:
        full = parse_header_lines(lines, decode_values=True)
    except ProtocolError:
        full = None
    try:
        lazy = LazyHeaders(lines)
    except ProtocolError:
        assert full is None, "a block the full parser accepts was refused"
        return
    assert full is not None, "a block the full parser refuses was accepted"
    for name in [*full, *other_names]:
        assert lazy.get(name) == full.get(name), name
        assert (name in lazy) == (name in full)
    assert dict(lazy) == full


def test_a_real_connect_reply_reads_the_same_lazily():
    from pathlib import Path

    from fsbill.esl import LazyHeaders, channel_from, parse_header_lines

    # captured from FreeSWITCH 1.10.12 (a sipp call through mod_sofia; shared/fs-wire/frames)
    raw = (Path(__file__).parent / "data" / "connect_reply_sofia_sipp.txt").read_bytes()
    frame = read_frame(io.BufferedReader(io.BytesIO(raw)), 1 << 20)
    assert isinstance(frame.headers, LazyHeaders)
    lines = [line for line in raw.decode().split("\n") if line]
    full = parse_header_lines(lines, decode_values=True)
    assert dict(frame.headers) == full
    assert channel_from(frame.headers) == channel_from(full)


@settings(max_examples=500, deadline=None)
@given(_tokens(*"%0aAfFgZ /+x", "%C3%A9", "%e2%82", "\u00e9", "%%", "%0A", max_size=30))
def test_url_decode_is_unquote(value):
    from urllib.parse import unquote

    from fsbill.esl import url_decode

    assert url_decode(value) == unquote(value)
