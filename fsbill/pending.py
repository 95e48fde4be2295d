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

import gevent

from fsbill.clock import Clock
from fsbill.config import Settings
from fsbill.core.call import Payer
from fsbill.core.money import Money
from fsbill.core.rating import Rate, normalize_number
from fsbill.core.records import RejectionRecord
from fsbill.db import Store
from fsbill.db import calls as dbcalls
from fsbill.db.rates import DeckCache
from fsbill.errors import DatabaseUnavailable, NumberError
from fsbill.logs import event as log_event
from fsbill.metrics import Metrics, cdr_written

log = logging.getLogger("fsbill.pending")


@dataclass(frozen=True)
class _Settlement:
    end: dbcalls.CallEnd
    currency: str
    held: Money


@dataclass(frozen=True)
class _Rejection:
    record: RejectionRecord


@dataclass(frozen=True)
class _Unreserved:
    payer: Payer
    destination: str
    end: dbcalls.CallEnd


class PendingWrites:
    def __init__(
        self, store: Store, clock: Clock, metrics: Metrics, decks: DeckCache, settings: Settings, limit: int = 100_000
    ) -> None:
        self.store, self.clock, self.metrics, self.decks = store, clock, metrics, decks
        self.node = settings.node
        self.international_prefix = settings.international_prefix
        self.limit = limit
        self.items: deque[_Settlement | _Rejection | _Unreserved] = deque()

    def _add(self, item: _Settlement | _Rejection | _Unreserved) -> None:
        if len(self.items) >= self.limit:
            log_event(log, "pending_overflow", kind=type(item).__name__.strip("_").lower())
            return
        self.items.append(item)
        self.metrics.pending_cdrs.set(len(self.items))

    def add_settlement(self, call_end: dbcalls.CallEnd, currency: str, held: Money) -> None:
        self._add(_Settlement(call_end, currency, held))

    def add_rejection(self, record: RejectionRecord) -> None:
        self._add(_Rejection(record))

    def add_unreserved(self, payer: Payer, destination: str, call_end: dbcalls.CallEnd) -> None:
        self._add(_Unreserved(payer, destination, call_end))

    def flush(self) -> int:
        """Write what waits, oldest first, until the queue is empty or the database fails again."""
        done = 0
        while self.items:
            item = self.items[0]
            try:
                if isinstance(item, _Settlement):
                    cdr = dbcalls.settle_call(self.store, item.end)
                    self.metrics.hold_changed(item.currency, -item.held)
                    if cdr is not None and cdr.result == "recovered":
                        cdr = None  # a reaper settled it first, and counted it
                elif isinstance(item, _Rejection):
                    cdr = dbcalls.write_rejection(self.store, item.record, self.clock.now_us())
                else:
                    cdr = dbcalls.settle_unreserved(
                        self.store,
                        item.payer,
                        item.end,
                        self.node,
                        functools.partial(self._rate, destination=item.destination, started_us=item.end.start_us),
                        item.destination,
                    )
            except DatabaseUnavailable:
                break
            if cdr is not None:
                cdr_written(self.metrics, cdr)
            self.items.popleft()
            done += 1
        self.metrics.pending_cdrs.set(len(self.items))
        return done

    def _rate(self, tariff_id: int, destination: str, started_us: int) -> Rate | None:
        """The rate of the call's start, as authorize would have chosen it (effective dates and
        time bands are those of the start, not of the moment the database came back)."""
        try:
            number = normalize_number(destination, self.international_prefix)
        except NumberError:
            return None
        return self.decks.get(tariff_id, self.clock.now_us()).lookup(number, started_us)

    def run(self, interval_s: float = 1.0) -> None:
        while True:
            gevent.sleep(interval_s)
            if self.items:
                self.flush()
