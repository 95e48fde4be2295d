"""The emulated FreeSWITCH: channels handed to an app by the `socket` application in
`async full` mode, the outbound event socket they talk over, and the scheduler.

Modelled on FreeSWITCH 1.10 (mod_event_socket.c, switch_ivr.c, switch_ivr_bridge.c,
switch_channel.c, switch_scheduler.c, mod_dptools.c, mod_commands.c) and on the captures in
../shared/fs-wire/. Each call is three greenlets, as each is a thread or two in FreeSWITCH:

- the channel (session thread): runs the socket app (connect, park, execute what `sendmsg`
  queued, bridge, hang up, report), fires events;
- the listener reader: parses the app's commands and replies (command/reply, api/response);
- the listener pump: sends queued events and, once the channel is down, the disconnect notice
  (linger) or the goodbye and the close (no linger) - after whatever events were already
  queued, which is what orders the notice in the captures.

Every time on the wire comes from the `Clock`, and every wait in call time uses `clock.sleep`,
so a scaled clock shared with the app makes "10 minute" calls last seconds.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import socket as pysocket
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from fractions import Fraction
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue
import gevent.socket as gsocket

from fsbill.clock import Clock
from fsbill.sim import wire
from fsbill.sim.causes import DIALSTATUS, q850, sip_to_cause, str2cause
from fsbill.sim.scheduler import Scheduler, Task

log = logging.getLogger("fsbill.sim")

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

# Where each event is fired from (Event-Calling-File/Function/Line-Number, as captured).
CALLING = {
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", 2021),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3481),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3560),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1580),
}
STATE_NUMBER = {
    "CS_NEW": 0,
    "CS_INIT": 1,
    "CS_ROUTING": 2,
    "CS_SOFT_EXECUTE": 3,
    "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5,
    "CS_PARK": 6,
    "CS_CONSUME_MEDIA": 7,
    "CS_HIBERNATE": 8,
    "CS_RESET": 9,
    "CS_HANGUP": 10,
    "CS_REPORTING": 11,
    "CS_DESTROY": 12,
}

FIRST_COMMAND_TIMEOUT_S = 25.0  # mod_event_socket: the first command must come within 25 s


def _epoch_s(us: int) -> int:
    return us // 1_000_000 if us else 0


# -- what a test or the CLI describes -----------------------------------------------------------
@dataclass
class Misbehaviour:
    """Faults of a broken FreeSWITCH peer, for fault tests (all off by default).

    Byte-level faults (`garbage`, `oversized_content_length`, `invalid_utf8`) are written into
    the stream `fault_after_s` call-seconds after answer, or right after CHANNEL_PARK when
    `fault_after_s` is None. `half_close` shuts our sending side at that same moment.
    """

    reply_delay_s: float = 0.0  # real seconds before each command/api reply
    drop_after_s: float | None = None  # call-seconds after answer: the socket dies (RST)
    drop_kills_call: bool = False  # the drop is a crashed switch: the call vanishes too
    garbage: bool = False
    oversized_content_length: bool = False
    invalid_utf8: bool = False
    fault_after_s: float | None = None
    silent: bool = False  # after the connect reply, never send anything again
    half_close: bool = False


@dataclass
class CallSpec:
    """One inbound call as the dialplan hands it to the socket app.

    B leg: answers `answer_after_s` call-seconds after `bridge` starts; with `fail_cause` it
    fails with that cause at that moment instead; with `answer_after_s=None` it rings for
    `ring_s` and fails with `fail_cause` or NO_ANSWER (FreeSWITCH's originate timeout is 60 s).
    Caller: hangs up `talk_s` call-seconds after answer (None: never by itself); the callee
    hangs up `callee_talk_s` after answer (None: never), which ends the bridge only.
    `after_socket` is the dialplan action after `socket` (run when the socket app returns
    with the channel still up), as in dialplan/fsbill_prepaid.xml.
    """

    uuid: str | None = None
    caller_id_number: str = "15551230000"
    caller_id_name: str = ""
    destination_number: str = "4915112345678"
    variables: dict[str, str] = field(default_factory=dict)
    answer_after_s: float | None = 1.0
    fail_cause: str | None = None
    ring_s: float = 60.0
    talk_s: float | None = None
    callee_talk_s: float | None = None
    early_media: bool = True
    context: str = "public"
    network_addr: str = "192.0.2.10"
    async_mode: bool = True
    full: bool = True
    after_socket: str | None = "respond 503 Service Unavailable"
    max_duration_s: float | None = None  # the caller's patience; None = unlimited
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)


@dataclass
class CallRecord:
    uuid: str
    spec: CallSpec
    commands: list[tuple[int, str]] = field(default_factory=list)
    applications: list[tuple[str, str]] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    connected_us: int | None = None
    answered_us: int | None = None
    bridged_us: int | None = None
    unbridged_us: int | None = None
    ended_us: int | None = None
    created_us: int | None = None
    hangup_cause: str | None = None
    ended_by: str | None = None
    responded: str | None = None
    transferred_to: str | None = None
    broadcasts: list[tuple[int, str, str]] = field(default_factory=list)
    fired_tasks: list[tuple[str, str, int]] = field(default_factory=list)
    scheduled_tasks: list[tuple[str, str, int, int]] = field(default_factory=list)  # kind, arg, runtime_s, at_us
    socket_closed_by_app_us: int | None = None
    socket_closed_us: int | None = None
    app_error: str | None = None
    bridge_failed: str | None = None
    setup_latency_s: float | None = None  # real seconds: TCP connected -> `bridge` received
    sent: list[bytes] = field(default_factory=list, repr=False)  # every frame written, in order
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the call is over (channel destroyed, socket closed); real seconds."""
        return self.done.wait(timeout)

    @property
    def talk_us(self) -> int | None:
        if self.answered_us is None:
            return None
        end = self.ended_us
        if self.unbridged_us is not None and (end is None or self.unbridged_us < end):
            end = self.unbridged_us
        return None if end is None else end - self.answered_us

    @property
    def talk_s(self) -> Fraction | None:
        us = self.talk_us
        return None if us is None else Fraction(us, 1_000_000)

    @property
    def billsec(self) -> int:
        value = self.variables.get("billsec", "0")
        return int(value) if value.isdigit() else 0

    def commands_named(self, prefix: str) -> list[str]:
        return [c for _, c in self.commands if c.startswith(prefix)]

    def sent_frames(self) -> list[bytes]:
        return list(self.sent)


class _Hangup(Exception):
    """Unwinds a running application when its channel hangs up."""


# -- one call ---------------------------------------------------------------------------------------
class _Call:
    def __init__(self, switch: Switch, address: tuple[str, int], spec: CallSpec) -> None:
        self.switch = switch
        self.clock = switch.clock
        self.address = address
        self.spec = spec
        self.mis = spec.misbehaviour
        self.uuid = spec.uuid or str(uuidlib.uuid4())
        self.rec = CallRecord(uuid=self.uuid, spec=spec)
        self.inbox: gevent.queue.Queue = gevent.queue.Queue()
        self.pending: list[dict[str, str]] = []  # queued private events (sendmsg, broadcast)
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
        # channel
        now = self.clock.now_us()
        self.created_us = now
        self.rec.created_us = now
        self.state = "CS_EXECUTE"
        self.state_number = 4
        self.call_state = "RINGING"
        self.answer_state = "ringing"
        self.answered_us = 0
        self.progress_us = 0
        self.progress_media_us = 0
        self.bridged_us = 0
        self.hungup_us = 0
        self.transfer_us = 0
        self._pinned_us: int | None = None
        self.report_hangup_time = False
        self.down = False
        self.hangup_cause: str | None = None
        self.controlled = True  # CF_CONTROLLED: the socket app is in charge
        self.in_bridge = False
        self.bridge_legs: dict[str, Any] | None = None  # the B leg once originated
        self.was_bridged = False
        self.profile_index = 1
        self.profile_created_us = now
        self.destination = spec.destination_number
        self.context = spec.context
        self.dialplan = "XML"
        self.channel_name = f"sofia/internal/{spec.caller_id_number}@{spec.network_addr}"
        self.transfer_target: tuple[str, str, str] | None = None
        self.last_app = ""
        self.last_arg = ""
        self.app_stack: list[str] = []
        self.signals: list[dict] = []
        self._linger_deadline: int | None = None
        self._connected_perf = time.perf_counter()
        self.variables: dict[str, str] = {}
        self._init_variables()

    # ---- variables ---------------------------------------------------------------------------
    def _init_variables(self) -> None:
        s = self.spec
        v = self.variables
        v["direction"] = "inbound"
        v["uuid"] = self.uuid
        v["session_id"] = str(self.switch._next_session_id())
        v["sip_from_user"] = s.caller_id_number
        v["sip_from_uri"] = f"{s.caller_id_number}@{s.network_addr}"
        v["sip_from_host"] = s.network_addr
        v["channel_name"] = self.channel_name
        v["sip_call_id"] = f"{uuidlib.uuid4().hex[:12]}@{s.network_addr}"
        v["sip_network_ip"] = s.network_addr
        v["sip_network_port"] = "5060"
        v["sip_req_user"] = s.destination_number
        v["sofia_profile_name"] = "internal"
        v["read_codec"] = "PCMU"
        v["read_rate"] = "8000"
        v["write_codec"] = "PCMU"
        v["write_rate"] = "8000"
        for name, value in s.variables.items():
            self._setvar(name, str(value))
        v.pop("call_uuid", None)
        v["call_uuid"] = self.uuid
        v["current_application_data"] = (
            f"{self.address[0]}:{self.address[1]} async full"
            if s.async_mode and s.full
            else (
                f"{self.address[0]}:{self.address[1]}"
                + (" async" if s.async_mode else "")
                + (" full" if s.full else "")
            )
        )
        v["current_application"] = "socket"
        v["socket_host"] = self.address[0]

    def _setvar(self, name: str, value: str | None) -> None:
        """switch_channel_set_variable: a new value goes to the bottom; None unsets."""
        self.variables.pop(name, None)
        if value is not None and value != "":
            self.variables[name] = value

    # ---- events --------------------------------------------------------------------------------
    def _profile(self, prefix: str) -> list[tuple[str, str]]:
        s = self.spec
        h = [
            (f"{prefix}-Direction", "inbound"),
            (f"{prefix}-Logical-Direction", "inbound"),
            (f"{prefix}-Username", s.caller_id_number),
            (f"{prefix}-Dialplan", self.dialplan),
        ]
        if s.caller_id_name:
            h.append((f"{prefix}-Caller-ID-Name", s.caller_id_name))
        h.append((f"{prefix}-Caller-ID-Number", s.caller_id_number))
        if s.caller_id_name:
            h.append((f"{prefix}-Orig-Caller-ID-Name", s.caller_id_name))
        h += [
            (f"{prefix}-Orig-Caller-ID-Number", s.caller_id_number),
            (f"{prefix}-Network-Addr", s.network_addr),
            (f"{prefix}-ANI", s.caller_id_number),
            (f"{prefix}-Destination-Number", self.destination),
            (f"{prefix}-Unique-ID", self.uuid),
            (f"{prefix}-Source", "mod_sofia"),
        ]
        if self.profile_index > 1:
            h.append(
                (
                    f"{prefix}-Transfer-Source",
                    f"{self.transfer_us // 1_000_000}:{self.uuid}:bl_xfer:{self.destination}/{self.context}/{self.dialplan}",
                )
            )
        h += [
            (f"{prefix}-Context", self.context),
            (f"{prefix}-Channel-Name", self.channel_name),
            (f"{prefix}-Profile-Index", str(self.profile_index)),
            (f"{prefix}-Profile-Created-Time", str(self.profile_created_us)),
            (f"{prefix}-Channel-Created-Time", str(self.created_us)),
            (f"{prefix}-Channel-Answered-Time", str(self.answered_us)),
            (f"{prefix}-Channel-Progress-Time", str(self.progress_us)),
            (f"{prefix}-Channel-Progress-Media-Time", str(self.progress_media_us)),
            (f"{prefix}-Channel-Hangup-Time", str(self.hungup_us if self.report_hangup_time else 0)),
            (f"{prefix}-Channel-Transfer-Time", str(self.transfer_us)),
            (f"{prefix}-Channel-Resurrect-Time", "0"),
            (f"{prefix}-Channel-Bridged-Time", str(self.bridged_us)),
            (f"{prefix}-Channel-Last-Hold", "0"),
            (f"{prefix}-Channel-Hold-Accum", "0"),
            (f"{prefix}-Screen-Bit", "true"),
            (f"{prefix}-Privacy-Hide-Name", "false"),
            (f"{prefix}-Privacy-Hide-Number", "false"),
        ]
        return h

    def _other_leg(self) -> list[tuple[str, str]]:
        b = self.bridge_legs
        if not b:
            return []
        s = self.spec
        return [
            ("Other-Type", "originatee"),
            ("Other-Leg-Direction", "outbound"),
            ("Other-Leg-Logical-Direction", "outbound"),
            ("Other-Leg-Dialplan", "XML"),
            ("Other-Leg-Caller-ID-Number", s.caller_id_number),
            ("Other-Leg-Orig-Caller-ID-Number", s.caller_id_number),
            ("Other-Leg-Callee-ID-Name", "Outbound Call"),
            ("Other-Leg-Callee-ID-Number", b["destination"]),
            ("Other-Leg-ANI", s.caller_id_number),
            ("Other-Leg-Destination-Number", b["destination"]),
            ("Other-Leg-Unique-ID", b["uuid"]),
            ("Other-Leg-Source", "mod_sofia"),
            ("Other-Leg-Context", self.context),
            ("Other-Leg-Channel-Name", b["channel_name"]),
            ("Other-Leg-Profile-Created-Time", str(b["created_us"])),
            ("Other-Leg-Channel-Created-Time", str(b["created_us"])),
            ("Other-Leg-Channel-Answered-Time", str(b["answered_us"])),
            ("Other-Leg-Channel-Progress-Time", "0"),
            ("Other-Leg-Channel-Progress-Media-Time", str(b["progress_media_us"])),
            ("Other-Leg-Channel-Hangup-Time", "0"),
            ("Other-Leg-Channel-Transfer-Time", "0"),
            ("Other-Leg-Channel-Resurrect-Time", "0"),
            ("Other-Leg-Channel-Bridged-Time", "0"),
            ("Other-Leg-Channel-Last-Hold", "0"),
            ("Other-Leg-Channel-Hold-Accum", "0"),
            ("Other-Leg-Screen-Bit", "true"),
            ("Other-Leg-Privacy-Hide-Name", "false"),
            ("Other-Leg-Privacy-Hide-Number", "false"),
        ]

    def _core(self, name: str, now_us: int) -> list[tuple[str, str]]:
        sw = self.switch
        local = datetime.fromtimestamp(now_us / 1_000_000, tz=timezone.utc)
        file, func, line = CALLING.get(name, ("switch_channel.c", "switch_channel_event_set_data", 0))
        return [
            ("Event-Name", name),
            ("Core-UUID", sw.core_uuid),
            ("FreeSWITCH-Hostname", sw.hostname),
            ("FreeSWITCH-Switchname", sw.hostname),
            ("FreeSWITCH-IPv4", sw.ipv4),
            ("FreeSWITCH-IPv6", sw.ipv6),
            ("Event-Date-Local", local.strftime("%Y-%m-%d %H:%M:%S")),
            ("Event-Date-GMT", format_datetime(local, usegmt=True)),
            ("Event-Date-Timestamp", str(now_us)),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", func),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(sw._next_sequence())),
        ]

    def _channel_headers(
        self, name: str, *, with_vars: bool = True, pre: list = (), post: list = (), channel_profile: bool = False
    ) -> list[tuple[str, str]]:
        now = self._now()
        h = self._core(name, now)
        h += list(pre)
        if channel_profile:
            h += self._profile("Channel")
        h += [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)),
            ("Channel-Name", self.channel_name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", "inbound"),
            ("Presence-Call-Direction", "inbound"),
            ("Channel-HIT-Dialplan", "true"),
            ("Channel-Call-UUID", self.uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            h.append(("Hangup-Cause", self.hangup_cause))
        h += [
            ("Channel-Read-Codec-Name", "PCMU"),
            ("Channel-Read-Codec-Rate", "8000"),
            ("Channel-Read-Codec-Bit-Rate", "64000"),
            ("Channel-Write-Codec-Name", "PCMU"),
            ("Channel-Write-Codec-Rate", "8000"),
            ("Channel-Write-Codec-Bit-Rate", "64000"),
        ]
        h += self._profile("Caller")
        if self.was_bridged:
            h += self._other_leg()
        if with_vars:
            h += [(f"variable_{k}", v) for k, v in self.variables.items()]
        h += list(post)
        return h

    def _now(self) -> int:
        """The channel's clock: real call time, except while it handles something that was due
        at a known instant (a scheduled task, the caller's hang-up), which it stamps with that
        instant. FreeSWITCH does that work within milliseconds; an emulator sharing a loaded
        CPU, at a time scale of 50, would otherwise stretch milliseconds of lag into seconds."""
        return self._pinned_us if self._pinned_us is not None else self.clock.now_us()

    def _pin(self, msg: dict) -> None:
        at = msg.get("at_us")
        if at is not None:
            self._pinned_us = min(int(at), self.clock.now_us())

    def fire(self, name: str, **kwargs: Any) -> None:
        """switch_event_fire: sequence numbers are used whether or not the app listens."""
        headers = self._channel_headers(name, **kwargs)
        if self._subscribed(name, headers):
            self.outq.put(wire.event_frame(wire.serialize_event(headers)))
        for server in self.switch.event_listeners:  # inbound event sockets (fsbill.sim.inbound)
            server.fire(name, headers)

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
            elif isinstance(item, _Call_fn):
                item.fn()
            if not self.outq.empty():
                continue
            if not self.socket_open:
                return
            if self.handle_disco and self.linger and self.linger_time >= 0 and self._linger_deadline is not None:
                if self.clock.now_us() // 1_000_000 > self._linger_deadline:
                    self._end_listener("linger timeout")
                    return
            if self.down and not self.handle_disco and self.connected:
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
            if self.resume and not self.down:
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
                self.sock._real_close()
            except (OSError, AttributeError):
                pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _socket_lost(self, why: str) -> None:
        if self.socket_open:
            self._close_socket()
            if self.resume and not self.down:
                self.inbox.put({"kind": "resume_reset"})
        self._listener_finished(why)

    def _listener_finished(self, why: str) -> None:
        if not self.listener_done.is_set():
            self.listener_done.set()
            self.outq.put(_STOP)
            self.inbox.put({"kind": "uncontrolled", "why": why})

    # ---- the listener: commands -----------------------------------------------------------
    def _reader(self) -> None:
        stream = self.sock.makefile("rb")
        first = True
        try:
            while self.socket_open:
                if first:
                    with gevent.Timeout(self.clock.real_seconds(FIRST_COMMAND_TIMEOUT_S), False):
                        command = self._read_command(stream)
                        first = False
                    if first:
                        self._end_listener("no command within 25 s")
                        return
                else:
                    command = self._read_command(stream)
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

    def _read_command(self, stream) -> tuple[str, dict[str, str], bytes | None] | None:
        lines: list[str] = []
        total = 0
        while True:
            raw = stream.readline(10_485_760)
            if not raw:
                return None
            total += len(raw)
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if not lines:
                    continue
                break
            lines.append(text)
            if total >= 10_485_760:
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
        return "\n".join(lines), headers, body

    def _reply(self, data: bytes) -> None:
        if self.mis.reply_delay_s:
            gevent.sleep(self.mis.reply_delay_s)
        self._write(data)

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
            self._setvar("socket_resume", "true")
            reply = "+OK"
        elif low.startswith("connect"):
            self.connected = True
            self.connected_evt.set()
            self.inbox.put({"kind": "connected"})
            headers_out = self._channel_headers("CHANNEL_DATA", channel_profile=True)
            self._reply(wire.connect_reply(headers_out, self.spec.async_mode, self.spec.full))
            if self.mis.silent:
                self.silent = True
            return True
        elif low.startswith("getvar"):
            _, _, name = cmd.partition(" ")
            reply = self.variables.get(name.strip(), "") if name else ""
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
            result = self.switch.api(api_cmd, arg.strip() if arg else None, caller=self)
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
                    self.linger_time = int(re.match(r"\s*(-?\d*)", rest).group(1) or 0)
                except (AttributeError, ValueError):
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
        result = self.switch.api(api_cmd, arg, caller=self)
        headers = self._core("BACKGROUND_JOB", self.clock.now_us())
        headers += [("Job-UUID", job), ("Job-Owner-UUID", self.uuid), ("Job-Command", api_cmd)]
        if arg:
            headers.append(("Job-Command-Arg", arg))
        if self.events_on and (self.event_all or "BACKGROUND_JOB" in self.event_names):
            self.outq.put(wire.event_frame(wire.serialize_event(headers, body=result)))

    # ---- the channel thread -------------------------------------------------------------------
    def run(self) -> CallRecord:
        try:
            self._run()
        except gevent.GreenletExit:
            raise
        except Exception as exc:  # an emulator bug must not hang the caller
            log.exception("emulated call %s failed", self.uuid)
            self.rec.app_error = self.rec.app_error or f"emulator error: {exc!r}"
        finally:
            self._destroy()
        return self.rec

    def _run(self) -> None:
        self.switch._calls[self.uuid] = self
        try:
            sock = gsocket.create_connection(self.address, timeout=5.0)
        except OSError as exc:
            self.rec.app_error = f"connect failed: {exc}"
            self._after_socket("socket_failed")
            self._report()
            return
        sock.settimeout(None)
        try:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.socket_open = True
        self._connected_perf = time.perf_counter()
        self.rec.connected_us = self.clock.now_us()
        self.greenlets.append(gevent.spawn(self._reader))
        self.greenlets.append(gevent.spawn(self._pump))
        # switch_ivr_park only once the app has sent `connect`
        while not self.connected_evt.is_set():
            msg = self.inbox.get()
            if msg["kind"] == "uncontrolled":
                self._after_socket("peer_closed")
                self._report()
                return
            self._pre_connect(msg)
        gevent.sleep(self.switch.park_delay_s)  # the socket app notices CONNECTED, then parks
        self.fire("CHANNEL_PARK")
        if self.mis.fault_after_s is None and self._has_byte_fault():
            gevent.sleep(0)
            self._inject_fault()
        if self.spec.max_duration_s is not None:
            self._timer(self.spec.max_duration_s, {"kind": "hangup", "cause": "NORMAL_CLEARING", "by": "caller"})
        try:
            self._park_loop()
        except _Hangup:
            pass
        if not self.down:
            self._hangup("NORMAL_CLEARING", "emulator")
        self._finish_socket_app()
        self._report()

    def _pre_connect(self, msg: dict) -> None:
        if msg["kind"] == "msg":
            self.pending.append(msg)
        elif msg["kind"] == "hangup":
            self._pin(msg)
            self._hangup(msg["cause"], msg["by"])

    def _park_loop(self) -> None:
        while not self.down:
            try:
                if self.transfer_target is not None:
                    self._run_transfer_target()
                    return
                if not self.controlled:
                    # the listener is gone: park returns, the dialplan continues after `socket`
                    self._finish_socket_app()
                    self._after_socket("peer_closed")
                    return
                if self.pending:
                    self._handle_private(self.pending.pop(0))
                    continue
                self._dispatch(self.inbox.get(), idle=True)
            except _Transfer:
                continue

    def _dispatch(self, msg: dict, idle: bool = False) -> None:
        """Handle a message wherever the channel is (parked, in an app, in a bridge)."""
        kind = msg["kind"]
        if kind == "msg":
            headers = msg["headers"]
            if headers.get("call-command", "").lower() == "hangup":
                # parsed in order with the other private events, but FreeSWITCH checks for
                # them while apps run too (switch_ivr_parse_all_events / channel ready)
                cause = str2cause(headers.get("hangup-cause", "NORMAL_CLEARING"))
                self._hangup(cause, "app_hangup")
                raise _Hangup()
            self.pending.append(msg)
        elif kind == "hangup":
            if not self.down:
                self._pin(msg)
                self._hangup(msg["cause"], msg["by"])
            raise _Hangup()
        elif kind == "transfer":
            self._pin(msg)
            self.transfer_target = msg["target"]
            self.rec.transferred_to = msg["target"][0]
            self.rec.ended_by = self.rec.ended_by or msg.get("by", "transfer")
            raise _Transfer()
        elif kind == "uncontrolled":
            self.controlled = False
        elif kind == "resume_reset":
            self.controlled = False
            if self.in_bridge:
                raise _Transfer()  # CS_RESET: the bridge breaks, the dialplan continues
        elif kind == "broadcast":
            self.pending.append(
                {
                    "kind": "msg",
                    "headers": {
                        "call-command": "execute",
                        "execute-app-name": msg["app"],
                        "execute-app-arg": msg["arg"],
                        "event-lock": "true",
                    },
                    "body": None,
                }
            )
        elif kind == "fault":
            self._inject_fault()
        elif kind == "drop":
            self._drop()
        elif kind == "connected":
            pass
        else:
            self.signals.append(msg)

    def _wait(self, seconds: float | None, until: Callable[[], bool] | None = None) -> None:
        """Wait `seconds` of call time (None: forever), handling messages; _Hangup unwinds."""
        deadline = None if seconds is None else self.clock.now_us() + int(seconds * 1_000_000)
        while True:
            if until is not None and until():
                return
            if deadline is None:
                timeout = None
            else:
                left = (deadline - self.clock.now_us()) / 1_000_000
                if left <= 0:
                    return
                timeout = self.clock.real_seconds(left)
            try:
                msg = self.inbox.get(timeout=timeout)
            except gevent.queue.Empty:
                return
            self._dispatch(msg)

    def _timer(self, seconds: float, msg: dict) -> gevent.Greenlet:
        g = gevent.spawn_later(self.clock.real_seconds(max(0.0, seconds)), self.inbox.put, msg)
        self.greenlets.append(g)
        return g

    # ---- private events (sendmsg) ---------------------------------------------------------
    def _handle_private(self, msg: dict) -> None:
        headers = msg["headers"]
        command = headers.get("call-command", "").lower()
        if command == "execute":
            app = headers.get("execute-app-name", "")
            arg = headers.get("execute-app-arg")
            if arg is None and msg.get("body"):
                arg = msg["body"].decode("utf-8", "replace")
            loops = headers.get("loops", "1")
            loops_n = int(loops) if loops.isdigit() and int(loops) > 0 else 1
            for i in range(loops_n):
                self._setvar("current_loop", str(i + 1))
                self._setvar("total_loops", str(loops_n))
                self.execute(app, arg or "", headers.get("event-uuid"))
            self._setvar("current_loop", None)
            self._setvar("total_loops", None)
        elif command == "hangup":
            self._hangup(str2cause(headers.get("hangup-cause", "NORMAL_CLEARING")), "app_hangup")
            raise _Hangup()
        elif command in ("unicast", "nomedia", "xferext"):
            pass  # accepted, not emulated

    # ---- applications ----------------------------------------------------------------------
    def execute(self, app: str, arg: str, app_uuid: str | None = None) -> None:
        """switch_core_session_execute_application: EXECUTE, run, EXECUTE_COMPLETE."""
        app_uuid = app_uuid or str(uuidlib.uuid4())
        self.rec.applications.append((app, arg))
        self._setvar("current_application", app)
        self._setvar("current_application_data", arg)
        self.fire(
            "CHANNEL_EXECUTE", post=[("Application", app), ("Application-Data", arg), ("Application-UUID", app_uuid)]
        )
        self._setvar("current_application_data", arg)
        self._setvar("current_application", app)
        self.last_app, self.last_arg = app, arg
        handler = getattr(self, f"_app_{app}", None)
        self.app_stack.append(app)
        try:
            if handler is None:
                log.info("emulated call %s: application %r not emulated; treated as a no-op", self.uuid, app)
            else:
                handler(arg)
        except (_Hangup, _Transfer):
            self._complete(app, arg, app_uuid)
            raise
        finally:
            self.app_stack.pop()
        self._complete(app, arg, app_uuid)

    def _complete(self, app: str, arg: str, app_uuid: str) -> None:
        response = self.variables.get("current_application_response", "_none_")
        self.fire(
            "CHANNEL_EXECUTE_COMPLETE",
            post=[
                ("Application", app),
                ("Application-Data", arg),
                ("Application-Response", response),
                ("Application-UUID", app_uuid),
            ],
        )

    def _app_set(self, arg: str) -> None:
        name, sep, value = arg.partition("=")
        if name:
            self._setvar(name.strip(), value if sep else None)

    _app_export = _app_set

    def _app_unset(self, arg: str) -> None:
        self._setvar(arg.strip(), None)

    def _app_multiset(self, arg: str) -> None:
        """mod_dptools multiset: `^^<d>` first picks the delimiter (default a space)."""
        delim = " "
        if arg.startswith("^^") and len(arg) > 2:
            delim, arg = arg[2], arg[3:]
        for part in arg.split(delim):
            if part:
                self._app_set(part)

    def _app_answer(self, arg: str) -> None:
        self._answer()

    def _app_pre_answer(self, arg: str) -> None:
        if not self.answered_us and not self.progress_media_us:
            self.progress_media_us = self.clock.now_us()
            self.answer_state = "early"
            self.fire("CHANNEL_PROGRESS_MEDIA")
            self.call_state = "EARLY"

    def _app_respond(self, arg: str) -> None:
        m = re.match(r"\s*(\d{3})\s*(.*)", arg)
        if not m:
            return
        code = int(m.group(1))
        if self.rec.responded is None:
            self.rec.responded = arg.strip()
        if code >= 300 and not self.answered_us:
            self._hangup(sip_to_cause(code), "respond")
            raise _Hangup()
        if code == 200:
            self._answer()
        elif code in (180, 183) and not self.progress_media_us:
            self._app_pre_answer("")

    def _app_hangup(self, arg: str) -> None:
        self._hangup(str2cause(arg) if arg.strip() else "NORMAL_CLEARING", "app_hangup")
        raise _Hangup()

    def _app_sleep(self, arg: str) -> None:
        ms = int(arg) if arg.strip().isdigit() else 0
        self._wait(ms / 1000)

    def _app_playback(self, arg: str) -> None:
        seconds = self.switch.playback_s
        self._wait(seconds)
        samples = int(seconds * 8000)
        self._setvar("playback_last_offset_pos", str(samples))
        self._setvar("playback_seconds", str(int(seconds)))
        self._setvar("playback_ms", str(int(seconds * 1000)))
        self._setvar("playback_samples", str(samples))
        self._setvar("current_application_response", "FILE PLAYED")

    def _app_transfer(self, arg: str) -> None:
        parts = arg.split()
        if not parts:
            return
        ext = parts[0]
        dp = parts[1] if len(parts) > 1 else "XML"
        ctx = parts[2] if len(parts) > 2 else self.context
        self.transfer_target = (ext, dp, ctx)
        self.rec.transferred_to = ext
        self.rec.ended_by = self.rec.ended_by or "transfer"
        raise _Transfer()

    def _sched_time(self, text: str) -> int:
        now = self.switch.scheduler.now()
        if text.startswith("+"):
            return now + _atol(text[1:])
        if text.startswith("@"):
            return _atol(text[1:])
        return _atol(text)

    def _app_sched_hangup(self, arg: str) -> None:
        parts = arg.split()
        if not parts:
            return
        when = self._sched_time(parts[0])
        cause = str2cause(parts[1]) if len(parts) > 1 else "ALLOTTED_TIMEOUT"
        self.switch.schedule_hangup(when, self.uuid, cause)

    def _app_sched_transfer(self, arg: str) -> None:
        parts = arg.split()
        if len(parts) < 2:
            return
        when = self._sched_time(parts[0])
        self.switch.schedule_transfer(
            when, self.uuid, parts[1], parts[2] if len(parts) > 2 else None, parts[3] if len(parts) > 3 else None
        )

    def _app_sched_broadcast(self, arg: str) -> None:
        parts = arg.split()
        if len(parts) < 2:
            return
        when = self._sched_time(parts[0])
        self.switch.schedule_broadcast(when, self.uuid, parts[1], parts[2] if len(parts) > 2 else "aleg")

    def _app_sched_cancel(self, arg: str) -> None:
        target = arg.strip() or self.uuid
        if target.isdigit():
            self.switch.scheduler.del_id(int(target))
        else:
            self.switch.scheduler.del_group(target)

    def _app_bridge(self, arg: str) -> None:
        spec = self.spec
        now = self.clock.now_us()
        target = arg.split(",")[0].split("|")[0]
        target = re.sub(r"^\{[^}]*\}", "", target).strip()
        dest = target.rsplit("/", 1)[-1] if "/" in target else target
        b_uuid = str(uuidlib.uuid4())
        self.bridge_legs = {
            "uuid": b_uuid,
            "destination": dest,
            "channel_name": target or "error/none",
            "created_us": now,
            "answered_us": 0,
            "progress_media_us": 0,
        }
        self.signals = []
        self.in_bridge = True
        try:
            # originate: ringing or early media from the B leg
            if spec.answer_after_s is not None and spec.fail_cause is None:
                answer_at = spec.answer_after_s
                self._timer(answer_at, {"kind": "b_answer"})
            else:
                delay = spec.answer_after_s if spec.answer_after_s is not None else spec.ring_s
                self._timer(delay, {"kind": "b_fail", "cause": str2cause(spec.fail_cause or "NO_ANSWER")})
            gevent.sleep(0)
            if not self.answered_us:
                if spec.early_media:
                    self.progress_media_us = self.progress_media_us or self.clock.now_us()
                    self.bridge_legs["progress_media_us"] = self.progress_media_us
                    self.answer_state = "early"
                    self._setvar("endpoint_disposition", "EARLY MEDIA")
                    self.fire("CHANNEL_PROGRESS_MEDIA")
                else:
                    self.progress_us = self.progress_us or self.clock.now_us()
                    self.fire("CHANNEL_PROGRESS")
                self.call_state = "EARLY" if spec.early_media else "RINGING"
            outcome = self._wait_signal(("b_answer", "b_fail"))
            if outcome["kind"] == "b_fail":
                cause = outcome["cause"]
                self.rec.bridge_failed = cause
                self._setvar("originate_disposition", cause)
                self._setvar("DIALSTATUS", DIALSTATUS.get(cause, cause))
                self._setvar("originate_causes", f"{b_uuid};{cause}")
                self._setvar("originate_failed_cause", cause)
                self.bridge_legs = None
                return
            # the B leg answered: the A leg is answered with it, then the bridge comes up
            self.bridge_legs["answered_us"] = self.clock.now_us()
            self._setvar("originate_signal_bond", b_uuid)
            self._setvar("originated_legs", f"{b_uuid};Outbound Call;{dest}")
            self._answer()
            self.bridged_us = self.clock.now_us()
            self.rec.bridged_us = self.bridged_us
            self.call_state = "ACTIVE"
            self.was_bridged = True
            self._setvar("originate_disposition", "SUCCESS")
            self._setvar("DIALSTATUS", "SUCCESS")
            self._setvar("originate_causes", f"{b_uuid};NONE")
            self._setvar("originate_signal_bond", None)
            self._setvar("signal_bond", b_uuid)
            bridge_ids = [("Bridge-A-Unique-ID", self.uuid), ("Bridge-B-Unique-ID", b_uuid)]
            self.fire("CHANNEL_BRIDGE", pre=bridge_ids)
            self._setvar("bridge_to", b_uuid)
            self._setvar("last_bridge_to", b_uuid)
            self._setvar("bridge_channel", self.bridge_legs["channel_name"])
            self._setvar("bridge_uuid", b_uuid)
            self._setvar("last_sent_callee_id_name", "Outbound Call")
            self._setvar("last_sent_callee_id_number", dest)
            if spec.talk_s is not None:
                self._timer(
                    max(0.0, spec.talk_s - (self.clock.now_us() - self.answered_us) / 1e6),
                    {
                        "kind": "hangup",
                        "cause": "NORMAL_CLEARING",
                        "by": "caller",
                        "at_us": self.answered_us + int(spec.talk_s * 1_000_000),
                    },
                )
            if spec.callee_talk_s is not None:
                self._timer(spec.callee_talk_s, {"kind": "b_hangup"})
            try:
                while True:
                    # apps queued to the A leg run inside the bridge (switch_ivr_parse_next_event)
                    if self.pending:
                        self._handle_private(self.pending.pop(0))
                        continue
                    msg = self._wait_signal(("b_hangup",), pending_breaks=True)
                    if msg is not None and msg["kind"] == "b_hangup":
                        self._unbridge("NORMAL_CLEARING")
                        return
            except _Hangup:
                # the A leg hung up: the bridge thread notices a moment later
                self._pause_real(self.switch.bridge_teardown_s)
                self._unbridge("NORMAL_CLEARING")
                raise
            except _Transfer:
                self._unbridge("NORMAL_CLEARING")
                raise
        finally:
            self.in_bridge = False

    def _unbridge(self, b_cause: str) -> None:
        self.rec.unbridged_us = self.rec.unbridged_us or self._now()
        self._setvar("last_bridge_role", self.variables.get("last_bridge_role") or "originator")
        self._setvar("bridge_hangup_cause", b_cause)
        self._setvar("bridge_to", None)
        self.fire(
            "CHANNEL_UNBRIDGE",
            pre=[
                ("Bridge-A-Unique-ID", self.uuid),
                ("Bridge-B-Unique-ID", self.bridge_legs["uuid"] if self.bridge_legs else ""),
            ],
        )

    def _wait_signal(self, kinds: tuple, pending_breaks: bool = False) -> dict | None:
        while True:
            for i, sig in enumerate(self.signals):
                if sig["kind"] in kinds:
                    return self.signals.pop(i)
            if pending_breaks and self.pending:
                return None
            msg = self.inbox.get()
            self._dispatch(msg)

    def _pause_real(self, seconds: float) -> None:
        if seconds > 0:
            gevent.sleep(seconds)

    # ---- channel state changes ------------------------------------------------------------
    def _answer(self) -> None:
        if self.answered_us:
            return
        self.answered_us = self.clock.now_us()
        self.rec.answered_us = self.answered_us
        self.answer_state = "answered"
        self.fire("CHANNEL_ANSWER")
        if self.call_state in ("RINGING", "EARLY"):
            self.call_state = "ACTIVE" if not self.in_bridge else self.call_state
        self._setvar("endpoint_disposition", "ANSWER")
        if self.mis.drop_after_s is not None:
            self._timer(self.mis.drop_after_s, {"kind": "drop"})
        if self.mis.fault_after_s is not None and self._has_byte_fault():
            self._timer(self.mis.fault_after_s, {"kind": "fault"})
        # switch_channel_execute_on(ANSWER) then api_on_answer
        for name, value in list(self.variables.items()):
            if name.startswith("execute_on_answer"):
                app, _, app_arg = value.strip().partition(" ")
                if "::" in app and not app_arg:
                    app, _, app_arg = app.partition("::")
                if app:
                    self.execute(app, app_arg.strip())
        for name, value in list(self.variables.items()):
            if name.startswith("api_on_answer"):
                api_cmd, _, api_arg = value.strip().partition(" ")
                self.switch.api(api_cmd, api_arg or None, caller=self)

    def _hangup(self, cause: str, by: str) -> None:
        """switch_channel_perform_hangup."""
        if self.down:
            return
        self.down = True
        self.hangup_cause = cause
        self.hungup_us = self._now()
        self.rec.hangup_cause = cause
        self.rec.ended_us = self.hungup_us
        if self.rec.ended_by is None:
            self.rec.ended_by = by
        self.state_number = 10
        self.answer_state = "hangup"
        self._setvar("current_loop", None)
        self._setvar("total_loops", None)
        if self.was_bridged and self.in_bridge:
            self._setvar("last_bridge_role", "originator")
        # what mod_sofia records about the SIP side of the hangup
        if by == "caller":
            self._setvar("sip_term_status", "200")
            self._setvar("proto_specific_hangup_cause", "sip:200")
            self._setvar("sip_term_cause", str(q850(cause)))
            self._setvar("sip_hangup_disposition", "recv_bye")
        elif self.answered_us:
            self._setvar("sip_hangup_disposition", "send_bye")
        else:
            self._setvar("sip_hangup_disposition", "send_refuse")
        self.fire("CHANNEL_HANGUP")
        self._wake_pump()

    def _finish_socket_app(self) -> None:
        if getattr(self, "_socket_app_done", False):
            return
        self._socket_app_done = True
        self.fire("CHANNEL_UNPARK")
        self._complete("socket", self._socket_arg(), self.switch._socket_app_uuid(self))

    def _socket_arg(self) -> str:
        s = self.spec
        return f"{self.address[0]}:{self.address[1]}" + (" async" if s.async_mode else "") + (" full" if s.full else "")

    def _after_socket(self, by: str) -> None:
        """The dialplan after the `socket` action (dialplan/fsbill_prepaid.xml: respond 503),
        then the end of the dialplan hangs the channel up."""
        if self.down:
            return
        self.rec.ended_by = self.rec.ended_by or by
        action = (self.spec.after_socket or "").strip()
        if action:
            app, _, arg = action.partition(" ")
            try:
                self.execute(app, arg)
            except _Hangup:
                pass
            except _Transfer:
                self._run_transfer_target()
                return
        if not self.down:
            self._hangup("NORMAL_CLEARING", by)

    def _run_transfer_target(self) -> None:
        """The channel leaves the socket app for the transfer target, emulated as an
        announcement for `announce_s` then a hangup."""
        self._pinned_us = None  # the transfer is stamped; what follows runs in call time
        ext, dp, ctx = self.transfer_target
        self.transfer_target = None
        self._finish_socket_app()
        self.transfer_us = self.clock.now_us()
        self.profile_index += 1
        self.profile_created_us = self.transfer_us
        self.destination, self.dialplan, self.context = ext, dp or "XML", ctx or self.context
        for state in ("CS_ROUTING", "CS_EXECUTE"):
            self.state, self.state_number = state, STATE_NUMBER[state]
            self.fire("CHANNEL_STATE", with_vars=False)
        try:
            if not self.answered_us:
                self.execute("answer", "")
            self.execute("playback", "ivr/ivr-call_cannot_be_completed_as_dialed.wav")
            self._wait(max(0.0, self.switch.announce_s - self.switch.playback_s))
            self.execute("hangup", self.switch.transfer_hangup_cause)
        except (_Hangup, _Transfer):
            pass

    def _report(self) -> None:
        """CS_HANGUP -> CS_REPORTING -> CHANNEL_HANGUP_COMPLETE."""
        if getattr(self, "_reported", False):
            return
        self._reported = True
        if not self.down:
            self._hangup("NORMAL_CLEARING", "emulator")
        self.state, self.state_number = "CS_HANGUP", 10
        self.fire("CHANNEL_STATE", with_vars=False)
        self.state, self.state_number = "CS_REPORTING", 11
        self.call_state = "HANGUP"
        self.report_hangup_time = True
        self.fire("CHANNEL_STATE", with_vars=False)
        self._set_hangup_variables()
        self.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", self.hangup_cause or "NONE")])
        self.rec.variables = dict(self.variables)
        for hook in self.switch.reporting_hooks:  # CS_REPORTING state handlers (mod_json_cdr)
            hook(self)
        self._wake_pump()

    def _set_hangup_variables(self) -> None:
        v = self._setvar
        cause = self.hangup_cause or "NONE"
        v("hangup_cause", cause)
        v("hangup_cause_q850", str(q850(cause)))
        v("digits_dialed", "none")

        def stamp(us: int) -> str:
            return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

        created, answered, bridged, hungup = self.created_us, self.answered_us, self.bridged_us, self.hungup_us
        v("start_stamp", stamp(created))
        v("profile_start_stamp", stamp(self.profile_created_us))
        if answered:
            v("answer_stamp", stamp(answered))
        if bridged:
            v("bridge_stamp", stamp(bridged))
        if self.progress_us:
            v("progress_stamp", stamp(self.progress_us))
        if self.progress_media_us:
            v("progress_media_stamp", stamp(self.progress_media_us))
        v("end_stamp", stamp(hungup))
        for name, us in (
            ("start", created),
            ("profile_start", self.profile_created_us),
            ("answer", answered),
            ("bridge", bridged),
            ("last_hold", 0),
        ):
            v(f"{name}_epoch", str(_epoch_s(us)))
            v(f"{name}_uepoch", str(us))
        v("hold_accum_seconds", "0")
        v("hold_accum_usec", "0")
        v("hold_accum_ms", "0")
        for name, us in (
            ("resurrect", 0),
            ("progress", self.progress_us),
            ("progress_media", self.progress_media_us),
            ("end", hungup),
        ):
            v(f"{name}_epoch", str(_epoch_s(us)))
            v(f"{name}_uepoch", str(us))
        v("last_app", self.last_app or "socket")
        v("last_arg", self.last_arg if self.last_app else self._socket_arg())
        v(
            "caller_id",
            f"{self.spec.caller_id_name} <{self.spec.caller_id_number}>"
            if self.spec.caller_id_name
            else self.spec.caller_id_number,
        )

        def d_s(a: int, b: int) -> int:
            return a // 1_000_000 - b // 1_000_000

        def d_ms(a: int, b: int) -> int:
            return a // 1000 - b // 1000

        billsec = billmsec = billusec = legsec = legmsec = legusec = ansec = anmsec = anusec = 0
        if answered:
            billsec, billmsec, billusec = d_s(hungup, answered), d_ms(hungup, answered), hungup - answered
            legsec, legmsec, legusec = d_s(hungup, created), d_ms(hungup, created), hungup - created
            ansec, anmsec, anusec = d_s(answered, created), d_ms(answered, created), answered - created
        wsec = wmsec = wusec = 0
        if bridged > created:
            wsec, wmsec, wusec = d_s(bridged, created), d_ms(bridged, created), bridged - created
        psec = pmsec = pusec = 0
        if self.progress_us:
            psec, pmsec, pusec = (
                d_s(self.progress_us, created),
                d_ms(self.progress_us, created),
                self.progress_us - created,
            )
        pmsec_s = pmmsec = pmusec = 0
        if self.progress_media_us:
            pm = self.progress_media_us
            pmsec_s, pmmsec, pmusec = d_s(pm, created), d_ms(pm, created), pm - created
        for name, value in (
            ("duration", d_s(hungup, created)),
            ("billsec", billsec),
            ("progresssec", psec),
            ("answersec", ansec),
            ("waitsec", wsec),
            ("progress_mediasec", pmsec_s),
            ("flow_billsec", legsec),
            ("mduration", d_ms(hungup, created)),
            ("billmsec", billmsec),
            ("progressmsec", pmsec),
            ("answermsec", anmsec),
            ("waitmsec", wmsec),
            ("progress_mediamsec", pmmsec),
            ("flow_billmsec", legmsec),
            ("uduration", hungup - created),
            ("billusec", billusec),
            ("progressusec", pusec),
            ("answerusec", anusec),
            ("waitusec", wusec),
            ("progress_mediausec", pmusec),
            ("flow_billusec", legusec),
        ):
            v(name, str(value))

    def _destroy(self) -> None:
        """CS_DESTROY: only once the listener is gone (linger keeps the channel alive)."""
        try:
            if self.socket_open and not self.listener_done.is_set():
                if self.linger:
                    self.listener_done.wait()
                else:
                    # no linger: the pump sends the goodbye once it sees the channel down
                    self._wake_pump()
                    self.listener_done.wait(timeout=5.0)
            if self.socket_open:
                self._end_listener("destroy")
        finally:
            self.switch.scheduler.del_group(self.uuid)
            self.switch._calls.pop(self.uuid, None)
            if not self.rec.variables:
                self.rec.variables = dict(self.variables)
            if self.rec.hangup_cause is None:
                self.rec.hangup_cause = self.hangup_cause
            for g in self.greenlets:
                if g is not gevent.getcurrent() and not g.dead and g is not None:
                    g.kill(block=False)
            self.rec.done.set()

    # ---- misbehaviour --------------------------------------------------------------------------
    def _has_byte_fault(self) -> bool:
        m = self.mis
        return m.garbage or m.oversized_content_length or m.invalid_utf8 or m.half_close

    def _inject_fault(self) -> None:
        m = self.mis
        if m.garbage:
            junk = bytes(random.Random(self.uuid).getrandbits(8) for _ in range(256))
            self.outq.put(b"\x00\xff\xfe GARBAGE \x1b[31m" + junk + b"\n\n")
        if m.oversized_content_length:
            self.outq.put(
                b"Content-Length: 999999999999\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_EXECUTE\n"
            )
        if m.invalid_utf8:
            headers = self._channel_headers("CHANNEL_EXECUTE", post=[("Application", "set"), ("Application-Data", "x")])
            body = wire.serialize_event(headers)
            body = body.replace(b"Application-Data: x\n", b"Application-Data: \xff\xfe\xc3\x28\n")
            self.outq.put(wire.event_frame(body))
        if m.half_close:

            def shut() -> None:
                with self.send_lock:
                    try:
                        self.sock.shutdown(pysocket.SHUT_WR)
                    except OSError:
                        pass
                    self.write_closed = True

            self.outq.put(_Call_fn(shut))

    def _drop(self) -> None:
        """The socket dies under the app (RST); with drop_kills_call the call vanishes too."""
        if self.socket_open:
            self._close_socket(rst=True)
            self._listener_finished("dropped")
        if self.mis.drop_kills_call and not self.down:
            self.silent = True
            self._hangup("CRASH", "switch_crashed")
            raise _Hangup()


class _Transfer(Exception):
    """Unwinds the running apps when the channel is transferred out of the socket app."""


class _Call_fn:
    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn


_WAKE = object()
_STOP = object()


def _atol(text: str) -> int:
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


# -- the switch ---------------------------------------------------------------------------------------
class Switch:
    """An emulated FreeSWITCH placing calls into an outbound-socket app."""

    def __init__(
        self,
        clock: Clock,
        *,
        scheduler_tick_s: float = 1.0,
        scheduler_poll_s: float = 0.5,
        playback_s: float = 0.2,
        announce_s: float = 3.0,
        transfer_hangup_cause: str = "NORMAL_CLEARING",
        park_delay_s: float = 0.001,
        bridge_teardown_s: float = 0.02,
        hostname: str = "fsbill-sim",
    ) -> None:
        self.clock = clock
        self.scheduler = Scheduler(clock, tick_s=scheduler_tick_s, poll_s=scheduler_poll_s)
        self.playback_s = playback_s
        self.announce_s = announce_s
        self.transfer_hangup_cause = transfer_hangup_cause
        self.park_delay_s = park_delay_s  # real seconds
        self.bridge_teardown_s = bridge_teardown_s  # real seconds
        self.core_uuid = str(uuidlib.uuid4())
        self.hostname = hostname
        self.ipv4 = "192.0.2.2"
        self.ipv6 = "fd00::2"
        self._sequence = itertools.count(400)
        self._session_ids = itertools.count(1)
        self.sessions_started = 0
        self._calls: dict[str, _Call] = {}
        self._greenlets: set[gevent.Greenlet] = set()
        self.started_us = clock.now_us()
        self.records: list[CallRecord] = []
        self.event_listeners: list[Any] = []  # fsbill.sim.inbound.InboundServer
        self.reporting_hooks: list[Callable[[_Call], None]] = []

    def _next_sequence(self) -> int:
        return next(self._sequence)

    def _next_session_id(self) -> int:
        self.sessions_started += 1
        return next(self._session_ids)

    def _socket_app_uuid(self, call: _Call) -> str:
        if not hasattr(call, "_socket_uuid"):
            call._socket_uuid = str(uuidlib.uuid4())
        return call._socket_uuid

    # -- placing calls -------------------------------------------------------------------------
    def place_call(self, address: tuple[str, int], spec: CallSpec) -> CallRecord:
        """Run one call to its end in the current greenlet."""
        call = _Call(self, address, spec)
        self.records.append(call.rec)
        return call.run()

    def start_call(self, address: tuple[str, int], spec: CallSpec) -> gevent.Greenlet:
        """Start a call in its own greenlet; the greenlet's value is the CallRecord."""
        call = _Call(self, address, spec)
        self.records.append(call.rec)
        greenlet = gevent.spawn(call.run)
        self._greenlets.add(greenlet)
        greenlet.link(self._greenlets.discard)
        return greenlet

    def run_load(
        self, address: tuple[str, int], specs: list[CallSpec], concurrency: int = 10, cps: float | None = None
    ) -> list[CallRecord]:
        """Place `specs` with at most `concurrency` calls up at once and at most `cps` new
        calls per real second; returns the records in the order of `specs`."""
        pool = gevent.pool.Pool(max(1, concurrency))
        greenlets = []
        interval = 1.0 / cps if cps else 0.0
        start = time.perf_counter()
        for i, spec in enumerate(specs):
            if interval:
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    gevent.sleep(delay)
            call = _Call(self, address, spec)
            self.records.append(call.rec)
            greenlets.append(pool.spawn(call.run))
        gevent.joinall(greenlets)
        return [g.value if g.successful() else None for g in greenlets]

    def close(self) -> None:
        for greenlet in list(self._greenlets):
            greenlet.kill(block=False)
        for call in list(self._calls.values()):
            if call.socket_open:
                call._close_socket()
            for g in call.greenlets:
                g.kill(block=False)
        self.scheduler.close()

    # -- the scheduler's tasks (switch_ivr_schedule_*) -------------------------------------------
    def _record_scheduled(self, uuid: str, kind: str, arg: str, runtime: int) -> None:
        call = self._calls.get(uuid)
        if call is not None:
            call.rec.scheduled_tasks.append((kind, arg, runtime, self.clock.now_us()))

    def _fired(self, task: Task) -> _Call | None:
        call = self._calls.get(task.group)
        if call is not None:
            call.rec.fired_tasks.append((task.kind, task.arg, task.fired_us or self.clock.now_us()))
        return call

    def schedule_hangup(self, when: int, uuid: str, cause: str) -> Task:
        def run(task: Task) -> None:
            call = self._fired(task)
            if call is not None and not call.down:
                call.inbox.put({"kind": "hangup", "cause": cause, "by": "sched_hangup", "at_us": task.fired_us})

        self._record_scheduled(uuid, "sched_hangup", cause, when)
        return self.scheduler.add(when, run, group=uuid, desc="hangup", kind="sched_hangup", arg=cause)

    def schedule_transfer(self, when: int, uuid: str, ext: str, dp: str | None, ctx: str | None) -> Task:
        arg = " ".join(x for x in (ext, dp, ctx) if x)

        def run(task: Task) -> None:
            call = self._fired(task)
            if call is not None and not call.down:
                call.inbox.put(
                    {
                        "kind": "transfer",
                        "target": (ext, dp or "XML", ctx or call.context),
                        "by": "sched_transfer",
                        "at_us": task.fired_us,
                    }
                )

        self._record_scheduled(uuid, "sched_transfer", arg, when)
        return self.scheduler.add(when, run, group=uuid, desc="transfer", kind="sched_transfer", arg=arg)

    def schedule_broadcast(self, when: int, uuid: str, path: str, leg: str = "aleg") -> Task:
        def run(task: Task) -> None:
            call = self._fired(task)
            if call is not None:
                self.broadcast(call, path, leg)

        self._record_scheduled(uuid, "sched_broadcast", f"{path} {leg}", when)
        return self.scheduler.add(when, run, group=uuid, desc="broadcast", kind="sched_broadcast", arg=f"{path} {leg}")

    def broadcast(self, call: _Call, path: str, leg: str) -> None:
        """switch_ivr_broadcast: queue `playback` (or `app::args`) to the A leg; a B-leg-only
        broadcast is not visible on the A leg's socket."""
        call.rec.broadcasts.append((self.clock.now_us(), path, leg))
        if call.down or leg.lower() == "bleg":
            return
        if "::" in path:
            app, _, arg = path.partition("::")
        else:
            app, arg = "playback", path
        call.inbox.put({"kind": "broadcast", "app": app, "arg": arg})

    # -- api ------------------------------------------------------------------------------------------
    def api(self, command: str, arg: str | None, caller: _Call | None = None) -> str:
        """switch_api_execute as mod_commands answers it (the api/response body)."""
        name = command.strip()
        handler = getattr(self, f"_api_{name}", None)
        if handler is None or not name:
            return f"-ERR {name} Command not found!\n"
        return handler((arg or "").strip())

    def _api_sched_hangup(self, arg: str) -> str:
        argv = arg.split()[:4] if arg else []
        if not argv:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        uuid = argv[1] if len(argv) > 1 else ""
        cause = str2cause(argv[2]) if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        sec = _atol(argv[0][1:])
        when = self.scheduler.now() + sec if argv[0].startswith("+") else _atol(argv[0])
        call = self._calls.get(uuid)
        if call is None:
            return "-ERR No such channel!\n"
        if sec == 0:
            if not call.down:
                call.inbox.put({"kind": "hangup", "cause": cause, "by": "sched_hangup"})
        else:
            self.schedule_hangup(when, uuid, cause)
        return "+OK\n"

    def _api_sched_transfer(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2 or len(argv) > 5:
            return "-USAGE: [+]<time> <uuid> <extension> [<dialplan>] [<context>]\n"
        when = self.scheduler.now() + _atol(argv[0][1:]) if argv[0].startswith("+") else _atol(argv[0])
        uuid = argv[1]
        if uuid not in self._calls:
            return "-ERR No such channel!\n"
        self.schedule_transfer(
            when,
            uuid,
            argv[2] if len(argv) > 2 else "",
            argv[3] if len(argv) > 3 else None,
            argv[4] if len(argv) > 4 else None,
        )
        return "+OK\n"

    def _api_sched_broadcast(self, arg: str) -> str:
        argv = arg.split()[:4]
        if len(argv) < 3:
            return "-USAGE: [[+]<time>|@time] <uuid> <path> [aleg|bleg|both]\n"
        if argv[0].startswith("@"):
            when = _atol(argv[0][1:])
        elif argv[0].startswith("+"):
            when = self.scheduler.now() + _atol(argv[0][1:])
        else:
            when = _atol(argv[0])
        self.schedule_broadcast(when, argv[1], argv[2], argv[3] if len(argv) > 3 else "aleg")
        return "+OK Message scheduled\n"

    def _api_sched_del(self, arg: str) -> str:
        if not arg:
            return "-ERR Invalid syntax\n"
        if arg.isdigit():
            count = self.scheduler.del_id(int(arg)) if int(arg) > 0 else 0
        else:
            count = self.scheduler.del_group(arg)
        return f"+OK Deleted: {count}\n"

    def _api_uuid_kill(self, arg: str) -> str:
        if not arg:
            return "-USAGE: <uuid> [cause]\n"
        uuid, _, cause = arg.partition(" ")
        call = self._calls.get(uuid)
        if call is None or call.down:
            return "-ERR No such channel!\n"
        call.inbox.put(
            {"kind": "hangup", "cause": str2cause(cause) if cause.strip() else "NORMAL_CLEARING", "by": "uuid_kill"}
        )
        return "+OK\n"

    def _api_uuid_setvar(self, arg: str) -> str:
        argv = arg.split(" ", 2) if arg else []
        if len(argv) not in (2, 3) or not argv[0]:
            return "-USAGE: <uuid> <var> [value]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        if not argv[1]:
            return "-ERR No variable specified\n"
        call._setvar(argv[1], argv[2] if len(argv) == 3 else None)
        return "+OK\n"

    def _api_uuid_getvar(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> <var>\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        return call.variables.get(argv[1], "_undef_")

    def _api_uuid_dump(self, arg: str) -> str:
        """mod_commands.c uuid_dump_function: the CHANNEL_DATA event of the channel, serialized
        (url-encoded unless the format is `plain`)."""
        argv = arg.split()
        if not argv:
            return "-USAGE: <uuid> [format]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        fmt = argv[1] if len(argv) > 1 else "txt"
        headers = call._channel_headers("CHANNEL_DATA")
        if fmt.lower() == "json":
            import json

            return json.dumps(dict(headers))
        if fmt.lower() == "plain":
            return "".join(f"{k}: {v}\n" for k, v in headers) + "\n"
        return wire.serialize_event(headers).decode("utf-8")

    def _api_uuid_exists(self, arg: str) -> str:
        call = self._calls.get(arg)
        return "true" if call is not None else "false"

    def _api_uuid_broadcast(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        self.broadcast(call, argv[1], argv[2] if len(argv) > 2 else "aleg")
        return "+OK Message queued\n"

    def _api_uuid_transfer(self, arg: str) -> str:
        argv = arg.split()
        if len(argv) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        call = self._calls.get(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        rest = [a for a in argv[1:] if a not in ("-bleg", "-both")]
        call.inbox.put(
            {
                "kind": "transfer",
                "target": (rest[0], rest[1] if len(rest) > 1 else "XML", rest[2] if len(rest) > 2 else call.context),
                "by": "uuid_transfer",
            }
        )
        return "+OK\n"

    def _api_status(self, arg: str) -> str:
        up_us = max(0, self.clock.now_us() - self.started_us)
        secs, us = divmod(up_us, 1_000_000)
        mins, sec = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        days, hours = divmod(hours, 24)
        years, days = divmod(days, 365)
        ms, mms = divmod(us, 1000)

        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        live = len(self._calls)
        return (
            f"UP {plural(years, 'year')}, {plural(days, 'day')}, {plural(hours, 'hour')}, {plural(mins, 'minute')}, "
            f"{plural(sec, 'second')}, {plural(ms, 'millisecond')}, {plural(mms, 'microsecond')}\n"
            "FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"
            f"{self.sessions_started} session(s) since startup\n"
            f"{live} session(s) - peak {live}, last 5min {live} \n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
            "1000 session(s) max\n"
            "min idle cpu 0.00/100.00\n"
            "Current Stack Size/Max 240K/8192K\n"
        )


__all__ = ["CallRecord", "CallSpec", "Misbehaviour", "Switch"]
