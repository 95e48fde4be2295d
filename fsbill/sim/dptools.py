"""Dialplan applications of mod_dptools.c, as the emulated channel runs them.

Each `_app_<name>` follows the mod_dptools.c function of that application:
set/export (set_function/export_function), unset (unset_function), multiset
(multiset_function: `^^<d>` picks the delimiter), answer / pre_answer (answer_function,
pre_answer_function), respond (respond_function → the endpoint's SWITCH_MESSAGE_INDICATE_RESPOND:
>= 300 before answer refuses the call), hangup (hangup_function), sleep (sleep_function),
playback (playback_function), transfer (transfer_function → switch_ivr_session_transfer),
sched_hangup / sched_transfer / sched_broadcast / sched_cancel (sched_*_function: `+N` is
relative to switch_epoch_time_now, `@N` absolute for broadcast, a bare number absolute;
the tasks themselves are switch_ivr_async.c's, see ivr_async.py). `bridge` is in bridge.py.
An application the emulator does not know runs as a no-op (logged).
"""

from __future__ import annotations

import re

from fsbill.sim.causes import sip_to_cause, str2cause
from fsbill.sim.channel import _Hangup, _Transfer
from fsbill.sim.state import SessionState


def atol(text: str) -> int:
    """C's atol: leading spaces, an optional sign, digits; anything else stops it (0 if none)."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


class DialplanApps(SessionState):
    """Mixin of the emulated session: the mod_dptools applications (bridge aside)."""

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
        self._session_transfer(ext, dp, ctx)
        self.rec.transferred_to = ext
        self.rec.ended_by = self.rec.ended_by or "transfer"
        raise _Transfer()

    def _sched_when(self, text: str, at_sign: bool = False) -> int:
        """`+N` is switch_epoch_time_now + N; otherwise atol(text), which is the absolute
        epoch (or a small number the scheduler will take as relative); `@N` only for
        sched_broadcast_function."""
        if text.startswith("+"):
            return self.switch.scheduler.now() + atol(text[1:])
        if at_sign and text.startswith("@"):
            return atol(text[1:])
        return atol(text)

    def _app_sched_hangup(self, arg: str) -> None:
        """sched_hangup_function: `sec = atol(argv[0] + 1)`; sec == 0 hangs up at once."""
        parts = arg.split()
        if not parts:
            return
        when = self._sched_when(parts[0])
        cause = str2cause(parts[1]) if len(parts) > 1 else "ALLOTTED_TIMEOUT"
        if atol(parts[0][1:]) == 0:
            self._hangup(cause, "sched_hangup")
            raise _Hangup()
        self.switch.schedule_hangup(when, self.uuid, cause)

    def _app_sched_transfer(self, arg: str) -> None:
        """sched_transfer_function: sets last_sched_id to the task id."""
        parts = arg.split()
        if len(parts) < 2:
            return
        when = self._sched_when(parts[0])
        task = self.switch.schedule_transfer(
            when, self.uuid, parts[1], parts[2] if len(parts) > 2 else None, parts[3] if len(parts) > 3 else None
        )
        self._setvar("last_sched_id", str(task.task_id))

    def _app_sched_broadcast(self, arg: str) -> None:
        """sched_broadcast_function: `@N` absolute, `+N` relative; sets last_sched_id."""
        parts = arg.split()
        if len(parts) < 2:
            return
        when = self._sched_when(parts[0], at_sign=True)
        task = self.switch.schedule_broadcast(when, self.uuid, parts[1], parts[2] if len(parts) > 2 else "aleg")
        self._setvar("last_sched_id", str(task.task_id))

    def _app_sched_cancel(self, arg: str) -> None:
        target = arg.strip() or self.uuid
        if target.isdigit():
            self.switch.scheduler.del_id(int(target))
        else:
            self.switch.scheduler.del_group(target)


__all__ = ["DialplanApps", "atol"]
