"""`fsbill rates ...` and `fsbill bench rating`, run in-process against a temporary SQLite file."""

import json

import pytest

from fsbill.cli.main import main
from fsbill.db import Store, ledger

DECK = (
    "prefix,rate,connect_fee,initial_increment,increment,description\n"
    "49,1.00,0,1,1,Germany\n"
    "4915,0.60,0.10,30,6,Germany mobile\n"
)


@pytest.fixture
def env(tmp_path, monkeypatch):
    db = tmp_path / "fsbill.db"
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: sqlite:///{db}\n", encoding="utf-8")
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    deck = tmp_path / "deck.csv"
    deck.write_text(DECK, encoding="utf-8")

    def run(*argv):
        return main([*argv[:2], "--config", str(config), *argv[2:]] if len(argv) >= 2 else list(argv))

    assert run("tariff", "add", "retail", "--currency", "EUR") == 0
    return run, tmp_path, f"sqlite:///{db}"


def rate_count(url):
    store = Store(url)
    try:
        return ledger.get_tariff(store, "retail").rate_count
    finally:
        store.close()


def test_import_then_lookup(env, capsys):
    run, tmp, url = env
    capsys.readouterr()
    assert run("rates", "import", "retail", str(tmp / "deck.csv")) == 0
    assert capsys.readouterr().out.strip() == "imported 2 rates into retail"
    assert rate_count(url) == 2
    assert run("rates", "lookup", "retail", "+49 151 1234567") == 0
    out = capsys.readouterr().out
    assert "prefix 4915" in out and "0.60/min" in out and "30/6" in out and "Germany mobile" in out
    assert run("rates", "lookup", "retail", "0049301234", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prefix"] == "49" and data["rate"] == "1.00" and data["number"] == "49301234"


def test_import_json_and_replace(env, capsys):
    run, tmp, url = env
    run("rates", "import", "retail", str(tmp / "deck.csv"))
    capsys.readouterr()
    other = tmp / "other.csv"
    other.write_text("prefix,rate\n33,0.02\n", encoding="utf-8")
    assert run("rates", "import", "retail", str(other), "--replace", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"tariff": "retail", "imported": 1, "replaced": True}
    assert rate_count(url) == 1


def test_bad_csv_is_one_line_nonzero_and_stores_nothing(env, capsys):
    run, tmp, url = env
    bad = tmp / "bad.csv"
    bad.write_text("prefix,rate\n49,1.00\n4x9,1.00\n", encoding="utf-8")
    capsys.readouterr()
    assert run("rates", "import", "retail", str(bad)) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "line 3" in lines[0] and "4x9" in lines[0]
    assert rate_count(url) == 0


def test_missing_file_and_unknown_tariff(env, capsys):
    run, tmp, _ = env
    capsys.readouterr()
    assert run("rates", "import", "retail", str(tmp / "nope.csv")) == 2
    assert "cannot read" in capsys.readouterr().err
    assert run("rates", "import", "wholesale", str(tmp / "deck.csv")) == 3
    assert "no tariff named 'wholesale'" in capsys.readouterr().err


def test_lookup_without_rate_exits_3_with_one_line(env, capsys):
    run, tmp, _ = env
    run("rates", "import", "retail", str(tmp / "deck.csv"))
    capsys.readouterr()
    assert run("rates", "lookup", "retail", "331234") == 3
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "no rate for 331234" in captured.err


def test_lookup_bad_number_and_bad_time(env, capsys):
    run, _, _ = env
    capsys.readouterr()
    assert run("rates", "lookup", "retail", "49abc") == 2
    assert "49abc" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: one line, exit 2
        run("rates", "lookup", "retail", "49", "--at", "noon")
    assert info.value.code == 2


def test_lookup_at_a_time(env, capsys):
    run, tmp, _ = env
    dated = tmp / "dated.csv"
    dated.write_text("prefix,rate,effective_from\n49,0.50,2030-01-01\n", encoding="utf-8")
    run("rates", "import", "retail", str(dated))
    capsys.readouterr()
    assert run("rates", "lookup", "retail", "4930", "--at", "2029-06-01T00:00:00Z") == 3
    assert run("rates", "lookup", "retail", "4930", "--at", "2030-06-01T00:00:00Z", "--json") == 0
    assert json.loads(capsys.readouterr().out)["effective_from"] == "2030-01-01T00:00:00Z"


def test_quote(env, capsys):
    run, tmp, url = env
    run("rates", "import", "retail", str(tmp / "deck.csv"))
    run("account", "add", "alice", "--tariff", "retail")
    run("topup", "alice", "1.00", "--reference", "t1")
    capsys.readouterr()
    assert run("rates", "quote", "alice", "4915123456", "--seconds", "61", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    # 61 s at 30/6 bills 66 s: 0.10 + 66 x 0.60 / 60 = 0.76; 1.00 buys 0.10 + 90 s (0.90)
    assert data["billed_s"] == 66 and data["cost"] == "0.76" and data["available"] == "1.00"
    assert data["max_seconds"] == 90
    assert run("rates", "quote", "alice", "4930", "--seconds", "30") == 0
    out = capsys.readouterr().out
    assert "costs 0.50 EUR" in out and "lasts 60 s" in out
    assert run("rates", "quote", "bob", "4930", "--seconds", "30") == 3
    with pytest.raises(SystemExit) as info:  # --seconds is required
        run("rates", "quote", "alice", "4930")
    assert info.value.code == 2


def test_list(env, capsys):
    run, tmp, _ = env
    run("rates", "import", "retail", str(tmp / "deck.csv"))
    capsys.readouterr()
    assert run("rates", "list", "retail") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["PREFIX", "RATE/MIN"] and out[1].startswith("49 ") and out[2].startswith("4915")
    assert run("rates", "list", "retail", "--prefix", "491", "--json") == 0
    assert [r["prefix"] for r in json.loads(capsys.readouterr().out)] == ["4915"]
    assert run("rates", "list", "retail", "--limit", "1", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert run("rates", "list", "retail", "--prefix", "4a") == 2


def test_bench_rating_small(env, capsys, tmp_path):
    run, _, _ = env
    capsys.readouterr()
    assert main(["bench", "rating", "--prefixes", "300", "--lookups", "200", "--json", "--workdir", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["prefixes"] == 300 and figures["imported"] == figures["rows"] >= 300
    assert figures["lookups"] == 200 and figures["lookups_matched"] > 0
    for key in ("import_s", "load_s", "lookup_median_us", "lookup_p99_us", "decisions_per_s"):
        assert figures[key] is not None


def test_header_only_replace_is_refused_unless_allow_empty(env, capsys):
    run, tmp, url = env
    run("rates", "import", "retail", str(tmp / "deck.csv"))
    empty = tmp / "empty.csv"
    empty.write_text("prefix,rate\n", encoding="utf-8")
    capsys.readouterr()
    assert run("rates", "import", "retail", str(empty), "--replace") == 2
    err = capsys.readouterr().err
    assert "no rates" in err and "--allow-empty" in err and "(2 rates)" in err
    assert rate_count(url) == 2
    assert run("rates", "import", "retail", str(empty), "--replace", "--allow-empty") == 0
    assert rate_count(url) == 0


def test_semicolon_deck_with_decimal_commas(env, capsys):
    run, tmp, url = env
    deck = tmp / "carrier.csv"
    deck.write_text("prefix;rate;initial_increment;increment\n49;0,0125;60;60\n33;0,5;1;1\n", encoding="utf-8")
    capsys.readouterr()
    assert run("rates", "import", "retail", str(deck)) == 2
    assert "--decimal-comma" in capsys.readouterr().err and rate_count(url) == 0
    assert run("rates", "import", "retail", str(deck), "--decimal-comma") == 0
    capsys.readouterr()
    assert run("rates", "lookup", "retail", "4930", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rate"] == "0.0125" and data["initial_increment_s"] == 60 and data["increment_s"] == 60
    assert run("rates", "import", "retail", str(deck), "--delimiter", ",", "--replace") == 2
    assert "separated by ','" in capsys.readouterr().err


def test_import_reads_standard_input(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("fsbill")
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/fsbill.db\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}

    def run(*argv, stdin=None):
        return subprocess.run(
            [str(script), *argv, "--config", str(config)], input=stdin, capture_output=True, text=True, env=env
        )

    assert run("tariff", "add", "retail").returncode == 0
    p = run("rates", "import", "retail", "-", "--json", stdin=DECK)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"tariff": "retail", "imported": 2, "replaced": False}
    bad = run("rates", "import", "retail", "-", stdin="prefix,rate\n4x,1\n")
    assert bad.returncode == 2 and "line 2" in bad.stderr
