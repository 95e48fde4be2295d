"""FreeSWITCH's side of the event-socket wire format, byte for byte.

Everything here mirrors mod_event_socket.c / switch_event.c of FreeSWITCH 1.10:

- `url_encode` is switch_url_encode (SWITCH_URL_UNSAFE, bytes outside 0x20..0x7e, and an
  already-encoded `%XX` (upper-case hex) left alone);
- `serialize_event` is switch_event_serialize(..., encode=SWITCH_TRUE): `Name: value\\n` lines,
  an empty value written `_undef_`, then a blank line (or `Content-Length` + body);
- `event_frame` is the listener's `Content-Length: N\\nContent-Type: text/event-plain\\n\\n` + body;
- `command_reply`, `api_response`, `linger_notice`, `disconnect_notice` are the reply and notice
  frames exactly as listener_run / api_exec / read_packet / send_disconnect write them;
- `read_command` is read_packet's reading of what a client sends (outbound and inbound alike).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

URL_UNSAFE = b'\r\n #%&+:;<=>?@[\\]^`{|}"'
_HEX = b"0123456789ABCDEF"
# Any character url_encode might change: outside 0x20..0x7e (non-ASCII included) or unsafe.
_NEEDS_ENCODING = re.compile("[^\\x20-\\x7e]|[" + re.escape(URL_UNSAFE.decode("ascii")) + "]")

GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"

Header = tuple[str, str]


def url_encode(value: str) -> str:
    """switch_url_encode_opt(value, double_encode=SWITCH_FALSE) on the UTF-8 bytes of `value`."""
    if not _NEEDS_ENCODING.search(value):
        return value  # printable ASCII with nothing unsafe: the loop below would copy it as is
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    n = len(raw)
    for i, byte in enumerate(raw):
        ok = False
        # `e - p > 1`: at least two more bytes; strchr(hex, c) also matches the NUL terminator,
        # which can only happen past the end, excluded by the length check.
        if byte == 0x25 and n - 1 - i > 1:
            if raw[i + 1] in _HEX and raw[i + 2] in _HEX:
                ok = True
        if not ok and (byte < 0x20 or byte > 0x7E or byte in URL_UNSAFE):
            out += b"%" + bytes((_HEX[(byte >> 4) & 0x0F], _HEX[byte & 0x0F]))
        else:
            out.append(byte)
    return out.decode("ascii")


def serialize_event(headers: Iterable[Header], body: str | None = None) -> bytes:
    """switch_event_serialize with encoding on (the text/event-plain body)."""
    parts = []
    for name, value in headers:
        encoded = url_encode(value)
        parts.append(f"{name}: {encoded if encoded else '_undef_'}\n")
    text = "".join(parts)
    if body:
        text += f"Content-Length: {len(body.encode('utf-8'))}\n\n{body}"
    else:
        text += "\n"
    return text.encode("utf-8")


def event_frame(serialized: bytes, fmt: str = "plain") -> bytes:
    return f"Content-Length: {len(serialized)}\nContent-Type: text/event-{fmt}\n\n".encode("ascii") + serialized


def command_reply(reply: str) -> bytes:
    """listener_run: `Content-Type: command/reply\\nReply-Text: %s\\n\\n`, or, for a reply
    starting with `~`, the raw header text after it (bgapi)."""
    if reply.startswith("~"):
        return ("Content-Type: command/reply\n" + reply[1:]).encode("utf-8")
    return f"Content-Type: command/reply\nReply-Text: {reply}\n\n".encode()


def api_response(body: str) -> bytes:
    raw = body.encode("utf-8")
    if not raw:
        raw = b"-ERR no reply\n"
    return f"Content-Type: api/response\nContent-Length: {len(raw)}\n\n".encode("ascii") + raw


def linger_notice(uuid: str, channel_name: str, linger_time: int) -> bytes:
    return (
        "Content-Type: text/disconnect-notice\n"
        f"Controlled-Session-UUID: {uuid}\n"
        "Content-Disposition: linger\n"
        f"Channel-Name: {channel_name}\n"
        f"Linger-Time: {linger_time}\n"
        "Content-Length: 0\n\n"
    ).encode()


def disconnect_notice(uuid: str | None, message: str = GOODBYE) -> bytes:
    raw = message.encode("utf-8")
    if uuid:
        head = (
            "Content-Type: text/disconnect-notice\n"
            f"Controlled-Session-UUID: {uuid}\n"
            "Content-Disposition: disconnect\n"
            f"Content-Length: {len(raw)}\n\n"
        )
    else:
        head = f"Content-Type: text/disconnect-notice\nContent-Length: {len(raw)}\n\n"
    return head.encode("utf-8") + raw


def connect_reply(channel_headers: Sequence[Header], async_mode: bool = True, full: bool = True) -> bytes:
    """The reply to `connect`: the CHANNEL_DATA event serialized as the outer header block,
    with Content-Type / Reply-Text (`+OK\\n`, hence `%2BOK%0A`) / Socket-Mode / Control."""
    headers = list(channel_headers) + [
        ("Content-Type", "command/reply"),
        ("Reply-Text", "+OK\n"),
        ("Socket-Mode", "async" if async_mode else "static"),
        ("Control", "full" if full else "single-channel"),
    ]
    return serialize_event(headers)


# -- parsing (what the app sends; also used by the tests to read transcripts) ----------------
def parse_headers(text: str) -> list[Header]:
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep and line.endswith(":"):
            name, value = line[:-1], ""
        out.append((name, value))
    return out


__all__ = [
    "GOODBYE",
    "URL_UNSAFE",
    "api_response",
    "command_reply",
    "connect_reply",
    "disconnect_notice",
    "event_frame",
    "linger_notice",
    "parse_headers",
    "serialize_event",
    "url_encode",
]


# The emulator's own bound on one packet, so that a hostile client in a test cannot grow it without end.
MAX_COMMAND_BYTES = 10_485_760


class Stream(Protocol):
    """What read_command reads from: a socket file, or the inbound server's own reader."""

    def readline(self, limit: int, /) -> bytes: ...
    def read(self, size: int, /) -> bytes: ...


class Command(NamedTuple):
    text: str  # every header line, joined by newlines (the first is the command itself)
    headers: dict[str, str]  # "command" is the first line; the rest by lower-cased name
    body: bytes | None  # Content-Length bytes after the blank line, if any


def read_command(stream: Stream) -> Command | None:
    """mod_event_socket.c read_packet: header lines up to a blank line (blank lines before the
    first are skipped), then Content-Length bytes. None when the client closed the socket."""
    lines: list[str] = []
    total = 0
    while True:
        raw = stream.readline(MAX_COMMAND_BYTES)
        if not raw:
            return None
        total += len(raw)
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if not lines:
                continue
            break
        lines.append(text)
        if total >= MAX_COMMAND_BYTES:
            break
    headers: dict[str, str] = {"command": lines[0]}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = None
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > 0:
        body = stream.read(int(length))
    return Command("\n".join(lines), headers, body)
