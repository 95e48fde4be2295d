"""`fsbill calls` (live calls and what they hold) and `fsbill cdr export`, against a node that
is really enforcing calls from the emulator."""

import csv
import io
import json

import gevent
import pytest
from rig import Rig

from fsbill.cli.main import main


@pytest.fixture
def rig(tmp_path):
    r = Rig(f"sqlite:///{tmp_path}/fsbill.db", time_scale=25)
    r.config = tmp_path / "fsbill.yaml"
    r.config.write_text(f"database: sqlite:///{tmp_path}/fsbill.db\n")
    yield r
    r.close()


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_calls_lists_what_live_calls_hold_and_cdr_export_writes_them(rig, capsys):
    rig.account("acme", "10.00")
    call = rig.switch.start_call(rig.address, rig.spec(talk_s=30))
    with gevent.Timeout(10):
        while not rig.live() or rig.live()[0].answered_us is None:
            gevent.sleep(0.05)
    code, out, _ = run(capsys, "calls", "--json", "--config", str(rig.config))
    assert code == 0
    [live] = json.loads(out)
    assert live["account"] == "acme" and live["prefix"] == "49" and live["held"] == "2.00"
    assert live["granted_s"] == 120 and live["answer_stamp"] and live["destination_number"] == "4930123456"
    assert live["visit"] == 1 and live["caller_id_number"] and live["cutoff_stamp"]
    code, out, _ = run(capsys, "calls", "--config", str(rig.config))
    assert code == 0 and "acme" in out and "HELD" in out
    call.get(timeout=30)
    rig.settled(1)
    code, out, _ = run(capsys, "calls", "--config", str(rig.config))
    assert out.strip() == "no live calls"

    code, out, _ = run(capsys, "cdr", "export", "--config", str(rig.config))
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["account"] == "acme" and row["result"] == "completed" and row["cost"] == row["charged"]
    assert 29 <= int(row["billed_s"]) <= 31
    assert row["uuid"] == call.value.uuid and row["destination_number"] == "4930123456"
    assert row["hangup_cause"] == "NORMAL_CLEARING" and row["hangup_cause_q850"] == "16"
    code, out, _ = run(capsys, "cdr", "export", "--format", "json", "--account", "acme", "--config", str(rig.config))
    [cdr] = json.loads(out)
    assert cdr["uuid"] == call.value.uuid and isinstance(cdr["cost"], str)
    code, out, err = run(
        capsys, "cdr", "export", "--account", "nobody", "--format", "json", "--config", str(rig.config)
    )
    assert code == 3 and out == "" and "no account 'nobody'" in err  # not found, as in `ledger`


def test_cdr_export_rejects_an_empty_window(rig, capsys):
    code, _, err = run(
        capsys, "cdr", "export", "--since", "2026-02-01", "--until", "2026-01-01", "--config", str(rig.config)
    )
    assert code != 0 and err.count("\n") == 1 and "--until" in err
    code, _, err = run(capsys, "cdr", "export", "--since", "yesterday", "--config", str(rig.config))
    assert code == 2 and err.count("\n") == 1 and "not an ISO 8601 date/time: 'yesterday'" in err


def test_cdr_export_speaks_freeswitch_names_in_csv_json_and_jsonl(rig, capsys):
    from fsbill import cdr_format

    rig.account("acme", "10.00")
    answered = rig.call(talk_s=7)
    rig.call(account="ghost")  # unknown payer: rejected before rating
    rig.settled(2)
    code, out, _ = run(capsys, "cdr", "export", "--config", str(rig.config))
    assert code == 0
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames) == cdr_format.FIELDS
    rows = {r["result"]: r for r in reader}
    ok, rejected = rows["completed"], rows["rejected"]
    # FreeSWITCH's own fields under FreeSWITCH's names, stamps in UTC ISO 8601
    assert ok["uuid"] == answered.uuid and ok["caller_id_number"]
    assert ok["start_stamp"].endswith("Z") and ok["answer_stamp"].endswith("Z") and ok["end_stamp"].endswith("Z")
    assert int(ok["answer_uepoch"]) // 1_000_000 == int(ok["answer_epoch"]) > 0
    assert int(ok["duration"]) == int(ok["end_epoch"]) - int(ok["start_epoch"])
    assert ok["billsec"] and 6 <= int(ok["billed_s"]) <= 8
    # the same field is never in two columns under two names
    assert not {"caller", "destination", "start", "answer", "end", "balance_before"} & set(ok)
    # rejected and unanswered: FreeSWITCH's zero answer epoch, absent cells empty
    assert rejected["answer_epoch"] == "0" and rejected["answer_stamp"] == ""
    assert rejected["prefix"] == "" and rejected["rate"] == "" and rejected["cost"] == "0.00"

    code, out, _ = run(capsys, "cdr", "export", "--format", "jsonl", "--config", str(rig.config))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    objects = [json.loads(line) for line in lines]
    assert all(tuple(o) == cdr_format.FIELDS for o in objects)
    by_result = {o["result"]: o for o in objects}
    assert by_result["rejected"]["prefix"] is None and by_result["rejected"]["answer_stamp"] is None
    assert by_result["completed"]["cost"] == ok["cost"] and isinstance(by_result["completed"]["cost"], str)
    code, out, _ = run(capsys, "cdr", "export", "--json", "--config", str(rig.config))
    assert json.loads(out) == objects


def test_rejected_cdrs_are_consistent_and_an_unknown_payer_leaves_account_empty(db_url, tmp_path, capsys):
    """Issue 12 item 11: every refused call's CDR has the same fields absent, the same way."""
    r = Rig(db_url, time_scale=25)
    config = tmp_path / "cdr.yaml"
    config.write_text(f"database: {db_url}\n")
    try:
        r.account("acme", "10.00")
        r.account("poor", "0")
        unknown = r.call(account="nobody", caller_id_number="15559990000")
        by_cli = r.call(account=None, caller_id_number="15559990001")
        no_rate = r.call(destination="8612345678")
        broke = r.call(account="poor")
        cdrs = {c.uuid: c for c in r.settled(4)}
        assert cdrs[unknown.uuid].account == "" and cdrs[by_cli.uuid].account == ""
        assert cdrs[unknown.uuid].caller == "15559990000"
        code, out, _ = run(capsys, "cdr", "export", "--format", "jsonl", "--config", str(config))
        assert code == 0
        rows = {o["uuid"]: o for o in map(json.loads, out.splitlines())}
        absent = ("prefix", "rate", "connect_fee", "initial_increment_s", "increment_s", "min_duration_s")
        absent += ("answer_stamp", "balance_when_authorized", "balance_after_settlement", "bleg_uuid")
        for rec in (unknown, by_cli, no_rate, broke):
            row = rows[rec.uuid]
            assert row["result"] == "rejected"
            assert all(row[k] is None for k in absent), {k: row[k] for k in absent}
            assert (row["cost"], row["charged"], row["uncollected"], row["billed_s"]) == ("0.00", "0.00", "0.00", 0)
            assert row["answer_epoch"] == 0 and row["reason"]
        assert rows[unknown.uuid]["account"] is None and rows[unknown.uuid]["caller_id_number"] == "15559990000"
        assert rows[no_rate.uuid]["account"] == "acme" and rows[broke.uuid]["account"] == "poor"
        code, out, _ = run(capsys, "cdr", "export", "--config", str(config))
        cells = {row["uuid"]: row for row in csv.DictReader(io.StringIO(out))}
        for rec in (unknown, by_cli, no_rate, broke):
            assert all(cells[rec.uuid][k] == "" for k in absent)
        assert cells[unknown.uuid]["account"] == ""
    finally:
        r.close()
