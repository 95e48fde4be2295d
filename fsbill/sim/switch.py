"""The emulated FreeSWITCH: channels handed to an app by the `socket` application in
`async full` mode, the outbound event socket they talk over, and the scheduler.

Modelled on FreeSWITCH 1.10 and on the captures in ../shared/fs-wire/, split along the
FreeSWITCH files it imitates:

- event_socket.py: mod_event_socket.c (the outbound socket's listener: commands, replies,
  event subscriptions, linger and disconnect notices);
- session.py: the session thread (mod_event_socket.c socket_function, switch_ivr.c
  switch_ivr_park, switch_core_session.c execute_application);
- channel.py: switch_channel.c / switch_core_state_machine.c (answer, hangup, reporting);
- events.py: the event data of switch_channel.c / switch_caller.c / switch_event.c;
- dptools.py, bridge.py: mod_dptools.c's applications; originate and bridge;
- ivr_async.py, scheduler.py: switch_ivr_async.c's scheduled tasks on switch_scheduler.c;
- commands.py: mod_commands.c's API commands;
- wire.py, causes.py: the wire format and the cause tables.

Each call is three greenlets, as each is a thread or two in FreeSWITCH: the channel (session
thread) runs the socket app and fires events; the listener reader parses the app's commands
and replies; the listener pump sends queued events and, once the channel is down, the
disconnect notice (linger) or the goodbye and the close (no linger) - after whatever events
were already queued, which is what orders the notice in the captures.

Every time on the wire comes from the `Clock`, and every wait in call time uses `clock.sleep`,
so a scaled clock shared with the app makes "10 minute" calls last seconds.

Live channels (for an inbound event socket, or a test): `Switch.live_uuids()`,
`Switch.live_channel(uuid)` (a `ChannelView` snapshot: variables, answer/bridge times, up or
not, whether its outbound socket is open), `Switch.subscribe(callback, uuid=None)` (every
event a channel fires, as its header list), `Switch.sendmsg(uuid, headers)` and `Switch.api`.
A channel outlives its outbound socket: closing the socket never hangs the call up.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.pool

from fsbill.clock import Clock
from fsbill.sim.commands import ApiCommands
from fsbill.sim.event_socket import MYEVENTS
from fsbill.sim.ivr_async import ScheduledTasks
from fsbill.sim.nibblebill import Nibblebill
from fsbill.sim.scheduler import Scheduler
from fsbill.sim.session import Session
from fsbill.sim.spec import CallRecord, CallSpec, Misbehaviour

log = logging.getLogger("fsbill.sim")

EventCallback = Callable[[str, str, list[tuple[str, str]]], None]


@dataclass(frozen=True)
class ChannelView:
    """A read-only snapshot of a live channel (times in epoch µs, 0 = not yet)."""

    uuid: str
    up: bool  # not hung up
    state: str  # CS_*
    answer_state: str  # ringing / early / answered / hangup
    created_us: int
    answered_us: int
    bridged_us: int
    bridge_uuid: str | None  # the B leg while bridged
    in_bridge: bool
    socket_connected: bool  # its outbound socket is open now
    visits: int  # how many times it entered the socket application
    destination: str
    context: str
    variables: dict[str, str]

    @classmethod
    def of(cls, call: Session) -> ChannelView:
        lis = call.listener
        return cls(
            uuid=call.uuid,
            up=not call.down,
            state=call.state,
            answer_state=call.answer_state,
            created_us=call.created_us,
            answered_us=call.answered_us,
            bridged_us=call.bridged_us,
            bridge_uuid=call.bridge_legs["uuid"] if call.bridge_legs and call.in_bridge else None,
            in_bridge=call.in_bridge,
            socket_connected=bool(lis is not None and lis.socket_open),
            visits=len(call.listeners),
            destination=call.destination,
            context=call.context,
            variables=dict(call.variables),
        )


class Subscription:
    """A `Switch.subscribe` registration; `cancel()` ends it."""

    def __init__(self, switch: Switch, callback: EventCallback, uuid: str | None) -> None:
        self.switch = switch
        self.callback = callback
        self.uuid = uuid

    def cancel(self) -> None:
        if self in self.switch._subscriptions:
            self.switch._subscriptions.remove(self)


# -- the switch ---------------------------------------------------------------------------------------
class Switch(ScheduledTasks, ApiCommands):
    """An emulated FreeSWITCH placing calls into an outbound-socket app.

    Knobs: `scheduler_late_s` fixes where the scheduler's passes fall (every task runs exactly
    that long after its epoch second; None: as FreeSWITCH, 0.5 s apart from the last add);
    `playback_s` / `announce_s` how long a playback / the cut-off extension's announcement
    lasts; `transfer_hangup_cause` the cut-off extension's hangup; `gateway_profiles` the
    sofia profile of each gateway (B-leg channel names; default `external`); `nibblebill` a
    loaded mod_nibblebill (nibblebill.py). `park_delay_s` and `bridge_teardown_s` are real
    seconds (the socket app noticing `connect`, the bridge thread noticing a hangup).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        scheduler_tick_s: float = 1.0,
        scheduler_poll_s: float = 0.5,
        scheduler_late_s: float | None = None,
        playback_s: float = 0.2,
        announce_s: float = 3.0,
        transfer_hangup_cause: str = "NORMAL_CLEARING",
        park_delay_s: float = 0.001,
        bridge_teardown_s: float = 0.02,
        hostname: str = "fsbill-sim",
        gateway_profiles: dict[str, str] | None = None,
        nibblebill: Nibblebill | None = None,
    ) -> None:
        self.clock = clock
        self.scheduler = Scheduler(clock, tick_s=scheduler_tick_s, poll_s=scheduler_poll_s, late_s=scheduler_late_s)
        self.playback_s = playback_s
        self.gateway_profiles = dict(gateway_profiles or {})  # sofia gateway -> its profile (default external)
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
        self._calls: dict[str, Session] = {}
        self._greenlets: set[gevent.Greenlet] = set()
        self.started_us = clock.now_us()
        self.records: list[CallRecord] = []
        self._subscriptions: list[Subscription] = []
        self.event_listeners: list[Any] = []  # fsbill.sim.inbound.InboundServer: .fire(name, headers)
        self.reporting_hooks: list[Callable[[Any], None]] = []  # run at CS_REPORTING
        self.nibblebill = nibblebill
        if nibblebill is not None:  # mod_nibblebill_load: switch_event_bind(SESSION_HEARTBEAT)
            self.subscribe(self._nibblebill_heartbeat)

    def _next_sequence(self) -> int:
        return next(self._sequence)

    def _next_session_id(self) -> int:
        self.sessions_started += 1
        return next(self._session_ids)

    # -- placing calls -------------------------------------------------------------------------
    def place_call(self, address: tuple[str, int], spec: CallSpec) -> CallRecord:
        """Run one call to its end in the current greenlet."""
        call = Session(self, address, spec)
        self.records.append(call.rec)
        return call.run()

    def start_call(self, address: tuple[str, int], spec: CallSpec) -> gevent.Greenlet:
        """Start a call in its own greenlet; the greenlet's value is the CallRecord."""
        call = Session(self, address, spec)
        self.records.append(call.rec)
        greenlet = gevent.spawn(call.run)
        self._greenlets.add(greenlet)
        greenlet.link(self._greenlets.discard)
        return greenlet

    def run_load(
        self, address: tuple[str, int], specs: list[CallSpec], concurrency: int = 10, cps: float | None = None
    ) -> list[CallRecord | None]:
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
            call = Session(self, address, spec)
            self.records.append(call.rec)
            greenlets.append(pool.spawn(call.run))
        gevent.joinall(greenlets)
        return [g.value if g.successful() else None for g in greenlets]

    def close(self) -> None:
        for greenlet in list(self._greenlets):
            greenlet.kill(block=False)
        for call in list(self._calls.values()):
            for listener in call.listeners:
                if listener.socket_open:
                    listener._close_socket()
                listener.kill_greenlets()
            for g in call.greenlets:
                g.kill(block=False)
        self.scheduler.close()

    # -- live channels (for an inbound event socket and for tests) -----------------------------
    def live_uuids(self) -> list[str]:
        """The uuids of the channels that exist now (created, not yet destroyed)."""
        return list(self._calls)

    def live_channel(self, uuid: str) -> ChannelView | None:
        """A snapshot of one live channel, or None once it is destroyed (or never existed)."""
        call = self._calls.get(uuid)
        return None if call is None else ChannelView.of(call)

    def subscribe(self, callback: EventCallback, uuid: str | None = None) -> Subscription:
        """Call `callback(uuid, event_name, headers)` for every event a channel fires (only
        channel `uuid`'s when given), as switch_event_bind consumers get them: synchronously,
        in the firing channel's greenlet, headers unencoded (`wire.serialize_event` encodes
        them). The callback must not block; exceptions are logged and swallowed."""
        sub = Subscription(self, callback, uuid)
        self._subscriptions.append(sub)
        return sub

    def sendmsg(self, uuid: str, headers: dict[str, str], body: bytes | None = None) -> bool:
        """Queue a private event to a live channel, as `sendmsg <uuid>` on any socket does
        (lower-case header names: call-command, execute-app-name, execute-app-arg...)."""
        call = self._calls.get(uuid)
        if call is None:
            return False
        call.inbox.put({"kind": "msg", "headers": {k.lower(): v for k, v in headers.items()}, "body": body})
        return True

    def _nibblebill_heartbeat(self, uuid: str, name: str, headers: list[tuple[str, str]]) -> None:
        call = self._calls.get(uuid)
        if name == "SESSION_HEARTBEAT" and call is not None and self.nibblebill is not None:
            self.nibblebill.on_heartbeat(call)

    def _deliver(self, uuid: str, name: str, headers: list[tuple[str, str]]) -> None:
        for sub in list(self._subscriptions):
            if sub.uuid is None or sub.uuid == uuid:
                try:
                    sub.callback(uuid, name, headers)
                except Exception:
                    log.exception("event subscriber failed on %s", name)


_Call = Session  # the name of the session class before the split (fsbill.sim.inbound uses it)

__all__ = ["MYEVENTS", "CallRecord", "CallSpec", "ChannelView", "Misbehaviour", "Subscription", "Switch"]
