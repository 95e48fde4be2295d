"""The driver of every call's machine: it feeds fsbill.core.lifecycle and carries out its commands.

The call's decisions, and the order of operations that keeps the invariant under crashes, are
the machine's (see its docstring). This module only does what the commands say, against the
event socket (fsbill.esl.CallControl), the database (fsbill.db) and the node's own books (which
legs it follows, the metrics, the logs), and turns what comes back into the machine's events.
A call re-adopted through the switch runs on the same machine, entering it by `adopt`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal

from greenswitch.esl import NotConnectedError, OutboundSessionHasGoneAway

from fsbill.clock import Clock
from fsbill.config import Settings
from fsbill.core import events as ev
from fsbill.core import lifecycle as lc
from fsbill.core.grant import US, GrantPolicy
from fsbill.db import Store
from fsbill.db import calls as dbcalls
from fsbill.db import dids as dbdids
from fsbill.db import vendors as dbvendors
from fsbill.db.adoption import Adopted
from fsbill.db.rates import DeckCache
from fsbill.errors import DatabaseUnavailable, FsbillError
from fsbill.esl import CallControl, EslSession, channel_from, cutoff_mark, failover_bridge, nibblebill_variables
from fsbill.esl.inbound import FollowedSession
from fsbill.lcr import Router
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics, cdr_written
from fsbill.pending import PendingWrites

log = logging.getLogger("fsbill.call")

# What a command sent to FreeSWITCH raises when the socket or the switch is gone.
SWITCH_ERRORS = (FsbillError, OSError, NotConnectedError, OutboundSessionHasGoneAway)
# Commands whose failure means the call cannot go on on this socket: the rest of their batch is dropped.
_FATAL = (lc.Subscribe, lc.Arm, lc.ArmFromNow, lc.Bridge)
# Notes that are counted as well as logged (or only counted).
_COUNTED_ONLY = frozenset({"accepted", "cut_off"})


class Enforcer:
    """What every call on this node shares."""

    def __init__(self, settings: Settings, store: Store, clock: Clock, metrics: Metrics, decks: DeckCache) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.decks = decks
        self.node = settings.node
        c = settings.cutoff
        self.policy = GrantPolicy.build(
            settings.slice_s, settings.max_call_s, c.margin_s, c.warning_s, settings.heartbeat_s
        )
        self.mark = cutoff_mark(c)
        self.router = Router(store, decks, settings.allow_loss) if settings.routing == "lcr" else None
        self.config = lc.Config(
            policy=self.policy,
            mark=self.mark,
            cutoff_mode=c.mode,
            node=settings.node,
            heartbeat_s=settings.heartbeat_s,
            max_ring_s=settings.max_ring_s,
            route_template=settings.route,
            lcr=self.router is not None,
            international_prefix=settings.international_prefix,
            nibblebill_compat=settings.nibblebill_compat,
            nibblebill_allow_zero_rate=settings.nibblebill_allow_zero_rate,
            on_db_error=settings.on_db_error,
            db_error_grant_s=settings.db_error_grant_s,
            on_suspend=settings.on_suspend,
        )
        self._pending: PendingWrites | None = None
        self.following: set[tuple[str, int]] = set()  # the legs (uuid, visit) this node is enforcing now
        # This process, as live calls record their owner (fsbill.db.adoption); set by the Node.
        self.instance = ""
        # Legs this process followed until their socket died, unsettled: re-adoptable by it.
        self.released: set[tuple[str, int]] = set()
        self._db_seconds: dict[str, Any] = {}  # fsbill_db_seconds' child per op (see _DbTimer)

    @property
    def pending(self) -> PendingWrites | None:
        return self._pending

    @pending.setter
    def pending(self, pending: PendingWrites | None) -> None:
        self._pending = pending
        self.config = replace(self.config, defer_writes=pending is not None)

    def handle(self, session: EslSession) -> None:
        """A call FreeSWITCH handed to the socket."""
        channel = channel_from(session.session_data)
        control = CallControl(session, channel.uuid, self.settings.cutoff, strip=nibblebill_variables(channel))
        state, commands = lc.start(channel, self.config, self.clock.now_us())
        Driver(self, session, control, getattr(session, "accepted_perf", time.perf_counter())).run(state, commands)

    def adopt(
        self,
        session: FollowedSession,
        taken: Adopted,
        *,
        answered_us: int | None,
        bridged_us: int | None,
        ended: ev.HangupComplete | None,
    ) -> None:
        """A live call taken over through the switch: the same machine, entered by `adopt`."""
        channel = channel_from(session.session_data)
        channel = replace(channel, caller=taken.caller or channel.caller)
        control = CallControl(session, channel.uuid, self.settings.cutoff)  # type: ignore[arg-type]  # FollowedSession speaks the same verbs
        state, commands = lc.adopt(
            channel,
            self.config,
            taken.call,
            taken.account,
            taken.destination,
            self.clock.now_us(),
            answered_us=answered_us,
            bridged_us=bridged_us,
            ended=ended,
        )
        Driver(self, session, control, time.perf_counter()).run(state, commands)

    def timed(self, op: str) -> _DbTimer:
        return _DbTimer(self.metrics, op, self._db_seconds)


class _DbTimer:
    def __init__(self, metrics: Metrics, op: str, children: dict[str, Any]) -> None:
        self.metrics, self.op, self.children = metrics, op, children

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        # the labelled child is looked up once per op: labels() takes the metric's lock, which
        # under gevent's monkey-patching is a Python-level lock (py-spy on a real switch)
        child = self.children.get(self.op)
        if child is None:
            child = self.children[self.op] = self.metrics.db_seconds.labels(self.op)
        child.observe(time.perf_counter() - self.start)
        if exc_type is not None and issubclass(exc_type, DatabaseUnavailable):
            self.metrics.db_errors.labels(self.op).inc()
        return False


class Driver:
    """One call: its session, its control verbs, and the loop that feeds its machine."""

    def __init__(
        self, enforcer: Enforcer, session: EslSession | FollowedSession, control: CallControl, accepted_perf: float
    ) -> None:
        self.e = enforcer
        self.session = session
        self.control = control
        self.accepted_perf = accepted_perf
        self.followed: list[tuple[str, int]] = []
        self.state: lc.CallState | None = None

    def run(self, state: lc.CallState, commands: list[lc.Command]) -> None:
        clock = self.e.clock
        results: deque[ev.Event] = deque()
        try:
            while True:
                self.state = state
                for command in commands:
                    if isinstance(command, lc.Finish):
                        return
                    result = self.execute(command, state)
                    if result is None:
                        continue
                    results.append(result)
                    if isinstance(result, ev.CommandFailed) and isinstance(command, _FATAL):
                        break
                event = results.popleft() if results else self.next_event(state)
                state, commands = lc.step(state, event, clock.now_us())
        finally:
            for leg in self.followed:
                self.e.following.discard(leg)
                self.e.metrics.live_calls.dec()

    def next_event(self, state: lc.CallState) -> ev.Event:
        """What FreeSWITCH says next, or a Tick when the machine's wake-up time comes first."""
        timeout_s = None
        if state.wake_us is not None:
            timeout_s = max(0.0, self.e.clock.real_seconds((state.wake_us - self.e.clock.now_us()) / US))
        event = self.session.next_event(timeout_s)
        return ev.Tick() if event is None else event

    # -- carrying out one command ---------------------------------------------------------------------
    def execute(self, command: lc.Command, state: lc.CallState) -> ev.Event | None:
        handler = _EXECUTORS[type(command)]
        return handler(self, command, state)  # type: ignore[operator]

    def _switch(self, command: lc.Command, action: object) -> ev.Event | None:
        """Run a FreeSWITCH command; its failure becomes the machine's CommandFailed."""
        try:
            action()  # type: ignore[operator]
        except SWITCH_ERRORS as exc:
            return ev.CommandFailed(type(command).__name__, str(exc) or type(exc).__name__)
        return None

    def subscribe(self, c: lc.Subscribe, state: lc.CallState) -> ev.Event | None:
        return self._switch(c, lambda: self.control.subscribe(bridge_events=c.bridge_events))

    def find_payer(self, c: lc.FindPayer, state: lc.CallState) -> ev.Event:
        try:
            with self.e.timed("find_account"):
                if c.payer.by == "did":  # an inbound call: the number's owner (docs/DIDS.md)
                    found = dbdids.find_did(self.e.store, c.payer.value)
                    return ev.PayerFound(found[1], found[0]) if found else ev.PayerFound(None)
                return ev.PayerFound(dbcalls.find_payer(self.e.store, c.payer))
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))

    def find_rate(self, c: lc.FindRate, state: lc.CallState) -> ev.Event:
        try:
            with self.e.timed("load_rates"):
                deck = self.e.decks.get(c.tariff_id, self.e.clock.now_us())
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))
        return ev.RateFound(deck.lookup(c.number, c.at_us))

    def plan_route(self, c: lc.PlanRoute, state: lc.CallState) -> ev.Event:
        router = self.e.router
        assert router is not None  # the machine plans routes only with routing: lcr
        try:
            with self.e.timed("route"):
                plan = router.plan(c.currency, c.rate, c.number, c.at_us, self.e.clock.now_us())
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))
        return ev.RoutePlanned(plan.route, plan.legs)

    def reserve(self, c: lc.Reserve, state: lc.CallState) -> ev.Event:
        e, s = self.e, self.e.settings
        now_us = e.clock.now_us()
        try:
            with e.timed("reserve"):
                auth = dbcalls.reserve(
                    e.store,
                    uuid=c.uuid,
                    account_id=c.account_id,
                    rate=c.rate,
                    policy=e.policy,
                    node=e.node,
                    caller=c.caller,
                    destination=c.number,
                    now_us=now_us,
                    lease_until_us=now_us + s.lease_effective_s * US,
                    max_ring_s=s.max_ring_s,
                    vendor_legs=c.legs,
                    instance=e.instance,
                    accountcode=c.accountcode,
                    caller_id_name=c.caller_id_name,
                    context=c.context,
                    # the levels above a reseller's customer rate the call in their own tariffs
                    rate_for=lambda tariff_id: e.decks.get(tariff_id, now_us).lookup(c.number, now_us),
                    did=c.did,
                )
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))
        return ev.Reserved(auth.reason, auth.call, auth.balance.micros, auth.refused_vendors)

    def routes_stale(self, c: lc.RoutesStale, state: lc.CallState) -> None:
        if self.e.router is not None:
            self.e.router.invalidate()

    def refuse(self, c: lc.Refuse, state: lc.CallState) -> ev.Event:
        rule = self.e.settings.rejection(c.reason)
        prompted = bool(rule.prompt)
        try:
            responded = self.control.reject(c.reason, rule)
        except SWITCH_ERRORS as exc:
            return ev.Refusal(rule.cause, prompted, delivered=False, error=str(exc))
        return ev.Refusal("" if responded else rule.cause, prompted)

    def write_rejection(self, c: lc.WriteRejection, state: lc.CallState) -> ev.Event:
        e = self.e
        try:
            with e.timed("write_cdr"):
                written = dbcalls.write_rejection(e.store, c.record, e.clock.now_us())
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))
        if written is not None:
            cdr_written(e.metrics, written)
        return ev.Written(written.result if written is not None else "")

    def arm(self, c: lc.Arm, state: lc.CallState) -> ev.Event | None:
        variables = dict(c.variables)
        return self._switch(c, lambda: self.control.arm(variables, c.cutoff_after_answer_s, c.warning_after_answer_s))

    def arm_from_now(self, c: lc.ArmFromNow, state: lc.CallState) -> ev.Event | None:
        return self._switch(c, lambda: self.control.arm_from_now(c.after_s))

    def bridge(self, c: lc.Bridge, state: lc.CallState) -> ev.Event | None:
        dial = c.dial_string or failover_bridge((leg.leg_uuid, leg.dial_string) for leg in state.legs)
        failed = self._switch(c, lambda: self.control.bridge(dial))
        self.e.metrics.setup_seconds.observe(time.perf_counter() - self.accepted_perf)
        return failed

    def move_cutoff(self, c: lc.MoveCutoff, state: lc.CallState) -> ev.Event:
        try:
            taken = self.control.move_cutoff(c.cutoff_us, c.warning_us, now_us=self.e.clock.now_us())
        except SWITCH_ERRORS as exc:
            return ev.CommandFailed("MoveCutoff", str(exc) or type(exc).__name__)
        return ev.CutoffMoved() if taken else ev.CommandFailed("MoveCutoff", "FreeSWITCH refused the cut-off")

    def warn_at(self, c: lc.WarnAt, state: lc.CallState) -> ev.Event | None:
        return self._switch(c, lambda: self.control.warn_at(c.warning_us, now_us=self.e.clock.now_us()))

    def kill(self, c: lc.Kill, state: lc.CallState) -> ev.Event | None:
        cause = self.e.settings.rejection(c.reason).cause
        return self._switch(c, lambda: self.control.kill(cause))

    def end(self, c: lc.End, state: lc.CallState) -> None:
        if state.hangup_cause:
            # FreeSWITCH already said the channel is hanging up (CHANNEL_HANGUP comes before
            # the bridge's EXECUTE_COMPLETE when a party hangs up): there is nothing left to
            # end, and the command was a round trip per call (fs-wire capture in tests/data).
            return
        try:
            self.control.end(c.cause)
        except SWITCH_ERRORS:
            pass  # the channel is ending anyway, or its socket is gone: nothing more to do

    def keep_carrier(self, c: lc.KeepCarrier, state: lc.CallState) -> None:
        """FreeSWITCH bridged one vendor's leg: the other vendors' channels are free again."""
        try:
            with self.e.timed("bridged"):
                carrier = dbvendors.keep_carrier(self.e.store, c.uuid, c.visit, c.leg_uuid)
        except DatabaseUnavailable as exc:  # the settlement releases them instead
            log_event(log, "vendor_release_deferred", uuid=c.uuid, error=str(exc))
            return
        log_event(log, "bridged", uuid=c.uuid, vendor=carrier or None)

    def record_answer(self, c: lc.RecordAnswer, state: lc.CallState) -> None:
        e = self.e
        try:
            with e.timed("answer"):
                dbcalls.mark_answered(e.store, c.call, e.clock.now_us() + e.settings.lease_effective_s * US)
        except DatabaseUnavailable as exc:
            log_event(log, "answer_not_recorded", uuid=c.call.uuid, error=str(exc))

    def beat(self, c: lc.Beat, state: lc.CallState) -> ev.Event:
        e = self.e
        now_us = e.clock.now_us()
        try:
            with e.timed("heartbeat"):
                result = dbcalls.heartbeat(
                    e.store,
                    c.uuid,
                    c.visit,
                    now_us,
                    e.policy,
                    now_us + e.settings.lease_effective_s * US,
                    extend=c.extend,
                    known=c.known,
                )
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))
        return ev.BeatDone(result)

    def settle(self, c: lc.Settle, state: lc.CallState) -> ev.Event:
        e = self.e
        try:
            with e.timed("settle"):
                cdr = dbcalls.settle_call(e.store, c.end)
        except DatabaseUnavailable as exc:
            return ev.DatabaseDown(str(exc))
        if cdr is not None and cdr.result != "recovered":  # a reaper settled it first, and counted it
            cdr_written(e.metrics, cdr)
        return ev.Written(cdr.result if cdr is not None else "")

    def defer_settlement(self, c: lc.DeferSettlement, state: lc.CallState) -> None:
        if self.e.pending is not None:
            self.e.pending.add_settlement(c.end, c.currency, c.held)

    def defer_unreserved(self, c: lc.DeferUnreserved, state: lc.CallState) -> None:
        if self.e.pending is not None:
            self.e.pending.add_unreserved(c.payer, c.destination, c.end)

    def defer_rejection(self, c: lc.DeferRejection, state: lc.CallState) -> None:
        if self.e.pending is not None:
            self.e.pending.add_rejection(c.record)

    def follow(self, c: lc.Follow, state: lc.CallState) -> None:
        self.e.following.add(c.leg)
        self.e.released.discard(c.leg)
        self.followed.append(c.leg)
        self.e.metrics.live_calls.inc()

    def release(self, c: lc.Release, state: lc.CallState) -> None:
        # with switches: configured, re-adopted through the switch link (fsbill.adoption)
        self.e.released.add(c.leg)

    def hold_changed(self, c: lc.HoldChanged, state: lc.CallState) -> None:
        self.e.metrics.hold_changed(c.currency, c.delta)

    def note(self, c: lc.Note, state: lc.CallState) -> None:
        m, fields = self.e.metrics, c.fields
        if c.kind == "accepted":
            m.calls.labels("accepted", str(fields.get("reason", ""))).inc()
        elif c.kind == "rejected":
            m.calls.labels("rejected", str(fields["reason"])).inc()
        elif c.kind == "extended":
            m.extensions.inc()
        elif c.kind == "warning_scheduled":
            m.warnings.inc()
        elif c.kind == "cut_off":
            m.cutoffs.labels(str(fields["mode"])).inc()
        if c.kind not in _COUNTED_ONLY:
            log_event(log, c.kind, **fields)


_EXECUTORS = {
    lc.Subscribe: Driver.subscribe,
    lc.FindPayer: Driver.find_payer,
    lc.FindRate: Driver.find_rate,
    lc.PlanRoute: Driver.plan_route,
    lc.Reserve: Driver.reserve,
    lc.RoutesStale: Driver.routes_stale,
    lc.Refuse: Driver.refuse,
    lc.WriteRejection: Driver.write_rejection,
    lc.Arm: Driver.arm,
    lc.ArmFromNow: Driver.arm_from_now,
    lc.Bridge: Driver.bridge,
    lc.MoveCutoff: Driver.move_cutoff,
    lc.WarnAt: Driver.warn_at,
    lc.Kill: Driver.kill,
    lc.End: Driver.end,
    lc.KeepCarrier: Driver.keep_carrier,
    lc.RecordAnswer: Driver.record_answer,
    lc.Beat: Driver.beat,
    lc.Settle: Driver.settle,
    lc.DeferSettlement: Driver.defer_settlement,
    lc.DeferUnreserved: Driver.defer_unreserved,
    lc.DeferRejection: Driver.defer_rejection,
    lc.Follow: Driver.follow,
    lc.Release: Driver.release,
    lc.HoldChanged: Driver.hold_changed,
    lc.Note: Driver.note,
}

__all__ = ["Driver", "Enforcer"]
