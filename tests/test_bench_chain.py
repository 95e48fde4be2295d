"""`fsbill bench chain`'s arithmetic and parsing (fsbill/bench/chain.py), without running it:
the tree it seeds, how calls split over nodes, how the nodes' histograms add up into one
quantile, the exact per-call percentiles, the spread of several runs, and the options it
refuses (one line, no traceback). No timed assertions: its figures are in docs/BENCHMARKS.md."""

from __future__ import annotations

import json

import pytest
from cli_rig import Cli

from fsbill.bench.calls import Scrape
from fsbill.bench.chain import (
    CHAIN,
    FLAT,
    Options,
    Report,
    check,
    exact_figures,
    op_figures,
    per_node,
    price,
    render,
    spread,
    summed,
    tree,
)
from fsbill.errors import InvalidInput

PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_the_chain_puts_every_customer_under_one_top_and_flat_puts_none_under_anyone():
    seats = tree(CHAIN, 3, 4)
    assert [(s.code, s.parent, s.tariff) for s in seats[:2]] == [("L0", None, "level0"), ("L1", "L0", "level1")]
    assert {(s.parent, s.tariff) for s in seats[2:]} == {("L1", "level2")} and len(seats) == 6
    assert [(s.code, s.parent, s.tariff) for s in tree(FLAT, 3, 2)] == [
        ("C0000", None, "level0"),
        ("C0001", None, "level0"),
    ]
    assert [s.code for s in tree(CHAIN, 1, 2)] == ["C0000", "C0001"]  # one level: no reseller above
    assert [price(d) for d in range(5)] == ["0.10", "0.20", "0.30", "0.40", "0.50"]


@pytest.mark.parametrize("calls, nodes, split", [(200, 2, [100, 100]), (7, 3, [3, 2, 2]), (5, 1, [5])])
def test_calls_split_over_the_nodes_as_evenly_as_whole_calls_allow(calls, nodes, split):
    assert per_node(calls, nodes) == split and sum(split) == calls


def _scrape(op: str, buckets: dict[float, float], total_s: float) -> Scrape:
    samples = {("fsbill_db_seconds_bucket", (("le", str(le)), ("op", op))): n for le, n in buckets.items()}
    count = max(buckets.values())
    samples[("fsbill_db_seconds_count", (("op", op),))] = count
    samples[("fsbill_db_seconds_sum", (("op", op),))] = total_s
    return Scrape(samples)


def test_the_nodes_histograms_add_up_to_one_quantile_over_all_their_observations():
    inf = float("inf")
    node0 = _scrape("reserve", {0.001: 50, 0.01: 100, inf: 100}, 0.4)  # 100 reserves, 4 ms mean
    node1 = _scrape("reserve", {0.001: 0, 0.01: 60, inf: 100}, 1.6)  # 100 reserves, 16 ms mean
    empty = Scrape({})
    row = op_figures(summed([empty, empty]), summed([node0, node1]), "reserve")
    assert row["count"] == 200 and row["mean_ms"] == 10.0  # (0.4 + 1.6) s / 200
    assert row["p50_ms"] == pytest.approx(1 + 9 * (100 - 50) / 110, abs=0.01)  # inside (1 ms, 10 ms]
    assert row["p99_ms"] == 10.0  # beyond the last finite bucket: its bound, as Prometheus
    assert (row["over_ms"], row["over_share"]) == (10.0, 0.2)  # node1's 40 of all 200 took longer
    slow = op_figures(Scrape({}), _scrape("reserve", {0.001: 0, 0.01: 90, inf: 100}, 2.0), "reserve")
    assert (slow["over_ms"], slow["over_share"]) == (10.0, 0.1)  # 10 of 100 took longer than 10 ms
    assert op_figures(empty, empty, "settle") == {
        "count": 0,
        "mean_ms": None,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
    }
    # before/after: only what happened between two scrapes counts
    assert op_figures(node0, summed([node0, node1]), "reserve")["count"] == 100


def test_per_call_percentiles_are_exact_and_runs_quote_their_spread():
    row = exact_figures([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (row["p50_ms"], row["p95_ms"], row["p99_ms"], row["max_ms"]) == (50.0, 95.0, 99.0, 100.0)
    assert exact_figures([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    assert spread([3.5, None, 2.0, 4.25]) == (2.0, 4.25) and spread([None]) is None


@pytest.mark.parametrize(
    "options, says",
    [
        (Options(levels=6, db=PG), "--levels must be 1-5"),
        (Options(nodes=2, db=None), "needs --db postgresql://"),
        (Options(calls=1, nodes=2, db=PG), "must be at least --nodes"),
        (Options(modes=("deep",), db=PG), "modes must be among chain, flat"),
    ],
)
def test_options_it_cannot_run_are_refused_naming_the_one_at_fault(options, says):
    with pytest.raises(InvalidInput, match=says):
        check(options)
    assert check(Options(nodes=1, db=None)).nodes == 1  # one node on SQLite needs no server


def test_the_cli_refuses_bad_options_in_one_line(tmp_path, capsys):
    (tmp_path / "fsbill.yaml").write_text(f"database: sqlite:///{tmp_path}/x.db\n")
    cli = Cli(capsys, tmp_path / "fsbill.yaml")
    code, out, err = cli.run("bench", "chain", "--nodes", "2", "--json")
    assert code == 2 and "needs --db postgresql://" in json.loads(err)["error"]
    code, out, err = cli.run("bench", "chain", "--modes", "deep")
    assert code != 0 and "expected chain, flat or chain,flat" in err


def test_the_report_reads_as_figures_per_mode():
    row = {
        "accounts": 3, "calls": 10, "bridged": 10, "not_bridged": 0, "wall_s": 2.0, "calls_per_s": 5.0,
        "setup": exact_figures([0.01] * 10), "servers_cpu_util": 0.5, "emulator_cpu_util": 0.1, "db_ops_per_s": 20.0,
    }  # fmt: skip
    for op in ("reserve", "heartbeat", "settle"):
        row[op] = {"count": 10, "mean_ms": 2.0, "p50_ms": 1.5, "p95_ms": 3.0, "p99_ms": 4.0}
    machine = {"date": "d", "nproc": 2, "cpu": "c", "python": "3", "loadavg_before": "1", "loadavg_after": "2"}
    options = {"calls": 10, "rounds": 1, "nodes": 2, "database": "postgresql", "pool_size": 10, "talk_s": 1.0,
               "heartbeat_every_real_s": 1.0, "levels": 3}  # fmt: skip
    text = render(Report({"machine": machine, "options": options, CHAIN: row, FLAT: row, "reserve_mean_ratio": 1.0}))
    assert "chain (3 levels, every call under one top reseller)" in text
    assert "reserve   (   10): p50 1.50 ms, p95 3.00 ms, p99 4.00 ms, mean 2.00 ms" in text
    assert "reserve mean, chain / flat: 1x" in text
    assert "one reserve, heartbeat or settlement every 50.0 ms on average" in text
    row["reserve"] |= {"over_ms": 5000.0, "over_share": 0.02}
    text = render(Report({"machine": machine, "options": options, CHAIN: row}))
    assert "p50 1.50 ms, p95 3.00 ms, p99 > 5000 ms" in text  # 2 % past the last bucket: p99 is beyond it
