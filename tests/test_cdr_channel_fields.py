"""Issue 15: the FreeSWITCH CDR fields fsbill captures from the channel — `bleg_uuid`,
`accountcode`, `caller_id_name`, `context` — reach `fsbill cdr export` (csv, json, jsonl) with
the values the emulated switch sent, for a settled call and for a refused one; and migration
0003 adds them to a database that already holds rows (and already ran 0004/0005)."""

import csv
import io
import json
import sqlite3

import pytest
from rig import Rig

from fsbill.cli.main import main
from fsbill.db import Store

FIELDS = ("bleg_uuid", "accountcode", "caller_id_name", "context")


def export(capsys, config, fmt):
    code = main(["cdr", "export", "--format", fmt, "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 0
    if fmt == "csv":
        return {r["uuid"]: r for r in csv.DictReader(io.StringIO(out))}
    if fmt == "json":
        return {o["uuid"]: o for o in json.loads(out)}
    return {o["uuid"]: o for o in map(json.loads, out.splitlines())}


@pytest.fixture
def rig(db_url, tmp_path):
    r = Rig(db_url, time_scale=25)
    r.config = tmp_path / "fsbill.yaml"
    r.config.write_text(f"database: {db_url}\n")
    yield r
    r.close()


def test_exported_cdrs_carry_the_channels_freeswitch_fields(rig, capsys):
    rig.account("acme", "10.00")
    # the payer named by FreeSWITCH's accountcode variable; the caller profile's name and context
    ok = rig.call(account=None, variables={"accountcode": "acme"}, caller_id_name="Alice Example", talk_s=5)
    refused = rig.call(
        account=None, variables={"accountcode": "ghost"}, caller_id_name="Mallory", context="from-carrier"
    )
    rig.settled(2)
    bleg = ok.variables.get("last_bridge_to", "")
    assert bleg and bleg != ok.uuid  # the emulator's B leg (switch_ivr_multi_threaded_bridge)
    expected_ok = {"bleg_uuid": bleg, "accountcode": "acme", "caller_id_name": "Alice Example", "context": "public"}
    # a refused call was never bridged: what was known at the connect is kept
    expected_refused = {"bleg_uuid": None, "accountcode": "ghost", "caller_id_name": "Mallory"}
    expected_refused["context"] = "from-carrier"
    for fmt in ("csv", "json", "jsonl"):
        rows = export(capsys, rig.config, fmt)
        got_ok = {k: rows[ok.uuid][k] for k in FIELDS}
        got_refused = {k: rows[refused.uuid][k] for k in FIELDS}
        if fmt == "csv":
            assert got_ok == expected_ok
            assert got_refused == {k: v or "" for k, v in expected_refused.items()}
        else:
            assert got_ok == expected_ok and got_refused == expected_refused
        assert rows[ok.uuid]["result"] == "completed" and rows[refused.uuid]["result"] == "rejected"
        assert rows[ok.uuid]["account"] == "acme"


def test_migration_0003_adds_the_fields_to_a_database_with_rows(tmp_path):
    """A database that ran every other migration (0004 and 0005 included) and holds CDRs and a
    live call: 0003 runs last, adds the columns with empty values, keeps the rows, and the
    store reads and writes them."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    store = Store(url)
    store.upgrade()
    store.close()
    con = sqlite3.connect(path)
    for table in ("cdr", "live_call"):
        for column in FIELDS:
            con.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    con.execute("DELETE FROM schema_migration WHERE name = '0003_cdr_channel_fields'")
    con.execute(
        "INSERT INTO cdr (uuid, visit, account_code, node, caller, destination, prefix, currency, rate_micros, "
        "connect_fee_micros, initial_increment_s, increment_s, min_duration_s, start_us, billsec, billed_s, "
        "cost_micros, charged_micros, uncollected_micros, hangup_cause, result, reason, created_us, vendor) "
        "VALUES ('old-1', 1, 'acme', 'n', '1555', '49', '49', 'EUR', 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, "
        "'NORMAL_CLEARING', 'completed', '', 1, '')"
    )
    con.commit()
    con.close()
    store = Store(url)
    try:
        assert store.pending_migrations() == ["0003_cdr_channel_fields"]
        assert store.upgrade() == ["0003_cdr_channel_fields"]
        assert store.upgrade() == []
        with store.reading() as db:
            for table in ("cdr", "live_call"):
                assert set(FIELDS) <= {c.name for c in db.get_columns(table)}
        from fsbill.db import calls as dbcalls

        [old] = dbcalls.cdrs(store)
        assert old.uuid == "old-1" and (old.bleg_uuid, old.accountcode, old.caller_id_name, old.context) == (
            "",
            "",
            "",
            "",
        )
    finally:
        store.close()


def test_migration_0003_on_postgres_with_rows(pg_url):
    store = Store(pg_url)
    store.upgrade()
    try:
        with store.transaction() as db:
            for table in ("cdr", "live_call"):
                for column in FIELDS:
                    db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
            db.execute_sql("DELETE FROM schema_migration WHERE name = '0003_cdr_channel_fields'")
            db.execute_sql(
                "INSERT INTO cdr (uuid, visit, account_code, node, caller, destination, prefix, currency, "
                "rate_micros, connect_fee_micros, initial_increment_s, increment_s, min_duration_s, start_us, "
                "billsec, billed_s, cost_micros, charged_micros, uncollected_micros, hangup_cause, result, "
                "reason, created_us, vendor) VALUES ('old-1', 1, 'acme', 'n', '1555', '49', '49', 'EUR', 0, 0, "
                "0, 0, 0, 1, 0, 0, 0, 0, 0, 'NORMAL_CLEARING', 'completed', '', 1, '')"
            )
    finally:
        store.close()
    store = Store(pg_url)
    try:
        assert store.upgrade() == ["0003_cdr_channel_fields"]
        from fsbill.db import calls as dbcalls

        [old] = dbcalls.cdrs(store)
        assert old.uuid == "old-1" and old.context == "" and old.bleg_uuid == ""
    finally:
        store.close()
