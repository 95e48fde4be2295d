"""One emulated session: the channel's thread running the `socket` application.

Follows mod_event_socket.c socket_function (connect to the app, wait for `connect`, then in
async mode park: switch_ivr.c switch_ivr_park, which runs what `sendmsg` queued through
switch_ivr_parse_all_events / switch_ivr_process_event), switch_core_session.c
switch_core_session_execute_application (CHANNEL_EXECUTE, the app, CHANNEL_EXECUTE_COMPLETE),
and, once the socket app returns with the channel still up, the rest of the dialplan (the
action after `socket` in dialplan/fsbill_prepaid.xml, or a transfer target).

The session is built from mixins, one per FreeSWITCH file it imitates: ChannelEventData
(events.py: switch_channel.c / switch_caller.c event data), ChannelLife (channel.py:
switch_channel.c, switch_core_state_machine.c), DialplanApps (dptools.py: mod_dptools.c),
Bridge (bridge.py: switch_ivr_originate.c, switch_ivr_bridge.c). Its outbound socket is a
separate object, the `Listener` of event_socket.py (mod_event_socket.c).
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import gevent.queue

from fsbill.sim.bridge import Bridge
from fsbill.sim.causes import str2cause
from fsbill.sim.channel import ChannelLife, _Hangup, _Transfer
from fsbill.sim.dialplan import DialplanRunner
from fsbill.sim.dptools import DialplanApps
from fsbill.sim.event_socket import Listener
from fsbill.sim.events import ChannelEventData
from fsbill.sim.spec import CallRecord, CallSpec

if TYPE_CHECKING:
    from fsbill.sim.switch import Switch

log = logging.getLogger("fsbill.sim")


class Session(ChannelEventData, ChannelLife, DialplanApps, Bridge, DialplanRunner):  # all SessionState
    """One call: its channel, the session thread, and its outbound socket listener."""

    def __init__(self, switch: Switch, address: tuple[str, int], spec: CallSpec) -> None:
        super().__init__(switch, address, spec)
        self._init_variables()
        if spec.answered_before_s is not None:
            self._arrive_answered(spec.answered_before_s)

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
        outcome = self._socket_visit(self.address)
        after = (self.spec.after_socket or "").strip()
        self._continue_dialplan(outcome, [after] if after else [])
        self._report()

    def _socket_visit(self, address: tuple[str, int]) -> str:
        """socket_function, once per time the channel enters the `socket` application: a new
        listener (same channel uuid), wait for `connect`, park until the socket app returns.
        Returns why it returned: "down", "transfer", "peer_closed" or "socket_failed"."""
        lis = Listener(self, visit=len(self.listeners) + 1)
        self.listeners.append(lis)
        self.listener = lis
        if len(self.listeners) > 1:
            # the dialplan runs `socket` again (switch_core_session_execute_application):
            # CHANNEL_EXECUTE reaches the earlier visits' sockets (fs-wire/re-entry-visit1.txt)
            self._socket_app_done = False
            self._socket_app_uuid = str(uuidlib.uuid4())
            arg = self._socket_arg()
            self.rec.applications.append(("socket", arg))
            self._setvar("current_application", "socket")
            self._setvar("current_application_data", arg)
            self.fire(
                "CHANNEL_EXECUTE",
                post=[
                    ("Application", "socket"),
                    ("Application-Data", arg),
                    ("Application-UUID", self._socket_app_uuid),
                ],
            )
            self._setvar("current_application_data", arg)
            self._setvar("current_application", "socket")
            self.last_app, self.last_arg = "socket", arg
        failed = lis.open(address)
        if failed:
            self.rec.app_error = self.rec.app_error or failed
            return "socket_failed"
        # switch_ivr_park only once the app has sent `connect`
        while not lis.connected_evt.is_set():
            msg = self.inbox.get()
            if msg["kind"] == "uncontrolled":
                if msg.get("listener", lis) is lis:
                    return "peer_closed"
                continue  # an earlier visit's socket closing: nothing is parked yet
            self._pre_connect(msg)
        gevent.sleep(self.switch.park_delay_s)  # the socket app notices CONNECTED, then parks
        self.controlled = True  # switch_ivr_park sets CF_CONTROLLED
        self.fire("CHANNEL_PARK")
        if self.mis.fault_after_s is None and lis.has_byte_fault():
            gevent.sleep(0)
            lis.inject_fault()
        if len(self.listeners) == 1:
            if self.spec.max_duration_s is not None:
                self._timer(self.spec.max_duration_s, {"kind": "hangup", "cause": "NORMAL_CLEARING", "by": "caller"})
            if self.spec.answered_before_s is not None:
                self._answered_timers()
        try:
            outcome = self._park_loop()
        except _Hangup:
            outcome = "down"
        if outcome == "down" and not self.down:
            self._hangup("NORMAL_CLEARING", "emulator")
        if outcome == "transfer":
            self._pinned_us = None  # the transfer is stamped; what follows runs in call time
        self._finish_socket_app()
        return outcome

    def _pre_connect(self, msg: dict) -> None:
        if msg["kind"] == "msg":
            self.pending.append(msg)
        elif msg["kind"] == "hangup":
            self._pin(msg)
            self._hangup(msg["cause"], msg["by"])

    def _park_loop(self) -> str:
        """switch_ivr_park's loop: runs while the channel is up, controlled and parked."""
        while not self.down:
            try:
                if self.transfer_target is not None:
                    return "transfer"
                if not self.controlled:
                    # a listener is gone (listener_run clears CF_CONTROLLED): park returns,
                    # the dialplan continues after `socket`
                    return "peer_closed"
                if self.pending:
                    self._handle_private(self.pending.pop(0))
                    continue
                self._dispatch(self.inbox.get(), idle=True)
            except _Transfer:
                continue
        return "down"

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
            self._session_transfer(*msg["target"])
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
            if self.listener is not None:
                self.listener.inject_fault()
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
        self._setvar("current_application_response", None)  # each app its own (transfer-cutoff.txt)
        self._setvar("current_application", app)
        self._setvar("current_application_data", arg)
        data = [("Application-Data", arg)] if arg else []  # no data: no header (transfer-cutoff.txt)
        self.fire("CHANNEL_EXECUTE", post=[("Application", app), *data, ("Application-UUID", app_uuid)])
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
                *([("Application-Data", arg)] if arg else []),
                ("Application-Response", response),
                ("Application-UUID", app_uuid),
            ],
        )

    def _finish_socket_app(self) -> None:
        if self._socket_app_done:
            return
        self._socket_app_done = True
        self.fire("CHANNEL_UNPARK")
        self._complete("socket", self._socket_arg(), self._socket_app_uuid)

    def _socket_arg(self) -> str:
        s = self.spec
        return f"{self.address[0]}:{self.address[1]}" + (" async" if s.async_mode else "") + (" full" if s.full else "")

    def _drop(self) -> None:
        """The socket dies under the app (RST); with drop_kills_call the call vanishes too."""
        if self.listener is not None:
            self.listener.drop()
        if self.mis.drop_kills_call and not self.down:
            if self.listener is not None:
                self.listener.silent = True
            self._hangup("CRASH", "switch_crashed")
            raise _Hangup()


__all__ = ["Session"]
