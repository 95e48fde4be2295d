"""`fsbill bench switch`: the parsing and arithmetic that turn sipp's files and /proc into figures.

CI has neither FreeSWITCH nor sipp, so the live part is not run here (docs/BENCHMARKS.md has
real figures). The sample files in tests/data/sipp/ come from real runs against FreeSWITCH
1.10.12 (sipp 3.6.1): a clean 20 cps fsbill run (its -trace_rtt file whole, its -trace_stat
file cut to the header, the first and the last two rows) and a collapsed 100 cps run.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from fsbill.bench.switch import (
    CLK_TCK,
    BenchError,
    Ramp,
    channel_count,
    cpu_per_call_ms,
    highest_clean_rate,
    is_clean,
    latency_figures,
    median_socket_ratio,
    nibblebill_accounts,
    nibblebill_balance,
    nibblebill_conf,
    parse_proc_stat,
    parse_rtt_csv,
    parse_stat_csv,
    percentile,
    ramp_plan,
    render,
    sipp_command,
    stat_counts,
    switch_cpu_ratio,
    verdicts,
)
from fsbill.cli.bench import _modes, _rates

DATA = Path(__file__).parent / "data" / "sipp"


def test_stat_file_of_a_clean_run_gives_its_totals():
    counts = stat_counts(parse_stat_csv((DATA / "fsbill-20cps-stat.csv").read_text()))
    assert counts == {"created": 255, "answered": 255, "failed": 0, "open": 0, "retransmissions": 0}


def test_stat_file_of_a_collapse_counts_the_failures():
    counts = stat_counts(parse_stat_csv((DATA / "fsbill-100cps-collapse-stat.csv").read_text()))
    assert counts["created"] == 1260
    assert counts["answered"] + counts["failed"] == 1260
    assert counts["failed"] == 876 and counts["retransmissions"] == 185


def test_stat_row_is_read_by_column_name_whatever_the_order():
    text = "A;TotalCallCreated;SuccessfulCall(C);FailedCall(C);CurrentCall;\n1;10;9;1;0;\n2;20;18;1;1;\n"
    assert stat_counts(parse_stat_csv(text)) == {
        "created": 20,
        "answered": 18,
        "failed": 1,
        "open": 1,
        "retransmissions": 0,
    }


@pytest.mark.parametrize("text", ["", "TotalCallCreated;\n", "TotalCallCreated;\nx;\n"])
def test_stat_file_without_usable_data_is_a_clear_error(text):
    with pytest.raises(BenchError):
        stat_counts(parse_stat_csv(text))


def test_rtt_file_gives_each_calls_start_and_invite_to_200():
    text = (DATA / "fsbill-20cps-rtt.csv").read_text()
    samples = parse_rtt_csv(text)
    lines = [line for line in text.splitlines()[1:] if line]
    assert len(samples) == len(lines) == 255
    # Date_ms is when the response time stopped: the call started rtt earlier
    date, rtt, _ = lines[0].split(";")
    assert samples[0] == (float(date) - float(rtt), float(rtt))
    assert all(rtt >= 0 for _, rtt in samples)


def test_rtt_file_skips_other_response_times_and_rejects_garbage():
    assert parse_rtt_csv("Date_ms;response_time_ms;rtd_no\n100;4;1\n200;9;2\n300;5;true\n") == [
        (96.0, 4.0),
        (295.0, 5.0),
    ]
    with pytest.raises(BenchError, match="line 2"):
        parse_rtt_csv("Date_ms;response_time_ms;rtd_no\n1;2\n")
    with pytest.raises(BenchError, match="not numbers"):
        parse_rtt_csv("x;y;1\n")


def test_latency_is_taken_from_the_hold_only():
    samples = [(0.0, 500.0), (900.0, 400.0)] + [(1000.0 + i, float(i)) for i in range(1, 101)]
    figures = latency_figures(samples, from_ms=1000.0)
    assert figures == {"samples": 100, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert latency_figures([], 0.0) == {"samples": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


def test_latency_of_the_real_20cps_run():
    samples = parse_rtt_csv((DATA / "fsbill-20cps-rtt.csv").read_text())
    held = sorted(rtt for start, rtt in samples if start >= 5000.0)
    figures = latency_figures(samples, 5000.0)
    assert figures["samples"] == len(held)
    assert figures["p99_ms"] == held[math.ceil(0.99 * len(held)) - 1]
    assert figures["max_ms"] == held[-1]


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.75) == 3.0


def test_ramp_steps_are_whole_and_end_at_the_rate():
    plan = ramp_plan(20, 5, 10)
    assert (plan.start, plan.step, plan.ramp_s) == (5.0, 3.0, 5)
    assert plan.start + plan.ramp_s * plan.step == 20
    # 5 + 8 + 11 + 14 + 17 calls while ramping, then 20/s for 10 s: what sipp created
    assert plan.ramp_calls == 55 and plan.hold_calls == 200 and plan.calls == 255
    assert plan.hold_from_ms == 5000.0
    assert ramp_plan(150, 5, 10).calls == 25 + 50 + 75 + 100 + 125 + 1500


def test_no_ramp_when_the_rate_is_too_low_or_none_is_asked():
    assert ramp_plan(3, 5, 4) == Ramp(3, 3, 0.0, 0, 4)
    assert ramp_plan(100, 0, 1).calls == 100
    with pytest.raises(BenchError):
        ramp_plan(0, 5, 10)


def test_sipp_command_offers_the_plan_and_traces_it():
    command = sipp_command(
        "sipp",
        "127.0.0.1:5060",
        "fsbill_bench_billed",
        ramp_plan(100, 4, 10),
        call_ms=500,
        local_ip="127.0.0.1",
        local_port=5070,
        media_port=6000,
        stat_file="/tmp/x/stat.csv",
        recv_timeout_ms=10000,
    )
    text = " ".join(command)
    assert text.startswith("sipp 127.0.0.1:5060 -sn uac -s fsbill_bench_billed -i 127.0.0.1 -p 5070 -mp 6000")
    assert "-r 20 -rp 1000 -rate_increase 20 -rate_interval 1 -rate_max 100 -no_rate_quit" in text
    assert f"-d 500 -m {ramp_plan(100, 4, 10).calls} " in text
    assert "-trace_stat -stf /tmp/x/stat.csv -fd 1 -trace_rtt -rtt_freq 1" in text
    assert "-rate_increase" not in " ".join(
        sipp_command(
            "sipp",
            "h:1",
            "x",
            ramp_plan(10, 0, 1),
            call_ms=1,
            local_ip="127.0.0.1",
            local_port=1,
            media_port=2,
            stat_file="s",
            recv_timeout_ms=1,
        )
    )


def test_proc_stat_with_a_space_and_parentheses_in_the_name():
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    assert parse_proc_stat(f"42 (free (sw) itch) {' '.join(fields)}") == 300 / CLK_TCK
    real = (
        "32023 (freeswitch) S 1 32022 32022 0 -1 4194624 230001 0 0 0 4015 796 0 0 -2 -10 566 0 117071"
        " 1328553984 167210 18446744073709551615 94491227918336 94491227927609 140724275835408 0 0 0 0"
    )
    assert parse_proc_stat(real) == (4015 + 796) / CLK_TCK


def test_cpu_per_call_subtracts_the_idle_rate():
    assert cpu_per_call_ms(12.0, 0.01, 100.0, 1000) == 11.0  # (12 s - 1 s idle) / 1000 calls
    assert cpu_per_call_ms(0.5, 0.01, 100.0, 10) == 0.0  # never negative
    assert cpu_per_call_ms(1.0, 0.0, 1.0, 0) is None


def test_channel_count_reply():
    assert channel_count("\n12 total.\n\n") == 12
    assert channel_count("0 total.\n") == 0
    with pytest.raises(BenchError):
        channel_count("-ERR no reply\n")


def _run(mode, rate, *, created=100, answered=100, failed=0, p99=20.0, cpu=10.0, left=0, app=2.0):
    return {
        "mode": mode,
        "rate": rate,
        "calls": {"created": created, "answered": answered, "failed": failed, "open": 0},
        "latency": {"samples": answered, "p50_ms": 5.0, "p95_ms": p99, "p99_ms": p99, "max_ms": p99},
        "switch_cpu_ms_per_call": cpu,
        "fsbill_cpu_ms_per_call": app if mode == "fsbill" else None,
        "channels_left": left,
    }


def test_a_clean_run_has_every_call_answered_within_the_p99_limit():
    assert is_clean(_run("plain", 20), 100)
    assert not is_clean(_run("plain", 20, p99=101), 100)
    assert not is_clean(_run("plain", 20, answered=99, failed=1), 100)
    assert not is_clean(_run("plain", 20, answered=99), 100)  # one still open: not answered
    assert not is_clean(_run("plain", 20, left=3), 100)  # channels the switch kept
    assert not is_clean(_run("plain", 20, answered=0, p99=None), 100)


def test_highest_clean_rate_stops_at_the_first_unclean_rate():
    runs = [
        _run("plain", 20),
        _run("plain", 100),
        _run("plain", 150, p99=120),
        _run("plain", 200),  # clean again, but above a failed rate: not counted
        _run("fsbill", 20),
        _run("fsbill", 100, failed=3, answered=97),
    ]
    assert highest_clean_rate(runs, "plain", 100) == 100
    assert highest_clean_rate(runs, "fsbill", 100) == 20
    assert highest_clean_rate([_run("fsbill", 20, p99=500)], "fsbill", 100) is None


def test_targets_of_issue_26():
    runs = [
        _run("socket", 20, cpu=20.0),
        _run("fsbill", 20, cpu=21.0, app=1.8),
        _run("socket", 40, cpu=20.0),
        _run("fsbill", 40, cpu=23.0, app=2.0),
        _run("socket", 60, cpu=22.0),
        _run("fsbill", 60, cpu=22.0, app=1.9),
        _run("nibblebill", 60),
        _run("nibblebill", 80, failed=3, answered=97),
    ]
    clean = {m: highest_clean_rate(runs, m, 100) for m in ("socket", "nibblebill", "fsbill")}
    assert clean == {"socket": 60.0, "nibblebill": 60.0, "fsbill": 60.0}
    # ratios 1.05, 1.15, 1.0: the median of the rates where the socket app ran clean
    assert [switch_cpu_ratio(runs, r) for r in (20, 40, 60)] == [1.05, 1.15, 1.0]
    assert median_socket_ratio(runs, 100) == 1.05
    assert verdicts(runs, clean, 100) == {
        "fsbill_cpu<=2ms@20,40cps": True,
        "fsbill_clean@60cps": True,
        "clean_rate>=nibblebill": True,
        "switch_cpu<=1.1x_socket": True,
    }
    worse = [_run("socket", 20, cpu=20.0), _run("fsbill", 20, cpu=25.0, app=5.7), _run("nibblebill", 20)]
    worse += [_run("socket", 40, cpu=20.0), _run("fsbill", 40, cpu=24.0, app=1.2, p99=240), _run("nibblebill", 40)]
    clean = {m: highest_clean_rate(worse, m, 100) for m in ("socket", "nibblebill", "fsbill")}
    assert verdicts(worse, clean, 100) == {
        "fsbill_cpu<=2ms@20,40cps": False,  # one of the two rates is over
        "fsbill_clean@60cps": None,  # not tried
        "clean_rate>=nibblebill": False,  # 20 against 40
        "switch_cpu<=1.1x_socket": False,  # 1.2 and 1.25
    }
    # the socket app never ran clean: nothing to compare the switch's CPU with
    collapsed = [_run("socket", 80, cpu=29.0, failed=3, answered=97), _run("fsbill", 80, cpu=39.0)]
    assert median_socket_ratio(collapsed, 100) is None
    assert verdicts([_run("plain", 20)], {"plain": 20.0}, 100) == {
        "fsbill_cpu<=2ms@20,40cps": None,
        "fsbill_clean@60cps": None,
        "clean_rate>=nibblebill": None,
        "switch_cpu<=1.1x_socket": None,
    }
    # mod_nibblebill that held no rate at all: any clean fsbill rate is enough
    assert verdicts([], {"nibblebill": None, "fsbill": None}, 100)["clean_rate>=nibblebill"] is True
    assert (
        median_socket_ratio(
            [
                _run("socket", 20, cpu=10.0),
                _run("fsbill", 20, cpu=11.0),
                _run("socket", 40, cpu=10.0),
                _run("fsbill", 40, cpu=12.0),
            ],
            100,
        )
        == 1.15
    )


def test_nibblebill_conf_and_accounts(tmp_path):
    import sqlite3
    import xml.etree.ElementTree as ET

    db = tmp_path / "nibble.db"
    conf = ET.fromstring(nibblebill_conf(str(db)))
    params = {p.get("name"): p.get("value") for p in conf.iter("param")}
    # switch_core_sqldb.c: "sqlite://" + an absolute path is FreeSWITCH's own SQLite on that file
    assert params["odbc-dsn"] == f"sqlite://{db}" and params["odbc-dsn"].startswith("sqlite:///")
    assert (params["db_table"], params["db_column_cash"], params["db_column_account"]) == ("accounts", "cash", "id")
    assert params["global_heartbeat"] == "1"
    assert float(params["nobal_amt"]) < 0 and float(params["lowbal_amt"]) < 0  # never cuts a benchmark call
    assert nibblebill_accounts(str(db)) == 1e9
    # what mod_nibblebill then runs (mod_nibblebill.c bill_event / get_balance, its default SQL)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET cash=cash- 0.001667 WHERE id='bench'")
    assert nibblebill_balance(str(db)) == pytest.approx(1e9 - 0.001667)
    assert nibblebill_accounts(str(db)) == 1e9 and nibblebill_balance(str(db)) == 1e9  # refilled per run
    assert nibblebill_balance(str(tmp_path / "none.db")) is None
    with pytest.raises(BenchError, match="nibblebill-db"):
        nibblebill_accounts(str(tmp_path / "no" / "dir.db"))


def test_print_nibblebill_conf(capsys, tmp_path):
    from fsbill.cli.main import main

    assert main(["bench", "switch", "--print-nibblebill-conf", "--nibblebill-db", str(tmp_path / "n.db")]) == 0
    out = capsys.readouterr().out
    assert f'value="sqlite://{tmp_path / "n.db"}"' in out and "CREATE TABLE IF NOT EXISTS accounts" in out


def test_render_shows_every_run_and_the_verdicts():
    runs = [_run("socket", 60, cpu=8.0), _run("fsbill", 60, cpu=11.37, p99=811.999)]
    figures = {
        "target": "127.0.0.1:5060",
        "switch_pid": 7,
        "switch_sched": "SCHED_FIFO 1",
        "fsbill_pid": 8,
        "fsbill_sched": "SCHED_OTHER",
        "call_ms": 500,
        "ramp_s": 5,
        "hold_s": 10.0,
        "p99_limit_ms": 100.0,
        "machine": {"loadavg_before": "0.1 0.2 0.3", "loadavg_after": "1 1 1"},
        "runs": runs,
        "highest_clean_rate": {"socket": 60.0, "fsbill": None},
        "switch_cpu_ratio": {"60": 1.42},
        "targets": verdicts(runs, {"socket": 60.0, "fsbill": None}, 100),
        "nibblebill_debited": 1.25,
    }
    text = render(figures)
    assert "SCHED_FIFO 1" in text and "60 fsbill" in text
    assert "highest clean rate (fsbill): none" in text
    assert "fsbill / socket app at 60 cps: 1.42x" in text
    assert "fsbill_clean@60cps: MISSED" in text and "switch_cpu<=1.1x_socket: MISSED" in text
    assert "fsbill_cpu<=2ms@20,40cps: -" in text
    assert "mod_nibblebill debited 1.25" in text
    # latencies in whole milliseconds, as sipp measures them (its file can say 811.999); CPU exact
    fsbill_row = next(line for line in text.splitlines() if "60 fsbill" in line)
    assert fsbill_row.split()[-7:] == ["812", "812", "812", "11.37", "ms", "2", "ms"]


def test_cli_rates_and_modes():
    assert _rates("150,20,100,20") == (20.0, 100.0, 150.0)
    assert _modes("fsbill,plain") == ("plain", "fsbill")
    assert _modes("socket") == ("socket",)
    assert _modes("fsbill,nibblebill,socket") == ("socket", "nibblebill", "fsbill")
    for bad in ("0", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _rates(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        _modes("plain,nope")


def test_without_sipp_the_command_says_so_in_one_line(capsys, tmp_path):
    from fsbill.cli.main import main

    code = main(["bench", "switch", "--sipp", str(tmp_path / "no-sipp"), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "sipp not found" in err[0]


def test_worker_metrics_urls_follow_the_workers_ports():
    from fsbill.bench.switch import worker_metrics_url

    assert worker_metrics_url("http://127.0.0.1:9184/metrics", 0) == "http://127.0.0.1:9184/metrics"
    assert worker_metrics_url("http://127.0.0.1:9184/metrics", 2) == "http://127.0.0.1:9186/metrics"


def test_the_cpu_of_a_process_tree_counts_its_children():
    import subprocess
    import sys

    from fsbill.bench.switch import proc_cpu_s, tree_cpu_s

    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess,sys,time\nsubprocess.Popen([sys.executable,'-c',{burn!r}])\ntime.sleep(30)",
        ]
    )
    try:
        import time

        deadline = time.monotonic() + 20
        while tree_cpu_s(parent.pid) - proc_cpu_s(parent.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_cpu_s(parent.pid) - proc_cpu_s(parent.pid) >= 0.25
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)])
        parent.kill()
        parent.wait()


def test_a_fresh_postgresql_database_per_run_is_created_seeded_and_dropped():
    import psycopg
    from conftest import PG_ADMIN_URL, require_pg

    from fsbill.bench.calls import ACCOUNT, seed_database
    from fsbill.bench.switch import fresh_postgresql
    from fsbill.db import Store, ledger

    require_pg()
    url, drop = fresh_postgresql(PG_ADMIN_URL)
    name = url.rsplit("/", 1)[1]
    assert name.startswith("fsbill_bench_") and url != PG_ADMIN_URL
    try:
        seed_database(url, 1.0)  # what start_fsbill does with it
        store = Store(url)
        try:
            assert ledger.get_account(store, ACCOUNT).balance.micros > 0
        finally:
            store.close()
    finally:
        drop()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


def test_a_database_url_that_is_not_postgresql_is_refused_with_a_message(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "fsbill", "bench", "switch", "--fsbill-database", "sqlite:///x.db", "--sipp", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    assert "postgresql://" in out.stderr and "Traceback" not in out.stderr


def test_the_bench_dialplan_is_xml_freeswitch_can_load_with_every_mode_extension():
    """FreeSWITCH refuses the whole configuration on one bad comment (a `--` inside `<!-- -->`)."""
    import xml.etree.ElementTree as ET

    from fsbill.bench.switch import EXTENSIONS

    root = ET.parse(Path(__file__).parent.parent / "dialplan" / "fsbill_bench.xml").getroot()
    names = {e.get("name") for e in root.iter("extension")}
    assert set(EXTENSIONS.values()) <= names
    nibble = next(e for e in root.iter("extension") if e.get("name") == EXTENSIONS["nibblebill"])
    actions = [(a.get("application"), a.get("data")) for a in nibble.iter("action")]
    assert actions[0] == ("multiset", "nibble_rate=0.01 nibble_account=bench")
    assert ("nibblebill", "heartbeat 1") in actions and actions[-1][0] == "bridge"
