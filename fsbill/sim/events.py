"""The event data a channel fires, as switch_channel.c / switch_caller.c / switch_event.c build it.

- `_core` is switch_event_prep / switch_event_add_header's core headers (Event-Name, Core-UUID,
  FreeSWITCH-Hostname, Event-Date-*, Event-Calling-*, Event-Sequence);
- `_channel_headers` is switch_channel_event_set_basic_data (Channel-State, Unique-ID,
  Answer-State...), switch_caller_profile_event_set_data for the caller (`Caller-*`) and the
  other leg (`Other-Leg-*`), then switch_channel_event_set_extended_data (`variable_*`);
- `fire` is switch_event_fire: the sequence number is used whether or not anyone listens, and
  the event goes to every consumer bound to it (the outbound socket's listener, and whatever
  `Switch.subscribe` registered, e.g. an inbound event socket).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from fsbill.sim.state import SessionState

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
    "SESSION_HEARTBEAT": ("switch_core_session.c", "sch_heartbeat_callback", 1632),
}


class ChannelEventData(SessionState):
    """Mixin of the emulated session: the headers of the events its channel fires."""

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
        if self.transfer_source:
            h.append((f"{prefix}-Transfer-Source", self.transfer_source))
        h.append((f"{prefix}-Context", self.context))
        if self.rdnis:
            h.append((f"{prefix}-RDNIS", self.rdnis))
        h += [
            (f"{prefix}-Channel-Name", self.channel_name),
            (f"{prefix}-Profile-Index", str(self.profile_index)),
            (f"{prefix}-Profile-Created-Time", str(self.profile_created_us)),
            (f"{prefix}-Channel-Created-Time", str(self.created_us)),
            (f"{prefix}-Channel-Answered-Time", str(self.answered_us)),
            (f"{prefix}-Channel-Progress-Time", str(self.progress_us)),
            (f"{prefix}-Channel-Progress-Media-Time", str(self.progress_media_us)),
            (f"{prefix}-Channel-Hangup-Time", str(self.hungup_us if self.report_hangup_time else 0)),
            (f"{prefix}-Channel-Transfer-Time", "0"),  # set on the profile a transfer leaves
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
            ("Other-Leg-Callee-ID-Number", b["callee"]),
            ("Other-Leg-ANI", s.caller_id_number),
            ("Other-Leg-Destination-Number", b["destination"]),
            ("Other-Leg-Unique-ID", b["uuid"]),
            ("Other-Leg-Source", "mod_sofia"),
            ("Other-Leg-Context", self.context),
            *([("Other-Leg-RDNIS", self.rdnis)] if self.rdnis else []),  # the B leg's profile is the A's clone
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

    def _core(self, name: str, now_us: int, calling: tuple[str, str, int] | None = None) -> list[tuple[str, str]]:
        sw = self.switch
        local = datetime.fromtimestamp(now_us / 1_000_000, tz=timezone.utc)
        file, func, line = calling or CALLING.get(name, ("switch_channel.c", "switch_channel_event_set_data", 0))
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
        self,
        name: str,
        *,
        with_vars: bool = True,
        pre: Sequence[tuple[str, str]] = (),
        post: Sequence[tuple[str, str]] = (),
        channel_profile: bool = False,
        calling: tuple[str, str, int] | None = None,
    ) -> list[tuple[str, str]]:
        now = self._now()
        h = self._core(name, now, calling)
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
        if self.originatee:
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
        """switch_event_fire: sequence numbers are used whether or not the app listens; the
        event reaches every listener still running for this channel (mod_event_socket.c
        event_handler: an outbound listener gets its own session's events; a channel that
        re-entered the socket may have two) and every subscriber (Switch.subscribe)."""
        headers = self._channel_headers(name, **kwargs)
        for listener in self.listeners:
            if not listener.listener_done.is_set():
                listener.deliver(name, headers)
        self.switch._deliver(self.uuid, name, headers)
        for server in self.switch.event_listeners:  # inbound event sockets (fsbill.sim.inbound)
            server.fire(name, headers)
