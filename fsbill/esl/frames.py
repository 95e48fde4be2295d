"""FreeSWITCH's frames: reading them off the socket, their headers, and what they say in the
core's terms (fsbill.core.events, fsbill.core.call.Channel)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from fsbill.core.call import READ_VARIABLES, Channel
from fsbill.core.events import (
    Answered,
    Bridged,
    BridgeEnded,
    CallEvent,
    ExecuteComplete,
    HangupComplete,
    Hungup,
    Unbridged,
)
from fsbill.errors import ProtocolError

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
