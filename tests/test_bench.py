"""Smoke test of `fsbill bench calls` at a tiny size: every figure is there and positive.

No timing thresholds: the numbers depend on the machine (docs/BENCHMARKS.md has real ones).
"""

from __future__ import annotations

import json

from fsbill.bench.calls import Options, render, run
from fsbill.cli.main import main


def _positive(value, name):
    assert isinstance(value, (int, float)) and value > 0, f"{name} = {value!r}"


def test_call_bench_reports_every_figure(tmp_path):
    # time_scale 10 with heartbeat_s 10: one heartbeat per live call per real second, so a
    # 2-second window sees some
    options = Options(
        setups=50,
        concurrency=20,
        rate=20.0,
        latency_s=2.0,
        live=(100,),
        time_scale=10.0,
        heartbeat_s=10,
        heartbeat_window_s=2.0,
        warmup=10,
        ramp_timeout_s=60.0,
        keep_dir=str(tmp_path / "bench"),
    )
    report = run(options)
    f = report.figures

    assert f["setups_completed"] == 50 and not f["setup_failures"]
    for name in (
        "setups_per_s",
        "setups_wall_s",
        "cpu_s_per_call",
        "emulator_cpu_s_per_call",
        "setups_server_cpu_util",
        "rss_started_bytes",
        "rss_idle_bytes",
    ):
        _positive(f[name], name)

    row = f["latency"]["20"]
    assert row["calls"] > 0 and row["completed"] == row["calls"] and not row["overloaded"]
    for name in (
        "emulator_ms_p50",
        "emulator_ms_p99",
        "emulator_ms_max",
        "server_ms_p50",
        "server_ms_p99",
        "server_cpu_s_per_call",
    ):
        _positive(row[name], f"latency {name}")
    assert row["emulator_ms_p50"] <= row["emulator_ms_p99"] <= row["emulator_ms_max"]

    live = f["live"]["100"]
    assert live["live_calls_server"] == 100
    for name in (
        "rss_bytes",
        "rss_per_call_bytes",
        "heartbeats",
        "heartbeats_per_s",
        "heartbeat_db_ms_mean",
        "heartbeat_cpu_ms",
        "server_cpu_util",
    ):
        _positive(live[name], f"live {name}")
    assert live["rss_bytes"] > f["rss_idle_bytes"]

    assert f["machine"]["nproc"] >= 1 and f["machine"]["ram_bytes"] > 0
    assert "setups_per_s>=1000" in f["targets_met"]
    text = render(report)
    for needle in (
        "sustained setups",
        "setup latency at 20/s",
        "server CPU per call",
        "100 live calls",
        "per heartbeat",
        "time_scale=10",
    ):
        assert needle in text
    assert (tmp_path / "bench" / "serve.log").exists()  # kept where asked; the server is gone
    assert report.notes == []


def test_call_bench_cli_json(tmp_path, capsys):
    code = main(
        [
            "bench",
            "calls",
            "--setups",
            "20",
            "--rate",
            "10",
            "--duration",
            "1",
            "--live",
            "",
            "--workdir",
            str(tmp_path / "b"),
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    _positive(data["setups_per_s"], "setups_per_s")
    _positive(data["latency"]["10"]["emulator_ms_p99"], "p99")
    assert "live" not in data and data["notes"] == []
