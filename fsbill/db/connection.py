"""Opening a database and running units of work on it: the one place fsbill talks SQL drivers.

Under gevent every call is a greenlet in one OS thread, so:
- SQLite: one shared connection (its calls block the hub for their duration, so
  transactions are kept short and are serialized behind a gevent lock; `BEGIN IMMEDIATE` takes
  the write lock up front so a transaction never fails half-way on a lock upgrade; WAL lets
  readers in other processes proceed; a busy timeout covers writers in other processes on the
  same host). A `BEGIN IMMEDIATE` that must wait for another process's write lock waits on a
  thread of its own (`_OffHubSqlite`), so every other call of the process goes on meanwhile.
- PostgreSQL: psycopg 3 made cooperative by `gevent.monkey.patch_all()` before it is imported
  (fsbill.cli.main patches first for the commands that serve; psycopg is imported only when a
  PostgreSQL database is opened, see `_give_peewee_psycopg`); a pool of connections, one per greenlet for the length
  of a unit of work, bounded by a gevent semaphore so greenlets queue instead of failing.
Driver errors leave this module as `DatabaseUnavailable` (the server keeps running and
retries); integrity errors pass through for callers that expect them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import gevent
import gevent.event
import gevent.lock
import gevent.threadpool

# peewee imports psycopg when it is installed (0.2 s of every start), even for a SQLite database,
# and so does playhouse.migrate (through its optional CockroachDB support, whose hstore helper
# fsbill does not use). Both are imported here as if psycopg were absent; `_give_peewee_psycopg`
# hands it to peewee when a PostgreSQL database is opened.
_PSYCOPG_LATER = "psycopg" not in sys.modules
if _PSYCOPG_LATER:
    sys.modules["psycopg"] = None  # type: ignore[assignment]  # makes `import psycopg` fail
try:
    import peewee
    from playhouse.migrations import Runner
    from playhouse.pool import PooledPostgresqlDatabase
finally:
    if _PSYCOPG_LATER:
        del sys.modules["psycopg"]

from fsbill.config import redact_url  # noqa: E402
from fsbill.db.schema import build_models  # noqa: E402
from fsbill.db.statements import Statements  # noqa: E402
from fsbill.errors import ConfigError, DatabaseUnavailable  # noqa: E402

log = logging.getLogger("fsbill.db")

_DRIVER_ERRORS = (peewee.OperationalError, peewee.InterfaceError, peewee.InternalError)


def require_driver(url: str) -> None:
    """PostgreSQL's driver is an extra (`fsbill[postgresql]`): a clear error naming it when a
    postgresql:// URL is configured without it, instead of peewee's 'psycopg2 not installed'."""
    if not url.startswith(("postgresql://", "postgres://")):
        return
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        raise ConfigError(
            "database: a postgresql:// URL needs PostgreSQL's driver, which is not installed: "
            "pip install 'fsbill[postgresql]' (psycopg 3)"
        )


def _give_peewee_psycopg() -> None:
    """What peewee's own import does when psycopg 3 is installed (peewee 4.5, its module header and
    Psycopg3Adapter), done when the first PostgreSQL database is opened."""
    if getattr(peewee, "psycopg", None) is not None:
        return
    import psycopg
    from psycopg.pq import TransactionStatus
    from psycopg.types.json import Json, Jsonb

    module: Any = peewee  # these names are not in peewee's stubs
    module.psycopg, module.TransactionStatus = psycopg, TransactionStatus
    module.Json_pg3, module.Jsonb_pg3 = Json, Jsonb
    adapter = module.Psycopg3Adapter
    adapter.txn_idle = TransactionStatus.IDLE
    adapter.txn_inerror = TransactionStatus.INERROR
    adapter.txn_unknown = TransactionStatus.UNKNOWN


def migrations_dir() -> Path:
    return Path(str(resources.files("fsbill.migrations")))


class _OffHubSqlite(peewee.SqliteDatabase):
    """SQLite whose wait for another process's write lock runs on a native thread.

    A BEGIN IMMEDIATE waits out another process's write lock (a sibling worker of
    `serve --workers N`, the CLI) for up to the busy timeout, and on the hub that wait stops
    every call of the process. So the BEGIN is tried first without waiting (busy timeout 0),
    which is what almost every transaction needs; only when the lock is taken is it repeated
    with the busy timeout on a thread of its own (sqlite3 releases the GIL while it waits), and
    the hub goes on serving events. Nothing else touches the connection meanwhile: the Store's
    gate is held for the whole unit of work.

    COMMIT stays on the hub. With it on the thread too, `fsbill bench switch` at 40-60 cps was
    no better (its fsync is 0.3-1 ms here) and each call cost 1-1.5 ms more of fsbill's CPU
    for the six thread hand-offs (docs/BENCHMARKS.md)."""

    def __init__(self, *args: Any, busy_timeout_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._waiter: gevent.threadpool.ThreadPool | None = None

    def begin(self, lock_type: str | None = None) -> None:
        lock_type = lock_type or vars(self).get("_lock_type")
        statement = f"BEGIN {lock_type}" if lock_type else "BEGIN"
        conn = self.connection()
        with _PEEWEE_ERRORS:  # sqlite3's errors as peewee's, as peewee's own begin does
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            self._off_hub(conn, statement)

    def _off_hub(self, conn: sqlite3.Connection, statement: str) -> None:
        if self._waiter is None:
            self._waiter = gevent.threadpool.ThreadPool(1)
        done = self._waiter.spawn(conn.execute, statement)
        try:
            done.get()
        except BaseException:
            # Interrupted (a greenlet killed at shutdown) while the statement still runs: its
            # outcome is the database's, so the connection is not used again before it ends.
            while not done.ready():
                with contextlib.suppress(BaseException):
                    done.wait()
            raise

    def stop_waiter(self) -> None:
        if self._waiter is not None:
            self._waiter.kill()
            self._waiter = None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF == _SQLITE_BUSY if code is not None else "database is locked" in str(exc)


_SQLITE_BUSY = 5  # sqlite3.h; the low byte of an extended result code


_PEEWEE_ERRORS = peewee.__exception_wrapper__  # type: ignore[attr-defined]  # not in the stubs


class Store:
    """A database plus its models and the discipline for using it under gevent."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 5000,
        sqlite_synchronous: str = "full",
        connect_timeout_s: int = 5,
        group_commit: bool = False,
    ) -> None:
        self.url = url
        # SQLite only (see `_grouped_transaction`): the server's store, where many calls commit at once.
        self._group_commit = group_commit and url.startswith("sqlite:")
        self._group: _Group | None = None
        parsed = urlparse(url)
        if parsed.scheme == "sqlite":
            # sqlite:///relative.db and sqlite:////abs/path.db, as SQLAlchemy writes them
            path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
            if not path:
                raise ConfigError(f"database: {url!r} has no file path (use sqlite:///fsbill.db)")
            self.kind = "sqlite"
            self.path = path
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise ConfigError(f"database: directory {parent} does not exist")
            self.db: peewee.Database = _OffHubSqlite(
                path,
                busy_timeout_ms=busy_timeout_ms,
                thread_safe=False,  # one connection shared by all greenlets, see module doc
                check_same_thread=False,
                pragmas={
                    "journal_mode": "wal",
                    "busy_timeout": busy_timeout_ms,
                    "foreign_keys": 1,
                    "synchronous": sqlite_synchronous,
                },
            )
            self._gate = gevent.lock.Semaphore(1)
        elif parsed.scheme in ("postgresql", "postgres"):
            if not parsed.path.strip("/"):
                raise ConfigError(f"database: {redact_url(url)!r} names no database")
            require_driver(url)
            _give_peewee_psycopg()
            self.kind = "postgresql"
            self.path = ""
            self.db = PooledPostgresqlDatabase(
                parsed.path.lstrip("/"),
                user=unquote(parsed.username) if parsed.username else None,
                password=unquote(parsed.password) if parsed.password else None,
                host=parsed.hostname or None,
                port=parsed.port or None,
                max_connections=pool_size,
                stale_timeout=300,
                timeout=30,
                prefer_psycopg3=True,
                connect_timeout=connect_timeout_s,
            )
            self._gate = gevent.lock.BoundedSemaphore(pool_size)
        else:
            raise ConfigError(
                f"database: unsupported URL {redact_url(url)!r} (use sqlite:///PATH or postgresql://USER@HOST:PORT/DB)"
            )
        self.models = build_models(self.db)
        self.sql = Statements(self.kind, self.db.param)

    # -- units of work -------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, *, alone: bool = False) -> Iterator[peewee.Database]:
        """One short write transaction. Raises DatabaseUnavailable on driver errors.

        Returns only once what it wrote is committed (with group commit, once its group is).
        `alone`: a long unit of work (a deck import) is not grouped: the open group is committed
        first, so the calls in it do not wait for the long one."""
        if self._group_commit and not alone:
            yield from self._grouped_transaction()
            return
        with self._gate:
            self._flush_group()
            try:
                if self.kind == "sqlite":
                    if self.db.is_closed():
                        self.db.connect()
                    with self.db.atomic("IMMEDIATE"):
                        yield self.db
                else:
                    with self.db.connection_context():
                        with self.db.atomic():
                            yield self.db
            except _DRIVER_ERRORS as exc:
                self._discard_connection()
                raise DatabaseUnavailable(f"database error: {_one_line(exc)}") from exc

    def _grouped_transaction(self) -> Iterator[peewee.Database]:
        """Group commit on SQLite: the units of work of the calls that reach the database in the
        same turn of the event loop share one transaction, and so one COMMIT and one fsync.

        The first unit of a group begins the transaction (`BEGIN IMMEDIATE`) and spawns the
        group's committer; each unit is a savepoint in it, so a unit that raises undoes only its
        own writes. The committer runs after every greenlet the loop has already made runnable
        (gevent runs a spawned greenlet in the loop's next callback round), and so commits every
        unit that finished meanwhile. Each unit returns only when its group is committed: nothing
        a caller does after a unit (bridging a call, answering an HTTP request) ever rests on a
        write that is not yet on disk. A unit that fails on a driver error raises DatabaseUnavailable
        and is undone alone; if SQLite ended the whole transaction, or the COMMIT fails, the group
        is rolled back and every unit of it raises DatabaseUnavailable. With one call at a time a
        group is one unit, committed as soon as its caller waits for it.

        Readers in this process may see a group's writes a moment before they are committed; a
        group that then fails takes them back. Other processes see them only once committed."""
        with self._gate:
            try:
                if self.db.is_closed():
                    self.db.connect()
                conn = self.db.connection()
                if self._group is None:
                    sqlite_db = self.db
                    assert isinstance(sqlite_db, _OffHubSqlite)  # group commit is SQLite's
                    sqlite_db.begin("IMMEDIATE")
                    self._group = _Group()
                    gevent.spawn(self._commit_group, self._group)
                group = self._group
                with _PEEWEE_ERRORS:
                    conn.execute("SAVEPOINT unit")
            except _DRIVER_ERRORS as exc:
                raise self._abort_group(exc) from exc
            try:
                yield self.db
            except BaseException as exc:
                # Undo this unit alone, unless SQLite already ended the whole transaction (it
                # does on some I/O errors): then the group's earlier units are gone with it.
                if not conn.in_transaction:
                    raise self._abort_group(exc) from exc
                try:
                    with _PEEWEE_ERRORS:
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                except _DRIVER_ERRORS as failed:
                    raise self._abort_group(failed) from exc
                if isinstance(exc, _DRIVER_ERRORS):
                    raise DatabaseUnavailable(f"database error: {_one_line(exc)}") from exc
                raise
            try:
                with _PEEWEE_ERRORS:
                    conn.execute("RELEASE unit")
            except _DRIVER_ERRORS as exc:
                raise self._abort_group(exc) from exc
        group.wait()

    def _commit_group(self, group: _Group) -> None:
        with self._gate:
            if self._group is group:  # else already committed (close) or rolled back (a failed unit)
                self._flush_group()

    def _abort_group(self, exc: BaseException) -> DatabaseUnavailable:
        """Roll back the open group (the gate held) after a driver error; its units all fail."""
        error = f"database error: {_one_line(exc)}"
        self._rollback_quietly()
        if self._group is not None:
            self._group.fail(error)
            self._group = None
        return DatabaseUnavailable(error)

    def _rollback_quietly(self) -> None:
        try:
            conn = self.db.connection()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except Exception:  # the connection is broken; the transaction ends with it
            log.debug("rolling back a failed group failed", exc_info=True)

    def _flush_group(self) -> None:
        """Commit the open group now (the gate held): its committer's turn, or before migrating,
        closing or a unit that runs alone."""
        group = self._group
        if group is None:
            return
        self._group = None
        try:
            with _PEEWEE_ERRORS:
                self.db.connection().execute("COMMIT")
        except Exception as exc:  # any failed COMMIT (I/O, a deferred constraint): none of it is written
            self._rollback_quietly()
            group.fail(f"database error: {_one_line(exc)}")
        else:
            group.done()

    @contextlib.contextmanager
    def reading(self) -> Iterator[peewee.Database]:
        """Read-only queries (no write lock taken on SQLite)."""
        with self._gate:
            try:
                if self.kind == "sqlite":
                    if self.db.is_closed():
                        self.db.connect()
                    yield self.db
                else:
                    with self.db.connection_context():
                        yield self.db
            except _DRIVER_ERRORS as exc:
                self._discard_connection()
                raise DatabaseUnavailable(f"database error: {_one_line(exc)}") from exc

    def _discard_connection(self) -> None:
        try:
            if self.kind == "postgresql" and not self.db.is_closed():
                pooled: PooledPostgresqlDatabase = self.db  # kind "postgresql" is always the pool
                pooled.manual_close()
        except Exception:  # the connection is already broken; nothing more to do
            log.debug("discarding a broken connection failed", exc_info=True)

    def ping(self) -> bool:
        try:
            with self.reading() as db:
                db.execute_sql("SELECT 1")
            return True
        except DatabaseUnavailable:
            return False

    def close(self) -> None:
        try:
            if self.kind == "postgresql":
                pooled: PooledPostgresqlDatabase = self.db  # kind "postgresql" is always the pool
                pooled.close_all()
            else:
                if self._group is not None:
                    with self._gate:
                        self._flush_group()
                if not self.db.is_closed():
                    self.db.close()
                if isinstance(self.db, _OffHubSqlite):
                    self.db.stop_waiter()
        except Exception:
            log.debug("closing the database failed", exc_info=True)

    # -- schema ------------------------------------------------------------------------------
    def upgrade(self) -> list[str]:
        """Apply pending migrations; returns their names. Safe to run from several nodes."""
        with self._gate:
            self._flush_group()
            if self.kind == "sqlite":
                # Processes racing on one file (serve and the CLI both auto-migrate) must not both
                # apply a migration. A transaction cannot be the lock: the SQLite migrator toggles
                # PRAGMA foreign_keys, which only takes effect outside one.
                with open(self.path + ".migrate-lock", "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    try:
                        with _connected(self.db):
                            return Runner(self.db, directory=str(migrations_dir())).up()
                    except _DRIVER_ERRORS as exc:
                        raise DatabaseUnavailable(f"database error: {_one_line(exc)}") from exc
                    finally:
                        fcntl.flock(lock, fcntl.LOCK_UN)
            try:
                with self.db.connection_context() if self.kind == "postgresql" else _connected(self.db):
                    if self.kind == "postgresql":
                        # One node migrates at a time; the others then find nothing pending.
                        self.db.execute_sql("SELECT pg_advisory_lock(84084)")
                    try:
                        return Runner(self.db, directory=str(migrations_dir())).up()
                    finally:
                        if self.kind == "postgresql":
                            self.db.execute_sql("SELECT pg_advisory_unlock(84084)")
            except _DRIVER_ERRORS as exc:
                self._discard_connection()
                raise DatabaseUnavailable(f"database error: {_one_line(exc)}") from exc

    def pending_migrations(self) -> list[str]:
        with self.reading():
            return [m.name for m in Runner(self.db, directory=str(migrations_dir())).status() if not m.applied]


class _Group:
    """The units of work sharing one SQLite transaction; they wait here for its COMMIT."""

    __slots__ = ("_event", "_error")

    def __init__(self) -> None:
        self._event = gevent.event.Event()
        self._error = ""

    def done(self) -> None:
        self._event.set()

    def fail(self, error: str) -> None:
        self._error = error
        self._event.set()

    def wait(self) -> None:
        self._event.wait()
        if self._error:
            raise DatabaseUnavailable(self._error)


@contextlib.contextmanager
def _connected(db: peewee.Database) -> Iterator[None]:
    if db.is_closed():
        db.connect()
    yield


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
