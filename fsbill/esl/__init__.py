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
import time
from collections.abc import Callable, Mapping

import gevent
import gevent.event
import gevent.queue
import gevent.socket as gsocket
from greenswitch.esl import NotConnectedError, OutboundESLServer, OutboundSession, OutboundSessionHasGoneAway

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
from fsbill.errors import FsbillError, ProtocolError
from fsbill.esl.control import (
    IGNORED_EVENTS,
    NIBBLEBILL_VARIABLES,
    NORMAL_CLEARING,
    SUBSCRIPTION,
    CallControl,
    _when,
    cutoff_api,
    cutoff_mark,
    cutoff_on_answer,
    multiset_arg,
    nibblebill_variables,
    warning_api,
    warning_on_answer,
)
from fsbill.esl.frames import (
    _TRANSLATED,
    EVENT_FIELDS,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    EventFields,
    Frame,
    LazyHeaders,
    _is_bridge_completion,
    _safe_arg,
    channel_from,
    event_fields,
    failover_bridge,
    originate_causes,
    parse_event_body,
    parse_header_lines,
    read_frame,
    transfer_history_of,
    translate_event,
    url_decode,
)
from fsbill.sockets import close_socket, listening_socket

log = logging.getLogger("fsbill.esl")


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
        self.subscribed = False  # SUBSCRIPTION sent with `connect` and taken (see connect)
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

    def connect(self, already_sent: bool = False, subscription: tuple[str, ...] = ()) -> Mapping[str, str]:
        """`connect`, and the `subscription` commands written right after it (one write, one
        wait: FreeSWITCH answers them in order); each of their replies must be +OK."""
        replies = self.send_many(["connect", *subscription], already_sent=already_sent)
        reply = replies[0]
        if not reply.headers.get("Reply-Text", "").startswith("+OK"):
            raise ProtocolError("connect refused")
        for command, frame in zip(subscription, replies[1:], strict=True):
            if not frame.data.startswith("+OK"):
                raise ProtocolError(f"{command.split()[0]!r} refused: {frame.data.strip()[:80]}")
        self.session_data = reply.headers
        self._outbound_connected = True
        self.subscribed = bool(subscription)
        return reply.headers

    def next_event(self, timeout_s: float | None) -> CallEvent | None:
        try:
            return self.events.get(timeout=timeout_s)
        except gevent.queue.Empty:
            return None

    def stop(self) -> None:
        """Say `exit` if we still can (FreeSWITCH then frees the channel), then close. Its
        reply ("+OK bye") is not waited for: the socket closes either way, and FreeSWITCH
        ends the listener on the command or on the close, whichever it sees first."""
        if self.connected:
            try:
                self.sock.sendall(b"exit\n\n")
            except OSError:
                pass
        self._shutdown("closed by fsbill")
        if self._receive_events_greenlet is not None:
            self._receive_events_greenlet.join(timeout=self.command_timeout_s)
            self._receive_events_greenlet.kill(block=True, timeout=1)
        try:
            self.sock_file.close()
        except (OSError, RuntimeError):  # RuntimeError: a reader still inside it (killed above)
            pass


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
        self.subscription = SUBSCRIPTION  # written with `connect` (fsbill.esl.control)
        self._hello = ("connect\n\n" + "".join(f"{c}\n\n" for c in self.subscription)).encode()

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
            # get there, so a short delay snowballed into a collapse (docs/BENCHMARKS.md). The
            # call's subscription goes in the same write: its replies come with connect's.
            try:
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                sock.sendall(self._hello)
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
            session.connect(already_sent=True, subscription=self.subscription)
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


__all__ = [
    "Answered",
    "BridgeEnded",
    "Bridged",
    "CallControl",
    "CallEvent",
    "Disconnected",
    "EVENT_FIELDS",
    "EslServer",
    "EslSession",
    "EventFields",
    "ExecuteComplete",
    "Frame",
    "HangupComplete",
    "Hungup",
    "IGNORED_EVENTS",
    "LazyHeaders",
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "NIBBLEBILL_VARIABLES",
    "NORMAL_CLEARING",
    "SUBSCRIPTION",
    "SocketClosed",
    "Unbridged",
    "_TRANSLATED",
    "_is_bridge_completion",
    "_safe_arg",
    "_when",
    "channel_from",
    "cutoff_api",
    "cutoff_mark",
    "cutoff_on_answer",
    "event_fields",
    "failover_bridge",
    "multiset_arg",
    "nibblebill_variables",
    "originate_causes",
    "parse_event_body",
    "parse_header_lines",
    "read_frame",
    "transfer_history_of",
    "translate_event",
    "url_decode",
    "warning_api",
    "warning_on_answer",
]
