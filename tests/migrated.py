"""Fresh test databases made migrated by copying, not by migrating each one.

Every migration run on a new database costs 2-2.5 s on PostgreSQL and 0.3-0.6 s on SQLite, and
most tests want nothing but a migrated, empty database. So each test process migrates one
database of each kind once (its template, named after the process so that the files run side by
side by tests/parallel.py never share one), and a fresh database becomes a byte copy of it:
`CREATE DATABASE ... TEMPLATE` on PostgreSQL, a file copy on SQLite. The copy is what the
migrations would have produced (the template is migrated by `Store.upgrade()` itself, the same
migrations table included), and whoever opens it still calls `upgrade()`, which then finds
nothing pending. tests/test_migrations.py and the other tests of migrating itself use empty
databases, which `migrate_fresh` is never asked for.

Only a database nothing has touched is replaced: an SQLite file that does not exist yet, a
PostgreSQL database with no table and no other session. Anything else is left for `upgrade()`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from fsbill.db import Store

_sqlite_template: dict[int, Path] = {}  # pid -> migrated file
_pg_template: dict[int, tuple[str, str]] = {}  # pid -> (admin URL, template database name)


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def _sqlite_path(url: str) -> Path:
    return Path(unquote(url[len("sqlite:///") :]))


def _sqlite_template_file() -> Path:
    pid = os.getpid()
    if pid not in _sqlite_template:
        folder = Path(tempfile.mkdtemp(prefix=f"fsbill-template-{pid}-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.db"
        store = Store(f"sqlite:///{path}")
        try:
            store.upgrade()
        finally:
            store.close()
        # The last connection closed checkpoints the WAL into the file and removes it: the file
        # alone is the database.
        assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
        _sqlite_template[pid] = path
    return _sqlite_template[pid]


def _pg_template_name(url: str) -> str:
    import psycopg

    pid = os.getpid()
    if pid not in _pg_template:
        admin = _admin_url(url)
        name = f"fsbill_template_{pid}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            _drop_orphans(conn)
            conn.execute(f'CREATE DATABASE "{name}"')
        _pg_template[pid] = (admin, name)
        atexit.register(drop_templates)
        store = Store(url.rsplit("/", 1)[0] + f"/{name}")
        try:
            store.upgrade()
        finally:
            store.close()  # the pool's connections too: a template is copied only with no session on it
        with psycopg.connect(admin, autocommit=True) as conn:
            # Nothing else may connect to it from now on (autovacuum included), so every copy finds it idle.
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    return _pg_template[pid][1]


def _drop_orphans(conn) -> None:
    """Templates left by test processes of this machine that were killed before their exit."""
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'fsbill\\_template\\_%'").fetchall()
    for (name,) in rows:
        try:
            os.kill(int(name.split("_")[2]), 0)
            continue  # its process is alive
        except ProcessLookupError:
            pass
        except (ValueError, IndexError, PermissionError):
            continue
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def migrate_fresh(url: str) -> bool:
    """Make the database at `url` a copy of this process's migrated template if nothing has
    touched it yet (see the module doc); True if it did."""
    if url.startswith("sqlite:///"):
        path = _sqlite_path(url)
        if path.exists() or Path(f"{path}-wal").exists():
            return False
        shutil.copyfile(_sqlite_template_file(), path)
        return True
    if not url.startswith(("postgresql://", "postgres://")):
        return False
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
        ).fetchone()[0]
    if tables:
        return False
    template = _pg_template_name(url)
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        try:
            # Not FORCE: a session someone opened on it (PostgreSQL waits up to 5 s for sessions
            # that are ending, as ours above may still be) keeps it as it is.
            conn.execute(f'DROP DATABASE "{name}"')
        except psycopg.errors.ObjectInUse:
            return False
        _create_from(conn, name, template)
    return True


def create_migrated(admin_url: str, name: str) -> None:
    """Create PostgreSQL database `name` as a copy of this process's migrated template at once
    (what `migrate_fresh` makes of a new empty one, without creating, checking and dropping that)."""
    import psycopg

    template = _pg_template_name(admin_url.rsplit("/", 1)[0] + f"/{name}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _create_from(conn, name, template)


def _create_from(conn, name: str, template: str) -> None:
    import psycopg

    for attempt in range(50):
        try:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return
        except psycopg.errors.ObjectInUse:  # "source database is being accessed by other users"
            if attempt == 49:
                raise
            time.sleep(0.1)


def migrated_store(url: str) -> Store:
    """A Store on `url`, migrated (by copy when the database is fresh, see `migrate_fresh`)."""
    migrate_fresh(url)
    store = Store(url)
    store.upgrade()
    return store


def drop_templates() -> None:
    """Drop this process's PostgreSQL template (at exit)."""
    entry = _pg_template.pop(os.getpid(), None)
    if entry is None:
        return
    import psycopg

    admin, name = entry
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass
