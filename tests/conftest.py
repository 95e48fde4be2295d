"""Shared fixtures: real SQLite files and real PostgreSQL databases, never mocks.

PostgreSQL tests use the local server (postgresql://postgres@127.0.0.1:5432, trust auth),
each test in a database of its own. They are skipped only when no server is reachable;
CI sets FSBILL_REQUIRE_POSTGRES=1 so that a missing server fails the run instead.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402
from migrated import create_migrated, migrated_store  # noqa: E402

PG_ADMIN_URL = os.environ.get("FSBILL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_pg_state: dict = {}


def _pg_reachable() -> bool:
    if "ok" not in _pg_state:
        try:
            import psycopg

            with psycopg.connect(_conninfo(PG_ADMIN_URL), connect_timeout=3, autocommit=True):
                pass
            _pg_state["ok"] = True
        except Exception as exc:  # any failure means "not reachable" for skipping purposes
            _pg_state["ok"] = False
            _pg_state["why"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _pg_state["ok"]


def _conninfo(url: str) -> str:
    return url.replace("postgresql://", "postgresql://", 1)


def require_pg() -> None:
    if not _pg_reachable():
        if os.environ.get("FSBILL_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but unreachable: {_pg_state.get('why')}")
        pytest.skip(f"PostgreSQL unreachable: {_pg_state.get('why')}")


# Fixtures that migrate the test's database before the test runs: with one of them, the
# database starts as a copy of the migrated template right away (tests/migrated.py).
_MIGRATING_FIXTURES = ("store", "rig")


@pytest.fixture
def pg_url(request):
    """A fresh, empty PostgreSQL database for this test (migrated already when the test uses
    `store` or `rig`, which would migrate it); dropped afterwards."""
    require_pg()
    import psycopg

    name = f"fsbill_t_{uuid.uuid4().hex[:12]}"
    if any(f in request.fixturenames for f in _MIGRATING_FIXTURES):
        create_migrated(_conninfo(PG_ADMIN_URL), name)
    else:
        with psycopg.connect(_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/fsbill.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Run the test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fsbill.db"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url):
    """A migrated database (a copy of this process's migrated template, see tests/migrated.py)."""
    s = migrated_store(db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(sqlite_url):
    s = migrated_store(sqlite_url)
    yield s
    s.close()
