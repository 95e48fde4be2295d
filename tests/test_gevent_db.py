"""The database adapters under gevent (conftest monkey-patches first, as fsbill's entry point does):
PostgreSQL waits yield to other greenlets; SQLite serializes greenlets without deadlock or loss."""

from __future__ import annotations

import time

import gevent
import gevent.monkey
import pytest
from migrated import migrate_fresh

from fsbill.core.money import Money
from fsbill.db import Store, ledger
from fsbill.errors import InvalidInput, NotFound

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in epoch microseconds


def test_the_test_process_is_monkey_patched():
    assert gevent.monkey.is_module_patched("socket")
    assert gevent.monkey.is_module_patched("select")


def _sleep_through_store(store: Store, seconds: float) -> None:
    with store.reading() as db:
        db.execute_sql("SELECT pg_sleep(%s)", (seconds,))


@pytest.mark.timeout(60)
def test_postgres_waits_are_cooperative(pg_url):
    """5 greenlets × pg_sleep(0.5) through the Store: together in about 0.5 s, not 2.5 s.
    A driver that blocked the hub would serialize them (psycopg 3 imported after patching
    waits through gevent)."""
    store = Store(pg_url, pool_size=5)
    try:
        # open the pool's connections first so the measurement is of the queries alone
        gevent.joinall([gevent.spawn(_sleep_through_store, store, 0) for _ in range(5)], raise_error=True)
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.05)) for _ in range(8)])
        started = time.monotonic()
        jobs = [gevent.spawn(_sleep_through_store, store, 0.5) for _ in range(5)]
        gevent.joinall(jobs, timeout=10, raise_error=True)
        elapsed = time.monotonic() - started
        ticker.join(timeout=5)
        assert all(j.successful() for j in jobs)
        assert elapsed < 1.5, f"5 concurrent pg_sleep(0.5) took {elapsed:.2f} s: the driver blocks the hub"
        # and the hub kept running other greenlets while the queries waited
        assert len(ticks) == 8
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_postgres_pool_queues_more_greenlets_than_connections(pg_url):
    """More greenlets than pooled connections wait their turn instead of failing."""
    migrate_fresh(pg_url)
    store = Store(pg_url, pool_size=2)
    store.upgrade()
    try:
        ledger.create_tariff(store, "retail", "EUR", T0)
        ledger.create_account(store, "A", "retail", T0)
        jobs = [
            # a reference reused with another amount is refused: each pair races with the same amount
            gevent.spawn(ledger.topup, store, "A", Money(1_000 + i % 25), T0 + i, reference=f"r{i % 25}")
            for i in range(50)
        ]
        gevent.joinall(jobs, timeout=30, raise_error=True)
        applied = [j.value.applied for j in jobs]
        assert applied.count(True) == 25
        a = ledger.get_account(store, "A")
        assert a.balance == ledger.ledger_sum(store, "A")
        # each reference credits once, whichever of its two greenlets won it
        won = {e.reference: e.amount.micros for e in ledger.ledger(store, "A")}
        assert len(won) == 25
        assert all(v == 1_000 + int(r[1:]) for r, v in won.items())
        assert a.balance == Money(sum(won.values()))
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_sqlite_greenlets_do_not_deadlock_and_lose_nothing(sqlite_store):
    """200 greenlets topping up one SQLite account (some references repeated), interleaved
    with readers and with failing operations: every greenlet finishes and the balance is exact."""
    store = sqlite_store
    ledger.create_tariff(store, "retail", "EUR", T0)
    ledger.create_account(store, "A", "retail", T0)
    ledger.create_account(store, "B", "retail", T0)

    def top(i: int):
        gevent.sleep(0)  # let the others start: they all contend for the one connection
        return ledger.topup(store, "A" if i % 2 else "B", Money(10_000), T0 + i, reference=f"p{i % 150}")

    def read(_: int):
        a = ledger.get_account(store, "A")
        assert a.balance == ledger.ledger_sum(store, "A")
        return a

    def fail(i: int):
        try:
            if i % 2:
                ledger.topup(store, "ghost", Money(1), T0)
            else:
                ledger.adjust(store, "A", Money(-(10**12)), "too much", T0)
        except (NotFound, InvalidInput):
            return "refused"
        return "applied?!"

    jobs = []
    for i in range(200):
        jobs.append(gevent.spawn(top, i))
        if i % 10 == 0:
            jobs.append(gevent.spawn(read, i))
            jobs.append(gevent.spawn(fail, i))
    done = gevent.joinall(jobs, timeout=45, raise_error=True)
    assert len(done) == len(jobs), "some greenlets never finished (deadlock)"
    assert [j.value for j in jobs if j.value in ("refused", "applied?!")] == ["refused"] * 20

    # references p0..p149 appear on both accounts (i and i+150 have the same parity only for
    # i < 50), so: A gets odd i, B gets even i; duplicates are i and i + 150 for i < 50.
    expected = {"A": set(), "B": set()}
    for i in range(200):
        expected["A" if i % 2 else "B"].add(f"p{i % 150}")
    for code in ("A", "B"):
        a = ledger.get_account(store, code)
        assert a.balance == Money(10_000 * len(expected[code]))
        assert a.balance == ledger.ledger_sum(store, code)
        assert {e.reference for e in ledger.ledger(store, code)} == expected[code]
    # and the shared connection is usable afterwards, outside any transaction
    assert store.ping()
    assert not store.db.in_transaction()


@pytest.mark.timeout(60)
def test_sqlite_transaction_is_released_when_a_greenlet_fails_inside_it(sqlite_store):
    """An exception inside a unit of work rolls it back and frees the gate for the others."""
    store = sqlite_store
    ledger.create_tariff(store, "retail", "EUR", T0)

    def boom():
        with store.transaction() as db:
            db.execute_sql(
                "INSERT INTO tariff (name, currency, rounding_decimals, rounding_method, timezone, deck_version, created_us) "
                "VALUES ('ghost', 'EUR', 4, 'half_up', 'UTC', 0, 1)"
            )
            raise RuntimeError("boom")

    bad = gevent.spawn(boom)
    good = [gevent.spawn(ledger.create_tariff, store, f"t{i}", "EUR", T0) for i in range(5)]
    gevent.joinall([bad, *good], timeout=20)
    assert isinstance(bad.exception, RuntimeError)
    assert all(g.successful() for g in good)
    assert sorted(t.name for t in ledger.list_tariffs(store)) == ["retail", "t0", "t1", "t2", "t3", "t4"]


@pytest.mark.timeout(60)
def test_sqlite_waits_for_another_writer_without_stopping_the_hub(sqlite_store):
    """Another process's write lock (a worker, the CLI) makes BEGIN IMMEDIATE wait, as an fsync
    makes COMMIT wait: that wait runs off the hub, so every other call of the process goes on.
    On the hub, sqlite's busy handler would stop everything, including the greenlet below that
    releases the lock, and the top-up would fail 'database is locked' after the busy timeout."""
    import sqlite3

    store = sqlite_store
    ledger.create_tariff(store, "retail", "EUR", T0)
    ledger.create_account(store, "A", "retail", T0)
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other writer holds SQLite's one write lock
    try:
        # Deterministic, whatever the cores are doing: the lock is released by a greenlet of
        # this process, which can run only if the top-up's wait is off the hub; on the hub the
        # top-up would fail "database is locked" first. So the order proves it.
        order: list[str] = []

        def credit() -> None:
            order.append("waiting")
            ledger.topup(store, "A", Money(10_000), T0, reference="while-locked")
            order.append("credited")

        def release_later() -> None:
            gevent.sleep(0.3)
            order.append("released")
            other.execute("COMMIT")

        waiting = gevent.spawn(credit)
        helper = gevent.spawn(release_later)
        waiting.get(timeout=20)
        helper.get(timeout=5)
        assert order == ["waiting", "released", "credited"], "the hub stood still while SQLite waited"
        assert ledger.get_account(store, "A").balance == Money(10_000)
    finally:
        other.close()
