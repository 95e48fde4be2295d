"""`fsbill vendor ...` and `fsbill route show` through the real CLI, on SQLite and PostgreSQL."""

import json

import pytest

from fsbill.cli.main import main
from fsbill.db import Store
from fsbill.db import vendors as dbvendors

SELL = "prefix,rate,connect_fee,initial_increment,increment\n49,0.10,0,1,1\n4915,0.30,0,1,1\n"
DECKS = {
    # 60 s of 4930...: cheap 0.03, mid 0.05 (weight 9), mid2 0.05, fee 0.02 + 0.01 = 0.03 -> 0.0300
    "cheap": "prefix,rate\n49,0.03\n",
    "mid": "prefix,rate\n49,0.05\n4915,0.40\n",
    "mid2": "prefix,rate\n49,0.05\n",
    "fee": "prefix,rate,connect_fee,initial_increment,increment\n49,0.01,0.02,60,60\n",
}


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch, capsys):
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: {db_url}\n", encoding="utf-8")
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)

    def run(*argv, ok=True):
        capsys.readouterr()
        code = main([*argv, "--config", str(config)])
        out = capsys.readouterr()
        if ok:
            assert code == 0, out.err
        return code, out.out, out.err

    def js(*argv):
        return json.loads(run(*argv, "--json")[1])

    (tmp_path / "sell.csv").write_text(SELL, encoding="utf-8")
    run("tariff", "add", "retail", "--currency", "EUR")
    run("rates", "import", "retail", str(tmp_path / "sell.csv"))
    run("account", "add", "alice", "--tariff", "retail")
    run.js = js
    run.tmp = tmp_path
    run.url = db_url
    return run


def add_vendor(cli, name, *extra):
    cli("vendor", "add", name, "--dial-string", f"sofia/gateway/{name}/{{destination}}", *extra)
    deck = cli.tmp / f"{name}.csv"
    deck.write_text(DECKS.get(name, "prefix,rate\n49,0.02\n"), encoding="utf-8")
    cli("vendor", "rates", "import", name, str(deck))


def test_vendor_add_list_show_suspend_resume(cli):
    data = cli.js(
        "vendor", "add", "carrier1", "--dial-string", "sofia/gateway/c1/{destination}", "--max-channels", "30"
    )
    assert data["name"] == "carrier1" and data["max_channels"] == 30 and data["status"] == "active"
    assert data["currency"] == "EUR" and data["rates"] == 0
    _, out, _ = cli("vendor", "list")
    assert out.splitlines()[0].split()[:3] == ["NAME", "STATUS", "CURRENCY"] and "carrier1" in out
    assert [v["name"] for v in cli.js("vendor", "list")] == ["carrier1"]
    assert cli.js("vendor", "suspend", "carrier1")["status"] == "suspended"
    assert cli.js("vendor", "show", "carrier1")["status"] == "suspended"
    assert cli.js("vendor", "resume", "carrier1")["status"] == "active"
    _, out, _ = cli("vendor", "show", "carrier1")
    assert "sofia/gateway/c1/{destination}" in out and "0/30" in out
    # the vendor's deck tariff is not a customer tariff
    assert [t["name"] for t in cli.js("tariff", "list")] == ["retail"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (("vendor", "add", "bad name", "--dial-string", "x"), "vendor name"),
        (("vendor", "add", "a|b", "--dial-string", "x"), "vendor name"),
        (("vendor", "add", "ok", "--dial-string", "a|b"), "no '|'"),
        (("vendor", "add", "ok", "--dial-string", "x/{destination}", "--currency", "EU"), "currency"),
        (("vendor", "add", "ok", "--dial-string", "sofia/gateway/c1/4930123"), "no '{destination}'"),
        (("vendor", "show", "nobody"), "no vendor named 'nobody'"),
        (("vendor", "suspend", "nobody"), "no vendor named 'nobody'"),
        (("vendor", "rates", "import", "nobody", "x.csv"), "no vendor named 'nobody'"),
        (("route", "show", "nobody", "4930"), "nobody"),
        (("route", "show", "alice", "49x"), "49x"),
        (("tariff", "add", "vendor:x"), "vendor"),
        (("account", "add", "bob", "--tariff", "vendor:carrier"), "vendor"),
    ],
)
def test_bad_input_is_one_line(cli, argv, needle):
    cli("vendor", "add", "carrier", "--dial-string", "x/{destination}")
    code, out, err = cli(*argv, ok=False)
    # 2 = usage; not-found errors may have their own exit code (the CLI's error contract)
    assert code in (2, 3) and out == "" and len(err.strip().splitlines()) == 1 and needle in err


def test_duplicate_vendor(cli):
    cli("vendor", "add", "v", "--dial-string", "x/{destination}")
    code, _, err = cli("vendor", "add", "v", "--dial-string", "x/{destination}", ok=False)
    assert code != 0 and "already exists" in err


def test_vendor_deck_import_is_all_or_nothing_and_replace(cli):
    cli("vendor", "add", "v", "--dial-string", "x/{destination}")
    good = cli.tmp / "good.csv"
    good.write_text("prefix,rate\n49,0.01\n44,0.02\n", encoding="utf-8")
    assert cli.js("vendor", "rates", "import", "v", str(good)) == {"vendor": "v", "imported": 2, "replaced": False}
    bad = cli.tmp / "bad.csv"
    bad.write_text("prefix,rate\n33,0.01\n3x,0.02\n", encoding="utf-8")
    code, _, err = cli("vendor", "rates", "import", "v", str(bad), ok=False)
    assert code != 0 and "line 3" in err
    overlap = cli.tmp / "overlap.csv"
    overlap.write_text("prefix,rate\n49,0.05\n", encoding="utf-8")
    code, _, err = cli("vendor", "rates", "import", "v", str(overlap), ok=False)
    assert code != 0 and "--replace" in err
    assert cli.js("vendor", "show", "v")["rates"] == 2
    assert cli.js("vendor", "rates", "import", "v", str(overlap), "--replace")["replaced"] is True
    assert cli.js("vendor", "show", "v")["rates"] == 1


def test_route_show_orders_and_explains(cli):
    for name in ("mid", "cheap", "mid2", "fee"):
        add_vendor(cli, name, *(("--weight", "9") if name == "mid" else ()))
    add_vendor(cli, "dear")  # 49 at 0.02 -> cheapest, but...
    dear = cli.tmp / "dear.csv"
    dear.write_text("prefix,rate\n49,0.12\n", encoding="utf-8")
    cli("vendor", "rates", "import", "dear", str(dear), "--replace")
    cli("vendor", "add", "usd", "--dial-string", "u/{destination}", "--currency", "USD")
    usd = cli.tmp / "usd.csv"
    usd.write_text("prefix,rate\n49,0.001\n", encoding="utf-8")
    cli("vendor", "rates", "import", "usd", str(usd))
    add_vendor(cli, "off")
    cli("vendor", "suspend", "off")
    cli("vendor", "add", "norate", "--dial-string", "n/{destination}")

    data = cli.js("route", "show", "alice", "+49 30 1234")
    assert data["number"] == "49301234" and data["sell_prefix"] == "49" and data["reason"] is None
    got = [(v["vendor"], v["cost"], v["usable"], v["reason"]) for v in data["vendors"]]
    assert got == [
        ("cheap", "0.03", True, None),
        ("fee", "0.03", True, None),  # ties with cheap on cost and weight: by name
        ("mid", "0.05", True, None),  # weight 9 before mid2
        ("mid2", "0.05", True, None),
        ("usd", "0.001", False, "currency"),
        ("off", "0.02", False, "suspended"),
        ("dear", "0.12", False, "loss"),
    ]
    first = data["vendors"][0]
    assert (
        first["sell"] == "0.10" and first["margin"] == "0.07" and first["dial_string"] == "sofia/gateway/cheap/49301234"
    )
    assert data["vendors"][-1]["why"] == "dearer than the sell price"
    _, out, _ = cli("route", "show", "alice", "49301234")
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["TRY", "VENDOR"] and lines[2].split()[:2] == ["1", "cheap"]
    assert "no: dearer than the sell price" in out

    # 4915: sell 0.30, mid has 4915 at 0.40 (a loss), others fall back to their 49 rows
    mobile = cli.js("route", "show", "alice", "4915123")
    assert ("mid", "0.40", False, "loss") in [
        (v["vendor"], v["cost"], v["usable"], v["reason"]) for v in mobile["vendors"]
    ]


def test_route_show_no_route_and_vendor_unavailable(cli, tmp_path):
    assert cli.js("route", "show", "alice", "4930")["reason"] == "no_route"
    add_vendor(cli, "only")
    cli("vendor", "suspend", "only")
    data = cli.js("route", "show", "alice", "4930")
    assert data["reason"] == "vendor_unavailable" and data["vendors"][0]["reason"] == "suspended"
    code, out, err = cli("route", "show", "alice", "331234", ok=False)
    assert code != 0 and out == "" and "no rate for 331234" in err


def test_route_show_allow_loss_and_channel_limit(cli, capsys):
    add_vendor(cli, "dear2")
    dear = cli.tmp / "dear2.csv"
    dear.write_text("prefix,rate\n49,0.50\n", encoding="utf-8")
    cli("vendor", "rates", "import", "dear2", str(dear), "--replace")
    add_vendor(cli, "busy", "--max-channels", "1")
    store = Store(cli.url)
    try:
        with store.transaction():
            m = store.models
            m.Vendor.update(live_channels=1).where(m.Vendor.name == "busy").execute()
        assert dbvendors.get_vendor(store, "busy").live_channels == 1
    finally:
        store.close()
    data = cli.js("route", "show", "alice", "4930")
    assert [(v["vendor"], v["reason"]) for v in data["vendors"]] == [("busy", "channel_limit"), ("dear2", "loss")]
    assert data["reason"] == "vendor_unavailable"
    loss_ok = cli.tmp / "loss.yaml"
    loss_ok.write_text(f"database: {cli.url}\nallow_loss: true\nrouting: lcr\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["route", "show", "alice", "4930", "--json", "--config", str(loss_ok)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["allow_loss"] is True and data["routing"] == "lcr" and data["reason"] is None
    assert [(v["vendor"], v["usable"]) for v in data["vendors"]] == [("dear2", True), ("busy", False)]


def test_bench_routing_small(capsys):
    capsys.readouterr()
    argv = ["bench", "routing", "--vendors", "3", "--prefixes", "200", "--decisions", "100", "--reservations", "20"]
    assert main([*argv, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["database"] == "sqlite" and figures["vendors"] == 3 and figures["legs"] == 3
    for key in ("plan_median_us", "plan_p99_us", "reserve_median_us", "reserve_with_legs_median_us"):
        assert figures[key] > 0
