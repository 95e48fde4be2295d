"""Re-adoption: taking over live calls whose outbound socket is gone, through the switch.

When a process starts, when a switch connection comes (back) up, and every heartbeat, the
node looks for live calls nobody is enforcing (fsbill.db.adoption.orphans), asks each switch
whether the channel is still up, and if it is, claims it in the database (one process wins)
and follows it over the inbound connection exactly as its outbound socket did: the same
heartbeat debits, extensions, warnings, and the settlement from its own
CHANNEL_HANGUP_COMPLETE (the call's own machine, entered by fsbill.core.lifecycle.adopt, with a FollowedSession
for a session).

The filter is set *before* asking whether the channel exists, so a hang-up in between is
never missed: either the channel is there and its end will come, or it is gone and its
CHANNEL_HANGUP_COMPLETE may already be queued (then it is settled from that), or it ended
earlier (then FreeSWITCH's posted CDR settles it, else the reaper, as before).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.lock

from fsbill.config import SwitchConfig
from fsbill.core.call import result_of
from fsbill.core.grant import US
from fsbill.db import adoption as dbadoption
from fsbill.db import recovery as dbrecovery
from fsbill.enforcer import Enforcer
from fsbill.errors import DatabaseUnavailable, FsbillError
from fsbill.esl import HangupComplete
from fsbill.esl.inbound import FollowedSession, SwitchConnection, SwitchUnavailable
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics, cdr_written

log = logging.getLogger("fsbill.adoption")


class Switches:
    """This node's inbound connections, one per configured switch."""

    def __init__(self, configs: tuple[SwitchConfig, ...], metrics: Metrics, command_timeout_s: float = 5.0) -> None:
        self.metrics = metrics
        self.on_up: Callable[[SwitchConnection], object] | None = None
        self.connections = [
            SwitchConnection(c, on_change=self._changed, on_up=self._up, command_timeout_s=command_timeout_s)
            for c in configs
        ]
        for conn in self.connections:
            metrics.switch_up.labels(conn.name).set(0)

    def _changed(self, conn: SwitchConnection) -> None:
        self.metrics.switch_up.labels(conn.name).set(1 if conn.up else 0)

    def _up(self, conn: SwitchConnection) -> None:
        if self.on_up is not None:
            self.on_up(conn)

    def start(self) -> None:
        for conn in self.connections:
            conn.start()

    def stop(self) -> None:
        for conn in self.connections:
            conn.stop()

    def wait_up(self, timeout_s: float) -> bool:
        ok = True
        for conn in self.connections:
            ok = conn.ready.wait(timeout_s) and ok
        return ok

    @property
    def all_up(self) -> bool:
        return bool(self.connections) and all(c.up for c in self.connections)

    def status(self) -> list[dict]:
        return [c.status() for c in self.connections]


class Adopter:
    def __init__(self, enforcer: Enforcer, switches: Switches, started_us: int) -> None:
        self.e = enforcer
        self.switches = switches
        self.started_us = started_us
        self._scan_lock = gevent.lock.Semaphore()
        self.adopted = 0
        self.greenlets: set[gevent.Greenlet] = set()
        switches.on_up = lambda _conn: self.scan()

    def scan(self) -> int:
        """One pass over the orphans; returns how many calls were taken over."""
        if not any(c.up for c in self.switches.connections):
            return 0
        if not self._scan_lock.acquire(blocking=False):
            return 0  # a pass is already running
        try:
            return self._scan()
        except DatabaseUnavailable as exc:
            log_event(log, "adoption_failed", error=str(exc))
            return 0
        finally:
            self._scan_lock.release()

    def _scan(self) -> int:
        e = self.e
        now = e.clock.now_us()
        found = dbadoption.orphans(
            e.store,
            now,
            node=e.node,
            instance=e.instance,
            started_us=self.started_us,
            following=frozenset(e.following),
            released=frozenset(e.released),
        )
        taken = 0
        if found:
            log.debug("adoption pass: %d live calls nobody follows", len(found))
        for orphan in found:
            if (orphan.uuid, orphan.visit) in e.following:
                continue
            if self._try(orphan):
                taken += 1
        return taken

    def _try(self, orphan: dbadoption.Orphan) -> bool:
        e = self.e
        for conn in self.switches.connections:
            if not conn.up:
                continue
            try:
                session = FollowedSession(conn, orphan.uuid)
            except (SwitchUnavailable, FsbillError):
                continue
            try:
                state = conn.channel(orphan.uuid)
            except (SwitchUnavailable, FsbillError):
                session.close()
                continue
            ended = _queued_end(session)
            if state is None and ended is None:
                session.close()
                continue  # not on this switch (or over before we looked): the next one, or the CDR/reaper
            lease = e.clock.now_us() + e.settings.lease_effective_s * US
            taken = dbadoption.claim(e.store, orphan, node=e.node, instance=e.instance, lease_until_us=lease)
            if taken is None:
                session.close()
                return False  # another process took it first
            if state is not None:
                session.session_data = state.headers
            self.adopted += 1
            e.metrics.adopted.inc()
            log_event(
                log,
                "adopted",
                uuid=orphan.uuid,
                visit=orphan.visit,
                switch=conn.name,
                from_node=orphan.node,
                from_instance=orphan.instance,
                answered=state.answered_us if state else None,
            )
            g = gevent.spawn(
                self._follow,
                session,
                taken,
                state.answered_us if state else None,
                state.bridged_us if state else None,
                ended,
            )
            self.greenlets.add(g)
            g.link(self.greenlets.discard)
            return True
        # No switch has it: it ended while nobody watched. FreeSWITCH's posted CDR settles it
        # exactly if it is here already; otherwise the reaper will, once its cut-off has surely
        # fired, and a later post corrects that.
        if self.switches.all_up:
            self._settle_from_post(orphan)
        return False

    def _settle_from_post(self, orphan: dbadoption.Orphan) -> None:
        e = self.e
        if not dbrecovery.stored_uuids(e.store, [orphan.uuid]):
            return
        lease = e.clock.now_us() + e.settings.lease_effective_s * US
        if dbadoption.claim(e.store, orphan, node=e.node, instance=e.instance, lease_until_us=lease) is None:
            return
        for applied in dbrecovery.apply_stored(
            e.store, orphan.uuid, e.clock.now_us(), self.result_of, settle_live=True
        ):
            log_event(log, "settled_from_switch_cdr", uuid=orphan.uuid, visit=applied.visit, outcome=applied.outcome)
            if applied.cdr is not None:
                cdr_written(e.metrics, applied.cdr)

    def result_of(self, answered: bool, cause: str, destination: str) -> str:
        return result_of(answered, cause, destination, self.e.mark)

    def _follow(
        self,
        session: FollowedSession,
        taken: dbadoption.Adopted,
        answered_us: int | None,
        bridged_us: int | None,
        ended: HangupComplete | None,
    ) -> None:
        try:
            self.e.adopt(session, taken, answered_us=answered_us, bridged_us=bridged_us, ended=ended)
        except Exception:
            log.exception("following adopted call %s failed", taken.call.uuid)
        finally:
            try:
                session.close()
            except FsbillError:
                pass

    def stop(self) -> None:
        for g in list(self.greenlets):
            g.kill(block=False)


def _queued_end(session: FollowedSession) -> HangupComplete | None:
    """A CHANNEL_HANGUP_COMPLETE that arrived between the filter and the question."""
    for event in list(session.events.queue):
        if isinstance(event, HangupComplete):
            return event
    return None


__all__ = ["Adopter", "Switches"]
