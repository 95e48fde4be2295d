"""The inbound event socket: one connection from this node to each FreeSWITCH it serves.

Calls still arrive through the outbound `socket` application (fsbill.esl). This connection is
for what an outbound socket cannot do: find out, after a restart or a crash, whether a call
whose socket died is still up, and follow it to its end (re-adoption, fsbill.adoption).

FreeSWITCH's side (mod_event_socket.c, 1.10.12): `auth/request` on connect, `auth <password>`
→ `+OK accepted` / `-ERR invalid`; commands are answered strictly in order (command/reply or
api/response), events come as `text/event-plain` frames in between. `myevents <uuid>` would
bind the whole connection to one session, so one connection follows many calls the way
CGRateS's agent does: `event plain <names>` once, and a `filter Unique-ID <uuid>` per followed
call (filters are OR-ed; `filter delete Unique-ID <uuid>` when it ends). A filter that
matches no channel is added first, so an idle connection receives no events at all.

Reconnects are bounded and backed off (0.5 s doubling to `max_backoff_s`); every state change
is reported through `on_change` (the `fsbill_switch_up{switch}` gauge, /healthz, the log).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket as gsocket

from fsbill.config import SwitchConfig
from fsbill.errors import FsbillError, ProtocolError
from fsbill.esl import CallEvent, Frame, SocketClosed, _safe_arg, event_fields, read_frame, translate_event
from fsbill.sockets import close_socket

log = logging.getLogger("fsbill.switch")

# What a followed call's enforcement reads (the same events its outbound socket delivered).
FOLLOWED_EVENTS = (
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",  # an adopted pre-answered call's billing starts when its bridge comes up
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE_COMPLETE",
)
NO_CHANNEL = "fsbill-follows-no-channel"  # a filter value no Unique-ID ever has
_UNIQUE_ID = re.compile(r"^Unique-ID: (.*)$", re.M)


class SwitchUnavailable(FsbillError):
    """The switch's event socket is not connected (or stopped answering)."""


@dataclass(frozen=True)
class ChannelState:
    """What FreeSWITCH says about a channel (`uuid_dump`)."""

    uuid: str
    answered_us: int | None
    created_us: int
    bridged_us: int | None
    variables: dict[str, str]
    headers: dict[str, str]  # the channel data, as an outbound socket's connect reply carries it


class SwitchConnection:
    def __init__(
        self,
        config: SwitchConfig,
        *,
        on_change: Callable[[SwitchConnection], None] | None = None,
        on_up: Callable[[SwitchConnection], None] | None = None,
        command_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
        max_frame_bytes: int = 4 * 1_048_576,
    ) -> None:
        self.config = config
        self.name = config.name
        self.host, self.port = config.address()
        self.on_change = on_change
        self.on_up = on_up
        self.command_timeout_s = command_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.max_frame_bytes = max_frame_bytes
        self.up = False
        self.last_error = ""
        self.since_s = 0.0  # wall time of the last change
        self.connects = 0
        self._sock: gsocket.socket | None = None
        self._waiters: list[gevent.event.AsyncResult] = []
        self._send_lock = gevent.lock.Semaphore()
        self._followed: dict[str, gevent.queue.Queue] = {}
        self._greenlet: gevent.Greenlet | None = None
        self._running = False
        self.ready = gevent.event.Event()

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._running = False
        self._close("stopped")
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    def _run(self) -> None:
        backoff = 0.5
        while self._running:
            try:
                self._session()
                backoff = 0.5  # it was up: start again from the shortest wait
            except (OSError, ProtocolError, SwitchUnavailable) as exc:
                self._set_down(str(exc) or type(exc).__name__)
            if not self._running:
                return
            gevent.sleep(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)

    def _session(self) -> None:
        sock = gsocket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.settimeout(None)
        sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        self._sock = sock
        stream = sock.makefile("rb")
        try:
            with gevent.Timeout(self.connect_timeout_s, ProtocolError("no auth/request from the switch")):
                first = read_frame(stream, self.max_frame_bytes)
            if first is None or first.headers.get("Content-Type") != "auth/request":
                raise ProtocolError("the switch did not ask for authentication")
            reader = gevent.spawn(self._read_loop, stream)
            try:
                reply = self._command(f"auth {_safe_arg(self.config.password)}")
                if not reply.data.startswith("+OK"):
                    raise SwitchUnavailable(f"authentication refused ({reply.data.strip()}): check the password")
                commands = [f"filter Unique-ID {NO_CHANNEL}"]
                commands += [f"filter Unique-ID {uuid}" for uuid in list(self._followed)]
                commands.append("event plain " + " ".join(FOLLOWED_EVENTS))
                for command in commands:
                    reply = self._command(command)
                    if not reply.data.startswith("+OK"):
                        raise ProtocolError(f"{command.split()[0]!r} refused: {reply.data.strip()[:80]}")
                self._set_up()
                if self.on_up is not None:
                    gevent.spawn(self.on_up, self)
                reader.join()
                raise SwitchUnavailable(reader.value or "the switch closed the connection")
            finally:
                reader.kill(block=False)
        finally:
            self._close("connection ended")
            try:
                stream.close()
            except OSError:
                pass

    def _read_loop(self, stream) -> str:
        reason = "the switch closed the connection"
        try:
            while True:
                frame = read_frame(stream, self.max_frame_bytes)
                if frame is None:
                    break
                ctype = frame.headers.get("Content-Type", "")
                if ctype in ("command/reply", "api/response"):
                    if not self._waiters:
                        raise ProtocolError(f"unsolicited {ctype}")
                    self._waiters.pop(0).set(frame)
                elif ctype == "text/event-plain":
                    self._event(frame.body or b"")
                elif ctype == "text/disconnect-notice":
                    reason = "the switch said goodbye"
                    break
                elif ctype == "text/rude-rejection":
                    reason = "the switch refused this host (event_socket.conf.xml apply-inbound-acl)"
                    break
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except (OSError, ValueError) as exc:
            reason = f"socket error: {exc}"
        self._close(reason)
        return reason

    def _event(self, body: bytes) -> None:
        match = _UNIQUE_ID.search(body.decode("utf-8", "replace").partition("\n\n")[0])
        if match is None:
            return
        queue = self._followed.get(unquote(match.group(1)))
        if queue is None:
            return
        event = translate_event(event_fields(body))
        if event is not None:
            queue.put(event)

    def _close(self, reason: str) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set_exception(SwitchUnavailable(f"switch {self.name}: {reason}"))
        if self.up:
            self._set_down(reason)

    def _set_up(self) -> None:
        self.up = True
        self.last_error = ""
        self.since_s = time.time()
        self.connects += 1
        self.ready.set()
        log.info("switch=%s event=switch_up address=%s:%d", self.name, self.host, self.port)
        if self.on_change:
            self.on_change(self)

    def _set_down(self, reason: str) -> None:
        was_up = self.up
        self.up = False
        self.ready.clear()
        if reason != self.last_error or was_up:
            log.warning("switch=%s event=switch_down reason=%s", self.name, reason)
        self.last_error = reason
        self.since_s = time.time()
        # The calls followed through this connection lose their events: each one's follower
        # stops; the next re-adoption pass (on reconnect) takes them up again.
        followed, self._followed = self._followed, {}
        for queue in followed.values():
            queue.put(SocketClosed(f"switch {self.name} connection lost: {reason}"))
        if self.on_change and was_up:
            self.on_change(self)

    # -- commands -----------------------------------------------------------------------------
    def _command(self, command: str) -> Frame:
        sock = self._sock
        if sock is None:
            raise SwitchUnavailable(f"switch {self.name} is not connected")
        waiter: gevent.event.AsyncResult[Frame] = gevent.event.AsyncResult()
        with self._send_lock:
            self._waiters.append(waiter)
            try:
                sock.sendall((command + "\n\n").encode("utf-8"))
            except OSError as exc:
                self._close(f"send failed: {exc}")
                raise SwitchUnavailable(f"switch {self.name}: send failed: {exc}") from None
        try:
            reply = waiter.get(timeout=self.command_timeout_s)
            assert reply is not None  # a blocking get raises Timeout; it never returns None
            return reply
        except gevent.Timeout:
            # replies are matched in order: a missing one poisons the connection
            self._close(f"no reply to {command.split()[0]!r} within {self.command_timeout_s:g} s")
            raise SwitchUnavailable(f"switch {self.name} did not answer {command.split()[0]!r}") from None

    def api(self, command: str) -> str:
        return self._command(f"api {_safe_arg(command)}").data

    def sendmsg(self, uuid: str, lines: list[str]) -> str:
        return self._command("\n".join([f"sendmsg {_safe_arg(uuid)}"] + [_safe_arg(x) for x in lines])).data

    def exists(self, uuid: str) -> bool:
        return self.api(f"uuid_exists {uuid}").strip() == "true"

    def channel(self, uuid: str) -> ChannelState | None:
        """The channel as `uuid_dump` shows it, None if FreeSWITCH no longer has it."""
        text = self.api(f"uuid_dump {uuid}")
        if text.startswith("-ERR") or not text.strip():
            return None
        headers: dict[str, str] = {}
        for line in text.split("\n"):
            name, sep, value = line.partition(": ")
            if sep and name not in headers:
                headers[name] = unquote(value)
        if headers.get("Unique-ID") != uuid:
            return None

        def us(name: str) -> int | None:
            value = headers.get(name, "")
            return int(value) if value.isdigit() and int(value) > 0 else None

        variables = {k[9:]: v for k, v in headers.items() if k.startswith("variable_")}
        return ChannelState(
            uuid=uuid,
            answered_us=us("Caller-Channel-Answered-Time"),
            created_us=us("Caller-Channel-Created-Time") or 0,
            bridged_us=us("Caller-Channel-Bridged-Time"),
            variables=variables,
            headers=headers,
        )

    # -- following calls ------------------------------------------------------------------------
    def follow(self, uuid: str) -> gevent.queue.Queue:
        """Start receiving this channel's events; the queue gets typed call events (and a
        SocketClosed if the connection drops)."""
        queue: gevent.queue.Queue = gevent.queue.Queue()
        self._followed[uuid] = queue
        reply = self._command(f"filter Unique-ID {_safe_arg(uuid)}")
        if not reply.data.startswith("+OK"):
            self._followed.pop(uuid, None)
            raise ProtocolError(f"filter refused: {reply.data.strip()[:80]}")
        return queue

    def unfollow(self, uuid: str) -> None:
        if self._followed.pop(uuid, None) is None:
            return
        try:
            self._command(f"filter delete Unique-ID {_safe_arg(uuid)}")
        except SwitchUnavailable:
            pass

    @property
    def followed(self) -> int:
        return len(self._followed)

    def status(self) -> dict:
        return {
            "name": self.name,
            "event_socket": self.config.event_socket,
            "up": self.up,
            "since": self.since_s,
            "connects": self.connects,
            "following": self.followed,
            "error": self.last_error,
        }


class FollowedSession:
    """What a call's enforcement talks to once its outbound socket is gone: the same methods
    as fsbill.esl.EslSession, carried over the switch's inbound connection."""

    def __init__(self, switch: SwitchConnection, uuid: str) -> None:
        self.switch = switch
        self.uuid = uuid
        self.events = switch.follow(uuid)
        self.session_data: dict[str, str] = {"Unique-ID": uuid}  # the channel data, once known

    def next_event(self, timeout_s: float | None) -> CallEvent | None:
        try:
            return self.events.get(timeout=timeout_s)
        except gevent.queue.Empty:
            return None

    def api(self, *commands: str) -> list[str]:
        return [self.switch.api(c) for c in commands]

    def hangup(self, cause: str = "NORMAL_CLEARING") -> str:
        return self.switch.api(f"uuid_kill {self.uuid} {cause}")

    def execute(self, app: str, arg: str = "") -> str:
        lines = ["call-command: execute", f"execute-app-name: {app}"]
        if arg:
            lines.append(f"execute-app-arg: {arg}")
        return self.switch.sendmsg(self.uuid, lines)

    def close(self) -> None:
        self.switch.unfollow(self.uuid)


__all__ = ["ChannelState", "FollowedSession", "SwitchConnection", "SwitchUnavailable", "FOLLOWED_EVENTS"]
