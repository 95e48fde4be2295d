"""`fsbill rates import` and `fsbill vendor rates import` with decks as carriers send them:
--columns / --ignore-extra, --encoding, --dry-run (the database untouched, on SQLite and
PostgreSQL) and prefixes written '+49' or '0049'. Through the real CLI, in-process."""

import json

import pytest

from fsbill.cli.main import main
from fsbill.db import Store

DECK = "prefix,rate,description\n33,0.02,France\n44,0.03,UK\n49,0.01,Germany\n4915,0.06,DE mobile\n"
CARRIER = (  # a carrier's export: its own names, an extra column, cp1252, semicolons, decimal commas
    "Code;Destination;Price/min;Region\n"
    "+33;Française;0,02;EU\n"
    "0044;Royaume-Uni;0,04;EU\n"
    "49;Allemagne;0,005;EU\n"
    "4930;Berlin;0,01;EU\n"
)
MAPPING = "prefix=Code,rate=Price/min,description=Destination"


def _cli(url, tmp_path, monkeypatch, capsys, extra_config=""):
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: {url}\n{extra_config}", encoding="utf-8")
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)

    def run(*argv, code=0):
        capsys.readouterr()
        got = main([*argv, "--config", str(config)])
        out = capsys.readouterr()
        assert got == code, out.err
        return out.out, out.err

    (tmp_path / "deck.csv").write_text(DECK, encoding="utf-8")
    (tmp_path / "carrier.csv").write_bytes(CARRIER.encode("cp1252"))
    run("tariff", "add", "retail", "--currency", "EUR")
    run("vendor", "add", "acme", "--dial-string", "sofia/gateway/acme/{destination}")
    run("rates", "import", "retail", str(tmp_path / "deck.csv"))
    run("vendor", "rates", "import", "acme", str(tmp_path / "deck.csv"))
    return run


@pytest.fixture
def cli(sqlite_url, tmp_path, monkeypatch, capsys):
    return _cli(sqlite_url, tmp_path, monkeypatch, capsys)


@pytest.fixture
def cli_both(db_url, tmp_path, monkeypatch, capsys):
    return _cli(db_url, tmp_path, monkeypatch, capsys), db_url


def snapshot(url):
    """Every rate row and every tariff's deck version: what an import could change."""
    store = Store(url)
    try:
        m = store.models
        with store.reading():
            rates = sorted(tuple(r) for r in m.Rate.select().tuples())
            tariffs = sorted(tuple(r) for r in m.Tariff.select(m.Tariff.name, m.Tariff.deck_version).tuples())
        return rates, tariffs
    finally:
        store.close()


COMMANDS = [("rates", "import", "retail"), ("vendor", "rates", "import", "acme")]


@pytest.mark.parametrize("command", COMMANDS)
def test_dry_run_writes_nothing_and_lists_changes(cli_both, tmp_path, command):
    run, url = cli_both
    before = snapshot(url)
    args = [*command, str(tmp_path / "carrier.csv"), "--columns", MAPPING, "--ignore-extra", "--encoding", "cp1252"]
    out, _ = run(*args, "--decimal-comma", "--replace", "--dry-run", "--json")
    data = json.loads(out)
    assert data["dry_run"] is True and data["replace"] is True and data["rows"] == 4 and data["normalised"] == 2
    assert data["counts"] == {"added": 1, "removed": 1, "dearer": 1, "cheaper": 1, "changed": 1, "unchanged": 0}
    assert data["added"] == [{"prefix": "4930", "rate_before": None, "rate_after": "0.01", "description": "Berlin"}]
    assert [c["prefix"] for c in data["removed"]] == ["4915"]
    assert data["dearer"][0] == {
        "prefix": "44",
        "rate_before": "0.03",
        "rate_after": "0.04",
        "description": "Royaume-Uni",
    }
    assert data["cheaper"][0]["prefix"] == "49" and data["changed"][0]["description"] == "Française"
    assert (data["rates_before"], data["rates_after"]) == (4, 4)
    out, _ = run(*args, "--decimal-comma", "--replace", "--dry-run", "--show", "0")
    assert out.startswith("dry run, nothing written: ")
    assert "added 1, removed 1, dearer 1, cheaper 1, changed 1, unchanged 0" in out and "\n  " not in out
    assert "2 prefixes written with '+' or '00' stored without it" in out
    _, err = run(*args, "--decimal-comma", "--dry-run", code=2)  # adding: refused as the import would be
    assert "line 2: prefix 33 overlaps a rate already in the tariff" in err
    assert snapshot(url) == before
    # and the real import then does what the dry run said
    run(*args, "--decimal-comma", "--replace")
    after = snapshot(url)
    assert len(after[0]) == len(before[0]) and after != before


def test_dry_run_refuses_what_the_import_refuses(cli, tmp_path, sqlite_url):
    run = cli
    before = snapshot(sqlite_url)
    clash = tmp_path / "clash.csv"
    clash.write_text("prefix,rate\n+49,0.02\n", encoding="utf-8")
    _, err = run("rates", "import", "retail", str(clash), "--dry-run", code=2)
    assert "line 2" in err and "prefix 49 overlaps a rate already in the tariff" in err
    out, _ = run("rates", "import", "retail", str(tmp_path / "deck.csv"), "--replace", "--dry-run")
    assert "added 0, removed 0, dearer 0, cheaper 0, changed 0, unchanged 4" in out
    assert snapshot(sqlite_url) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_columns_and_ignore_extra(cli, tmp_path, command):
    run = cli
    carrier = tmp_path / "carrier.csv"
    common = [*command, str(carrier), "--encoding", "cp1252", "--decimal-comma", "--replace"]
    _, err = run(*common, code=2)
    assert "line 1: unknown columns 'Code', 'Destination', 'Price/min', 'Region'" in err
    _, err = run(*common, "--columns", MAPPING, code=2)
    assert "line 1: unknown column 'Region'" in err and "--ignore-extra" in err
    _, err = run(*common, "--columns", "prefix=Code,rate=Cost", "--ignore-extra", code=2)
    assert "mapped column 'Cost' (for rate) is not in the header" in err
    _, err = run(*common, "--columns", "prefix=Code,colour=Region", code=2)
    assert "--columns: unknown field 'colour'" in err
    out, _ = run(
        *common,
        "--columns",
        "prefix=Code",
        "--columns",
        "rate=price/min,description=Destination",
        "--ignore-extra",
        "--json",
    )
    data = json.loads(out)
    assert data["imported"] == 4 and data["replaced"] is True


def test_encoding(cli, tmp_path):
    run = cli
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prefix,rate,description\n49,0.01,Deutschland\n43,0.02,Österreich\n".encode("latin-1"))
    _, err = run("rates", "import", "retail", str(latin), "--replace", code=2)
    assert err.startswith("error: line 3: not valid utf-8 text: byte 0xd6 at byte 9 of the line")
    assert "--encoding" in err
    _, err = run("rates", "import", "retail", str(latin), "--replace", "--encoding", "ebcdic", code=2)
    assert "unknown encoding 'ebcdic'" in err
    run("rates", "import", "retail", str(latin), "--replace", "--encoding", "latin-1")
    out, _ = run("rates", "lookup", "retail", "43123", "--json")
    assert json.loads(out)["description"] == "Österreich"
    _, err = run("vendor", "rates", "import", "acme", str(latin), "--replace", code=2)
    assert "line 3: not valid utf-8 text" in err


def test_prefixes_written_like_numbers_match(cli, tmp_path):
    run = cli
    deck = tmp_path / "plus.csv"
    deck.write_text("prefix,rate\n+49,0.01\n004915,0.06\n", encoding="utf-8")
    out, _ = run("rates", "import", "retail", str(deck), "--replace")
    assert (
        out.strip()
        == "imported 2 rates replaced the deck of retail (2 prefixes written with '+' or '00' stored without it)"
    )
    out, _ = run("rates", "lookup", "retail", "+49 151 1234567", "--json")
    assert json.loads(out)["prefix"] == "4915"
    out, _ = run("rates", "lookup", "retail", "0049301234", "--json")
    assert json.loads(out)["prefix"] == "49"
    clash = tmp_path / "clash.csv"
    clash.write_text("prefix,rate\n49,0.01\n33,0.02\n0049,0.03\n", encoding="utf-8")
    _, err = run("vendor", "rates", "import", "acme", str(clash), "--replace", code=2)
    assert "line 4: prefix '0049' (normalised to 49) duplicates line 2 ('49', normalised to 49)" in err


def test_international_prefix_setting_applies_to_prefixes(sqlite_url, tmp_path, monkeypatch, capsys):
    run = _cli(sqlite_url, tmp_path, monkeypatch, capsys, extra_config="international_prefix: '011'\n")
    deck = tmp_path / "nanp.csv"
    deck.write_text("prefix,rate\n01144,0.01\n0049,0.02\n", encoding="utf-8")
    run("rates", "import", "retail", str(deck), "--replace")
    out, _ = run("rates", "list", "retail", "--json")
    assert [r["prefix"] for r in json.loads(out)] == ["0049", "44"]


def test_vendor_import_reads_standard_input(cli, monkeypatch, tmp_path):
    import io
    import sys

    run = cli

    class Stdin:
        buffer = io.BytesIO("prefix;rate;description\n+49;0,01;Zürich?\n".encode("cp1252"))

    monkeypatch.setattr(sys, "stdin", Stdin)
    out, _ = run(
        "vendor", "rates", "import", "acme", "-", "--encoding", "cp1252", "--decimal-comma", "--replace", "--json"
    )
    assert json.loads(out) == {"vendor": "acme", "imported": 1, "replaced": True}
