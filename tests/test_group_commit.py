"""Group commit on SQLite (fsbill.db.connection, `Store(group_commit=True)`, the server's store):
the units of work of calls that meet in one turn of the event loop share one COMMIT, each unit
returns only once its group is on disk, and a failing unit takes back only its own writes."""

from __future__ import annotations

import gevent
import pytest

from fsbill.db import Store
from fsbill.errors import DatabaseUnavailable


@pytest.fixture
def grouped(sqlite_url):
    plain = Store(sqlite_url)
    plain.upgrade()
    with plain.transaction() as db:
        db.execute_sql("CREATE TABLE unit_row (id INTEGER PRIMARY KEY, who TEXT NOT NULL)")
        # a deferred foreign key is checked at COMMIT: the way to make a COMMIT fail on purpose
        db.execute_sql(
            "CREATE TABLE late_check (id INTEGER PRIMARY KEY, "
            "unit_id INTEGER REFERENCES unit_row(id) DEFERRABLE INITIALLY DEFERRED)"
        )
    store = Store(sqlite_url, group_commit=True)
    commits: list[str] = []
    with store.reading() as db:  # connects
        db.connection().set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    yield store, plain, commits
    store.close()
    plain.close()


def _insert(store: Store, who: str) -> str:
    with store.transaction() as db:
        db.execute_sql("INSERT INTO unit_row (who) VALUES (?)", (who,))
    return who


def _committed(plain: Store) -> set[str]:
    """What another connection sees: only committed rows."""
    with plain.reading() as db:
        return {who for (who,) in db.execute_sql("SELECT who FROM unit_row").fetchall()}


def test_units_that_meet_share_one_commit_and_all_return_committed(grouped):
    store, plain, commits = grouped
    jobs = [gevent.spawn(_insert, store, f"call-{i}") for i in range(20)]
    gevent.joinall(jobs, raise_error=True)
    assert _committed(plain) == {f"call-{i}" for i in range(20)}
    # 20 greenlets made runnable together: one group (a second one at most, if the first
    # unit's committer got in line before the last ones)
    assert 1 <= len(commits) <= 2, commits


def test_a_unit_alone_commits_at_once(grouped):
    store, plain, commits = grouped
    for i in range(3):
        _insert(store, f"alone-{i}")
        # when the unit returns, another connection already sees it
        assert f"alone-{i}" in _committed(plain)
    assert len(commits) == 3


def test_a_unit_that_raises_undoes_only_its_own_writes(grouped):
    store, plain, commits = grouped

    def failing() -> None:
        with store.transaction() as db:
            db.execute_sql("INSERT INTO unit_row (who) VALUES ('failing')")
            raise ValueError("the caller changed its mind")

    good = [gevent.spawn(_insert, store, f"good-{i}") for i in range(3)]
    bad = gevent.spawn(failing)
    more = [gevent.spawn(_insert, store, f"more-{i}") for i in range(3)]
    gevent.joinall([*good, bad, *more])
    assert isinstance(bad.exception, ValueError)
    assert all(job.successful() for job in good + more)
    assert _committed(plain) == {f"good-{i}" for i in range(3)} | {f"more-{i}" for i in range(3)}


def test_a_driver_error_in_one_unit_fails_that_unit_alone(grouped):
    store, plain, _ = grouped

    def broken() -> None:
        with store.transaction() as db:
            db.execute_sql("INSERT INTO unit_row (who) VALUES ('broken')")
            db.execute_sql("SELECT * FROM no_such_table")

    first = gevent.spawn(_insert, store, "first")
    bad = gevent.spawn(broken)
    last = gevent.spawn(_insert, store, "last")
    gevent.joinall([first, bad, last])
    assert isinstance(bad.exception, DatabaseUnavailable)
    assert first.successful() and last.successful()
    assert _committed(plain) == {"first", "last"}


def test_a_failed_commit_fails_every_unit_of_the_group_and_writes_nothing(grouped):
    store, plain, commits = grouped

    def dangling() -> None:
        with store.transaction() as db:
            db.execute_sql("INSERT INTO late_check (unit_id) VALUES (999999)")  # no such unit_row

    jobs = [gevent.spawn(_insert, store, "a"), gevent.spawn(dangling), gevent.spawn(_insert, store, "b")]
    gevent.joinall(jobs)
    assert len(commits) == 1
    for job in jobs:
        assert isinstance(job.exception, DatabaseUnavailable), job.exception
        assert "FOREIGN KEY" in str(job.exception)
    assert _committed(plain) == set()
    # and the store goes on: the next unit starts a new group
    _insert(store, "after")
    assert _committed(plain) == {"after"}


def test_close_commits_an_open_group(sqlite_url):
    """A store closed (the server stopping) while a group waits for its committer writes it."""
    plain = Store(sqlite_url)
    plain.upgrade()
    with plain.transaction() as db:
        db.execute_sql("CREATE TABLE unit_row (id INTEGER PRIMARY KEY, who TEXT NOT NULL)")
    store = Store(sqlite_url, group_commit=True)
    waiting = gevent.spawn(_insert, store, "in-flight")
    gevent.sleep(0)  # the unit ran; its committer has not yet
    assert store._group is not None
    store.close()
    waiting.join(timeout=5)
    assert waiting.successful()
    assert _committed(plain) == {"in-flight"}
    plain.close()


def test_postgresql_is_not_grouped(pg_url):
    """PostgreSQL's pool gives each unit its own connection and transaction: nothing to group."""
    store = Store(pg_url, group_commit=True)
    try:
        with store.transaction() as db:
            assert db.execute_sql("SELECT 1").fetchone() == (1,)
        assert store._group is None
    finally:
        store.close()


def test_a_long_unit_alone_first_commits_the_open_group(grouped):
    """A deck import (`transaction(alone=True)`) is not grouped: the calls already in the open
    group are committed before it starts, so they do not wait for it."""
    store, plain, commits = grouped
    waiting = gevent.spawn(_insert, store, "call")
    gevent.sleep(0)  # the call's unit ran; its group is open, waiting for its committer
    assert store._group is not None
    with store.transaction(alone=True) as db:
        assert _committed(plain) == {"call"}  # committed before the long unit began
        db.execute_sql("INSERT INTO unit_row (who) VALUES ('import')")
    waiting.join(timeout=5)
    assert waiting.successful()
    assert _committed(plain) == {"call", "import"}
    assert len(commits) == 2
