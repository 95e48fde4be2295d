"""FreeSWITCH's inbound event socket (port 8021), and mod_json_cdr's CDR posts, emulated.

Modelled on FreeSWITCH 1.10.12 `src/mod/event_handlers/mod_event_socket/mod_event_socket.c`:

- `listener_run`: on connect `Content-Type: auth/request`; the first command must come within
  25 s (`read_packet(listener, &event, 25)`); the socket closes with the goodbye
  `text/disconnect-notice` (`send_disconnect`) after `exit` or a failed `auth`;
- `parse_command`: `exit` → `+OK bye`; `auth <password>` → `+OK accepted` / `-ERR invalid`
  (and the listener stops); before auth every other command is `-ERR command not found`;
  `api` (`api_exec`: `Content-Type: api/response` + Content-Length body, `-ERR no reply` for an
  empty one), `bgapi` (`~Reply-Text: +OK Job-UUID: …` then a BACKGROUND_JOB event with the
  reply as its body), `event [plain|json|xml] NAMES…`, `nixevent`, `noevents`, `filter
  [add|delete] HEADER [VALUE]`, `myevents <uuid>` (binds the listener to that session),
  `sendmsg <uuid>`, `linger`/`nolinger` (`-ERR not controlling a session` without a session);
- `event_handler`: an event goes to every listener subscribed to its type; with filters, only
  if one of them matches (case-insensitive, `/regex/`, `-` for a negative filter); a
  `myevents <uuid>` listener only gets that session's events.

Only the plain event format is emulated (a listener asking for json or xml is told so by its
reply but still gets plain events: fsbill never asks for them).

`JsonCdrPoster` is `src/mod/event_handlers/mod_json_cdr/mod_json_cdr.c`: at CS_REPORTING
(`my_on_reporting`) it builds the channel's JSON CDR (`switch_ivr_generate_json_cdr` in
switch_ivr.c: core-uuid, switchname, channel_data, variables url-encoded by default
(`encode-values`), app_log, callflow with times) and `process_cdr` POSTs it to
`<url>?uuid=<uuid>` as `application/json` with basic auth from `cred`, `retries` + 1 tries
`delay` seconds apart (5 by default when retries are set), a 2xx ending it; a CDR never
posted is written to `err-log-dir/<uuid>.cdr.json`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket as pysocket
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.queue
import gevent.socket as gsocket

from fsbill.sim import wire
from fsbill.sim.event_socket import MYEVENTS  # parse_command `myevents`: the outbound socket's list
from fsbill.sim.wire import read_command
from fsbill.sockets import close_socket

if TYPE_CHECKING:
    from fsbill.sim.session import Session
    from fsbill.sim.switch import Switch

log = logging.getLogger("fsbill.sim.inbound")

AUTH_TIMEOUT_S = 25.0  # listener_run: read_packet(listener, &event, 25) until authed

# switch_name_event: the event type names fsbill and the tests use (ALL included)
EVENT_NAMES = frozenset(
    {
        "ALL",
        "API",
        "BACKGROUND_JOB",
        "CHANNEL_ANSWER",
        "CHANNEL_APPLICATION",
        "CHANNEL_BRIDGE",
        "CHANNEL_CALLSTATE",
        "CHANNEL_CREATE",
        "CHANNEL_DATA",
        "CHANNEL_DESTROY",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_ORIGINATE",
        "CHANNEL_OUTGOING",
        "CHANNEL_PARK",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_STATE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_UNPARK",
        "CHANNEL_UUID",
        "CUSTOM",
        "DETECTED_SPEECH",
        "DTMF",
        "HEARTBEAT",
        "NOTALK",
        "SESSION_HEARTBEAT",
        "TALK",
    }
)


class _Listener:
    """One inbound connection (listener_t)."""

    def __init__(self, server: InboundServer, sock: gsocket.socket, address: tuple) -> None:
        self.server = server
        self.switch = server.switch
        self.sock = sock
        self.address = address
        self.authed = False
        self.running = True
        self.events_on = False
        self.event_list: set[str] = set()
        self.event_all = False
        self.format = "plain"
        self.filters: list[tuple[str, str]] = []
        self.myevents = False
        self.session_uuid: str | None = None
        self.outq: gevent.queue.Queue = gevent.queue.Queue()
        self.commands: list[str] = []  # what the client sent, for tests
        self.closed = gevent.event.Event()

    # -- event_handler ------------------------------------------------------------------------
    def deliver(self, name: str, headers: list[tuple[str, str]], body: str | None = None) -> None:
        if not self.running or not self.events_on:
            return
        if not (self.event_all or name in self.event_list):
            return
        if self.filters and not self._filtered_in(headers):
            return
        if self.myevents:
            uid = _header(headers, "Unique-ID")
            if uid is None or (self.session_uuid is not None and uid != self.session_uuid):
                if not (self.session_uuid and _header(headers, "Job-Owner-UUID") == self.session_uuid):
                    return
        self.outq.put(wire.event_frame(wire.serialize_event(headers, body=body)))

    def _filtered_in(self, headers: list[tuple[str, str]]) -> bool:
        send = False
        for fname, fvalue in self.filters:
            hval = _header(headers, fname)
            if hval is None:
                continue
            comp = fvalue
            pos = True
            i = 0
            while i < len(comp):
                if comp[i] == "+":
                    pos = True
                elif comp[i] == "-":
                    pos = False
                elif comp[i] != " ":
                    break
                i += 1
            comp = comp[i:]
            if send and pos:
                continue
            if not comp:
                continue
            if fvalue.startswith("/"):
                pattern = comp.strip("/")
                try:
                    cmp = re.search(pattern, hval) is not None
                except re.error:
                    cmp = False
            else:
                cmp = hval.lower() == comp.lower()
            if cmp:
                if pos:
                    send = True
                else:
                    send = False
                    break
        return send

    # -- listener_run -------------------------------------------------------------------------
    def run(self) -> None:
        pump = gevent.spawn(self._pump)
        stream = _Reader(self.sock)  # not makefile(): close() must really close (drop() resets)
        try:
            self._send(b"Content-Type: auth/request\n\n")
            while self.running and not self.server.closing:
                timeout = None if self.authed else self.switch.clock.real_seconds(AUTH_TIMEOUT_S)
                command = None
                with gevent.Timeout(timeout, False):  # type: ignore[arg-type]  # False: a silent timeout (gevent/timeout.py Timeout), which its stubs omit
                    command = read_command(stream)
                if command is None:
                    break
                reply = self._parse(command.headers["command"], command.headers, command.body)
                if reply is not None:
                    self.outq.put(wire.command_reply(reply))
        except (OSError, ValueError):
            pass
        finally:
            self.running = False
            if not self.server.dropped:
                self.outq.put(wire.disconnect_notice(self.session_uuid))
            self.outq.put(None)
            pump.join(timeout=2)
            pump.kill(block=False)
            close_socket(self.sock)
            self.server._listeners.discard(self)
            self.closed.set()

    def _pump(self) -> None:
        while True:
            item = self.outq.get()
            if item is None:
                return
            if not self._send(item):
                return

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.running = False
            return False

    # -- parse_command ------------------------------------------------------------------------
    def _parse(self, cmd: str, headers: dict[str, str], body: bytes | None) -> str | None:
        """The reply text (None when the command wrote its own frame)."""
        self.commands.append(cmd)
        low = cmd.lower()
        if low.startswith("exit") or low.startswith("..."):
            self.running = False
            return "+OK bye"
        if not self.authed:
            if low.startswith("auth "):
                if cmd[5:].strip("\r") == self.server.password:
                    self.authed = True
                    return "+OK accepted"
                self.running = False
                return "-ERR invalid"
            return "-ERR command not found"
        if low.startswith("filter "):
            return self._filter(cmd[7:])
        if low.startswith("myevents"):
            return self._myevents(cmd)
        if low.startswith("sendmsg"):
            target = cmd[7:].strip() or self.session_uuid or ""
            if not self.switch.sendmsg(target, headers, body):
                return f"-ERR invalid session id [{target}]"
            return "+OK"
        if low.startswith("api "):
            api_cmd, _, arg = cmd[4:].strip().partition(" ")
            result = self.switch.api(api_cmd, arg.strip() or None)
            self.outq.put(wire.api_response(result or "Command returned no output!"))
            return None
        if low.startswith("bgapi "):
            job = headers.get("job-uuid") or str(uuidlib.uuid4())
            api_cmd, _, arg = cmd[6:].strip().partition(" ")
            self.outq.put(wire.command_reply(f"~Reply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n"))
            gevent.spawn(self._bgapi, job, api_cmd, arg.strip() or None)
            return None
        if low.startswith("linger") or low.startswith("nolinger"):
            return "-ERR not controlling a session"
        if low.startswith("nolog"):
            return "-ERR not loging"
        if low.startswith("log"):
            return "+OK log level debug [7]"
        if low.startswith("event"):
            return self._event(cmd)
        if low.startswith("nixevent"):
            return self._nixevent(cmd)
        if low.startswith("noevents"):
            if self.events_on:
                self.events_on = False
                self.event_list.clear()
                self.event_all = False
                return "+OK no longer listening for events"
            return "-ERR not listening for events"
        return "-ERR command not found"

    def _bgapi(self, job: str, api_cmd: str, arg: str | None) -> None:
        reply = self.switch.api(api_cmd, arg) or "Command returned no output!"
        headers = self.server.core_headers("BACKGROUND_JOB")
        headers += [("Job-UUID", job), ("Job-Command", api_cmd)]
        if arg:
            headers.append(("Job-Command-Arg", arg))
        self.server.fire("BACKGROUND_JOB", headers, body=reply)

    def _filter(self, rest: str) -> str:
        rest = rest.lstrip(" ")
        name, sep, value = rest.partition(" ")
        if name.lower() == "delete" and sep:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self.filters.clear()
            else:
                # switch_event_del_header_val: every header of that name (and value, if given)
                self.filters = [
                    (n, v) for n, v in self.filters if not (n.lower() == name.lower() and (not value or v == value))
                ]
            return f"+OK filter deleted. [{name}][{value or '(null)'}]"
        if sep:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            self.filters.append((name, value))
            return f"+OK filter added. [{name}]=[{value}]"
        return "-ERR invalid syntax"

    def _myevents(self, cmd: str) -> str:
        if self.myevents:
            return "-ERR aready enabled."
        uid, _, fmt = cmd[9:].strip().partition(" ")
        if uid:
            if self.switch.live_channel(uid) is not None:
                self.session_uuid = uid
            elif fmt:
                return "-ERR invalid uuid"
        self.myevents = True
        self.events_on = True
        self.event_list |= MYEVENTS
        return "+OK Events Enabled"

    def _event(self, cmd: str) -> str:
        words = cmd.split()[1:]
        keys = 0
        for i, word in enumerate(words):
            if i == 0 and word.lower() in ("plain", "json", "xml"):
                self.format = word.lower()
                continue
            if word in EVENT_NAMES:
                keys += 1
                if word == "ALL":
                    self.event_all = True
                else:
                    self.event_list.add(word)
        if not keys:
            return "-ERR no keywords supplied"
        self.events_on = True
        return f"+OK event listener enabled {self.format}"

    def _nixevent(self, cmd: str) -> str:
        keys = 0
        for word in cmd.split()[1:]:
            if word not in EVENT_NAMES:
                continue
            keys += 1
            if word == "ALL":
                self.event_all = False
                self.event_list.clear()
            else:
                if self.event_all:
                    self.event_all = False
                    self.event_list |= EVENT_NAMES - {"ALL"}
                self.event_list.discard(word)
        if not keys:
            return "-ERR no keywords supplied"
        self.events_on = True
        return "+OK events nixed"


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    low = name.lower()
    for k, v in headers:
        if k.lower() == low:
            return v
    return None


class _Reader:
    """readline/read over recv(), so that closing the socket closes its descriptor at once."""

    def __init__(self, sock: gsocket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def readline(self, limit: int) -> bytes:
        while b"\n" not in self.buf and len(self.buf) < limit:
            if not self._fill():
                break
        end = self.buf.find(b"\n")
        end = len(self.buf) if end < 0 else end + 1
        end = min(end, limit)
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                break
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class InboundServer:
    """The switch's event socket (`event_socket.conf.xml`: listen-ip, listen-port, password).

    `drop()` resets every connection (a switch restart or a network cut, as the client sees
    it); `down()` / `up()` close and reopen the listening socket.
    """

    def __init__(self, switch: Switch, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon") -> None:
        self.switch = switch
        self.host = host
        self.port = port
        self.password = password
        self.closing = False
        self.dropped = False
        self._listeners: set[_Listener] = set()
        self.accepted = 0
        self._sock: gsocket.socket | None = None
        self._accept: gevent.Greenlet | None = None
        # switch_event_bind: every event any channel fires reaches event_handler
        self._subscription = switch.subscribe(lambda _uuid, name, headers: self.fire(name, headers))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> int:
        self.up()
        return self.port

    def up(self) -> None:
        sock = gsocket.socket()
        sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self.closing = False
        self.dropped = False
        self._accept = gevent.spawn(self._accept_loop, sock)

    def _accept_loop(self, sock: gsocket.socket) -> None:
        while True:
            try:
                conn, address = sock.accept()
            except OSError:
                return
            conn.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
            listener = _Listener(self, conn, address)
            self._listeners.add(listener)
            self.accepted += 1
            gevent.spawn(listener.run)

    def down(self, rst: bool = True) -> None:
        """Stop listening and cut every connection."""
        if self._accept is not None:
            self._accept.kill(block=False)
            self._accept = None
        if self._sock is not None:
            close_socket(self._sock)
            self._sock = None
        self.drop(rst=rst)

    def drop(self, rst: bool = True) -> None:
        self.dropped = rst
        for listener in list(self._listeners):
            listener.running = False
            close_socket(listener.sock, reset=rst)

    def close(self) -> None:
        self.closing = True
        self.down()
        self._subscription.cancel()

    @property
    def connections(self) -> int:
        return sum(1 for listener in self._listeners if listener.authed and listener.running)

    def listeners(self) -> list[_Listener]:
        return list(self._listeners)

    # -- switch_event_fire → event_handler ----------------------------------------------------
    def fire(self, name: str, headers: list[tuple[str, str]], body: str | None = None) -> None:
        for listener in list(self._listeners):
            listener.deliver(name, headers, body)

    def core_headers(self, name: str) -> list[tuple[str, str]]:
        sw = self.switch
        return [
            ("Event-Name", name),
            ("Core-UUID", sw.core_uuid),
            ("FreeSWITCH-Hostname", sw.hostname),
            ("FreeSWITCH-Switchname", sw.hostname),
            ("FreeSWITCH-IPv4", sw.ipv4),
            ("FreeSWITCH-IPv6", sw.ipv6),
            ("Event-Date-Timestamp", str(sw.clock.now_us())),
            ("Event-Calling-File", "mod_event_socket.c"),
            ("Event-Calling-Function", "api_exec"),
            ("Event-Calling-Line-Number", "1588"),
            ("Event-Sequence", str(sw._next_sequence())),
        ]


# -- mod_json_cdr --------------------------------------------------------------------------------
@dataclass
class CdrPost:
    uuid: str
    url: str
    status: int  # HTTP status, 0 when the connection failed
    attempt: int
    body: bytes = field(repr=False, default=b"")


class JsonCdrPoster:
    """mod_json_cdr with `url`, `cred` (user:password, basic auth), `retries`, `delay`,
    `encode-values` (true by default) and `err-log-dir`."""

    def __init__(
        self,
        switch: Switch,
        url: str,
        *,
        cred: str = "",
        retries: int = 0,
        delay_s: float = 0.0,
        encode_values: bool = True,
        err_log_dir: str | Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.switch = switch
        self.url = url
        self.cred = cred
        self.retries = retries
        # load_config: `if (globals.retries && !globals.delay) globals.delay = 5;`
        self.delay_s = delay_s if (delay_s or not retries) else 5.0
        self.encode_values = encode_values
        self.err_log_dir = Path(err_log_dir) if err_log_dir else None
        self.timeout_s = timeout_s
        self.posts: list[CdrPost] = []
        self.backed_up: list[Path] = []
        self._greenlets: set[gevent.Greenlet] = set()
        self.enabled = True
        # my_on_reporting is a CS_REPORTING state handler: run right after
        # switch_core_session_reporting_state fires CHANNEL_HANGUP_COMPLETE
        switch.reporting_hooks.append(self.on_reporting)

    # my_on_reporting: the B leg has no CDR of its own in the emulator (it is not a channel)
    def on_reporting(self, call: Session) -> None:
        if not self.enabled:
            return
        body = json.dumps(json_cdr(call, self.encode_values), separators=(",", ":")).encode("utf-8")
        g = gevent.spawn(self.process, call.uuid, body)
        self._greenlets.add(g)
        g.link(self._greenlets.discard)

    def process(self, uuid: str, body: bytes) -> bool:
        """process_cdr: retries + 1 tries, `delay` apart; a 2xx ends it."""
        for attempt in range(self.retries + 1):
            if attempt:
                gevent.sleep(self.delay_s)
            status = self._post(f"{self.url}?uuid={uuid}", body)
            self.posts.append(CdrPost(uuid, self.url, status, attempt + 1, body))
            if 200 <= status < 300:
                return True
        if self.err_log_dir is not None:  # backup_cdr
            self.err_log_dir.mkdir(parents=True, exist_ok=True)
            path = self.err_log_dir / f"{uuid}.cdr.json"
            path.write_bytes(body + b"\n")
            self.backed_up.append(path)
        return False

    def repost(self, uuid: str) -> bool:
        """What an operator's script does with a CDR left in err-log-dir: post it again."""
        for post in reversed(self.posts):
            if post.uuid == uuid:
                return self.process(uuid, post.body)
        raise KeyError(uuid)

    def _post(self, url: str, body: bytes) -> int:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        headers = {"Content-Type": "application/json", "User-Agent": "freeswitch-json/1.0"}
        if self.cred:
            headers["Authorization"] = "Basic " + base64.b64encode(self.cred.encode("utf-8")).decode("ascii")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.timeout_s)  # type: ignore[arg-type]  # a URL without a host fails at connect, as before
            try:
                conn.request("POST", parts.path + ("?" + parts.query if parts.query else ""), body, headers)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()
        except OSError:
            return 0

    def wait(self, timeout_s: float = 30.0) -> None:
        gevent.joinall(list(self._greenlets), timeout=timeout_s)

    def close(self) -> None:
        self.enabled = False
        for g in list(self._greenlets):
            g.kill(block=False)
        if self.on_reporting in self.switch.reporting_hooks:
            self.switch.reporting_hooks.remove(self.on_reporting)


def json_cdr(call: Session, urlencode: bool = True) -> dict[str, Any]:
    """switch_ivr_generate_json_cdr for one emulated channel."""
    sw = call.switch
    variables = {}
    for name, value in call.variables.items():
        if name and value:  # switch_ivr_set_json_chan_vars skips empty names and values
            variables[name] = wire.url_encode(value) if urlencode else value
    profile = {
        "username": call.spec.caller_id_number,
        "dialplan": call.dialplan,
        "caller_id_name": call.spec.caller_id_name,
        "ani": call.spec.caller_id_number,
        "aniii": "",
        "caller_id_number": call.spec.caller_id_number,
        "network_addr": call.spec.network_addr,
        "rdnis": "",
        "destination_number": call.destination,
        "uuid": call.uuid,
        "source": "mod_sofia",
        "context": call.context,
        "chan_name": call.channel_name,
    }
    times = {
        "created_time": str(call.created_us),
        "profile_created_time": str(call.profile_created_us),
        "progress_time": str(call.progress_us),
        "progress_media_time": str(call.progress_media_us),
        "answered_time": str(call.answered_us),
        "bridged_time": str(call.bridged_us),
        "last_hold_time": "0",
        "hold_accum_time": "0",
        "hangup_time": str(call.hungup_us),
        "resurrect_time": "0",
        "transfer_time": str(call.transfer_us),
    }
    return {
        "core-uuid": sw.core_uuid,
        "switchname": sw.hostname,
        "channel_data": {
            "state": call.state,
            "direction": "inbound",
            "state_number": str(call.state_number),
            "flags": "",
            "caps": "",
        },
        "callStats": {},
        "variables": variables,
        "app_log": {
            "applications": [{"app_name": app, "app_data": arg, "app_stamp": "0"} for app, arg in call.rec.applications]
        },
        "callflow": [
            {
                "dialplan": call.dialplan,
                "profile_index": str(call.profile_index),
                "caller_profile": profile,
                "times": times,
            }
        ],
    }


__all__ = ["CdrPost", "InboundServer", "JsonCdrPoster", "json_cdr"]
