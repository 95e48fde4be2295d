"""mod_event_socket.c's outbound side: the listener a `socket` application opens for a channel.

One `Listener` is one TCP connection from the switch to the app for one visit of a channel to
the `socket` application (a channel transferred back into the socket extension gets a new
one). It mirrors listener_t and its threads in mod_event_socket.c:

- `_reader` is listener_run's command loop: the first command must come within 25 s and be
  `connect`; each command goes through `_parse_command` (parse_command) and gets its
  command/reply or api/response (api_exec);
- `_pump` is read_packet's event half: it sends queued events and, once nothing is queued,
  looks at the channel: down and lingering → the linger notice (and, with `linger N`, the close
  N seconds later); down without linger → the goodbye (send_disconnect) and the close;
- `deliver` is event_handler's per-listener filter (LFLAG_EVENTS, the subscribed event types,
  `filter` headers).

The channel is told what the listener did through its inbox: `connected`, `msg` (a queued
sendmsg), `uncontrolled` (listener_run returned: CF_CONTROLLED cleared), `resume_reset`
(LFLAG_RESUME: the channel goes to CS_RESET and the dialplan continues). A closed socket never
hangs the channel up by itself (fs-wire/drop.txt).
"""

from __future__ import annotations

import random
import re
import socket as pysocket
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket as gsocket

from fsbill.sim import wire
from fsbill.sim.wire import read_command

if TYPE_CHECKING:
    from fsbill.sim.session import Session

# Events `myevents` subscribes to (mod_event_socket.c parse_command).
MYEVENTS = frozenset(
    {
        "CHANNEL_ANSWER",
        "CHANNEL_APPLICATION",
        "CHANNEL_BRIDGE",
        "CHANNEL_CREATE",
        "CHANNEL_DATA",
        "CHANNEL_DESTROY",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_ORIGINATE",
        "CHANNEL_UUID",
        "CHANNEL_OUTGOING",
        "CHANNEL_PARK",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_STATE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_UNPARK",
        "DETECTED_SPEECH",
        "DTMF",
        "NOTALK",
        "TALK",
    }
)


FIRST_COMMAND_TIMEOUT_S = 25.0  # mod_event_socket: the first command must come within 25 s


class _Fn:
    """A callable queued to the pump, run in order with the frames around it."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn


_WAKE = object()
_STOP = object()


class _ListenerState:
    """listener_t: the connection, its flags (LFLAG_*), its event subscriptions and filters."""

    def __init__(self, channel: Session, visit: int = 1) -> None:
        self.channel = channel
        self.visit = visit
        self.uuid = channel.uuid
        self.channel_name = channel.channel_name
        self.rec = channel.rec
        self.clock = channel.clock
        self.mis = channel.mis
        self.spec = channel.spec
        self.switch = channel.switch
        self.inbox = channel.inbox
        self.sock: gsocket.socket | None = None
        self.send_lock = gevent.lock.RLock()
        self.outq: gevent.queue.Queue = gevent.queue.Queue()
        self.greenlets: list[gevent.Greenlet] = []
        # listener flags (LFLAG_*)
        self.connected = False
        self.connected_evt = gevent.event.Event()
        self.events_on = False
        self.myevents = False
        self.event_names: set[str] = set()
        self.event_all = False
        self.filters: list[tuple[str, str]] = []
        self.linger = False
        self.linger_time = -1
        self.resume = False
        self.handle_disco = False
        self.listener_done = gevent.event.Event()
        self.socket_open = False
        self.silent = False
        self.write_closed = False
        self.closed_by_app = False
        self._linger_deadline: int | None = None
        self._connected_perf = time.perf_counter()

    if TYPE_CHECKING:  # the Listener's

        def _reply(self, data: bytes) -> None: ...


class _CommandParser(_ListenerState):
    """Mixin of the Listener: parse_command() of mod_event_socket.c, one reply per command."""

    def _parse_command(self, headers: dict[str, str], body: bytes | None) -> bool:
        """parse_command(): returns False when the listener must stop (exit)."""
        cmd = headers["command"]
        low = cmd.lower()
        reply: str | None = None
        if low.startswith("exit") or low.startswith("..."):
            self._reply(wire.command_reply("+OK bye"))
            return False
        if low.startswith("filter "):
            reply = self._cmd_filter(cmd[7:])
        elif low.startswith("resume"):
            self.resume = True
            self.channel._setvar("socket_resume", "true")
            reply = "+OK"
        elif low.startswith("connect"):
            self.connected = True
            self.connected_evt.set()
            self.inbox.put({"kind": "connected"})
            headers_out = self.channel._channel_headers("CHANNEL_DATA", channel_profile=True)
            self._reply(wire.connect_reply(headers_out, self.spec.async_mode, self.spec.full))
            if self.mis.silent:
                self.silent = True
            return True
        elif low.startswith("getvar"):
            _, _, name = cmd.partition(" ")
            reply = self.channel.variables.get(name.strip(), "") if name else ""
            self._reply(wire.command_reply(reply))
            return True
        elif low.startswith("myevents"):
            if self.myevents:
                reply = "-ERR aready enabled."
            else:
                self.myevents = True
                self.events_on = True
                self.event_names |= MYEVENTS
                reply = "+OK Events Enabled"
        elif low.startswith("divert_events"):
            reply = "+OK events diverted" if "on" in low[13:] else "+OK events not diverted"
        elif low.startswith("sendmsg"):
            target = cmd[7:].strip() or headers.get("session-id", "")
            if target and target != self.uuid:
                other = self.switch._calls.get(target)
                if other is None:
                    reply = f"-ERR invalid session id [{target}]"
                else:
                    other.inbox.put({"kind": "msg", "headers": headers, "body": body})
                    reply = "+OK"
            else:
                self.inbox.put({"kind": "msg", "headers": headers, "body": body})
                reply = "+OK"
        elif not self.spec.full:
            reply = "-ERR command not found"
        elif low.startswith("sendevent"):
            reply = f"+OK {uuidlib.uuid4()}"
        elif low.startswith("api "):
            api_cmd, _, arg = cmd[4:].strip().partition(" ")
            result = self.switch.api(api_cmd, arg.strip() if arg else None, caller=self.channel)
            self._reply(wire.api_response(result))
            return True
        elif low.startswith("bgapi "):
            job = headers.get("job-uuid") or str(uuidlib.uuid4())
            api_cmd, _, arg = cmd[6:].strip().partition(" ")
            self._reply(wire.command_reply(f"~Reply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n"))
            gevent.spawn(self._bgapi, job, api_cmd, arg.strip() if arg else None)
            return True
        elif low.startswith("log"):
            reply = "+OK log level debug [7]"
        elif low.startswith("linger"):
            rest = cmd[6:]
            if rest.startswith(" ") and rest[1:]:
                try:
                    m = re.match(r"\s*(-?\d*)", rest)
                    self.linger_time = int(m.group(1) or 0) if m else 0
                except ValueError:
                    self.linger_time = 0
                reply = f"+OK will linger {self.linger_time} seconds"
            else:
                self.linger_time = -1
                reply = "+OK will linger"
            self.linger = True
        elif low.startswith("nolinger"):
            self.linger = False
            reply = "+OK will not linger"
        elif low.startswith("nolog"):
            reply = "-ERR not loging"
        elif low.startswith("event"):
            reply = self._cmd_event(cmd)
        elif low.startswith("nixevent"):
            names = cmd.split()[1:]
            known = [n for n in names if n.isupper()]
            if not known:
                reply = "-ERR no keywords supplied"
            else:
                for n in known:
                    if n == "ALL":
                        self.event_all = False
                        self.event_names.clear()
                    else:
                        if self.event_all:
                            self.event_all = False
                            self.event_names |= MYEVENTS
                        self.event_names.discard(n)
                self.events_on = True
                reply = "+OK events nixed"
        elif low.startswith("noevents"):
            if self.events_on:
                self.events_on = False
                self.event_names.clear()
                self.event_all = False
                reply = "+OK no longer listening for events"
            else:
                reply = "-ERR not listening for events"
        if not reply:
            reply = "-ERR command not found"
        self._reply(wire.command_reply(reply))
        return True

    def _cmd_filter(self, rest: str) -> str:
        rest = rest.lstrip(" ")
        name, sep, value = rest.partition(" ")
        if name.lower() == "delete" and sep:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [(n, v) for n, v in self.filters if not (n == name and (not value or v == value))]
            return f"+OK filter deleted. [{name}][{value or '(null)'}]"
        if sep:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            self.filters.append((name, value))
            return f"+OK filter added. [{name}]=[{value}]"
        return "-ERR invalid syntax"

    def _cmd_event(self, cmd: str) -> str:
        words = cmd.split()[1:]
        fmt = "plain"
        if words and words[0].lower() in ("plain", "xml", "json"):
            fmt = words.pop(0).lower()
        for word in words:
            if word == "ALL":
                self.event_all = True
            elif word.isupper() or word.startswith("CHANNEL_"):
                self.event_names.add(word)
        self.events_on = True
        return f"+OK event listener enabled {fmt}"

    def _bgapi(self, job: str, api_cmd: str, arg: str | None) -> None:
        result = self.switch.api(api_cmd, arg, caller=self.channel)
        headers = self.channel._core("BACKGROUND_JOB", self.clock.now_us())
        headers += [("Job-UUID", job), ("Job-Owner-UUID", self.uuid), ("Job-Command", api_cmd)]
        if arg:
            headers.append(("Job-Command-Arg", arg))
        if self.events_on and (self.event_all or "BACKGROUND_JOB" in self.event_names):
            self.outq.put(wire.event_frame(wire.serialize_event(headers, body=result)))


class Listener(_CommandParser):
    """One outbound event-socket connection of one channel visit (listener_t)."""

    def open(self, address: tuple[str, int]) -> str | None:
        """socket_function's connect: returns None once connected, else why it failed."""
        try:
            sock = gsocket.create_connection(address, timeout=5.0)
        except OSError as exc:
            return f"connect failed: {exc}"
        sock.settimeout(None)
        try:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.socket_open = True
        self._connected_perf = time.perf_counter()
        now_us = self.clock.now_us()
        if self.rec.connected_us is None:
            self.rec.connected_us = now_us
        self.rec.connects.append(now_us)
        self.greenlets.append(gevent.spawn(self._reader))
        self.greenlets.append(gevent.spawn(self._pump))
        return None

    # ---- events (event_handler) -------------------------------------------------------------
    def deliver(self, name: str, headers: list[tuple[str, str]]) -> None:
        if self._subscribed(name, headers):
            self.outq.put(wire.event_frame(wire.serialize_event(headers)))

    def _subscribed(self, name: str, headers: list[tuple[str, str]]) -> bool:
        if not self.events_on or self.silent:
            return False
        if not (self.event_all or name in self.event_names):
            return False
        if self.filters:
            values: dict[str, list[str]] = {}
            for k, v in headers:
                values.setdefault(k, []).append(v)
            for fname, fval in self.filters:
                got = values.get(fname, [])
                if fval.startswith("/") and fval.endswith("/") and len(fval) > 1:
                    if any(re.search(fval[1:-1], g) for g in got):
                        return True
                elif fval in got:
                    return True
            return False
        return True

    # ---- sending ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> bool:
        if self.sock is None or not self.socket_open or self.silent or self.write_closed:
            return False
        with self.send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self._socket_lost("send failed")
                return False
        self.rec.sent.append(data)
        return True

    def _pump(self) -> None:
        """The listener's read_packet loop: send queued events; once nothing is queued, look
        at the channel (down: the linger notice, or the goodbye and the close)."""
        while True:
            timeout = None
            if self.handle_disco and self.linger and self.linger_time >= 0:
                timeout = 0.02
            try:
                item = self.outq.get(timeout=timeout)
            except gevent.queue.Empty:
                item = None
            if item is _STOP:
                return
            if isinstance(item, bytes):
                self._write(item)
            elif isinstance(item, _Fn):
                item.fn()
            if not self.outq.empty():
                continue
            if not self.socket_open:
                return
            if self.handle_disco and self.linger and self.linger_time >= 0 and self._linger_deadline is not None:
                if self.clock.now_us() // 1_000_000 > self._linger_deadline:
                    self._end_listener("linger timeout")
                    return
            if self.channel.down and not self.handle_disco and self.connected:
                self.handle_disco = True
                if self.linger:
                    if self.linger_time >= 0:
                        self._linger_deadline = self.clock.now_us() // 1_000_000 + self.linger_time
                    self._write(wire.linger_notice(self.uuid, self.channel_name, self.linger_time))
                else:
                    self._end_listener("channel hung up")
                    return

    def _wake_pump(self) -> None:
        self.outq.put(_WAKE)

    def _end_listener(self, why: str) -> None:
        """listener_run's exit: the goodbye notice, close, CF_CONTROLLED cleared."""
        if self.socket_open:
            if self.resume and not self.channel.down:
                self.inbox.put({"kind": "resume_reset"})
            self._write(wire.disconnect_notice(self.uuid))
            self._close_socket()
        self._listener_finished(why)

    def _close_socket(self, rst: bool = False) -> None:
        if self.sock is None:
            return
        self.socket_open = False
        self.rec.socket_closed_us = self.clock.now_us()
        try:
            if rst:
                self.sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            else:
                self.sock.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        if rst:
            # The reader's makefile() holds a reference, so close() alone would keep the
            # descriptor (and the connection) open until the channel is destroyed and send no
            # RST: close the descriptor now (gevent's own close path, watchers cancelled).
            try:
                self.sock._real_close()  # type: ignore[attr-defined]
            except (OSError, AttributeError):
                pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _socket_lost(self, why: str) -> None:
        if self.socket_open:
            self._close_socket()
            if self.resume and not self.channel.down:
                self.inbox.put({"kind": "resume_reset"})
        self._listener_finished(why)

    def _listener_finished(self, why: str) -> None:
        if not self.listener_done.is_set():
            self.listener_done.set()
            self.outq.put(_STOP)
            self.inbox.put({"kind": "uncontrolled", "why": why, "listener": self})

    # ---- the listener: commands -----------------------------------------------------------
    def _reader(self) -> None:
        assert self.sock is not None
        stream = self.sock.makefile("rb")
        first = True
        try:
            while self.socket_open:
                if first:
                    with gevent.Timeout(self.clock.real_seconds(FIRST_COMMAND_TIMEOUT_S), False):  # type: ignore[arg-type]  # False: a silent timeout (gevent/timeout.py Timeout), which its stubs omit
                        command = read_command(stream)
                        first = False
                    if first:
                        self._end_listener("no command within 25 s")
                        return
                else:
                    command = read_command(stream)
                if command is None:
                    if self.socket_open:
                        self.closed_by_app = True
                        self.rec.socket_closed_by_app_us = self.clock.now_us()
                        self._socket_lost("app closed the socket")
                    return
                raw, headers, body = command
                self.rec.commands.append((self.clock.now_us(), raw))
                if (
                    headers.get("command", "").startswith("sendmsg")
                    and headers.get("execute-app-name", "").lower() == "bridge"
                ):
                    if self.rec.setup_latency_s is None:
                        self.rec.setup_latency_s = time.perf_counter() - self._connected_perf
                if self.silent:
                    continue
                keep = self._parse_command(headers, body)
                if not keep:
                    self._end_listener("exit")
                    return
        except (OSError, ValueError):
            if self.socket_open:
                self.closed_by_app = True
                self.rec.socket_closed_by_app_us = self.clock.now_us()
            self._socket_lost("socket error")
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def _reply(self, data: bytes) -> None:
        if self.mis.reply_delay_s:
            gevent.sleep(self.mis.reply_delay_s)
        self._write(data)

    # ---- misbehaviour (not FreeSWITCH: a broken peer, for fault tests) ---------------------
    def has_byte_fault(self) -> bool:
        m = self.mis
        return m.garbage or m.oversized_content_length or m.invalid_utf8 or m.half_close

    def inject_fault(self) -> None:
        m = self.mis
        if m.garbage:
            junk = bytes(random.Random(self.uuid).getrandbits(8) for _ in range(256))
            self.outq.put(b"\x00\xff\xfe GARBAGE \x1b[31m" + junk + b"\n\n")
        if m.oversized_content_length:
            self.outq.put(
                b"Content-Length: 999999999999\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_EXECUTE\n"
            )
        if m.invalid_utf8:
            headers = self.channel._channel_headers(
                "CHANNEL_EXECUTE", post=[("Application", "set"), ("Application-Data", "x")]
            )
            body = wire.serialize_event(headers)
            body = body.replace(b"Application-Data: x\n", b"Application-Data: \xff\xfe\xc3\x28\n")
            self.outq.put(wire.event_frame(body))
        if m.half_close:

            def shut() -> None:
                with self.send_lock:
                    try:
                        if self.sock is not None:
                            self.sock.shutdown(pysocket.SHUT_WR)
                    except OSError:
                        pass
                    self.write_closed = True

            self.outq.put(_Fn(shut))

    def drop(self) -> None:
        """The socket dies under the app (RST)."""
        if self.socket_open:
            self._close_socket(rst=True)
            self._listener_finished("dropped")

    def kill_greenlets(self) -> None:
        for g in self.greenlets:
            if g is not gevent.getcurrent() and not g.dead:
                g.kill(block=False)


__all__ = ["FIRST_COMMAND_TIMEOUT_S", "MYEVENTS", "Listener"]
