"""The event socket: the one place fsbill talks to FreeSWITCH.

Built on greenswitch's `OutboundESLServer` / `OutboundSession`, with the sharp edges of
greenswitch 0.0.19 fixed here, each one tested through the emulator:

- frames are parsed line by line and each value url-decoded on its own (greenswitch decodes
  the whole block first, so an encoded newline in a variable injected a header);
- header lines, header counts and Content-Length are bounded, EOF mid-frame and garbage end
  the session instead of looping or raising out of the reader;
- every command waits at most `command_timeout_s` for its reply; a peer that does not answer
  is dropped (replies are matched in order, so a missed reply poisons the session anyway);
- `sendall` instead of `send`; a blocking `accept` instead of polling every 100 ms; a hard
  connection limit checked before any yield; a failed bind raises instead of `sys.exit()`;
- the `connect`, `myevents` and `linger` replies are checked;
- no per-session event-dispatch greenlet polling a queue every second: events are translated
  into typed call events here and handed straight to the call's own queue.

The enforcer never sees header names or FreeSWITCH's command words: it gets `Channel`
(fsbill.core.call) and the event classes below, and it speaks through `CallControl`, whose
verbs (subscribe, arm, move_cutoff, warn_at, reject, bridge, end) take domain values and turn
them into `sendmsg` / `api` commands here.
"""

from __future__ import annotations

import errno
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import gevent
import gevent.event
import gevent.queue
import gevent.socket as gsocket
from greenswitch.esl import NotConnectedError, OutboundESLServer, OutboundSession, OutboundSessionHasGoneAway

from fsbill.config import Cutoff, Rejection
from fsbill.core.call import READ_VARIABLES, Channel, CutoffMark
from fsbill.core.events import (
    Answered,
    Bridged,
    BridgeEnded,
    CallEvent,
    Disconnected,
    ExecuteComplete,
    HangupComplete,
    Hungup,
    SocketClosed,
    Unbridged,
)
from fsbill.core.grant import US
from fsbill.errors import FsbillError, ProtocolError
from fsbill.sockets import close_socket, listening_socket

log = logging.getLogger("fsbill.esl")

MAX_HEADER_LINE = 64 * 1024
MAX_HEADERS = 2000
_TRANSLATED = frozenset(
    {
        b"CHANNEL_ANSWER",
        b"CHANNEL_BRIDGE",
        b"CHANNEL_UNBRIDGE",
        b"CHANNEL_HANGUP",
        b"CHANNEL_HANGUP_COMPLETE",
        b"CHANNEL_EXECUTE_COMPLETE",
    }
)
_SPACE = re.compile(r"\s")  # the same characters as str.isspace()


# -- typed events: defined in the core (fsbill.core.events), made here from FreeSWITCH's frames --------
# -- framing ---------------------------------------------------------------------------------------
@dataclass
class Frame:
    headers: Mapping[str, str]
    body: bytes | None = None

    @property
    def data(self) -> str:
        """The reply text, as greenswitch's callers expect it."""
        if self.headers.get("Content-Type") == "api/response":
            return (self.body or b"").decode("utf-8", "replace")
        return self.headers.get("Reply-Text", "")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in a frame") from None


def parse_header_lines(lines: Iterable[str], decode_values: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    for count, line in enumerate(lines):
        if count >= MAX_HEADERS:
            raise ProtocolError("too many headers")
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":"):  # "Name:" with an empty value
                name, value = line[:-1], ""
            else:
                raise ProtocolError(f"malformed header line {line[:60]!r}")
        if not name or _SPACE.search(name):  # a per-character genexpr here was ~25% of the server's CPU
            raise ProtocolError(f"malformed header name {name[:60]!r}")
        # FreeSWITCH repeats some headers (Hangup-Cause); the first is kept. Most values have
        # nothing encoded: unquote() would return them as they are, after a function call.
        if name not in headers:
            headers[name] = url_decode(value) if decode_values else value
    return headers


def read_frame(stream, max_body: int) -> Frame | None:
    """One frame from FreeSWITCH: header lines, a blank line, then Content-Length bytes.
    None on a clean end of stream between frames; ProtocolError on anything malformed."""
    raw_lines: list[bytes] = []
    readline = stream.readline
    while True:
        raw = readline(MAX_HEADER_LINE + 1)
        if not raw:
            if raw_lines:
                raise ProtocolError("peer closed the socket mid-frame")
            return None
        if len(raw) > MAX_HEADER_LINE:
            raise ProtocolError("header line too long")
        if raw == b"\n" or raw == b"\r\n":
            if not raw_lines:
                continue  # stray blank lines between frames are harmless
            break
        raw_lines.append(raw)
        if len(raw_lines) > MAX_HEADERS:
            raise ProtocolError("too many headers")
    # One decode for the block (invalid UTF-8 anywhere still drops the peer); every line read
    # ends with a newline (a line without one is the end of the stream, refused above).
    text = _decode(b"".join(raw_lines))
    lines = text.split("\n")[:-1]
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    # The connect reply carries the channel data url-encoded in its outer headers (about 170
    # lines from a real switch, of which fsbill reads about 15): such a block is checked in one
    # regex pass and its headers are decoded when asked for. Other replies ("+OK Events
    # Enabled") contain nothing encoded, so decoding them is harmless.
    headers: Mapping[str, str]
    if len(lines) > _EAGER_HEADERS:
        headers = LazyHeaders(lines)
    else:
        headers = parse_header_lines(lines, decode_values=True)
    length_text = headers.get("Content-Length")
    body = None
    if length_text is not None:
        if not length_text.isdigit():
            raise ProtocolError(f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if length > max_body:
            raise ProtocolError(f"Content-Length {length} exceeds the {max_body}-byte limit")
        body = b""
        while len(body) < length:
            chunk = stream.read(length - len(body))
            if not chunk:
                raise ProtocolError("peer closed the socket mid-body")
            body += chunk
    return Frame(headers, body)


# Up to this many header lines a frame's headers are parsed at once (command replies, an
# event's outer headers: two to five lines); more, and they are looked up when asked for.
_EAGER_HEADERS = 16

# Exactly the lines parse_header_lines accepts: a name without whitespace, then ": value" or a
# bare ":" (its name is then everything before that last colon).
_HEADER_BLOCK = re.compile(r"(?:\S+:(?: [^\n]*)?\n)*")


def _find_header(text: str, name: str) -> str | None:
    """The raw value of the first `name:` line of `text` ("\\n"-prefixed lines), or None. A
    line "Name:x: v" is header "Name:x", not "Name": the colon must end the name."""
    key = "\n" + name + ":"
    start = text.find(key)
    while start >= 0:
        after = start + len(key)
        if after == len(text) or text[after] == "\n":
            return ""
        if text[after] == " ":
            end = text.find("\n", after)
            return text[after + 1 :] if end < 0 else text[after + 1 : end]
        start = text.find(key, after)
    return None


class LazyHeaders(Mapping[str, str]):
    """The headers of a large frame, each found and url-decoded when first asked for, as
    parse_header_lines would give it (the first of a repeated name wins); the lines are checked
    when the frame is read, so a malformed one still drops the peer."""

    __slots__ = ("_text", "_seen", "_all")

    def __init__(self, lines: list[str]) -> None:
        if len(lines) > MAX_HEADERS:
            raise ProtocolError("too many headers")
        block = "\n".join(lines) + "\n"
        if not _HEADER_BLOCK.fullmatch(block):
            parse_header_lines(lines, decode_values=False)  # names the bad line
            raise ProtocolError("malformed header block")  # not reached: the two agree
        self._text = "\n" + block[:-1]
        self._seen: dict[str, str | None] = {}
        self._all: dict[str, str] | None = None

    def _lookup(self, name: str) -> str | None:
        if name not in self._seen:
            value = _find_header(self._text, name)
            self._seen[name] = url_decode(value) if value else value
        return self._seen[name]

    def __getitem__(self, name: str) -> str:
        value = self._lookup(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def _parsed(self) -> dict[str, str]:
        if self._all is None:
            self._all = parse_header_lines(self._text[1:].split("\n"), decode_values=True)
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())


_HEX_DIGITS = "0123456789ABCDEFabcdef"
_HEX_BYTE = {(a + b).encode(): bytes.fromhex(a + b) for a in _HEX_DIGITS for b in _HEX_DIGITS}


def url_decode(value: str) -> str:
    """urllib.parse.unquote(value), in half its time on FreeSWITCH's values (which are ASCII
    once encoded); anything else goes to unquote itself (tests/test_esl_fuzz.py compares)."""
    if "%" not in value:
        return value
    if not value.isascii():
        return unquote(value)
    parts = value.encode("ascii").split(b"%")
    out = [parts[0]]
    append = out.append
    byte_of = _HEX_BYTE.get
    for part in parts[1:]:
        byte = byte_of(part[:2])
        if byte is None:
            append(b"%")
            append(part)
        else:
            append(byte)
            append(part[2:])
    return b"".join(out).decode("utf-8", "replace")


def parse_event_body(body: bytes) -> dict[str, str]:
    """A text/event-plain body: `Name: url-encoded value` lines (each decoded on its own)."""
    text = _decode(body)
    head, _, _event_body = text.partition("\n\n")
    return parse_header_lines(head.split("\n"), decode_values=True)


# The headers translate_event reads. Events carry every channel variable (hundreds of lines);
# the enforcer reads a few of each. EventFields finds each one when it is asked for (str.find
# runs in C); one regex pass over every line for all of these cost 150 µs per event from a
# real FreeSWITCH, the largest part of fsbill's CPU per call (docs/BENCHMARKS.md).
EVENT_FIELDS = (
    "Event-Name",
    "Event-Date-Timestamp",
    "Caller-Channel-Answered-Time",
    "Caller-Channel-Bridged-Time",
    "Caller-Channel-Created-Time",
    "Caller-Destination-Number",
    "Hangup-Cause",
    "Application",
    "Application-Data",
    "Application-Response",
    "variable_current_application",
    "variable_billsec",
    "variable_start_uepoch",
    "variable_answer_uepoch",
    "variable_end_uepoch",
    "variable_hangup_cause",
    "variable_originate_disposition",
    "variable_bridge_hangup_cause",
    "variable_last_bridge_hangup_cause",
    "Bridge-B-Unique-ID",
    "variable_last_bridge_to",
    "variable_bridge_channel",
    "variable_originate_causes",
    "variable_transfer_history",
)


def _is_bridge_completion(body: bytes) -> bool:
    """Whether a CHANNEL_EXECUTE_COMPLETE is the bridge's (switch_core_session.c
    switch_core_session_exec sets `Application` on it; without one, read it all to be sure)."""
    return b"\nApplication: bridge\n" in body or b"\nApplication: " not in body


class EventFields:
    """The headers of a text/event-plain body, each looked up when first asked for: the first
    `Name: value` (or bare `Name:`) line wins, its value url-decoded. Agrees with
    parse_event_body on every header it is asked for (tests/test_esl_fuzz.py); unlike it, a
    malformed line elsewhere in the body is not looked at."""

    __slots__ = ("_text", "_seen")

    def __init__(self, body: bytes) -> None:
        # the whole head is decoded once (C speed): invalid UTF-8 anywhere still drops the peer
        self._text = "\n" + _decode(body).partition("\n\n")[0]
        self._seen: dict[str, str | None] = {}

    def _find(self, name: str) -> str | None:
        value = _find_header(self._text, name)
        return url_decode(value) if value else value

    def get(self, name: str, default: str = "") -> str:
        if name not in self._seen:
            self._seen[name] = self._find(name)
        value = self._seen[name]
        return default if value is None else value


def event_fields(body: bytes) -> EventFields:
    """The headers of a text/event-plain body, for translate_event."""
    return EventFields(body)


def _us(value: str) -> int | None:
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def translate_event(headers: Mapping[str, str] | EventFields) -> CallEvent | None:
    name = headers.get("Event-Name", "")
    at = _us(headers.get("Event-Date-Timestamp", "")) or 0
    if name == "CHANNEL_ANSWER":
        return Answered(_us(headers.get("Caller-Channel-Answered-Time", "")) or at)
    if name == "CHANNEL_BRIDGE":
        return Bridged(_us(headers.get("Caller-Channel-Bridged-Time", "")) or at, headers.get("Bridge-B-Unique-ID", ""))
    if name == "CHANNEL_UNBRIDGE":
        # After a transfer out of the bridge, the unbridge already names where the caller went
        # (fs-wire/transfer-cutoff.txt): the new destination and a new transfer_history entry.
        return Unbridged(
            at,
            headers.get("Caller-Destination-Number", ""),
            transfer_history_of(headers.get("variable_transfer_history", "")),
        )
    if name == "CHANNEL_HANGUP":
        return Hungup(headers.get("Hangup-Cause", ""), at)
    if name == "CHANNEL_HANGUP_COMPLETE":
        billsec = headers.get("variable_billsec", "0")
        return HangupComplete(
            cause=headers.get("Hangup-Cause", "") or headers.get("variable_hangup_cause", ""),
            start_us=_us(headers.get("variable_start_uepoch", ""))
            or _us(headers.get("Caller-Channel-Created-Time", ""))
            or at,
            answered_us=_us(headers.get("variable_answer_uepoch", "")),
            end_us=_us(headers.get("variable_end_uepoch", "")) or at,
            billsec=int(billsec) if billsec.isdigit() else 0,
            destination=headers.get("Caller-Destination-Number", ""),
            bridged_to=_defined(headers.get("variable_last_bridge_to", "")),
            bridge_channel=_defined(headers.get("variable_bridge_channel", "")),
            leg_causes=originate_causes(headers.get("variable_originate_causes", "")),
        )
    if name == "CHANNEL_EXECUTE_COMPLETE":
        application = headers.get("Application", "") or headers.get("variable_current_application", "")
        if application == "bridge":
            cause = (
                headers.get("variable_originate_disposition", "")
                or headers.get("variable_bridge_hangup_cause", "")
                or headers.get("variable_last_bridge_hangup_cause", "")
            )
            # mod_dptools sets originate_disposition to SUCCESS/ANSWER when the B leg answered.
            # A transfer out of the bridge is told by where the channel went, not by the B
            # leg's cause: FreeSWITCH gives BLIND_TRANSFER only to a signal bridge's peer, the
            # `bridge` application's ends NORMAL_CLEARING (fs-wire/transfer-cutoff.txt).
            return BridgeEnded(
                "" if cause in ("", "SUCCESS", "_undef_", "ANSWER") else cause,
                at,
                destination=headers.get("Caller-Destination-Number", ""),
                transfer_history=transfer_history_of(headers.get("variable_transfer_history", "")),
                bridged_to=_defined(headers.get("variable_last_bridge_to", "")),
                leg_causes=originate_causes(headers.get("variable_originate_causes", "")),
            )
        return ExecuteComplete(
            application=headers.get("Application", "") or headers.get("variable_current_application", ""),
            data=headers.get("Application-Data", ""),
            response=headers.get("Application-Response", ""),
            disposition=headers.get("variable_originate_disposition", "")
            or headers.get("variable_bridge_hangup_cause", "")
            or headers.get("variable_last_bridge_hangup_cause", ""),
            at_us=at,
        )
    return None


def _defined(value: str) -> str:
    return "" if value == "_undef_" else value


def transfer_history_of(value: str) -> tuple[str, ...]:
    """`transfer_history` as its entries (`<epoch>:<uuid>:bl_xfer:<ext>/<context>/<dialplan>`),
    oldest first; several transfers make it an array, serialized "ARRAY::<v1>|:<v2>"
    (switch_event.c)."""
    value = _defined(value)
    if not value:
        return ()
    items = value[len("ARRAY::") :].split("|:") if value.startswith("ARRAY::") else [value]
    return tuple(item for item in items if item)


def originate_causes(value: str) -> tuple[tuple[str, str], ...]:
    """`originate_causes` as (leg uuid, cause) pairs in the order the legs were tried.

    switch_ivr_originate.c (switch_ivr_originate, after each attempt) pushes "<uuid>;<CAUSE>"
    for every leg that got a channel; a variable pushed more than once becomes an array, which
    switch_event.c serializes as "ARRAY::<v1>|:<v2>".
    """
    value = _defined(value)
    if not value:
        return ()
    items = value[len("ARRAY::") :].split("|:") if value.startswith("ARRAY::") else [value]
    pairs = []
    for item in items:
        leg, sep, cause = item.partition(";")
        if sep and leg:
            pairs.append((leg.strip(), cause.strip()))
    return tuple(pairs)


def failover_bridge(legs: Iterable[tuple[str, str]]) -> str:
    """The `bridge` argument that tries each (B leg uuid, dial string) in turn.

    FreeSWITCH's failover separator is `|` (switch_ivr_originate.c: each `|` group is tried
    after the previous one failed); `[var=value]` before a target sets variables on that leg
    only, and `origination_uuid` makes the new leg take that uuid
    (switch_core_session.c switch_core_session_outgoing_channel), so the leg FreeSWITCH
    bridges (`last_bridge_to`, CHANNEL_BRIDGE's Bridge-B-Unique-ID) names the vendor. A
    target's own leading `{...}` block (channel variables for the whole bridge) is moved into
    its `[...]` block, where it then applies to that leg.
    """
    parts = []
    for leg_uuid, dial in legs:
        dial = _safe_arg(dial)
        extra = ""
        if dial.startswith("{") and "}" in dial:
            extra, dial = dial[1 : dial.index("}")], dial[dial.index("}") + 1 :]
        variables = f"origination_uuid={leg_uuid}" + (f",{extra}" if extra else "")
        parts.append(f"[{variables}]{dial}")
    return "|".join(parts)


def channel_from(headers: Mapping[str, str]) -> Channel:
    """The call as the connect reply describes it."""
    uuid = headers.get("Unique-ID") or headers.get("Channel-Unique-ID") or headers.get("variable_uuid", "")
    if not uuid:
        raise ProtocolError("connect reply without a channel uuid")
    variables = {name: headers[f"variable_{name}"] for name in READ_VARIABLES if f"variable_{name}" in headers}
    return Channel(
        uuid=uuid,
        caller=headers.get("Caller-Caller-ID-Number", "") or headers.get("Channel-Caller-ID-Number", ""),
        destination=headers.get("Caller-Destination-Number", "") or headers.get("Channel-Destination-Number", ""),
        created_us=_us(headers.get("Caller-Channel-Created-Time", "")) or 0,
        answered_us=_us(headers.get("Caller-Channel-Answered-Time", "")),
        variables=variables,
        # switch_caller.c switch_caller_profile_event_set_data: the caller profile (each header only when set)
        caller_id_name=headers.get("Caller-Caller-ID-Name", "") or headers.get("Channel-Caller-ID-Name", ""),
        context=headers.get("Caller-Context", "") or headers.get("Channel-Context", ""),
        transfer_history=transfer_history_of(headers.get("variable_transfer_history", "")),
    )


def _safe_arg(text: str) -> str:
    """An ESL command is newline-delimited: a newline in an argument would inject commands."""
    if "\n" in text or "\r" in text:
        raise ProtocolError("refusing to send an argument containing a line break")
    return text


# -- the session --------------------------------------------------------------------------------------
class EslSession(OutboundSession):
    """One call's outbound socket, with the fixes listed in the module docstring."""

    _lingering: bool  # set by greenswitch's ESLProtocol.__init__ (greenswitch ships no types)

    def __init__(
        self,
        client_address: tuple,
        sock: gsocket.socket,
        *,
        command_timeout_s: float = 5.0,
        max_frame_bytes: int = 1_048_576,
        on_protocol_error: Callable[[str], None] | None = None,
    ) -> None:
        self.command_timeout_s = command_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.on_protocol_error = on_protocol_error
        self.events: gevent.queue.Queue = gevent.queue.Queue()
        self.closed_reason = ""
        self.client_address = client_address
        super().__init__(client_address, sock)

    # greenswitch spawns receive_events and process_events; events go straight to `events`.
    def process_events(self) -> None:
        return None

    def receive_events(self) -> None:
        reason = "peer closed the socket"
        try:
            while self._run:
                frame = read_frame(self.sock_file, self.max_frame_bytes)
                if frame is None:
                    break
                self._dispatch(frame)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("esl peer=%s dropped: %s", self.client_address[0] if self.client_address else "?", exc)
            if self.on_protocol_error:
                self.on_protocol_error(str(exc))
        except (OSError, ValueError) as exc:  # ValueError: reading a socket file closed under us
            reason = f"socket error: {exc}"
        finally:
            self._shutdown(reason)

    def _dispatch(self, frame: Frame) -> None:
        ctype = frame.headers.get("Content-Type", "")
        if ctype in ("command/reply", "api/response"):
            if not self._commands_sent:
                raise ProtocolError(f"unsolicited {ctype}")
            self._commands_sent.pop(0).set(frame)
        elif ctype == "text/event-plain":
            body = frame.body or b""
            if body.startswith(b"Event-Name: "):
                name = body[12 : body.find(b"\n")]
                if name not in _TRANSLATED:
                    return  # parsing every header of an event nobody reads was a third of the CPU
                if name == b"CHANNEL_EXECUTE_COMPLETE" and not _is_bridge_completion(body):
                    return  # every application raises one (multiset, the on-answer cut-off...): only bridge's is read
            headers = event_fields(body)
            event = translate_event(headers)
            if event is not None:
                self.events.put(event)
        elif ctype == "text/disconnect-notice":
            linger = frame.headers.get("Content-Disposition") == "linger"
            self._lingering = self._lingering or linger
            if not linger:
                self.connected = False
            self._outbound_connected = False
            self.events.put(Disconnected(linger))
        elif ctype == "text/rude-rejection":
            raise ProtocolError("rude rejection")
        # anything else (log/data, other event formats) is not ours; ignore it

    def _shutdown(self, reason: str) -> None:
        if not self.closed_reason:
            self.closed_reason = reason
        self._run = False
        self.connected = False
        self._outbound_connected = False
        for waiter in self._commands_sent:
            waiter.set_exception(OutboundSessionHasGoneAway())
        self._commands_sent.clear()
        close_socket(self.sock)
        self.events.put(SocketClosed(reason))

    # -- commands ------------------------------------------------------------------------------------
    def send(self, data: str) -> Frame:
        return self.send_many([data])[-1]

    def send_many(self, commands: list[str], *, already_sent: bool = False) -> list[Frame]:
        """Pipeline commands in one write (FreeSWITCH handles them in order) and wait for
        every reply, each within `command_timeout_s`. `already_sent`: the commands were
        written before this session existed (see EslServer.listen); only wait."""
        if not self.connected:
            raise NotConnectedError()
        waiters: list[gevent.event.AsyncResult[Frame]] = []
        payload = b""
        for command in commands:
            waiter: gevent.event.AsyncResult[Frame] = gevent.event.AsyncResult()
            waiters.append(waiter)
            self._commands_sent.append(waiter)
            payload += (command + "\n\n").encode("utf-8")
        try:
            if not already_sent:
                self.sock.sendall(payload)
        except OSError as exc:
            self._shutdown(f"socket error: {exc}")
            raise OutboundSessionHasGoneAway() from None
        replies: list[Frame] = []
        for command, waiter in zip(commands, waiters, strict=False):
            try:
                reply = waiter.get(timeout=self.command_timeout_s)
                assert reply is not None  # a blocking get raises Timeout; it never returns None
                replies.append(reply)
            except gevent.Timeout:
                message = f"no reply to {command.split(chr(10))[0][:40]!r} within {self.command_timeout_s:g} s"
                log.warning("esl peer dropped: %s", message)
                if self.on_protocol_error:
                    self.on_protocol_error(message)
                self._shutdown(f"protocol error: {message}")
                raise ProtocolError(message) from None
        return replies

    def execute(self, app: str, arg: str = "") -> Frame:
        """`sendmsg` execute; in async mode FreeSWITCH queues it and replies +OK at once."""
        command = f"sendmsg\ncall-command: execute\nexecute-app-name: {_safe_arg(app)}"
        if arg:
            command += f"\nexecute-app-arg: {_safe_arg(arg)}"
        return self.send(command)

    def hangup(self, cause: str = "NORMAL_CLEARING") -> Frame:
        return self.send(f"sendmsg\ncall-command: hangup\nhangup-cause: {_safe_arg(cause)}")

    def api(self, *commands: str) -> list[str]:
        """API commands, pipelined; returns each response body."""
        frames = self.send_many([f"api {_safe_arg(c)}" for c in commands])
        return [f.data for f in frames]

    def expect_ok_many(self, commands: list[str]) -> None:
        for command, frame in zip(commands, self.send_many(commands), strict=False):
            if not frame.data.startswith("+OK"):
                raise ProtocolError(f"{command.split()[0]!r} refused: {frame.data.strip()[:80]}")

    def connect(self, already_sent: bool = False) -> Mapping[str, str]:
        reply = self.send_many(["connect"], already_sent=already_sent)[-1]
        if not reply.headers.get("Reply-Text", "").startswith("+OK"):
            raise ProtocolError("connect refused")
        self.session_data = reply.headers
        self._outbound_connected = True
        return reply.headers

    def next_event(self, timeout_s: float | None) -> CallEvent | None:
        try:
            return self.events.get(timeout=timeout_s)
        except gevent.queue.Empty:
            return None

    def stop(self) -> None:
        """Say `exit` if we still can (FreeSWITCH then frees the channel), then close."""
        if self.connected:
            try:
                self.send("exit")
            except (FsbillError, NotConnectedError, OutboundSessionHasGoneAway, OSError):
                pass
        self._shutdown("closed by fsbill")
        if self._receive_events_greenlet is not None:
            self._receive_events_greenlet.join(timeout=self.command_timeout_s)
            self._receive_events_greenlet.kill(block=True, timeout=1)
        try:
            self.sock_file.close()
        except (OSError, RuntimeError):  # RuntimeError: a reader still inside it (killed above)
            pass


# -- the verbs the enforcer speaks ------------------------------------------------------------------------
# What a call subscribes to: `myevents` (mod_event_socket.c, the session's own channel events)
# minus the ones enforcement never reads. Each event carries every channel variable (half the
# bytes of a call), so they are dropped in FreeSWITCH with `nixevent` rather than parsed here.
# The enforcer reads: CHANNEL_ANSWER, CHANNEL_UNBRIDGE, CHANNEL_HANGUP, CHANNEL_HANGUP_COMPLETE,
# CHANNEL_EXECUTE_COMPLETE (of bridge), plus the linger/disconnect notices — and CHANNEL_BRIDGE
# for a channel that arrived answered (its billing starts when the bridge comes up) and with
# least-cost routing (which vendor's leg was bridged).
IGNORED_EVENTS = (
    "CHANNEL_EXECUTE",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_STATE",
    "CHANNEL_BRIDGE",
    "CHANNEL_DATA",
    "CHANNEL_APPLICATION",
    "CHANNEL_CREATE",
    "CHANNEL_DESTROY",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "CHANNEL_OUTGOING",
    "DETECTED_SPEECH",
    "DTMF",
    "NOTALK",
    "TALK",
)
NORMAL_CLEARING = "NORMAL_CLEARING"


def multiset_arg(assignments: list[str]) -> str:
    """mod_dptools `multiset` with a delimiter none of the values contains (`^^|a=1|b=2 3`):
    one application (one EXECUTE_COMPLETE) instead of one `set` per variable."""
    for delim in "|~!#;":
        if not any(delim in a for a in assignments):
            return f"^^{delim}" + delim.join(assignments)
    raise ProtocolError("no multiset delimiter is free for these values")


# The variables mod_nibblebill acts on (var_name_rate / var_name_account, default names).
NIBBLEBILL_VARIABLES = ("nibble_rate", "nibble_account")


def nibblebill_variables(channel: Channel) -> tuple[str, ...]:
    """The mod_nibblebill variables this channel arrived with (fsbill removes them)."""
    return tuple(name for name in NIBBLEBILL_VARIABLES if channel.var(name))


def cutoff_mark(cutoff: Cutoff) -> CutoffMark:
    """How the core recognises a call its cut-off ended, for this cut-off configuration."""
    if cutoff.mode == "transfer":
        return CutoffMark(transfer_extension=cutoff.transfer_extension)
    return CutoffMark(hangup_cause=cutoff.hangup_cause)


def cutoff_on_answer(cutoff: Cutoff, offset_s: int) -> tuple[str, str]:
    """The dialplan application (name, argument) that `execute_on_answer` runs so that
    FreeSWITCH itself ends the call `offset_s` after answer, even if fsbill dies."""
    if cutoff.mode == "transfer":
        return (
            "sched_transfer",
            f"+{offset_s} {cutoff.transfer_extension} {cutoff.transfer_dialplan} {cutoff.transfer_context}",
        )
    return "sched_hangup", f"+{offset_s} {cutoff.hangup_cause}"


def warning_on_answer(cutoff: Cutoff, offset_s: int) -> tuple[str, str]:
    return "sched_broadcast", f"+{offset_s} {cutoff.warning_prompt} {cutoff.warning_leg}"


def cutoff_api(cutoff: Cutoff, uuid: str, when: int | str) -> str:
    """API command arming the cut-off at an absolute epoch second, or `+N` seconds from now."""
    if cutoff.mode == "transfer":
        return (
            f"sched_transfer {when} {uuid} "
            f"{cutoff.transfer_extension} {cutoff.transfer_dialplan} {cutoff.transfer_context}"
        )
    return f"sched_hangup {when} {uuid} {cutoff.hangup_cause}"


def warning_api(cutoff: Cutoff, uuid: str, when: int | str) -> str:
    return f"sched_broadcast {when} {uuid} {cutoff.warning_prompt} {cutoff.warning_leg}"


# An absolute instant closer than this to now is sent relative (`+N`): by the time the command
# reaches FreeSWITCH its whole second may have passed, and switch_scheduler.c takes a past
# runtime as relative to now (`runtime += now`): a task that never fires in the call's life.
_ABSOLUTE_MARGIN_US = 5 * US


def _when(at_us: int, now_us: int) -> int | str:
    """The time argument of a sched_* API command for the instant `at_us`, decided at `now_us`."""
    if at_us - now_us >= _ABSOLUTE_MARGIN_US:
        return at_us // US
    return f"+{max(1, -(-(at_us - now_us) // US))}"


class CallControl:
    """One call's session, in the enforcer's terms. Every FreeSWITCH command word fsbill sends
    during a call is composed here."""

    def __init__(self, session: EslSession, uuid: str, cutoff: Cutoff, strip: tuple[str, ...] = ()) -> None:
        self.session = session
        self.uuid = uuid
        self.cutoff = cutoff
        self.strip = strip  # channel variables to remove when the call is armed

    def subscribe(self, bridge_events: bool = False) -> None:
        """One round trip: the call's events (see IGNORED_EVENTS; `bridge_events` keeps
        CHANNEL_BRIDGE), and linger so that the final events still arrive after the hangup."""
        ignored = [e for e in IGNORED_EVENTS if not (bridge_events and e == "CHANNEL_BRIDGE")]
        self.session.expect_ok_many(["myevents", f"nixevent {' '.join(ignored)}", "linger"])

    def arm_from_now(self, cutoff_after_s: int) -> None:
        """Arm the cut-off `cutoff_after_s` from now, relative (`+N`): for a channel that is
        already answered, whose billing start (the bridge) is not known yet. An absolute
        instant already past would never fire (switch_scheduler.c takes it as relative to
        now). Deletes the channel's earlier tasks first (a previous socket visit's)."""
        self.session.api(f"sched_del {self.uuid}", cutoff_api(self.cutoff, self.uuid, f"+{max(1, cutoff_after_s)}"))

    def arm(
        self, variables: dict[str, str], cutoff_after_answer_s: int | None, warning_after_answer_s: int | None
    ) -> None:
        """Set the call's variables and, for a call not answered yet, have FreeSWITCH arm the
        cut-off (and the warning) itself the moment it answers: `execute_on_answer`, so the
        cut-off exists inside FreeSWITCH even if fsbill dies before the answer. Its reply is
        awaited before the bridge is sent: a call is never bridged on a socket fsbill has lost
        (pipelining the two let a half-closed peer's call talk until its cut-off, unfollowed)."""
        assignments = [f"{k}={v}" for k, v in variables.items()]
        # mod_nibblebill (mod_nibblebill.c) bills any channel carrying nibble_rate and
        # nibble_account when it looks: its SESSION_HEARTBEAT handler and its CS_HANGUP state
        # handler (process_hangup) read them then. Unsetting them here, before answer, means
        # a call fsbill enforces is never also billed by it (`name=` unsets: mod_dptools
        # base_set treats an empty value as NULL).
        assignments += [f"{name}=" for name in self.strip]
        if cutoff_after_answer_s is not None:
            app, arg = cutoff_on_answer(self.cutoff, cutoff_after_answer_s)
            assignments.append(f"execute_on_answer_fsbill_cutoff={app} {arg}")
        if warning_after_answer_s is not None:
            wapp, warg = warning_on_answer(self.cutoff, warning_after_answer_s)
            assignments.append(f"execute_on_answer_fsbill_warning={wapp} {warg}")
        self.session.execute("multiset", multiset_arg(assignments))

    def move_cutoff(self, cutoff_us: int, warning_us: int | None = None, *, now_us: int, replace: bool = True) -> bool:
        """Move the cut-off (and the warning) to their instants. `replace`: first delete every
        task of the call (the old cut-off and any warning): several sched_hangups stack and the
        earliest fires. One write; FreeSWITCH runs the commands back to back. True when
        FreeSWITCH took the new cut-off (its reply is `+OK`, fs-wire/extend.txt)."""
        commands = [f"sched_del {self.uuid}"] if replace else []
        commands.append(cutoff_api(self.cutoff, self.uuid, _when(cutoff_us, now_us)))
        if warning_us is not None:
            commands.append(warning_api(self.cutoff, self.uuid, _when(warning_us, now_us)))
        replies = self.session.api(*commands)
        return replies[1 if replace else 0].startswith("+OK")

    def warn_at(self, warning_us: int, *, now_us: int) -> None:
        self.session.api(warning_api(self.cutoff, self.uuid, _when(warning_us, now_us)))

    def reject(self, reason: str, rule: Rejection) -> bool:
        """Refuse the call as configured; True when FreeSWITCH was told to answer it with a SIP
        final response (the channel then ends with the response's own cause)."""
        self.session.execute("set", f"fsbill_result=rejected_{reason}")
        if rule.action == "respond":
            self.session.execute("respond", f"{rule.code} {rule.text}")
            return True
        if rule.prompt:
            self.session.execute("answer")
            self.session.execute("playback", rule.prompt)
        self.session.execute("hangup", rule.cause)
        return False

    def bridge(self, dial_string: str) -> None:
        self.session.execute("bridge", dial_string)

    def kill(self, cause: str) -> None:
        """End the channel now whatever runs on it (the bridge included): `uuid_kill` through
        this call's own socket (an `api` command, allowed in `full` mode while the call lives)."""
        self.session.api(f"uuid_kill {self.uuid} {cause or NORMAL_CLEARING}")

    def end(self, cause: str = "") -> None:
        """Hang the call up (the socket app owns the A leg while it runs)."""
        self.session.hangup(cause or NORMAL_CLEARING)


# -- the server -------------------------------------------------------------------------------------------
class EslServer(OutboundESLServer):
    """Accepts FreeSWITCH's outbound-socket connections and runs `handler(session)` per call."""

    bind_address: str  # set by greenswitch's OutboundESLServer.__init__ (greenswitch ships no types)

    def __init__(
        self,
        host: str,
        port: int,
        handler: Callable[[EslSession], None],
        *,
        max_connections: int,
        peer_allowed: Callable[[str], bool],
        command_timeout_s: float,
        connect_timeout_s: float = 5.0,
        max_frame_bytes: int,
        on_protocol_error: Callable[[str], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(bind_address=host, bind_port=port, application=handler, max_connections=max_connections)
        self.handler = handler
        self.peer_allowed = peer_allowed
        self.command_timeout_s = command_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.on_protocol_error = on_protocol_error
        self.on_refused = on_refused
        self._accept_greenlet: gevent.Greenlet | None = None
        self.started = gevent.event.Event()

    def bind(self) -> int:
        self.server = listening_socket(self.bind_address, self.bind_port[0])
        self.bound_port = self.server.getsockname()[1]
        return self.bound_port

    def listen(self) -> None:
        if self.server is None:
            self.bind()
        self._running = True
        self.started.set()
        while self._running:
            try:
                sock, address = self.server.accept()
            except OSError as exc:
                if not self._running:
                    break
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept failed (%s); pausing", exc)
                    gevent.sleep(0.1)
                    continue
                if exc.errno in (errno.EBADF, errno.EINVAL):
                    break
                continue
            peer = address[0]
            if not self.peer_allowed(peer):
                log.warning("esl refused peer=%s reason=not_allowed", peer)
                if self.on_refused:
                    self.on_refused("not_allowed")
                sock.close()
                continue
            if self.connection_count >= self.max_connections:
                # Closing before `connect` returns the call to the dialplan, whose next
                # action (see dialplan/) refuses it: better than half-accepting it.
                log.warning("esl refused peer=%s reason=capacity count=%d", peer, self.connection_count)
                if self.on_refused:
                    self.on_refused("capacity")
                sock.close()
                continue
            # `connect` goes out here, before the call's greenlet is even scheduled: until it
            # arrives, FreeSWITCH's socket app spins on the channel's thread (mod_event_socket.c
            # socket_function: `while (... !LFLAG_CONNECTED) switch_cond_next();`), and a busy
            # switch (realtime priority by default) starves this process of the CPU it needs to
            # get there, so a short delay snowballed into a collapse (docs/BENCHMARKS.md).
            try:
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                sock.sendall(b"connect\n\n")
            except OSError as exc:
                log.info("esl session from %s ended early: %s", peer, exc)
                sock.close()
                continue
            self.connection_count += 1
            greenlet = gevent.spawn(self._serve, sock, address)
            self._greenlets.add(greenlet)
            greenlet.link(self._greenlets.discard)

    def _serve(self, sock: gsocket.socket, address: tuple) -> None:
        accepted_perf = time.perf_counter()
        session = None
        try:
            session = EslSession(
                address,
                sock,
                command_timeout_s=self.connect_timeout_s,
                max_frame_bytes=self.max_frame_bytes,
                on_protocol_error=self.on_protocol_error,
            )
            session.accepted_perf = accepted_perf  # the setup-latency histogram starts here
            session.connect(already_sent=True)
            session.command_timeout_s = self.command_timeout_s
            self.handler(session)
        except (FsbillError, NotConnectedError, OutboundSessionHasGoneAway, OSError) as exc:
            log.info("esl session from %s ended early: %s", address[0], exc)
        except Exception:
            log.exception("esl session from %s failed", address[0])
        finally:
            self.connection_count -= 1
            if session is not None:
                session.stop()
            else:
                sock.close()

    def use_socket(self, sock) -> None:
        """Serve on a socket already bound and listening (systemd socket activation): it
        outlives this process, so calls queued during a restart wait for the next one."""
        sock = gsocket.socket(fileno=sock.detach())
        sock.setblocking(True)
        self.server = sock
        self.bound_port = sock.getsockname()[1]
        self.bind_address = sock.getsockname()[0]

    def start(self) -> int:
        port = self.bind() if self.server is None else self.bound_port
        self._accept_greenlet = gevent.spawn(self.listen)
        self.started.wait()
        return port

    def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Stop accepting; optionally wait for the calls being handled to finish."""
        self._running = False
        if self.server is not None:
            try:
                self.server.close()
            except OSError:
                pass
        if self._accept_greenlet is not None:
            self._accept_greenlet.kill(block=True, timeout=1)
        if drain_timeout_s > 0 and self._greenlets:
            gevent.joinall(list(self._greenlets), timeout=drain_timeout_s)

    @property
    def live_sessions(self) -> int:
        return self.connection_count
