"""A tiny scripted outbound-socket app and a transcript reader, for the emulator's tests."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import gevent
import gevent.event

from fsbill.sockets import close_socket

WIRE_DIR = Path(__file__).resolve().parent / "fs-wire"  # captured from FreeSWITCH 1.10.12


@dataclass
class Frame:
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    at: float

    def get(self, name: str, default: str = "") -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    @property
    def ctype(self) -> str:
        return self.get("Content-Type")

    @property
    def event(self) -> list[tuple[str, str]]:
        """The event-plain body's headers (values still encoded)."""
        return parse_lines(self.body.decode("utf-8", "replace"))

    def ev(self, name: str, default: str = "") -> str:
        for k, v in self.event:
            if k == name:
                return unquote(v)
        return default

    @property
    def event_name(self) -> str:
        return self.ev("Event-Name") if self.ctype == "text/event-plain" else ""

    def label(self) -> str:
        if self.ctype == "text/event-plain":
            name = self.event_name
            app = self.ev("Application")
            return f"{name}:{app}" if app and name.startswith("CHANNEL_EXECUTE") else name
        if self.ctype == "text/disconnect-notice":
            return f"notice:{self.get('Content-Disposition')}"
        return self.ctype


def parse_lines(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        name, _, value = line.partition(": ")
        out.append((name, value))
    return out


def read_frame(stream) -> Frame | None:
    lines: list[bytes] = []
    raw = b""
    while True:
        line = stream.readline()
        if not line:
            return None
        raw += line
        if line == b"\n":
            if not lines:
                continue
            break
        lines.append(line)
    headers = parse_lines(b"".join(lines).decode("utf-8", "replace"))
    body = b""
    length = dict(headers).get("Content-Length")
    if length:
        body = stream.read(int(length))
        raw += body
    return Frame(headers, body, raw, time.monotonic())


class ScriptedApp:
    """Listens like fsbill would; for each connection runs `script(conn)`."""

    def __init__(self, script: Callable[[Conn], None]) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.address = self.server.getsockname()
        self.script = script
        self.conns: list[Conn] = []
        self.greenlet = gevent.spawn(self._accept)

    def _accept(self) -> None:
        while True:
            sock, _ = self.server.accept()
            conn = Conn(sock)
            self.conns.append(conn)
            gevent.spawn(conn.run, self.script)

    def close(self) -> None:
        self.greenlet.kill()
        self.server.close()
        for c in self.conns:
            c.close()


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stream = sock.makefile("rb")
        self.frames: list[Frame] = []
        self.replies: list[Frame] = []
        self.sent: list[str] = []
        self.eof = gevent.event.Event()
        self._new = gevent.event.Event()
        self.uuid = ""
        self.error: BaseException | None = None
        self.done = gevent.event.Event()
        self._reader: gevent.Greenlet | None = None

    def run(self, script: Callable[[Conn], None]) -> None:
        try:
            script(self)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.done.set()

    # -- primitives used by scripts ----------------------------------------------------------
    def send(self, command: str) -> None:
        self.sent.append(command)
        self.sock.sendall((command + "\n\n").encode())

    def start_reading(self) -> None:
        self._reader = gevent.spawn(self._read_loop)

    def _read_loop(self) -> None:
        try:
            while True:
                frame = read_frame(self.stream)
                if frame is None:
                    break
                self.frames.append(frame)
                if frame.ctype in ("command/reply", "api/response"):
                    self.replies.append(frame)
                self._new.set()
        except (OSError, ValueError):
            pass
        finally:
            self.eof.set()
            self._new.set()

    def connect(self) -> Frame:
        self.send("connect")
        frame = read_frame(self.stream)
        assert frame is not None
        self.connect_reply = frame
        self.uuid = unquote(frame.get("Unique-ID"))
        self.start_reading()
        return frame

    def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for f in self.frames[seen:]:
                if predicate(f):
                    return f
            seen = len(self.frames)
            if self.eof.is_set():
                raise AssertionError(f"EOF before the expected frame; got {[f.label() for f in self.frames]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got {[f.label() for f in self.frames]}")
            self._new.clear()
            self._new.wait(min(left, 0.05))

    def wait_event(self, name: str, timeout: float = 10.0) -> Frame:
        return self.wait_for(lambda f: f.event_name == name, timeout)

    def command(self, command: str, timeout: float = 5.0) -> Frame:
        n = len(self.replies)
        self.send(command)
        deadline = time.monotonic() + timeout
        while len(self.replies) <= n:
            if self.eof.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"no reply to {command!r}")
            self._new.clear()
            self._new.wait(0.05)
        return self.replies[n]

    def execute(self, app: str, arg: str = "") -> Frame:
        cmd = f"sendmsg\ncall-command: execute\nexecute-app-name: {app}"
        if arg:
            cmd += f"\nexecute-app-arg: {arg}"
        return self.command(cmd)

    def labels(self) -> list[str]:
        return [f.label() for f in self.frames if f.ctype not in ("command/reply", "api/response")]

    def close(self) -> None:
        """Close abruptly (the fd really goes: the reader's file object holds a reference)."""
        close_socket(self.sock)


# -- transcripts ----------------------------------------------------------------------------------
@dataclass
class Block:
    direction: str  # "app" | "fs" | "note"
    data: bytes


def read_transcript(name: str) -> list[Block]:
    text = (WIRE_DIR / name).read_bytes()
    parts = re.split(rb"^===== (.*?) =====\n", text, flags=re.M)
    blocks = []
    for i in range(1, len(parts), 2):
        head = parts[i].decode()
        data = parts[i + 1]
        direction = "app" if ">>>" in head else "fs" if "<<<" in head else "note"
        blocks.append(Block(direction, data))
    return blocks


def transcript_frames(name: str) -> list[Frame]:
    import io

    frames = []
    for block in read_transcript(name):
        if block.direction != "fs":
            continue
        stream = io.BytesIO(block.data)
        frame = read_frame(stream)
        if frame is not None:
            frames.append(frame)
    return frames


def transcript_labels(name: str) -> list[str]:
    return [f.label() for f in transcript_frames(name) if f.ctype not in ("command/reply", "api/response")]


def fs_to_app_frames(name: str | Path):
    """A capture's FreeSWITCH-to-app frames in order (fsbill.sim.captures.CapturedFrame:
    .headers, .body, .fields, .label()); `name` is a file in fs-wire/ or a path."""
    from fsbill.sim.captures import fs_to_app_frames as frames

    path = Path(name)
    return frames(path if path.is_absolute() or path.exists() else WIRE_DIR / path)
