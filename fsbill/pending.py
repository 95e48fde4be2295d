"""Writes that met a database outage, retried in order until it returns (`on_db_error`).

Three kinds wait here: the settlement of a reserved call (its hold stays in the database and
in the reserved gauge until it lands), the CDR of a rejected call, and — with
`on_db_error: allow` — a call let through with nothing held, charged once the database is back.

Bounded: past `limit` entries new ones are logged as lost instead of growing memory. The live
calls behind them are safe meanwhile: their holds stay in the database and their cut-offs in
FreeSWITCH.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent

from fsbill.core.call import Payer
from fsbill.core.money import Money
from fsbill.core.rating import Rate, normalize_number
from fsbill.db import calls as dbcalls
from fsbill.errors import DatabaseUnavailable, NumberError
from fsbill.logs import event as log_event
from fsbill.metrics import cdr_written

if TYPE_CHECKING:
    from fsbill.enforcer import Enforcer

log = logging.getLogger("fsbill.pending")


@dataclass(frozen=True)
class _Settlement:
    end: dbcalls.CallEnd
    currency: str
    held: Money


@dataclass(frozen=True)
class _Rejection:
    cdr: dict[str, object]


@dataclass(frozen=True)
class _Unreserved:
    payer: Payer
    destination: str
    end: dbcalls.CallEnd


class PendingWrites:
    def __init__(self, enforcer: Enforcer, limit: int = 100_000) -> None:
        self.e = enforcer
        self.limit = limit
        self.items: deque[_Settlement | _Rejection | _Unreserved] = deque()

    def _add(self, item: _Settlement | _Rejection | _Unreserved) -> None:
        if len(self.items) >= self.limit:
            log_event(log, "pending_overflow", kind=type(item).__name__.strip("_").lower())
            return
        self.items.append(item)
        self.e.metrics.pending_cdrs.set(len(self.items))

    def add_settlement(self, call_end: dbcalls.CallEnd, currency: str, held: Money) -> None:
        self._add(_Settlement(call_end, currency, held))

    def add_rejection(self, cdr: dict[str, object]) -> None:
        self._add(_Rejection(cdr))

    def add_unreserved(self, payer: Payer, destination: str, call_end: dbcalls.CallEnd) -> None:
        self._add(_Unreserved(payer, destination, call_end))

    def flush(self) -> int:
        """Write what waits, oldest first, until the queue is empty or the database fails again."""
        e = self.e
        done = 0
        while self.items:
            item = self.items[0]
            try:
                if isinstance(item, _Settlement):
                    cdr = dbcalls.settle_call(e.store, item.end)
                    e.metrics.hold_changed(item.currency, -item.held)
                    if cdr is not None and cdr.result == "recovered":
                        cdr = None  # a reaper settled it first, and counted it
                elif isinstance(item, _Rejection):
                    cdr = dbcalls.write_rejection(e.store, now_us=e.clock.now_us(), **item.cdr)  # type: ignore[arg-type]
                else:
                    cdr = dbcalls.settle_unreserved(
                        e.store,
                        item.payer,
                        item.end,
                        e.node,
                        functools.partial(self._rate, destination=item.destination, started_us=item.end.start_us),
                        item.destination,
                    )
            except DatabaseUnavailable:
                break
            if cdr is not None:
                cdr_written(e.metrics, cdr)
            self.items.popleft()
            done += 1
        e.metrics.pending_cdrs.set(len(self.items))
        return done

    def _rate(self, tariff_id: int, destination: str, started_us: int) -> Rate | None:
        """The rate of the call's start, as authorize would have chosen it (effective dates and
        time bands are those of the start, not of the moment the database came back)."""
        e = self.e
        try:
            number = normalize_number(destination, e.settings.international_prefix)
        except NumberError:
            return None
        return e.decks.get(tariff_id, e.clock.now_us()).lookup(number, started_us)

    def run(self, interval_s: float = 1.0) -> None:
        while True:
            gevent.sleep(interval_s)
            if self.items:
                self.flush()
