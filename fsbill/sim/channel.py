"""A channel's life, as switch_channel.c and switch_core_state_machine.c run it.

- `_setvar` is switch_channel_set_variable (a new value goes to the bottom of the list);
- `_answer` is switch_channel_perform_mark_answered: CHANNEL_ANSWER, then
  switch_channel_execute_on(SWITCH_CHANNEL_EXECUTE_ON_ANSWER_VARIABLE) and
  switch_channel_api_on(..._API_ON_ANSWER_VARIABLE) - only on the transition to answered, so
  a channel that arrives answered never runs them again;
- `_hangup` is switch_channel_perform_hangup (CHANNEL_HANGUP, the cause set once);
- `_report` is the CS_HANGUP → CS_REPORTING walk of switch_core_state_machine.c with
  switch_core_session_reporting_state's CHANNEL_HANGUP_COMPLETE, after
  switch_channel_set_timestamps (`_set_hangup_variables`: the *_stamp / *_epoch / billsec
  family of switch_channel.c);
- `_destroy` is CS_DESTROY: only once the listener is gone (linger keeps the channel alive),
  and the channel's scheduler tasks go with it (switch_core_session_destroy →
  switch_scheduler_del_task_group).
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timezone
from typing import Any

import gevent

from fsbill.sim.causes import q850
from fsbill.sim.state import SessionState

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


def _epoch_s(us: int) -> int:
    return us // 1_000_000 if us else 0


class _Hangup(Exception):
    """Unwinds a running application when its channel hangs up."""


class _Transfer(Exception):
    """Unwinds the running apps when the channel is transferred out of the socket app."""


CALLING_SCHED_HEARTBEAT = ("switch_core_session.c", "sch_heartbeat_callback", 1632)
CALLING_READ_HEARTBEAT = ("switch_core_io.c", "switch_core_session_read_frame", 157)


def _true(value: str | None) -> bool:
    """switch_true."""
    text = (value or "").lower()
    return text in ("yes", "on", "true", "t", "enabled", "active", "allow") or (text.isdigit() and int(text) != 0)


class ChannelLife(SessionState):
    """Mixin of the emulated session: variables, answer, hangup, reporting, destroy."""

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
        for name, value in s.directory_variables.items():
            self._setvar(name, str(value))
        # the channel went CS_ROUTING → CS_EXECUTE before the extension's actions ran
        self._state_handlers("CS_ROUTING")
        self._state_handlers("CS_EXECUTE")
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
        self._answered_timers()
        hb = self.variables.get("enable_heartbeat_events")
        if hb is not None:  # switch_channel_perform_mark_answered, before execute_on_answer
            seconds = (int(hb) if int(hb) > 0 else 60) if hb.isdigit() else (60 if _true(hb) else 0)
            if seconds:
                self.enable_heartbeat(seconds)
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

    def _state_handlers(self, state: str) -> None:
        """switch_core_state_machine.c: the global state handlers (switch_core_add_state_handler)
        run as the channel enters a state; mod_nibblebill is the one the emulator knows."""
        nb = self.switch.nibblebill
        if nb is None:
            return
        handler = {"CS_ROUTING": nb.on_routing, "CS_EXECUTE": nb.on_execute, "CS_HANGUP": nb.on_hangup}.get(state)
        if handler is not None:
            handler(self)

    # ---- session heartbeat (switch_core_session.c) --------------------------------------
    def enable_heartbeat(self, seconds: int) -> None:
        """switch_core_session_enable_heartbeat: with no media yet (or heartbeat_use_scheduler)
        a scheduler task in the channel's group (sched_del <uuid> removes it, as it removes
        the cut-off); with media, counted in read frames (switch_core_session_read_frame)."""
        seconds = seconds or 60
        self.track_duration = seconds
        self._unsched_heartbeat()
        if self._media_heartbeat is not None:
            self._media_heartbeat.kill(block=False)
            self._media_heartbeat = None
        fire_on_set = _true(self.variables.get("heartbeat_fire_on_set"))
        media_ready = bool(self.answered_us or self.progress_media_us)
        if not media_ready or _true(self.variables.get("heartbeat_use_scheduler")):
            sched = self.switch.scheduler
            when = sched.now() + (0 if fire_on_set else seconds)

            def callback(task: Any) -> None:  # sch_heartbeat_callback
                if self.switch._calls.get(self.uuid) is self:
                    self._heartbeat(CALLING_SCHED_HEARTBEAT, task.fired_us)
                    task.runtime = sched._second(task.fired_us) + self.track_duration

            task = sched.add(
                when, callback, group=self.uuid, desc="switch_core_session_sched_heartbeat", kind="heartbeat"
            )
            self._heartbeat_task_id = task.task_id
            return

        def frames() -> None:
            delay = 0.0 if fire_on_set else float(seconds)
            while not self.down:
                self.clock.sleep(delay)
                if self.down:
                    return
                self._heartbeat(CALLING_READ_HEARTBEAT, None)
                delay = float(self.track_duration)

        self._media_heartbeat = gevent.spawn(frames)
        self.greenlets.append(self._media_heartbeat)

    def _unsched_heartbeat(self) -> None:
        if self._heartbeat_task_id:
            self.switch.scheduler.del_id(self._heartbeat_task_id)
            self._heartbeat_task_id = 0

    def _heartbeat(self, calling: tuple[str, str, int], at_us: int | None) -> None:
        pinned = self._pinned_us
        if at_us is not None:
            self._pinned_us = min(at_us, self.clock.now_us())
        try:
            self.rec.heartbeats.append(self._now())
            self.fire("SESSION_HEARTBEAT", calling=calling)
        finally:
            self._pinned_us = pinned

    def _answered_timers(self) -> None:
        """Misbehaviour timed from the answer (not FreeSWITCH: fault injection)."""
        if self.mis.drop_after_s is not None:
            self._timer(self.mis.drop_after_s, {"kind": "drop"})
        if self.mis.fault_after_s is not None and self.listener is not None and self.listener.has_byte_fault():
            self._timer(self.mis.fault_after_s, {"kind": "fault"})

    def _arrive_answered(self, before_s: float) -> None:
        """A channel something answered before the socket (an IVR): it was marked answered
        then (switch_channel_perform_mark_answered: CF_ANSWERED, times->answered, CHANNEL_ANSWER
        and execute_on_answer long gone), so the connect reply carries
        Caller-Channel-Answered-Time, and - measured on FreeSWITCH 1.10.12 (ESL-NOTES.md) -
        variable_answer_epoch / variable_answer_uepoch. A later _answer() does nothing."""
        at = self.created_us - int(before_s * 1_000_000)
        self.created_us = self.profile_created_us = at
        self.rec.created_us = at
        self.answered_us = at
        self.rec.answered_us = at
        self.answer_state = "answered"
        self.call_state = "ACTIVE"
        self._setvar("endpoint_disposition", "ANSWER")
        self._setvar("answer_epoch", str(at // 1_000_000))
        self._setvar("answer_uepoch", str(at))

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
        self.rec.hangup_by = by
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
        self._wake_listener()

    def _report(self) -> None:
        """CS_HANGUP -> CS_REPORTING -> CHANNEL_HANGUP_COMPLETE."""
        if self._reported:
            return
        self._reported = True
        if not self.down:
            self._hangup("NORMAL_CLEARING", "emulator")
        self.state, self.state_number = "CS_HANGUP", 10
        self.fire("CHANNEL_STATE", with_vars=False)
        self._state_handlers("CS_HANGUP")
        self.state, self.state_number = "CS_REPORTING", 11
        self.call_state = "HANGUP"
        self.report_hangup_time = True
        self.fire("CHANNEL_STATE", with_vars=False)
        self._set_hangup_variables()
        self.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", self.hangup_cause or "NONE")])
        self.rec.variables = dict(self.variables)
        for hook in self.switch.reporting_hooks:  # CS_REPORTING state handlers (mod_json_cdr)
            hook(self)
        self._wake_listener()

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

    def _wake_listener(self) -> None:
        for listener in self.listeners:
            listener._wake_pump()

    def _destroy(self) -> None:
        """CS_DESTROY: only once the listeners are gone (linger keeps the channel alive)."""
        try:
            for lis in self.listeners:
                if lis.socket_open and not lis.listener_done.is_set():
                    if lis.linger:
                        lis.listener_done.wait()
                    else:
                        # no linger: the pump sends the goodbye once it sees the channel down
                        lis._wake_pump()
                        lis.listener_done.wait(timeout=5.0)
                if lis.socket_open:
                    lis._end_listener("destroy")
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
            for listener in self.listeners:
                listener.kill_greenlets()
            self.rec.done.set()


__all__ = ["STATE_NUMBER", "ChannelLife"]
