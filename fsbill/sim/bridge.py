"""`bridge`: mod_dptools.c audio_bridge_function → switch_ivr_originate.c (the B legs are
tried, each `|`-separated target in turn, until one answers) → switch_ivr_bridge.c
switch_ivr_multi_threaded_bridge (CHANNEL_BRIDGE, the two legs talk, CHANNEL_UNBRIDGE when
either side ends it).

What switch_ivr_originate leaves on the A leg, as it sets it:
- at the start: `originate_disposition` failure, `DIALSTATUS` INVALIDARGS (seen during the
  ringing in every capture). `originated_legs` and `originate_causes` are *not* cleared: a
  channel's second bridge appends to the first's (fs-wire/re-entry-visit1.txt);
- for every B channel it created, when its `|` attempt ends: `originated_legs` pushed
  (`uuid;callee_id_name;callee_id_number`) and `originate_causes` pushed (`uuid;CAUSE`,
  NONE for the leg that answered). Pushed values make an array, serialized `ARRAY::a|:b`
  (switch_event.c) once there are two;
- after each attempt: `originate_disposition` = switch_channel_cause2str(cause) (SUCCESS when
  one answered) and `DIALSTATUS` (CANCEL / BUSY / NOANSWER / INVALIDARGS / DONTCALL, else the
  cause name);
- a target the endpoint refuses before creating a channel (mod_sofia sofia_outgoing_channel:
  INVALID_GATEWAY, GATEWAY_DOWN, INVALID_URL, INVALID_PROFILE, USER_NOT_REGISTERED...) leaves
  no originate_causes / originated_legs entry;
- when all fail: audio_bridge_function sets `originate_failed_cause`.
switch_ivr_multi_threaded_bridge then sets `last_bridge_to`, `bridge_channel` (the B leg's
channel name: for `sofia/gateway/GW/NUM`, sofia_glue_set_name's `sofia/<GW's profile>/NUM`,
which does not name the gateway), `bridge_uuid`, `signal_bond` and `bridge_to`.
"""

from __future__ import annotations

import re
import uuid as uuidlib

import gevent

from fsbill.sim.causes import DIALSTATUS, str2cause
from fsbill.sim.channel import _Hangup, _Transfer
from fsbill.sim.state import SessionState

# mod_sofia sofia_outgoing_channel: refused before a channel exists (`goto error`)
NO_CHANNEL_CAUSES = frozenset(
    {"INVALID_GATEWAY", "GATEWAY_DOWN", "INVALID_URL", "INVALID_PROFILE", "USER_NOT_REGISTERED", "SYSTEM_SHUTDOWN"}
)


def leg_channel_name(target: str, gateway_profile: str = "external") -> str:
    """The name the endpoint gives the B channel for one dial-string target."""
    target = target.split(";")[0]
    parts = target.split("/")
    if len(parts) >= 4 and parts[0] == "sofia" and parts[1] == "gateway":
        return f"sofia/{gateway_profile}/{'/'.join(parts[3:])}"  # sofia_glue_set_name
    if len(parts) >= 2 and parts[0] == "loopback":
        return f"loopback/{parts[1]}-a"  # mod_loopback: the originated side is `-a`
    return target or "error/none"


def bridge_targets(arg: str) -> list[str]:
    """The `|`-separated attempts of a dial string, `{global vars}` and `[leg vars]` dropped;
    of a `,` list (simultaneous ring) only the first leg is emulated."""
    arg = re.sub(r"^\{[^}]*\}", "", arg.strip())
    out = []
    for attempt in arg.split("|"):
        leg = re.sub(r"^\[[^\]]*\]", "", attempt.split(",")[0].strip()).strip()
        out.append(leg)
    return out or [""]


def leg_variables(arg: str) -> list[dict[str, str]]:
    """The `[name=value,...]` variables of each `|`-separated attempt, in the order of
    bridge_targets (switch_ivr_originate.c: a leading `[...]` applies to that leg only)."""
    arg = re.sub(r"^\{[^}]*\}", "", arg.strip())
    out = []
    for attempt in arg.split("|"):
        found = re.match(r"^\[([^\]]*)\]", attempt.split(",")[0].strip())
        pairs = (item.partition("=") for item in found.group(1).split(",")) if found else ()
        out.append({name.strip(): value.strip() for name, _, value in pairs if name.strip()})
    return out or [{}]


class Bridge(SessionState):
    """Mixin of the emulated session: originate the B legs and bridge the one that answers."""

    def _push_var(self, name: str, value: str) -> None:
        """switch_channel_add_variable_var_check(..., SWITCH_STACK_PUSH): an array from the
        second value on, serialized `ARRAY::v1|:v2`."""
        old = self.variables.get(name)
        if old is None:
            self._setvar(name, value)
        elif old.startswith("ARRAY::"):
            self.variables[name] = old + "|:" + value
        else:
            self.variables[name] = f"ARRAY::{old}|:{value}"

    def _attempt_failed(self, cause: str) -> None:
        """The end of a failed `|` attempt in switch_ivr_originate."""
        self._setvar("originate_disposition", cause)
        self._setvar("DIALSTATUS", DIALSTATUS.get(cause, cause))

    def _app_bridge(self, arg: str) -> None:
        spec = self.spec
        targets = bridge_targets(arg)
        variables = leg_variables(arg)
        # switch_ivr_originate's starting values (every capture shows them during the ringing)
        self._setvar("originate_disposition", "failure")
        self._setvar("DIALSTATUS", "INVALIDARGS")
        self.signals = []
        self.in_bridge = True
        try:
            cause = "NO_ANSWER"
            for index, target in enumerate(targets):
                scripted = index < len(spec.failover_causes)
                cause = str2cause(spec.failover_causes[index]) if scripted else ""
                if scripted and cause in NO_CHANNEL_CAUSES:
                    self._attempt_failed(cause)
                    continue
                answered = self._originate_leg(target, cause if scripted else None, variables[index])
                if answered:
                    break
                cause = self.rec.bridge_failed or cause
            else:
                self.rec.bridge_failed = cause
                self._setvar("originate_failed_cause", cause)  # audio_bridge_function
                self.bridge_legs = None
                return
            self._bridged()
        finally:
            self.in_bridge = False

    def _originate_leg(self, target: str, fail_cause: str | None, leg_vars: dict[str, str] | None = None) -> bool:
        """One `|` attempt with one B channel: it fails with `fail_cause` after
        `leg_fail_after_s` (a failover leg), or behaves as the CallSpec's B leg."""
        spec = self.spec
        gw = target.split("/")[2] if target.startswith("sofia/gateway/") and target.count("/") >= 3 else ""
        dest = callee = target.rsplit("/", 1)[-1] if "/" in target else target
        parts = target.split("/")
        if parts[0] == "loopback" and len(parts) >= 2:  # loopback/<exten>[/<context>]: its callee is the context
            dest, callee = parts[1], parts[2] if len(parts) > 2 else "default"
        # origination_uuid: the new channel takes this uuid
        # (switch_core_session.c switch_core_session_outgoing_channel)
        b_uuid = (leg_vars or {}).get("origination_uuid") or str(uuidlib.uuid4())
        self.bridge_legs = {
            "uuid": b_uuid,
            "destination": dest,
            "callee": callee,
            "channel_name": leg_channel_name(target, self.switch.gateway_profiles.get(gw, "external")),
            "created_us": self.clock.now_us(),
            "answered_us": 0,
            "progress_media_us": 0,
            "target": target,
        }
        legs = self.bridge_legs
        self.signals = [s for s in self.signals if s["kind"] not in ("b_answer", "b_fail")]
        if fail_cause is not None:
            self._timer(spec.leg_fail_after_s, {"kind": "b_fail", "cause": fail_cause})
        elif spec.answer_after_s is not None and spec.fail_cause is None:
            self._timer(spec.answer_after_s, {"kind": "b_answer"})
        else:
            delay = spec.answer_after_s if spec.answer_after_s is not None else spec.ring_s
            self._timer(delay, {"kind": "b_fail", "cause": str2cause(spec.fail_cause or "NO_ANSWER")})
        gevent.sleep(0)
        if (fail_cause is None or spec.failover_early_media) and not self.answered_us:
            # ringing or early media from the B leg, passed to the A leg (marked once:
            # switch_channel_perform_mark_pre_answered / _ring_ready do nothing the second time)
            if spec.early_media:
                if not self.progress_media_us:
                    self.progress_media_us = self.clock.now_us()
                    self.answer_state = "early"
                    self._setvar("endpoint_disposition", "EARLY MEDIA")
                    self.fire("CHANNEL_PROGRESS_MEDIA")
                legs["progress_media_us"] = self.progress_media_us
            elif not self.progress_us:
                self.progress_us = self.clock.now_us()
                self.fire("CHANNEL_PROGRESS")
            self.call_state = "EARLY" if spec.early_media else "RINGING"
        outcome = self._wait_signal(("b_answer", "b_fail"))
        assert outcome is not None  # only pending_breaks returns None
        # the A leg learns of the B channel when its attempt ends (no originated_legs entry
        # during the ringing in any capture)
        self._push_var("originated_legs", f"{b_uuid};Outbound Call;{callee}")
        if outcome["kind"] == "b_fail":
            cause = outcome["cause"]
            self.rec.bridge_failed = cause
            self.rec.failed_legs.append((target, cause))
            self._push_var("originate_causes", f"{b_uuid};{cause}")
            self._attempt_failed(cause)
            return False
        self.rec.bridge_failed = None
        legs["answered_us"] = self.clock.now_us()
        self._setvar("originate_signal_bond", b_uuid)
        return True

    def _bridged(self) -> None:
        """The B leg answered: the A leg is answered with it (if it was not already), then the
        bridge comes up (switch_ivr_multi_threaded_bridge)."""
        spec = self.spec
        legs = self.bridge_legs
        assert legs is not None
        b_uuid = legs["uuid"]
        self._answer()
        self.bridged_us = bridged_at = self.clock.now_us()
        self.rec.bridged_us = self.rec.bridged_us or self.bridged_us
        self.rec.bridged_to = legs["target"]
        self.call_state = "ACTIVE"
        self.was_bridged = True
        self.originatee = True
        self._setvar("originate_disposition", "SUCCESS")
        self._setvar("DIALSTATUS", "SUCCESS")
        self._push_var("originate_causes", f"{b_uuid};NONE")
        self._setvar("originate_signal_bond", None)
        self._setvar("signal_bond", b_uuid)
        bridge_ids = [("Bridge-A-Unique-ID", self.uuid), ("Bridge-B-Unique-ID", b_uuid)]
        self.fire("CHANNEL_BRIDGE", pre=bridge_ids)
        self._setvar("bridge_to", b_uuid)
        self._setvar("last_bridge_to", b_uuid)
        self._setvar("bridge_channel", legs["channel_name"])
        self._setvar("bridge_uuid", b_uuid)
        self._setvar("last_sent_callee_id_name", "Outbound Call")
        self._setvar("last_sent_callee_id_number", legs["callee"])
        if spec.talk_s is not None:
            # the caller talks talk_s from the answer; from the bridge if an IVR answered
            start = self.bridged_us if spec.answered_before_s is not None else self.answered_us
            self._timer(
                max(0.0, spec.talk_s - (self.clock.now_us() - start) / 1e6),
                {
                    "kind": "hangup",
                    "cause": "NORMAL_CLEARING",
                    "by": "caller",
                    "at_us": start + int(spec.talk_s * 1_000_000),
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
                    self._unbridge("NORMAL_CLEARING", bridged_at)
                    return
        except _Hangup:
            # the A leg hung up: the bridge thread notices a moment later
            self._pause_real(self.switch.bridge_teardown_s)
            self._unbridge("NORMAL_CLEARING", bridged_at)
            raise
        except _Transfer:
            # transferred (switch_ivr_session_transfer already put the new caller profile in
            # place) or reset by `resume`: the bridge breaks; the B leg of the `bridge`
            # application's bridge ends NORMAL_CLEARING (fs-wire/transfer-cutoff.txt)
            self._unbridge("NORMAL_CLEARING", bridged_at, transferred=self.transfer_target is not None)
            raise

    def _unbridge(self, b_cause: str, bridged_at: int, transferred: bool = False) -> None:
        now = self._now()
        self.rec.unbridged_us = self.rec.unbridged_us or now
        self.rec.unbridges.append((bridged_at, now))
        if not transferred:  # not on a transferred channel (fs-wire/transfer-cutoff.txt)
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
