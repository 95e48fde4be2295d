"""Reading the block-format captures of a real FreeSWITCH (tests/sim/fs-wire/*.txt).

A capture is the raw byte stream of one outbound-socket connection in both directions, cut
into blocks:

    ===== >>> app->fs <epoch> =====      bytes the app sent
    ===== <<< fs->app <epoch> =====      one frame FreeSWITCH sent (headers, blank line, body)
    ===== === note ... =====             what the capture observed outside the socket

`fs_to_app_frames(path)` yields what FreeSWITCH sent, in order, as `CapturedFrame`s: the
frame's own headers (url-decoded, the first of a repeated name kept, as fsbill.esl does), its
body bytes, and for an event its fields. Feed them to anything that consumes FreeSWITCH's
side: `fsbill.esl.translate_event(fsbill.esl.event_fields(frame.body))` for an event,
`frame.headers` for the connect reply (the CHANNEL_DATA headers) or a disconnect notice.
`app_to_fs_commands(path)` gives what the app sent. Nothing here knows fsbill: the captures
judge the emulator and fsbill alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

_BLOCK = re.compile(rb"^===== (.*?) =====\n", re.M)


def _header_lines(text: str, *, decode: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep and line.endswith(":"):
            name, value = line[:-1], ""
        if name not in out:  # FreeSWITCH repeats some (Hangup-Cause): the first is kept
            out[name] = unquote(value) if decode else value
    return out


@dataclass(frozen=True)
class CapturedFrame:
    """One frame FreeSWITCH sent, as captured."""

    at: float  # the block's epoch seconds (when the capture saw it)
    headers: dict[str, str]  # the frame's own headers, url-decoded
    body: bytes  # Content-Length bytes (b"" without)
    raw: bytes  # the frame's exact bytes
    fields: dict[str, str] = field(default_factory=dict)  # an event's `Name: value` lines, decoded

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def event_name(self) -> str:
        return self.fields.get("Event-Name", "")

    def label(self) -> str:
        """`CHANNEL_EXECUTE_COMPLETE:bridge`, `CHANNEL_HANGUP`, `notice:linger`,
        `command/reply`, `api/response`."""
        if self.content_type == "text/event-plain":
            app = self.fields.get("Application", "")
            name = self.event_name
            return f"{name}:{app}" if app and name.startswith("CHANNEL_EXECUTE") else name
        if self.content_type == "text/disconnect-notice":
            return f"notice:{self.headers.get('Content-Disposition', '')}"
        return self.content_type


def _blocks(path: str | Path) -> Iterator[tuple[str, float, bytes]]:
    data = Path(path).read_bytes()
    parts = _BLOCK.split(data)
    for i in range(1, len(parts), 2):
        head = parts[i].decode("utf-8", "replace")
        words = head.split()
        at = float(words[-1]) if words and re.fullmatch(r"\d+(\.\d+)?", words[-1]) else 0.0
        direction = "app" if ">>>" in head else "fs" if "<<<" in head else "note"
        yield direction, at, parts[i + 1]


def _parse_frame(data: bytes, at: float) -> CapturedFrame | None:
    head, sep, rest = data.lstrip(b"\n").partition(b"\n\n")
    if not sep and not head:
        return None
    headers = _header_lines(head.decode("utf-8", "replace"), decode=True)
    length = headers.get("Content-Length", "")
    body = rest[: int(length)] if length.isdigit() else b""
    raw = head + b"\n\n" + body
    fields: dict[str, str] = {}
    if headers.get("Content-Type") == "text/event-plain":
        fields = _header_lines(body.decode("utf-8", "replace").partition("\n\n")[0], decode=True)
    return CapturedFrame(at, headers, body, raw, fields)


def fs_to_app_frames(path: str | Path) -> Iterator[CapturedFrame]:
    """The frames FreeSWITCH sent in capture `path`, in order (replies, events, notices)."""
    for direction, at, data in _blocks(path):
        if direction == "fs":
            frame = _parse_frame(data, at)
            if frame is not None:
                yield frame


def app_to_fs_commands(path: str | Path) -> Iterator[tuple[float, str]]:
    """What the app sent in capture `path`: (epoch seconds, the command text without the
    blank line that ends it), in order."""
    for direction, at, data in _blocks(path):
        if direction == "app":
            yield at, data.decode("utf-8", "replace").strip("\n")


__all__ = ["CapturedFrame", "app_to_fs_commands", "fs_to_app_frames"]
