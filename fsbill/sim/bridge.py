"""`bridge`: mod_dptools.c audio_bridge_function → switch_ivr_originate.c (the B leg rings,
answers or fails) → switch_ivr_bridge.c switch_ivr_multi_threaded_bridge (CHANNEL_BRIDGE,
the two legs talk, CHANNEL_UNBRIDGE when either side ends it).
"""

from __future__ import annotations

import re
import uuid as uuidlib

import gevent

from fsbill.sim.causes import DIALSTATUS, str2cause
from fsbill.sim.channel import _Hangup, _Transfer


class Bridge:
    """Mixin of the emulated session: originate the B leg and bridge it."""

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


__all__ = ["Bridge"]
