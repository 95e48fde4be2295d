"""The life of one billed call, from `connect` to its CDR.

This module sequences the call: it asks fsbill.core.call what to decide, fsbill.db what the
books say, and tells FreeSWITCH through fsbill.esl.CallControl. It holds the one record of
the call (`fsbill.core.call.LiveCall`: grant, hold, debits, cut-off instant); the live_call row
is that record's durable copy. The order of operations is what keeps the invariant under
crashes:

- money is held in the database *before* FreeSWITCH is told a call may last longer, never
  after (a crash in between leaves money held, not a call running unpaid);
- the cut-off always lives inside FreeSWITCH (armed on answer, moved on extension), so if
  fsbill dies each call still ends when its grant does, and a reaper settles it later;
- the final rating uses FreeSWITCH's own microsecond answer/end times, once, and the CDR and
  the settlement are one transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Literal

from fsbill.clock import Clock
from fsbill.config import Settings
from fsbill.core.call import (
    Channel,
    LiveCall,
    Payer,
    answer,
    billing_window,
    destination_of,
    dial_string_of,
    nibble_rate_of,
    payer_of,
    result_of,
    transfer_was_cutoff,
    warning_after_answer_s,
    warning_instant_us,
)
from fsbill.core.grant import US, GrantPolicy, cutoff_offset_s
from fsbill.core.money import Money
from fsbill.core.rating import Rate, normalize_number
from fsbill.core.routing import NO_ROUTE, VENDOR_UNAVAILABLE
from fsbill.db import Store
from fsbill.db import calls as dbcalls
from fsbill.db import vendors as dbvendors
from fsbill.db.rates import DeckCache
from fsbill.db.vendors import Leg
from fsbill.errors import DatabaseUnavailable, FsbillError, MoneyError, NumberError
from fsbill.esl import (
    Answered,
    Bridged,
    BridgeEnded,
    CallControl,
    Disconnected,
    EslSession,
    HangupComplete,
    Hungup,
    SocketClosed,
    Unbridged,
    channel_from,
    cutoff_mark,
    failover_bridge,
    nibblebill_variables,
)
from fsbill.lcr import Plan, Router
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics, cdr_written
from fsbill.pending import PendingWrites

log = logging.getLogger("fsbill.call")


class Rejected(Exception):
    def __init__(
        self, reason: str, detail: str = "", account: str = "", currency: str = "", balance: Money | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.account = account
        self.currency = currency
        self.balance = balance


@dataclass
class Accepted:
    account: dbcalls.PayerAccount
    payer: Payer
    destination: str
    dial_string: str
    reserved: bool  # False only for calls let through while the database was down (on_db_error: allow)
    legs: tuple[Leg, ...] = ()  # least-cost routing: the vendors of the failover bridge, in order


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
        self.pending: PendingWrites | None = None
        self.following: set[tuple[str, int]] = set()  # the legs (uuid, visit) this node is enforcing now
        self.router = Router(store, decks, settings.allow_loss) if settings.routing == "lcr" else None
        # This process, as live calls record their owner (fsbill.db.adoption); set by the Node.
        self.instance = ""
        # Legs this process followed until their socket died, unsettled: re-adoptable by it.
        self.released: set[tuple[str, int]] = set()

    def handle(self, session: EslSession) -> None:
        CallRun(self, session).run()

    def timed(self, op: str) -> _DbTimer:
        return _DbTimer(self.metrics, op)


class _DbTimer:
    def __init__(self, metrics: Metrics, op: str) -> None:
        self.metrics, self.op = metrics, op

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        self.metrics.db_seconds.labels(self.op).observe(time.perf_counter() - self.start)
        if exc_type is not None and issubclass(exc_type, DatabaseUnavailable):
            self.metrics.db_errors.labels(self.op).inc()
        return False


class CallRun:
    def __init__(self, enforcer: Enforcer, session: EslSession) -> None:
        self.e = enforcer
        self.session = session
        self.accepted_perf = getattr(session, "accepted_perf", time.perf_counter())
        self.channel: Channel = channel_from(session.session_data)
        self.control = CallControl(
            session, self.channel.uuid, enforcer.settings.cutoff, strip=nibblebill_variables(self.channel)
        )
        self.accepted: Accepted | None = None
        self.call: LiveCall | None = None  # THE record of this call while it lives
        self.unbridged_us: int | None = None
        self.hangup_cause = ""
        self.settled = False  # this visit's leg is settled; the socket only waits for the end
        self.cut_for_suspension = False

    # -- the whole call -------------------------------------------------------------------------
    @property
    def pre_answered(self) -> bool:
        """Answered before it reached the socket (an IVR, a PIN prompt, a top-up menu, or an
        earlier visit): billing starts when the bridge comes up, not at that answer."""
        return self.channel.answered_us is not None

    def run(self) -> None:
        e = self.e
        # CHANNEL_BRIDGE: when billing starts for a channel that arrived answered, and which
        # vendor's leg FreeSWITCH bridged with least-cost routing
        self.control.subscribe(bridge_events=self.pre_answered or e.router is not None)
        try:
            self.accepted = self.authorize(self.channel)
        except Rejected as rejection:
            self.reject(rejection)
            return
        e.metrics.calls.labels("accepted", "").inc()
        e.metrics.live_calls.inc()
        assert self.call is not None  # authorize() recorded the live call before accepting
        leg = (self.call.uuid, self.call.visit)
        e.following.add(leg)
        self.hold_changed(self.call.held)
        try:
            self.arm_and_bridge()
            self.follow()
        finally:
            e.following.discard(leg)
            e.metrics.live_calls.dec()

    def hold_changed(self, delta: Money) -> None:
        """The reserved gauge follows the record's hold (unreserved calls hold nothing)."""
        if delta and self.accepted is not None and self.accepted.reserved:
            self.e.metrics.hold_changed(self.accepted.account.currency, delta)

    # -- authorization ----------------------------------------------------------------------------
    def authorize(self, ch: Channel) -> Accepted:
        e, s = self.e, self.e.settings
        now_us = e.clock.now_us()
        payer = payer_of(ch, s.nibblebill_compat)
        if payer is None:
            raise Rejected("unknown_account", "no account variable and no caller id")
        try:
            with e.timed("find_account"):
                account = dbcalls.find_payer(e.store, payer)
        except DatabaseUnavailable as exc:
            return self.database_down(ch, payer, exc)
        if account is None:
            # no account: `account` stays empty (the caller id is in its own field, the log's
            # detail says which variable named whom)
            raise Rejected("unknown_account", f"{payer.source}={payer.value}")
        if account.status != "active":
            raise Rejected("closed" if account.status == "closed" else "suspended", "", account.code, account.currency)
        destination = destination_of(ch)
        try:
            number = normalize_number(destination, s.international_prefix)
        except NumberError as exc:
            raise Rejected("invalid_number", str(exc), account.code, account.currency) from None
        try:
            nibble = nibble_rate_of(ch, s.nibblebill_compat, s.nibblebill_allow_zero_rate)
        except MoneyError as exc:
            raise Rejected("no_rate", f"bad nibble_rate: {exc}", account.code, account.currency) from None
        if nibble is not None:
            rate = Rate.adhoc(nibble)
        else:
            try:
                with e.timed("load_rates"):
                    deck = e.decks.get(account.tariff_id, now_us)
            except DatabaseUnavailable as exc:
                return self.database_down(ch, payer, exc, account.code)
            found = deck.lookup(number, ch.created_us or now_us)
            if found is None:
                raise Rejected("no_rate", f"no rate for {number}", account.code, account.currency)
            rate = found
        # who picks the bridge: the dialplan's fsbill_dial_string, else least-cost routing, else
        # the route template
        dial = dial_string_of(ch, "", number)
        plan: Plan | None = None
        if not dial and e.router is not None:
            try:
                with e.timed("route"):
                    plan = e.router.plan(account.currency, rate, number, ch.created_us or now_us, now_us)
            except DatabaseUnavailable as exc:
                return self.database_down(ch, payer, exc, account.code)
            if plan.reason == VENDOR_UNAVAILABLE:
                raise Rejected(VENDOR_UNAVAILABLE, _unusable(plan), account.code, account.currency)
            if plan.reason == NO_ROUTE:
                plan = None  # no vendor has a rate for it: the route template, if any
        if not dial and plan is None:
            dial = dial_string_of(ch, s.route, number)
        if not dial and plan is None:
            raise Rejected(
                "no_route", "no fsbill_dial_string, no vendor and no route configured", account.code, account.currency
            )
        legs = plan.legs if plan is not None else ()
        try:
            with e.timed("reserve"):
                auth = dbcalls.reserve(
                    e.store,
                    uuid=ch.uuid,
                    account_id=account.id,
                    rate=rate,
                    policy=e.policy,
                    node=e.node,
                    caller=ch.caller,
                    destination=number,
                    now_us=now_us,
                    lease_until_us=now_us + s.lease_effective_s * US,
                    max_ring_s=s.max_ring_s,
                    vendor_legs=legs,
                    instance=e.instance,
                    accountcode=ch.var("accountcode"),
                    caller_id_name=ch.caller_id_name,
                    context=ch.context,
                )
        except DatabaseUnavailable as exc:
            return self.database_down(ch, payer, exc, account.code)
        if e.router is not None and (auth.refused_vendors or auth.reason == VENDOR_UNAVAILABLE):
            e.router.invalidate()  # its view of the vendors was stale: read it again for the next call
        if auth.call is None:
            raise Rejected(auth.reason, "", account.code, account.currency, auth.balance)
        self.call = auth.call
        if legs:
            legs = tuple(leg for leg in legs if leg.vendor not in auth.refused_vendors)
            dial = failover_bridge((leg.leg_uuid, leg.dial_string) for leg in legs)
        log_event(
            log,
            "authorized",
            uuid=ch.uuid,
            account=account.code,
            destination=number,
            prefix=rate.prefix,
            rate=rate.rate,
            granted_s=auth.call.granted_s,
            held=auth.call.held,
            final=auth.call.final,
            vendors=",".join(leg.vendor for leg in legs) or None,
        )
        # dial is a str here: the dialplan or route gave one, or the vendor plan's legs made one (a plan
        # without legs is not expected from the router; typing it would need a runtime check).
        return Accepted(account, payer, number, dial, True, legs)  # type: ignore[arg-type]

    def database_down(self, ch: Channel, payer: Payer, exc: Exception, code: str = "") -> Accepted:
        s = self.e.settings
        account = code or payer.value
        log_event(log, "database_unavailable", uuid=ch.uuid, account=account, error=str(exc), policy=s.on_db_error)
        if s.on_db_error != "allow":
            raise Rejected("db_error", str(exc), account)
        # The operator chose availability over the invariant for outages: the call gets a
        # short FreeSWITCH-enforced grant with nothing held, and is charged once the database
        # is back (never more than the account then has; the rest is recorded as uncollected).
        dial = dial_string_of(ch, s.route, destination_of(ch))
        if not dial:
            raise Rejected("no_route", "no dial string", account)
        self.e.metrics.calls.labels("accepted", "db_error_allowed").inc()
        now_us = self.e.clock.now_us()
        self.call = LiveCall(
            uuid=ch.uuid,
            visit=0,  # numbered when it is written, after the outage
            rate=Rate.adhoc(Money(0)),
            granted_s=s.db_error_grant_s + s.cutoff.margin_s,
            held=Money(0),
            debited=Money(0),
            created_us=ch.created_us or now_us,
            hold_until_us=0,
            final=True,
        )
        # Charged later as the call named its payer: by account code, or by caller id (looked up
        # in the caller-id map when the database is back), never the caller id taken as a code.
        return Accepted(
            dbcalls.PayerAccount(0, account, 0, "", "active"),
            Payer("code", code, payer.source) if code else payer,
            destination_of(ch),
            dial,
            False,
        )

    def reject(self, r: Rejected) -> None:
        e, ch = self.e, self.channel
        rule = e.settings.rejection(r.reason)
        e.metrics.calls.labels("rejected", r.reason).inc()
        log_event(log, "rejected", uuid=ch.uuid, account=r.account, reason=r.reason, detail=r.detail)
        cause = rule.cause
        try:
            if self.control.reject(r.reason, rule):
                cause = ""
        except (FsbillError, OSError) as exc:
            log.info("rejection of %s not delivered: %s", ch.uuid, exc)
        end = self.wait_for_end(timeout_s=30.0 if rule.prompt else 10.0)
        cause = end.cause if end is not None else cause
        cdr = dict(
            uuid=ch.uuid,
            account_code=r.account,
            node=e.node,
            caller=ch.caller,
            destination=destination_of(ch),
            currency=r.currency,
            start_us=ch.created_us or e.clock.now_us(),
            reason=r.reason,
            hangup_cause=cause,
            balance=r.balance,
            accountcode=ch.var("accountcode"),
            caller_id_name=ch.caller_id_name,
            context=ch.context,
        )
        self.write_rejection(cdr)

    def write_rejection(self, cdr: dict[str, object]) -> None:
        e = self.e
        try:
            with e.timed("write_cdr"):
                written = dbcalls.write_rejection(e.store, now_us=e.clock.now_us(), **cdr)  # type: ignore[arg-type]
            if written is not None:
                cdr_written(e.metrics, written)
        except DatabaseUnavailable:
            if e.pending is not None:
                e.pending.add_rejection(cdr)
            else:
                log_event(log, "cdr_lost", uuid=cdr["uuid"], reason=cdr["reason"])

    def wait_for_end(self, timeout_s: float) -> HangupComplete | None:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ev = self.session.next_event(left)
            if isinstance(ev, HangupComplete):
                return ev
            if isinstance(ev, SocketClosed) or ev is None:
                return None

    # -- acceptance -----------------------------------------------------------------------------------
    def arm_and_bridge(self) -> None:
        e, acc, call = self.e, self.accepted, self.call
        assert acc is not None and call is not None
        offset = cutoff_offset_s(call.granted_s, e.policy.margin_s)
        variables = {
            "fsbill_account": acc.account.code,
            "fsbill_rate": str(call.rate.rate),
            "fsbill_prefix": call.rate.prefix,
            "fsbill_max_seconds": str(offset),
            "fsbill_result": "authorized",
        }
        if not self.pre_answered:
            warning = warning_after_answer_s(call.granted_s, e.policy) if call.final else None
            self.control.arm(variables, offset, warning)
            if warning is not None:
                self.call = replace(call, warned=True)
        else:
            # FreeSWITCH never runs on-answer actions for an answered channel: arm the cut-off now, relative,
            # bounded by the ring allowance plus the grant; it is moved to its real instant when
            # the bridge comes up (on_answer via CHANNEL_BRIDGE).
            self.control.arm(variables, None, None)
            self.control.arm_from_now(e.settings.max_ring_s + offset)
        self.control.bridge(acc.dial_string)
        e.metrics.setup_seconds.observe(time.perf_counter() - self.accepted_perf)

    # -- while it lives -------------------------------------------------------------------------------------
    def follow(self) -> None:
        e = self.e
        heartbeat_real_s = e.clock.real_seconds(e.settings.heartbeat_s)
        next_beat = time.monotonic() + heartbeat_real_s
        while True:
            ev = self.session.next_event(max(0.0, next_beat - time.monotonic()))
            if ev is None:
                next_beat += heartbeat_real_s
                if not self.settled:
                    self.heartbeat()
                continue
            if self.settled:
                # Transferred out of its bridge and settled: this socket stays connected (closing
                # it would end a later visit's socket app) and sends nothing until the channel ends.
                if isinstance(ev, (HangupComplete, SocketClosed)):
                    return
                continue
            if isinstance(ev, Answered):
                if self.call is not None and self.call.answered_us is None and not self.pre_answered:
                    self.on_answer(ev.at_us)
            elif isinstance(ev, Bridged):
                if self.call is not None and self.call.answered_us is None and self.pre_answered:
                    self.on_answer(ev.at_us)
                if self.accepted is not None and self.accepted.legs and ev.peer_uuid:
                    self.on_bridged(ev.peer_uuid)
            elif isinstance(ev, Unbridged):
                if self.unbridged_us is None:
                    self.unbridged_us = ev.at_us
            elif isinstance(ev, BridgeEnded):
                self.on_bridge_done(ev)
            elif isinstance(ev, Hungup):
                self.hangup_cause = ev.cause
            elif isinstance(ev, HangupComplete):
                self.finish(ev)
                return
            elif isinstance(ev, Disconnected):
                if not ev.linger:
                    continue  # the socket closes next; SocketClosed follows
            elif isinstance(ev, SocketClosed):
                self.lost(ev.reason)
                return

    def on_answer(self, answered_us: int) -> None:
        e, acc = self.e, self.accepted
        assert self.call is not None and acc is not None
        call = answer(self.call, answered_us, e.policy)
        if self.pre_answered:
            # the bridge is up: the cut-off moves from its bound to its real instant
            warning = None
            if not call.warned and call.final and call.cutoff_us is not None:
                warning = warning_instant_us(call.cutoff_us, e.policy.warning_s, e.clock.now_us())
                if warning is not None:
                    call = replace(call, warned=True)
            assert call.cutoff_us is not None
            try:
                self.control.move_cutoff(call.cutoff_us, warning, now_us=e.clock.now_us())
            except (FsbillError, OSError) as exc:
                log_event(log, "reschedule_failed", uuid=self.channel.uuid, error=str(exc))
        self.call = call
        if call.warned:
            e.metrics.warnings.inc()
            self.log_warning(call)
        if not acc.reserved:
            return
        try:
            with e.timed("answer"):
                dbcalls.mark_answered(e.store, call, e.clock.now_us() + e.settings.lease_effective_s * US)
        except DatabaseUnavailable as exc:
            log_event(log, "answer_not_recorded", uuid=self.channel.uuid, error=str(exc))

    def on_bridged(self, leg_uuid: str) -> None:
        """FreeSWITCH bridged one vendor's leg: the other vendors' channels are free again."""
        e, call = self.e, self.call
        assert call is not None
        try:
            with e.timed("bridged"):
                carrier = dbvendors.keep_carrier(e.store, call.uuid, call.visit, leg_uuid)
        except DatabaseUnavailable as exc:  # the settlement releases them instead
            log_event(log, "vendor_release_deferred", uuid=call.uuid, error=str(exc))
            return
        log_event(log, "bridged", uuid=call.uuid, vendor=carrier or None)

    def on_bridge_done(self, ev: BridgeEnded) -> None:
        # The bridge ended: the B leg never answered, or it hung up after talking, or the
        # channel was transferred out of it. In the first two cases this socket app owns the A
        # leg and must end it (there is no dialplan `hangup_after_bridge` while the socket app
        # is in control). A transfer (the transfer cut-off, a top-up menu) hands the caller to
        # the dialplan: billing stops at the unbridge and nothing is sent that ends the call.
        answered = self.call is not None and self.call.answered_us is not None
        if ev.transferred and answered:
            self.transferred_out(self.unbridged_us or ev.at_us, dbvendors.BridgeOutcome(ev.bridged_to, ev.leg_causes))
            return
        try:
            self.control.end("" if answered else ev.failure_cause)
        except (FsbillError, OSError):
            pass

    def heartbeat(self) -> None:
        e, s, ch, acc = self.e, self.e.settings, self.channel, self.accepted
        assert acc is not None and self.call is not None
        if not acc.reserved:
            return
        now_us = e.clock.now_us()
        old = self.call
        try:
            with e.timed("heartbeat"):
                result = dbcalls.heartbeat(
                    e.store,
                    ch.uuid,
                    old.visit,
                    now_us,
                    e.policy,
                    now_us + s.lease_effective_s * US,
                    extend=old.answered_us is not None,
                    known=old,
                )
        except DatabaseUnavailable as exc:
            # FreeSWITCH still holds the cut-off; try again next heartbeat.
            log_event(log, "heartbeat_failed", uuid=ch.uuid, error=str(exc))
            return
        if result is None:
            return
        call = result.call
        self.hold_changed(call.held - old.held)
        if not result.account_active and s.on_suspend == "cut" and not self.cut_for_suspension:
            # on_suspend: cut — the account was suspended: end its calls now, through their own
            # socket (finish_grant, the default, lets them run to the end of what they hold)
            self.cut_for_suspension = True
            log_event(log, "suspended_cut", uuid=ch.uuid, visit=call.visit)
            try:
                self.control.kill(s.rejection("suspended").cause)
            except (FsbillError, OSError) as exc:
                log_event(log, "cut_failed", uuid=ch.uuid, error=str(exc))
        if call.answered_us is None or call.cutoff_us is None:
            self.call = call
            return
        cutoff_us = call.cutoff_us  # replace() below keeps it
        if result.extended:
            call = replace(call, warned=False)
            e.metrics.extensions.inc()
            log_event(log, "extended", uuid=ch.uuid, granted_s=call.granted_s, cutoff_epoch=cutoff_us // US)
        warning = None
        if call.final and not call.warned:
            warning = warning_instant_us(cutoff_us, e.policy.warning_s, now_us)
            if warning is not None:
                call = replace(call, warned=True)
                e.metrics.warnings.inc()
                self.log_warning(call)
        self.call = call
        try:
            if result.extended:
                self.control.move_cutoff(cutoff_us, warning, now_us=now_us)
            elif warning is not None:
                self.control.warn_at(warning, now_us=now_us)
        except (FsbillError, OSError) as exc:
            log_event(log, "reschedule_failed", uuid=ch.uuid, error=str(exc))

    def log_warning(self, call: LiveCall) -> None:
        assert call.cutoff_us is not None
        log_event(
            log,
            "warning_scheduled",
            uuid=call.uuid,
            visit=call.visit,
            warning_s=self.e.policy.warning_s,
            cutoff_epoch=call.cutoff_us // US,
        )

    # -- the end ------------------------------------------------------------------------------------------------
    def transferred_out(self, unbridged_us: int, bridge: dbvendors.BridgeOutcome) -> None:
        """Settle this visit at once, billed up to the unbridge: its hold is released while the
        caller is in the cut-off extension or a top-up menu (which may send the channel back
        into the socket: a new visit, a new leg)."""
        e, ch, acc, call = self.e, self.channel, self.accepted, self.call
        assert acc is not None and call is not None and call.answered_us is not None
        start, end = billing_window(call.answered_us, unbridged_us, unbridged_us)
        ours = transfer_was_cutoff(unbridged_us, call.cutoff_us)
        if ours:
            e.metrics.cutoffs.labels("transfer").inc()
        result = "cut_off" if ours else "completed"
        call_end = dbcalls.CallEnd(
            ch.uuid,
            call.visit,
            start,
            end,
            ch.created_us,
            max(0, unbridged_us - call.answered_us) // US,
            "BLIND_TRANSFER",
            result,
            e.clock.now_us(),
            bridge if acc.legs else None,
            bridge.answered_leg,
        )
        self.settled = True
        log_event(log, "transferred", uuid=ch.uuid, visit=call.visit, cutoff=ours)
        if not acc.reserved:
            if e.pending is not None:
                e.pending.add_unreserved(acc.payer, acc.destination, call_end)
            return
        self.settle(call_end)

    def finish(self, ev: HangupComplete) -> None:
        e, ch, acc, call = self.e, self.channel, self.accepted, self.call
        assert acc is not None and call is not None
        if self.pre_answered:
            answered = call.answered_us  # the bridge, not the IVR's answer
        else:
            answered = ev.answered_us if ev.answered_us else call.answered_us
        start, end = billing_window(answered, ev.end_us, self.unbridged_us)
        result = result_of(answered is not None, ev.cause or self.hangup_cause, ev.destination, e.mark)
        if result == "cut_off":
            e.metrics.cutoffs.labels(e.settings.cutoff.mode).inc()
        call_end = dbcalls.CallEnd(
            ch.uuid,
            call.visit,
            start,
            end,
            ev.start_us or ch.created_us,
            ev.billsec,
            ev.cause or self.hangup_cause,
            result,
            e.clock.now_us(),
            dbvendors.BridgeOutcome(ev.bridged_to, ev.leg_causes) if acc.legs else None,
            ev.bridged_to,
        )
        if not acc.reserved:
            if e.pending is not None:
                e.pending.add_unreserved(acc.payer, acc.destination, call_end)
            return
        self.settle(call_end)

    def settle(self, call_end: dbcalls.CallEnd) -> None:
        e, acc, call = self.e, self.accepted, self.call
        assert acc is not None and call is not None
        try:
            with e.timed("settle"):
                cdr = dbcalls.settle_call(e.store, call_end)
        except DatabaseUnavailable as exc:
            log_event(log, "settle_deferred", uuid=call_end.uuid, error=str(exc))
            if e.pending is not None:
                # The hold stays in the database (and in the reserved gauge) until it lands.
                e.pending.add_settlement(call_end, acc.account.currency, call.held)
            return
        self.hold_changed(-call.held)
        self.call = replace(call, held=Money(0))
        if cdr is not None and cdr.result != "recovered":  # a reaper settled it first, and counted it
            cdr_written(e.metrics, cdr)

    def lost(self, reason: str) -> None:
        # The socket died before CHANNEL_HANGUP_COMPLETE. FreeSWITCH keeps the call and its
        # cut-off; the lease stops being renewed and a reaper settles it once the cut-off
        # has certainly fired, charging what was provably consumed.
        log_event(log, "socket_lost", uuid=self.channel.uuid, reason=reason)
        if self.call is not None:
            self.hold_changed(-self.call.held)
            self.call = replace(self.call, held=Money(0))
            if self.accepted is not None and self.accepted.reserved:
                # with switches: configured, re-adopted through the switch link (fsbill.adoption)
                self.e.released.add((self.call.uuid, self.call.visit))


def _unusable(plan: Plan) -> str:
    return ", ".join(f"{o.vendor}: {o.reason}" for o in plan.route.options)
