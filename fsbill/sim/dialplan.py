"""What the channel does once the `socket` application returns: the rest of its extension, or
the extension it was transferred to.

- A transfer (`transfer`, `sched_transfer`, `uuid_transfer`) is switch_ivr.c
  switch_ivr_session_transfer (`_session_transfer`): at that instant a new caller profile
  (Caller-Profile-Index + 1, Transfer-Source, RDNIS, the new destination / dialplan /
  context), a transfer_history entry, CF_TRANSFER; so the events that follow (CHANNEL_UNBRIDGE,
  the bridge's and the socket's CHANNEL_EXECUTE_COMPLETE) already carry them
  (fs-wire/transfer-cutoff.txt). The session thread then goes to CS_ROUTING and CS_EXECUTE
  with the new extension's actions (`_enter_transfer_target`). The socket app's park loop returns
  (switch_ivr_park leaves on CF_TRANSFER), the bridge it was running breaks, but the
  listener thread is untouched: the outbound socket stays connected, keeps getting the
  channel's events and can still send commands (a `hangup` then ends the new extension).
- An extension is a list of dialplan actions (`app arg`) run in order, as mod_dialplan_xml
  hands them to switch_core_standard_on_execute; `socket [host:port]` enters the socket
  application again (a new outbound connection for the same channel uuid). When the last
  action returns with the channel up, the channel is hung up (NORMAL_CLEARING), as
  switch_core_state_machine.c does when the dialplan runs out.
- An extension the CallSpec does not script is the cut-off extension of
  dialplan/fsbill_cutoff.xml: answer if needed, an announcement lasting the Switch's
  `announce_s`, then `hangup` with its `transfer_hangup_cause`.
"""

from __future__ import annotations

import uuid as uuidlib

from fsbill.sim.channel import STATE_NUMBER, _Hangup, _Transfer
from fsbill.sim.state import SessionState


class DialplanRunner(SessionState):
    """Mixin of the emulated session: the dialplan around the `socket` application."""

    def _continue_dialplan(self, outcome: str, rest: list[str]) -> None:
        """`outcome` is why the socket app returned (see Session._socket_visit); `rest` the
        actions after `socket` in the extension that ran it."""
        by = outcome
        actions: list[str] | None = rest
        while not self.down:
            if outcome == "transfer":
                actions = self._enter_transfer_target()
                by = "dialplan_end"
            elif outcome in ("peer_closed", "socket_failed"):
                self.rec.ended_by = self.rec.ended_by or outcome
            self._socket_returned = ""
            outcome = self._run_actions(actions) if actions is not None else self._cutoff_extension()
            by = self._socket_returned or by
            if outcome != "transfer":
                break
            actions = None
        if not self.down:
            self._hangup("NORMAL_CLEARING", by)

    def _session_transfer(self, ext: str, dp: str | None, ctx: str | None) -> None:
        """switch_ivr_session_transfer, at the instant of the transfer (in the thread that
        asked for it: the scheduler's, the api's, or the channel's own `transfer` app).

        As captured (fs-wire/transfer-cutoff.txt, re-entry-visit1.txt): `max_forwards`
        counts down (70 on the first transfer), a `transfer_history` entry
        `<epoch>:<new profile uuid>:bl_xfer:<ext>/<context>/<dialplan>` is pushed and
        `transfer_source` set to it, and the new caller profile is in place at once
        (Caller-Destination-Number, Caller-Context, Caller-RDNIS = the old destination,
        Caller-Transfer-Source, Caller-Profile-Index + 1, its own times: Bridged-Time 0, no
        originatee so no Other-Leg-*), Channel-State-Number 2 (CS_ROUTING is the next state)
        while Channel-State stays CS_EXECUTE. So the CHANNEL_UNBRIDGE and the bridge's
        CHANNEL_EXECUTE_COMPLETE that follow already carry the new destination. The B leg of
        the `bridge` application's bridge is hung up NORMAL_CLEARING (BLIND_TRANSFER is only
        for a signal bridge's peer, which the emulator does not build)."""
        now = self._now()
        ctx = ctx or self.context
        dp = dp or "XML"
        forwards = self.variables.get("max_forwards")
        self._setvar("max_forwards", str(int(forwards) - 1 if forwards and forwards.lstrip("-").isdigit() else 70))
        self.rdnis = self.destination
        self.profile_index += 1
        self.profile_created_us = now
        self.destination, self.dialplan, self.context = ext, dp, ctx
        source = f"{now // 1_000_000}:{uuidlib.uuid4()}:bl_xfer:{ext}/{ctx}/{dp}"
        self.transfer_source = source
        self._push_var("transfer_history", source)
        self._setvar("transfer_source", source)
        self._setvar("signal_bond", None)
        self.bridged_us = 0  # the new profile's times
        self.originatee = False
        self.state_number = STATE_NUMBER["CS_ROUTING"]
        self.transfer_us = now
        self.rec.transfers.append((now, ext))
        self.transfer_target = (ext, dp, ctx)

    def _enter_transfer_target(self) -> list[str] | None:
        """The session thread takes the transfer up once the socket app (or the extension's
        application) returned: CS_ROUTING (Channel-Call-State RINGING, as captured), then
        CS_EXECUTE. Returns the target extension's actions (None: the cut-off extension)."""
        self._pinned_us = None
        assert self.transfer_target is not None
        ext, _, _ = self.transfer_target
        self.transfer_target = None
        for state, call_state in (
            ("CS_ROUTING", "RINGING"),
            ("CS_EXECUTE", "ACTIVE" if self.answered_us else "RINGING"),
        ):
            self.state, self.state_number, self.call_state = state, STATE_NUMBER[state], call_state
            self.fire("CHANNEL_STATE", with_vars=False)
            self._state_handlers(state)
        return self._extension(ext)

    def _extension(self, ext: str) -> list[str] | None:
        scripted = self.spec.dialplan.get(ext)
        if scripted is not None:
            return list(scripted)
        if ext == self.spec.destination_number:  # back into the billed extension
            after = (self.spec.after_socket or "").strip()
            return ["socket"] + ([after] if after else [])
        return None

    def _run_actions(self, actions: list[str]) -> str:
        """Run an extension's actions: "end" when they ran out, "transfer" or "down"."""
        for action in actions:
            if self.down:
                return "down"
            app, _, arg = action.strip().partition(" ")
            if not app:
                continue
            try:
                if app == "socket":
                    outcome = self._socket_visit(self._socket_address(arg))
                    if outcome in ("transfer", "down"):
                        return outcome
                    self.rec.ended_by = self.rec.ended_by or outcome
                    self._socket_returned = outcome
                    continue  # the socket app returned: the dialplan goes on after it
                self.execute(app, arg.strip())
            except _Hangup:
                return "down"
            except _Transfer:
                return "transfer"
        return "down" if self.down else "end"

    def _socket_address(self, arg: str) -> tuple[str, int]:
        host, sep, port = arg.split(" ")[0].rpartition(":")
        if sep and host and port.isdigit():
            return host, int(port)
        return self.address

    def _cutoff_extension(self) -> str:
        """dialplan/fsbill_cutoff.xml: answer, the announcement, hangup."""
        try:
            if not self.answered_us:
                self.execute("answer", "")
            self.execute("playback", "ivr/ivr-call_cannot_be_completed_as_dialed.wav")
            self._wait(max(0.0, self.switch.announce_s - self.switch.playback_s))
            self.execute("hangup", self.switch.transfer_hangup_cause)
        except _Hangup:
            return "down"
        except _Transfer:
            return "transfer"
        return "end"


__all__ = ["DialplanRunner"]
