"""A test rig: a real `fsbill serve` node (in this process, on a real database and a real TCP
port) and the FreeSWITCH emulator placing calls into it over loopback.

Both sides share one scaled clock (see fsbill.clock), so a "10 minute" call lasts seconds
while every epoch on the wire stays consistent.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable
from typing import Any

import gevent
from migrated import migrated_store

from fsbill.clock import Clock
from fsbill.config import load_settings
from fsbill.core.money import Money
from fsbill.db import calls as dbcalls
from fsbill.db import ledger
from fsbill.db.rates import import_deck
from fsbill.server import Node
from fsbill.sim import CallRecord, CallSpec, Switch

DECK = """prefix,rate,connect_fee,initial_increment,increment,min_duration,description
49,1.00,0,1,1,0,Germany
4915,1.00,0,1,1,0,Germany mobile
44,0.60,0,60,60,0,UK per minute
33,0.30,0.05,30,6,0,France 30/6 with connect fee
"""

_numbers = itertools.count(1)


class Rig:
    def __init__(
        self, database: str, *, time_scale: float = 20.0, deck: str = DECK, seed_tariff: bool = True, **settings: Any
    ) -> None:
        overrides = dict(
            database=database,
            listen="127.0.0.1:0",
            metrics_listen="",
            node="node-a",
            time_scale=time_scale,
            heartbeat_s=10,
            slice_s=120,
            route="loopback/{destination}",
            rates_refresh_s=1,
        )
        overrides.update(settings)
        self.settings = load_settings(None, overrides)
        self.clock = Clock(time_scale)
        self.store = migrated_store(self.settings.database)
        if seed_tariff:
            ledger.create_tariff(self.store, "retail", "EUR", self.clock.now_us())
            import_deck(self.store, "retail", io.StringIO(deck))
        self.node = Node(self.settings, clock=self.clock)
        self.port = self.node.start()
        self.address = ("127.0.0.1", self.port)
        self.switch = Switch(self.clock)
        self.initial: dict[str, Money] = {}

    # -- books --------------------------------------------------------------------------------
    def account(self, code: str, balance: str = "10.00", **kwargs: Any) -> str:
        ledger.create_account(self.store, code, "retail", self.clock.now_us(), **kwargs)
        if Money.parse(balance):
            ledger.topup(self.store, code, Money.parse(balance), self.clock.now_us(), reference=f"seed-{code}")
        self.initial[code] = Money.parse(balance)
        return code

    def topup(self, code: str, amount: str) -> None:
        ledger.topup(self.store, code, Money.parse(amount), self.clock.now_us())
        self.initial[code] = self.initial.get(code, Money(0)) + Money.parse(amount)

    def show(self, code: str) -> ledger.AccountView:
        return ledger.get_account(self.store, code)

    def cdrs(self, account: str | None = None) -> list[dbcalls.CdrView]:
        return dbcalls.cdrs(self.store, account=account)

    def live(self) -> list[dbcalls.LiveCallView]:
        return dbcalls.live_calls(self.store)

    # -- calls ---------------------------------------------------------------------------------
    def spec(self, account: str | None = "acme", destination: str = "4930123456", **kwargs: Any) -> CallSpec:
        variables = dict(kwargs.pop("variables", {}) or {})
        if account is not None and "nibble_account" not in variables:
            variables.setdefault("fsbill_account", account)
        kwargs.setdefault("caller_id_number", f"1555{next(_numbers):07d}")
        kwargs.setdefault("answer_after_s", 2.0)
        return CallSpec(destination_number=destination, variables=variables, **kwargs)

    def call(self, **kwargs: Any) -> CallRecord:
        return self.switch.place_call(self.address, self.spec(**kwargs))

    def calls(self, specs: Iterable[CallSpec]) -> list[CallRecord]:
        greenlets = [self.switch.start_call(self.address, spec) for spec in specs]
        gevent.joinall(greenlets, raise_error=True)
        return [g.value for g in greenlets]

    def settled(self, n: int, timeout_s: float = 10.0) -> list[dbcalls.CdrView]:
        """Wait until `n` CDRs exist (the settlement follows the emulator's last frame)."""
        with gevent.Timeout(timeout_s, AssertionError(f"fewer than {n} CDRs after {timeout_s} s")):
            while True:
                rows = self.cdrs()
                if len(rows) >= n:
                    return rows
                gevent.sleep(0.02)

    def close(self) -> None:
        self.switch.close()
        self.node.stop(grace_s=0)
        self.store.close()


def charged_total(cdrs: Iterable[dbcalls.CdrView]) -> Money:
    total = Money(0)
    for cdr in cdrs:
        total += cdr.charged
    return total
