"""The life of one billed call, from `connect` to its CDR.

This module sequences the call: it asks fsbill.core.call and fsbill.core.grant what to decide,
fsbill.db what the books say, and fsbill.esl to tell FreeSWITCH. The order of operations is
what keeps the invariant under crashes:

- money is held in the database *before* FreeSWITCH is told a call may last longer, never
  after (a crash in between leaves money held, not a call running unpaid);
- the cut-off always lives inside FreeSWITCH (`execute_on_answer` → `sched_hangup`), so if
  fsbill dies each call still ends when its grant does, and a reaper settles it later;
- the final rating uses FreeSWITCH's own microsecond answer/end times, once, and the CDR and
  the settlement are one transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import gevent

from fsbill.clock import Clock
from fsbill.config import Settings
from fsbill.core.call import (
    Channel,
    billing_window,
    cutoff_api,
    cutoff_on_answer,
    destination_of,
    dial_string_of,
    nibble_rate_of,
    payer_of,
    result_of,
    warning_api,
    warning_on_answer,
)
from fsbill.core.grant import US, GrantPolicy, cutoff_epoch_s, cutoff_offset_s, warning_epoch_s
from fsbill.core.money import Money
from fsbill.core.rating import Rate, normalize_number
from fsbill.db import Store
from fsbill.db import calls as dbcalls
from fsbill.db.rates import DeckCache
from fsbill.errors import DatabaseUnavailable, FsbillError, MoneyError, NumberError, ProtocolError
from fsbill.esl import (
    Answered,
    Disconnected,
    EslSession,
    ExecuteComplete,
    HangupComplete,
    Hungup,
    SocketClosed,
    Unbridged,
    channel_from,
)
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics

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
    rate: Rate
    destination: str
    dial_string: str
    granted_s: int
    held: Money
    final: bool
    reserved: bool  # False only for calls let through while the database was down (on_db_error: allow)


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
        self.pending: PendingWrites | None = None
        self.following: set[str] = set()  # uuids of the calls this node is enforcing right now

    def handle(self, session: EslSession) -> None:
        CallRun(self, session).run()

    def timed(self, op: str):
        return _DbTimer(self.metrics, op)


class _DbTimer:
    def __init__(self, metrics: Metrics, op: str) -> None:
        self.metrics, self.op = metrics, op

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.metrics.db_seconds.labels(self.op).observe(time.perf_counter() - self.start)
        if exc_type is not None and issubclass(exc_type, DatabaseUnavailable):
            self.metrics.db_errors.labels(self.op).inc()
        return False


class CallRun:
    def __init__(self, enforcer: Enforcer, session: EslSession) -> None:
        self.e = enforcer
        self.session = session
        self.accepted_perf = getattr(session, "accepted_perf", time.perf_counter())
        self.channel: Channel | None = None
        self.call: Accepted | None = None
        self.answered_us: int | None = None
        self.unbridged_us: int | None = None
        self.hangup_cause = ""
        self.granted_s = 0
        self.warned = False
        self.held = Money(0)  # mirrors the database, for the reserved-amount gauge only
        self.debited = Money(0)

    # -- the whole call -------------------------------------------------------------------------
    def run(self) -> None:
        e = self.e
        self.channel = channel_from(self.session.session_data)
        # One round trip: subscribe, drop the events the enforcer never reads (each one carries
        # every channel variable: half the bytes of a call), and keep the final events.
        self.session.expect_ok_many(["myevents", f"nixevent {' '.join(IGNORED_EVENTS)}", "linger"])
        try:
            self.call = self.authorize(self.channel)
        except Rejected as rejection:
            self.reject(rejection)
            return
        e.metrics.calls.labels("accepted", "").inc()
        e.metrics.live_calls.inc()
        e.following.add(self.channel.uuid)
        if self.call.reserved:
            self.held = self.call.held
            e.metrics.hold_changed(self.call.account.currency, self.call.held)
        try:
            self.arm_and_bridge()
            self.follow()
        finally:
            e.following.discard(self.channel.uuid)
            e.metrics.live_calls.dec()

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
            return self.database_down(ch, payer.value, exc)
        if account is None:
            raise Rejected("unknown_account", f"{payer.source}={payer.value}", account=payer.value)
        if account.status != "active":
            raise Rejected("suspended", "", account.code, account.currency)
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
                return self.database_down(ch, account.code, exc)
            rate = deck.lookup(number, ch.created_us or now_us)
            if rate is None:
                raise Rejected("no_rate", f"no rate for {number}", account.code, account.currency)
        dial = dial_string_of(ch, s.route, number)
        if not dial:
            raise Rejected("no_route", "no fsbill_dial_string and no route configured", account.code, account.currency)
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
                )
        except DatabaseUnavailable as exc:
            return self.database_down(ch, account.code, exc)
        if not auth.ok:
            raise Rejected(auth.reason, "", account.code, account.currency, auth.balance)
        log_event(
            log,
            "authorized",
            uuid=ch.uuid,
            account=account.code,
            destination=number,
            prefix=rate.prefix,
            rate=rate.rate,
            granted_s=auth.granted_s,
            held=auth.held,
            final=auth.final,
        )
        return Accepted(account, rate, number, dial, auth.granted_s, auth.held, auth.final, True)

    def database_down(self, ch: Channel, account: str, exc: Exception) -> Accepted:
        s = self.e.settings
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
        return Accepted(
            dbcalls.PayerAccount(0, account, 0, "", "active"),
            Rate.adhoc(Money(0)),
            destination_of(ch),
            dial,
            s.db_error_grant_s + s.cutoff.margin_s,
            Money(0),
            True,
            False,
        )

    def reject(self, r: Rejected) -> None:
        e, ch = self.e, self.channel
        rule = e.settings.rejection(r.reason)
        e.metrics.calls.labels("rejected", r.reason).inc()
        log_event(log, "rejected", uuid=ch.uuid, account=r.account, reason=r.reason, detail=r.detail)
        cause = rule.cause
        try:
            if rule.action == "respond":
                self.session.execute("set", f"fsbill_result=rejected_{r.reason}")
                self.session.execute("respond", f"{rule.code} {rule.text}")
                cause = ""
            else:
                self.session.execute("set", f"fsbill_result=rejected_{r.reason}")
                if rule.prompt:
                    self.session.execute("answer")
                    self.session.execute("playback", rule.prompt)
                self.session.execute("hangup", rule.cause)
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
        )
        self.write_cdr_later_if_needed(cdr)

    def write_cdr_later_if_needed(self, cdr: dict) -> None:
        e = self.e
        try:
            with e.timed("write_cdr"):
                written = dbcalls.write_rejection(e.store, now_us=e.clock.now_us(), **cdr)
            if written is not None:
                e.metrics.cdrs.labels("rejected").inc()
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
        e, ch, call = self.e, self.channel, self.call
        c = e.settings.cutoff
        self.granted_s = call.granted_s
        offset = cutoff_offset_s(call.granted_s, c.margin_s)
        variables = [
            f"fsbill_account={call.account.code}",
            f"fsbill_rate={call.rate.rate}",
            f"fsbill_prefix={call.rate.prefix}",
            f"fsbill_max_seconds={offset}",
            "fsbill_result=authorized",
        ]
        app, arg = cutoff_on_answer(c, offset)
        if ch.answered_us is None:
            variables.append(f"execute_on_answer_fsbill_cutoff={app} {arg}")
            if call.final and c.warning_s > 0:
                wapp, warg = warning_on_answer(c, max(1, offset - c.warning_s))
                variables.append(f"execute_on_answer_fsbill_warning={wapp} {warg}")
                self.warned = True
        self.session.execute("multiset", multiset_arg(variables))
        if ch.answered_us is not None:
            # Already answered before it reached us (an IVR answered it): enforce from its answer.
            self.on_answer(ch.answered_us)
        self.session.execute("bridge", call.dial_string)
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
                self.heartbeat()
                continue
            if isinstance(ev, Answered):
                if self.answered_us is None:
                    self.on_answer(ev.at_us)
            elif isinstance(ev, Unbridged):
                if self.unbridged_us is None:
                    self.unbridged_us = ev.at_us
            elif isinstance(ev, ExecuteComplete):
                if ev.application == "bridge":
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
        e, c = self.e, self.e.settings.cutoff
        self.answered_us = answered_us
        cutoff_us = cutoff_epoch_s(answered_us, self.granted_s, c.margin_s) * US
        if self.channel.answered_us is not None:
            epoch = cutoff_us // US
            commands = [cutoff_api(c, self.channel.uuid, epoch)]
            if self.warned is False and self.call.final and c.warning_s > 0:
                at = warning_epoch_s(epoch, c.warning_s, e.clock.now_us())
                if at is not None:
                    commands.append(warning_api(c, self.channel.uuid, at))
                    self.warned = True
            self.session.api(*commands)
        if self.warned:
            e.metrics.warnings.inc()
        if not self.call.reserved:
            return
        try:
            with e.timed("answer"):
                dbcalls.mark_answered(
                    e.store,
                    self.channel.uuid,
                    answered_us,
                    cutoff_us,
                    e.clock.now_us() + e.settings.lease_effective_s * US,
                )
        except DatabaseUnavailable as exc:
            log_event(log, "answer_not_recorded", uuid=self.channel.uuid, error=str(exc))

    def on_bridge_done(self, ev: ExecuteComplete) -> None:
        # The bridge ended: either the B leg never answered, or it hung up after talking. In
        # both cases this socket app owns the A leg and must end it (there is no dialplan
        # `hangup_after_bridge` while the socket app is in control).
        cause = ev.disposition if self.answered_us is None else "NORMAL_CLEARING"
        if not cause or cause in ("SUCCESS", "_undef_", "ANSWER"):
            cause = "NORMAL_CLEARING"
        try:
            self.session.hangup(cause)
        except (FsbillError, OSError):
            pass

    def heartbeat(self) -> None:
        e, s, ch = self.e, self.e.settings, self.channel
        if not self.call.reserved:
            return
        now_us = e.clock.now_us()
        try:
            with e.timed("heartbeat"):
                result = dbcalls.heartbeat(
                    e.store,
                    ch.uuid,
                    now_us,
                    e.policy,
                    now_us + s.lease_effective_s * US,
                    extend=self.answered_us is not None,
                )
        except DatabaseUnavailable as exc:
            # FreeSWITCH still holds the cut-off; try again next heartbeat.
            log_event(log, "heartbeat_failed", uuid=ch.uuid, error=str(exc))
            return
        if result is None:
            return
        if result.debited:
            self.held -= result.debited
            self.debited += result.debited
            e.metrics.hold_changed(self.call.account.currency, -result.debited)
        if self.answered_us is None:
            return
        c = s.cutoff
        commands: list[str] = []
        if result.extended:
            self.held += result.extra_hold
            e.metrics.hold_changed(self.call.account.currency, result.extra_hold)
            self.granted_s = result.granted_s
            epoch = cutoff_epoch_s(self.answered_us, result.granted_s, c.margin_s)
            # One write, in this order: sched_del removes every task of the call (the old
            # cut-off and any warning), then the new cut-off; FreeSWITCH runs them back to back.
            commands = [f"sched_del {ch.uuid}", cutoff_api(c, ch.uuid, epoch)]
            self.warned = False
            e.metrics.extensions.inc()
            log_event(log, "extended", uuid=ch.uuid, granted_s=result.granted_s, cutoff_epoch=epoch)
        if result.final and not self.warned and c.warning_s > 0:
            epoch = cutoff_epoch_s(self.answered_us, self.granted_s, c.margin_s)
            at = warning_epoch_s(epoch, c.warning_s, now_us)
            if at is not None:
                commands.append(warning_api(c, ch.uuid, at))
                self.warned = True
                e.metrics.warnings.inc()
        if commands:
            try:
                self.session.api(*commands)
            except (FsbillError, OSError) as exc:
                log_event(log, "reschedule_failed", uuid=ch.uuid, error=str(exc))

    # -- the end ------------------------------------------------------------------------------------------------
    def finish(self, ev: HangupComplete) -> None:
        e, ch, call = self.e, self.channel, self.call
        answered = ev.answered_us if ev.answered_us else self.answered_us
        start, end = billing_window(answered, ev.end_us, self.unbridged_us)
        result = result_of(answered is not None, ev.cause or self.hangup_cause, ev.destination, e.settings.cutoff)
        if result == "cut_off":
            e.metrics.cutoffs.labels(e.settings.cutoff.mode).inc()
        call_end = dbcalls.CallEnd(
            ch.uuid,
            start,
            end,
            ev.start_us or ch.created_us,
            ev.billsec,
            ev.cause or self.hangup_cause,
            result,
            e.clock.now_us(),
        )
        if not call.reserved:
            if e.pending is not None:
                e.pending.add_unreserved(call.account.code, call.destination, call_end)
            return
        self.settle(call_end)

    def settle(self, call_end: dbcalls.CallEnd) -> None:
        e = self.e
        try:
            with e.timed("settle"):
                cdr = dbcalls.settle_call(e.store, call_end)
        except DatabaseUnavailable as exc:
            log_event(log, "settle_deferred", uuid=call_end.uuid, error=str(exc))
            if e.pending is not None:
                e.pending.add_settlement(call_end, self.call.account.currency, self.held, self.debited)
            return
        self.record_settled(cdr)

    def record_settled(self, cdr: dbcalls.CdrView | None) -> None:
        e = self.e
        e.metrics.hold_changed(self.call.account.currency, -self.held)
        self.held = Money(0)
        if cdr is None:
            return
        if cdr.result == "recovered":
            return  # a reaper settled it first, and counted it on its own node
        # Counted once, at settlement: heartbeat debits are provisional (a debit taken just
        # after the real hangup is refunded by the settlement) and a counter cannot go down.
        e.metrics.charge(cdr.currency, cdr.charged)
        e.metrics.cdrs.labels(cdr.result).inc()
        log_event(
            log,
            "settled",
            uuid=cdr.uuid,
            account=cdr.account,
            result=cdr.result,
            billsec=cdr.billsec,
            billed_s=cdr.billed_s,
            cost=cdr.cost,
            charged=cdr.charged,
            uncollected=cdr.uncollected,
            balance_after=cdr.balance_after,
            cause=cdr.hangup_cause,
        )
        if cdr.uncollected:
            e.metrics.uncollected.labels(cdr.currency).inc(cdr.uncollected.micros / 1_000_000)

    def lost(self, reason: str) -> None:
        # The socket died before CHANNEL_HANGUP_COMPLETE. FreeSWITCH keeps the call and its
        # cut-off; the lease stops being renewed and a reaper settles it once the cut-off
        # has certainly fired, charging what was provably consumed.
        log_event(log, "socket_lost", uuid=self.channel.uuid, reason=reason)
        self.e.metrics.hold_changed(self.call.account.currency, -self.held)
        self.held = Money(0)


# What `myevents` subscribes to that a call's enforcement never reads.
IGNORED_EVENTS = (
    "CHANNEL_EXECUTE",
    "CHANNEL_PARK",
    "CHANNEL_UNPARK",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_STATE",
    "CHANNEL_BRIDGE",
    "CHANNEL_DATA",
    "CHANNEL_APPLICATION",
    "CHANNEL_CREATE",
    "CHANNEL_DESTROY",
    "CHANNEL_ORIGINATE",
    "CHANNEL_UUID",
    "CHANNEL_OUTGOING",
    "DETECTED_SPEECH",
    "DTMF",
    "NOTALK",
    "TALK",
)


def multiset_arg(assignments: list[str]) -> str:
    """mod_dptools `multiset` with a delimiter none of the values contains (`^^|a=1|b=2 3`):
    one application (one EXECUTE_COMPLETE) instead of one `set` per variable."""
    for delim in "|~!#;":
        if not any(delim in a for a in assignments):
            return f"^^{delim}" + delim.join(assignments)
    raise ProtocolError("no multiset delimiter is free for these values")


class PendingWrites:
    """Settlements and rejection CDRs that met a database outage, retried until it returns.

    Bounded: past `limit` entries new ones are logged as lost instead of growing memory. The
    live calls behind them are safe meanwhile: their holds stay in the database and their
    cut-offs in FreeSWITCH.
    """

    def __init__(self, enforcer: Enforcer, limit: int = 100_000) -> None:
        self.e = enforcer
        self.limit = limit
        self.items: list[tuple[str, object]] = []
        self.greenlet: gevent.Greenlet | None = None

    def _add(self, kind: str, item: object) -> None:
        if len(self.items) >= self.limit:
            log_event(log, "pending_overflow", kind=kind)
            return
        self.items.append((kind, item))
        self.e.metrics.pending_cdrs.set(len(self.items))

    def add_settlement(self, call_end: dbcalls.CallEnd, currency: str, held: Money, debited: Money) -> None:
        # The hold stays in the database (and in the reserved gauge) until the settlement lands.
        self._add("settle", (call_end, currency, held, debited))

    def add_rejection(self, cdr: dict) -> None:
        self._add("reject", cdr)

    def add_unreserved(self, account: str, destination: str, call_end: dbcalls.CallEnd) -> None:
        self._add("unreserved", (account, destination, call_end))

    def flush(self) -> int:
        done = 0
        while self.items:
            kind, item = self.items[0]
            try:
                if kind == "settle":
                    call_end, currency, held, debited = item
                    cdr = dbcalls.settle_call(self.e.store, call_end)
                    self.e.metrics.hold_changed(currency, -held)
                    if cdr is not None and cdr.result != "recovered":
                        self.e.metrics.cdrs.labels(cdr.result).inc()
                        self.e.metrics.charge(cdr.currency, cdr.charged)
                elif kind == "reject":
                    if dbcalls.write_rejection(self.e.store, now_us=self.e.clock.now_us(), **item) is not None:
                        self.e.metrics.cdrs.labels("rejected").inc()
                else:
                    account, destination, call_end = item
                    cdr = dbcalls.settle_unreserved(
                        self.e.store, account, call_end, self.e.node, self._rate(account, destination), destination
                    )
                    if cdr is not None:
                        self.e.metrics.cdrs.labels(cdr.result).inc()
                        self.e.metrics.charge(cdr.currency, cdr.charged)
            except DatabaseUnavailable:
                break
            self.items.pop(0)
            done += 1
        self.e.metrics.pending_cdrs.set(len(self.items))
        return done

    def _rate(self, account: str, destination: str) -> Rate | None:
        from fsbill.core.call import Payer

        payer = dbcalls.find_payer(self.e.store, Payer("code", account, "pending"))
        if payer is None:
            return None
        try:
            number = normalize_number(destination, self.e.settings.international_prefix)
        except NumberError:
            return None
        return self.e.decks.get(payer.tariff_id, self.e.clock.now_us()).lookup(number, self.e.clock.now_us())

    def run(self, interval_s: float = 1.0) -> None:
        while True:
            gevent.sleep(interval_s)
            if self.items:
                self.flush()
