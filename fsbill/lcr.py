"""Least-cost routing on a node: the vendors' current state and decks in, the routing core's
decision (fsbill.core.routing.choose) out, as the legs of a failover bridge.

The vendor list (names, dial strings, limits, suspended or not, live channel counts) is read
from the database at most once per `refresh_s` of the node's clock: a slightly stale count is
safe because the channel is really taken under lock in the call's reservation
(fsbill.db.vendors.take_channels), which refuses a vendor that is full or suspended by then.
Vendor decks come from the node's DeckCache, like customer decks.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.rating import Rate
from fsbill.core.routing import Route, choose
from fsbill.db import Store
from fsbill.db import vendors as dbvendors
from fsbill.db.rates import DeckCache

US = 1_000_000


@dataclass(frozen=True)
class Plan:
    route: Route
    legs: tuple[dbvendors.Leg, ...]  # the usable vendors, in trial order

    @property
    def reason(self) -> str:
        return self.route.reason


class Router:
    def __init__(self, store: Store, decks: DeckCache, allow_loss: bool = False, refresh_s: float = 1.0) -> None:
        self.store = store
        self.decks = decks
        self.allow_loss = allow_loss
        self.refresh_us = int(refresh_s * US)
        self._vendors: list[dbvendors.VendorView] = []
        self._read_us: int | None = None

    def vendors(self, now_us: int) -> list[dbvendors.VendorView]:
        if self._read_us is None or now_us - self._read_us >= self.refresh_us:
            self._vendors = dbvendors.list_vendors(self.store, with_counts=False)
            self._read_us = now_us
        return self._vendors

    def invalidate(self) -> None:
        self._read_us = None

    def plan(self, currency: str, sell_rate: Rate, number: str, at_us: int, now_us: int) -> Plan:
        """Raises DatabaseUnavailable if the vendor list or a deck cannot be read."""
        vendors = self.vendors(now_us)
        rates = dbvendors.rates_from_decks(self.decks, vendors, number, at_us, now_us)
        route = choose([rv for _, rv in dbvendors.offers(vendors, rates)], sell_rate, currency, number, self.allow_loss)
        by_name = {v.name: v for v in vendors}
        return Plan(route, tuple(dbvendors.legs_for(route.usable, by_name, rates)))


__all__ = ["Plan", "Router"]
