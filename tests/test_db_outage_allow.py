"""`on_db_error: allow`: calls let through while the database is down are charged once it is
back — the payer as the call named it, at the rate of the call's start, and what the account
cannot pay is counted as uncollected. Through the emulator over TCP, on SQLite and PostgreSQL.

The outage: on PostgreSQL a proxy between the node and the server is cut (every statement
fails); on SQLite another connection holds the write lock past the node's busy timeout (every
write fails, reads still work).
"""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime
from urllib.parse import urlparse

import gevent
import pytest
from nodes import CuttableProxy
from rig import Rig

from fsbill.core.money import Money
from fsbill.db import ledger
from fsbill.db.rates import import_deck

US = 1_000_000


class Outage:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.proxy: CuttableProxy | None = None
        self.lock: sqlite3.Connection | None = None
        self.down = False
        if kind == "postgresql":
            target = urlparse(url)
            self.proxy = CuttableProxy((target.hostname, target.port or 5432))
            self.node_url = f"postgresql://{target.username}@127.0.0.1:{self.proxy.port}{target.path}"
        else:
            self.path = url[len("sqlite:///") :]
            self.node_url = url

    def cut(self) -> None:
        self.down = True
        if self.proxy is not None:
            self.proxy.cut()
        else:
            self.lock = sqlite3.connect(self.path, isolation_level=None)
            self.lock.execute("BEGIN IMMEDIATE")  # the write lock, held until up()

    def up(self) -> None:
        if not self.down:
            return
        self.down = False
        if self.proxy is not None:
            self.proxy.up()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        self.up()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def outage(db_url):
    o = Outage("postgresql" if db_url.startswith("postgresql") else "sqlite", db_url)
    yield o
    o.close()


def allow_rig(outage: Outage, **kwargs) -> Rig:
    return Rig(
        outage.node_url,
        time_scale=20,
        on_db_error="allow",
        sqlite_busy_timeout_ms=50,
        metrics_listen="",
        **kwargs,
    )


def wait_cdrs(rig: Rig, n: int, timeout_s: float = 30.0):
    with gevent.Timeout(timeout_s, AssertionError(f"fewer than {n} CDRs")):
        while True:
            rows = [c for c in rig.cdrs() if c.reason.startswith("db_error_allowed")]
            if len(rows) >= n:
                return rows
            gevent.sleep(0.05)


def test_a_caller_id_payer_is_charged_after_the_outage(outage):
    rig = allow_rig(outage)
    try:
        rig.account("acme", "10.00", clis=["15550001111"])
        outage.cut()
        rec = rig.call(account=None, caller_id_number="15550001111", talk_s=10)
        assert rec.answered_us is not None
        outage.up()
        [cdr] = wait_cdrs(rig, 1)
        assert cdr.account == "acme" and cdr.reason == "db_error_allowed"
        assert cdr.cost > Money(0) and cdr.charged == cdr.cost
        assert rig.show("acme").balance == Money.parse("10.00") - cdr.charged
    finally:
        rig.close()


def test_a_deferred_call_is_rated_at_its_start_not_when_it_is_written(outage):
    rig = allow_rig(outage, seed_tariff=False)
    try:
        # 1.00/min until T, 5.00/min from T; the call starts before T, is written after it
        t_us = (rig.clock.now_us() // US + 40) * US
        t = datetime.fromtimestamp(t_us / US, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        deck = (
            "prefix,rate,connect_fee,initial_increment,increment,min_duration,description,"
            "effective_from,effective_until\n"
            f"49,1.00,0,1,1,0,before,,{t}\n"
            f"49,5.00,0,1,1,0,after,{t},\n"
        )
        ledger.create_tariff(rig.store, "retail", "EUR", rig.clock.now_us())
        import_deck(rig.store, "retail", io.StringIO(deck))
        rig.account("acme", "10.00")
        outage.cut()
        rec = rig.call(talk_s=10)
        assert rec.answered_us is not None and rec.ended_us < t_us
        while rig.clock.now_us() < t_us + 2 * US:
            rig.clock.sleep(2)
        outage.up()
        [cdr] = wait_cdrs(rig, 1)
        assert cdr.rate == Money.parse("1.00"), cdr
        assert cdr.charged == cdr.cost
    finally:
        rig.close()


def test_what_the_account_cannot_pay_is_counted_as_uncollected(outage):
    rig = allow_rig(outage)
    try:
        rig.account("acme", "0.05")  # 3 s at 1.00/min; the call talks 10 s
        outage.cut()
        rec = rig.call(talk_s=10)
        assert rec.answered_us is not None
        outage.up()
        [cdr] = wait_cdrs(rig, 1)
        assert cdr.charged == Money.parse("0.05") and cdr.uncollected == cdr.cost - cdr.charged
        assert cdr.uncollected > Money(0)
        counted = rig.node.metrics.registry.get_sample_value("fsbill_uncollected_amount_total", {"currency": "EUR"})
        assert counted == pytest.approx(cdr.uncollected.micros / US)
    finally:
        rig.close()
