"""migrations/ owns the schema: `fsbill db upgrade` applies it, in order, once, on SQLite and
PostgreSQL, and the models in fsbill.db.schema describe what it built."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import gevent
import pytest

from fsbill.cli.main import main
from fsbill.db import Store
from fsbill.db.connection import migrations_dir

TABLES = {
    "tariff",
    "rate",
    "account",
    "account_cli",
    "ledger_entry",
    "live_call",
    "cdr",
    "vendor",
    "live_call_vendor",
    "vendor_attempt",
    "audit_entry",
    "plan",
    "subscription",
    "charge",
    "lease",
    "api_token",
    "api_idempotency",
    "recharge",
}


def migration_names() -> list[str]:
    return sorted(p.stem for p in migrations_dir().glob("[0-9][0-9][0-9][0-9]_*.py"))


def test_migrations_are_shipped_in_order():
    names = migration_names()
    assert names[0] == "0001_initial"
    numbers = [int(n[:4]) for n in names]
    assert numbers == sorted(set(numbers)), "two migrations share a number"


def test_upgrade_creates_every_table_once(db_url):
    store = Store(db_url)
    try:
        assert store.pending_migrations() == migration_names()
        assert store.upgrade() == migration_names()
        with store.reading() as db:
            tables = set(db.get_tables())
        assert TABLES | {"schema_migration"} <= tables
        assert store.pending_migrations() == []
        # idempotent: nothing to do, nothing changed
        assert store.upgrade() == []
        assert store.upgrade() == []
        with store.reading() as db:
            assert set(db.get_tables()) == tables
            applied = [r[0] for r in db.execute_sql("SELECT name FROM schema_migration ORDER BY name").fetchall()]
        assert applied == migration_names()
    finally:
        store.close()


def test_models_match_the_migrated_schema(store):
    """Every column a model reads or writes exists in the table the migrations built."""
    with store.reading() as db:
        for model in store.models.all:
            table = model._meta.table_name
            columns = {c.name for c in db.get_columns(table)}
            wanted = {f.column_name for f in model._meta.sorted_fields}
            assert wanted <= columns, f"{table}: missing {sorted(wanted - columns)}"


def test_ledger_reference_is_unique_per_account_in_the_schema(store):
    """Idempotent top-ups across processes rest on this index, not on application checks."""
    with store.reading() as db:
        indexes = db.get_indexes("ledger_entry")
    assert any(ix.unique and list(ix.columns) == ["account_id", "reference"] for ix in indexes), indexes


def test_upgrade_survives_reopening(db_url):
    """A second process (a new Store) finds the schema current and leaves the data alone."""
    first = Store(db_url)
    first.upgrade()
    with first.transaction() as db:
        db.execute_sql(
            "INSERT INTO tariff (name, currency, rounding_decimals, rounding_method, timezone, deck_version, created_us) "
            "VALUES ('kept', 'EUR', 4, 'half_up', 'UTC', 0, 1)"
        )
    first.close()
    second = Store(db_url)
    try:
        assert second.upgrade() == []
        with second.reading() as db:
            assert db.execute_sql("SELECT name FROM tariff").fetchall() == [("kept",)]
    finally:
        second.close()


def test_db_upgrade_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: 'sqlite:///{tmp_path}/m.db'\n", encoding="utf-8")
    args = ["--config", str(config)]

    assert main(["db", "status", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [f"pending {n}" for n in migration_names()]
    assert main(["db", "upgrade", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [f"applied {n}" for n in migration_names()]
    assert main(["db", "upgrade", *args]) == 0
    assert capsys.readouterr().out.strip() == "schema is up to date"
    assert main(["db", "status", *args]) == 0
    assert capsys.readouterr().out.strip() == "schema is up to date"
    assert main(["db", "upgrade", "--json", *args]) == 0
    assert capsys.readouterr().out.strip().replace(" ", "").replace("\n", "") == '{"applied":[]}'
    store = Store(f"sqlite:///{tmp_path}/m.db")
    try:
        assert store.pending_migrations() == []
    finally:
        store.close()


def test_db_upgrade_on_unreachable_postgres_is_one_line(tmp_path, capsys):
    config = tmp_path / "fsbill.yaml"
    # port 1 on localhost: connection refused at once
    config.write_text("database: 'postgresql://fsbill@127.0.0.1:1/fsbill'\n", encoding="utf-8")
    code = main(["db", "upgrade", "--config", str(config)])
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err


def test_concurrent_upgrades_on_postgres_apply_once(pg_url):
    """Several nodes starting at once: the advisory lock lets one migrate, the rest find nothing."""
    stores = [Store(pg_url) for _ in range(3)]
    try:
        jobs = [gevent.spawn(s.upgrade) for s in stores]
        gevent.joinall(jobs, timeout=60, raise_error=True)
        results = [j.value for j in jobs]
        assert sorted(results, key=len) == [[], [], migration_names()]
        assert stores[0].pending_migrations() == []
    finally:
        for s in stores:
            s.close()


UPGRADER = textwrap.dedent(
    """
    import sys
    from fsbill.db import Store
    store = Store(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(len(store.upgrade()), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_concurrent_upgrades_from_processes(db_url, request):
    """`fsbill serve` and the operator's `fsbill topup` both migrate on start (auto_migrate):
    processes racing on a fresh database must all succeed, and apply each migration once."""
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADER, db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.strip().splitlines()[-1] if err.strip() else "no output"
        counts.append(int(out.strip()))
    assert sorted(counts) == [0, 0, len(migration_names())]
    store = Store(db_url)
    try:
        assert store.pending_migrations() == []
    finally:
        store.close()


def test_columns_added_later_have_database_defaults(db_url):
    """Plain SQL naming only 0001's columns (README's import recipe) still inserts tariffs and
    accounts after 0006 added `tariff.status` and `account.email` (NOT NULL)."""
    store = Store(db_url)
    try:
        store.upgrade()
        with store.transaction() as db:
            db.execute_sql(
                "INSERT INTO tariff (name, currency, rounding_decimals, rounding_method, timezone, deck_version, "
                "created_us) VALUES ('t', 'EUR', 4, 'half_up', 'UTC', 0, 1)"
            )
            db.execute_sql(
                "INSERT INTO account (code, tariff_id, currency, balance_micros, credit_limit_micros, reserved_micros, "
                "max_channels, live_channels, status, created_us, updated_us) "
                "SELECT 'a', id, 'EUR', 0, 0, 0, 0, 0, 'active', 1, 1 FROM tariff WHERE name = 't'"
            )
        with store.reading() as db:
            assert db.execute_sql("SELECT status FROM tariff").fetchall() == [("active",)]
            assert db.execute_sql("SELECT email, closed_us FROM account").fetchall() == [("", None)]
    finally:
        store.close()
