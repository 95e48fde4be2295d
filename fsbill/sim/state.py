"""What every part of an emulated session shares: the channel's fields (switch_channel_t and
its caller profile's times), the session's queues, its listeners.

The session is assembled from mixins, one per FreeSWITCH file (see session.py); each of them
subclasses `SessionState`, so the fields are declared once, here, with their types, and the
methods one mixin calls on another are declared (for the type checker only) below.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.queue

from fsbill.sim.spec import CallRecord, CallSpec

if TYPE_CHECKING:
    from fsbill.sim.event_socket import Listener
    from fsbill.sim.switch import Switch


class SessionState:
    def __init__(self, switch: Switch, address: tuple[str, int], spec: CallSpec) -> None:
        self.switch = switch
        self.clock = switch.clock
        self.address = address
        self.spec = spec
        self.mis = spec.misbehaviour
        self.uuid = spec.uuid or str(uuidlib.uuid4())
        self.rec = CallRecord(uuid=self.uuid, spec=spec)
        self.inbox: gevent.queue.Queue = gevent.queue.Queue()
        self.pending: list[dict[str, Any]] = []  # queued private events (sendmsg, broadcast)
        self.greenlets: list[gevent.Greenlet] = []
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
        self._socket_returned = ""  # why the last socket app inside the dialplan returned
        self.nibble_data: Any = None  # mod_nibblebill's `_nibble_data_`
        self.track_duration = 0  # session heartbeat seconds
        self._heartbeat_task_id = 0
        self._media_heartbeat: gevent.Greenlet | None = None
        self.report_hangup_time = False
        self.down = False
        self.hangup_cause: str | None = None
        self.controlled = True  # CF_CONTROLLED: the socket app is in charge
        self.in_bridge = False
        self.bridge_legs: dict[str, Any] | None = None  # the B leg once originated
        self.was_bridged = False
        self.originatee = False  # the caller profile has an originatee (Other-Leg-*): bridged, not transferred since
        self.profile_index = 1
        self.profile_created_us = now
        self.destination = spec.destination_number
        self.context = spec.context
        self.dialplan = "XML"
        self.channel_name = f"sofia/internal/{spec.caller_id_number}@{spec.network_addr}"
        self.transfer_target: tuple[str, str, str] | None = None
        self.transfer_source = ""  # Caller-Transfer-Source of the current caller profile
        self.rdnis = ""  # Caller-RDNIS: the destination before the last transfer
        self.last_app = ""
        self.last_arg = ""
        self.app_stack: list[str] = []
        self.signals: list[dict[str, Any]] = []
        self.variables: dict[str, str] = {}
        self._socket_app_done = False
        self._socket_app_uuid = str(uuidlib.uuid4())
        self._reported = False
        self.listeners: list[Listener] = []
        self.listener: Listener | None = None

    if TYPE_CHECKING:  # provided by the mixins (events, channel, dptools, bridge, dialplan, session)

        def fire(self, name: str, **kwargs: Any) -> None: ...
        def _now(self) -> int: ...
        def _pin(self, msg: dict[str, Any]) -> None: ...
        def _core(
            self, name: str, now_us: int, calling: tuple[str, str, int] | None = None
        ) -> list[tuple[str, str]]: ...
        def _setvar(self, name: str, value: str | None) -> None: ...
        def _answer(self) -> None: ...
        def _hangup(self, cause: str, by: str) -> None: ...
        def _report(self) -> None: ...
        def _state_handlers(self, state: str) -> None: ...
        def _answered_timers(self) -> None: ...
        def _push_var(self, name: str, value: str) -> None: ...
        def _session_transfer(self, ext: str, dp: str | None, ctx: str | None) -> None: ...
        def _socket_visit(self, address: tuple[str, int]) -> str: ...
        def _socket_arg(self) -> str: ...
        def _dispatch(self, msg: dict[str, Any], idle: bool = False) -> None: ...
        def _wait(self, seconds: float | None, until: Callable[[], bool] | None = None) -> None: ...
        def _timer(self, seconds: float, msg: dict[str, Any]) -> gevent.Greenlet: ...
        def _handle_private(self, msg: dict[str, Any]) -> None: ...
        def execute(self, app: str, arg: str, app_uuid: str | None = None) -> None: ...
        def enable_heartbeat(self, seconds: int) -> None: ...


__all__ = ["SessionState"]
