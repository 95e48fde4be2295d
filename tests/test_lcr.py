"""Least-cost routing end to end: a real `fsbill serve` node with `routing: lcr`, the FreeSWITCH
emulator placing calls over TCP, vendors and decks in a real database (SQLite and PostgreSQL).

What is asserted is what FreeSWITCH was asked to bridge and reported back, and what the books
say (CDRs with vendor, vendor_cost and margin; vendor attempts; channel counts; the ledger).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlparse

import gevent
import pytest
from migrated import migrate_fresh
from nodes import CuttableProxy
from rig import Rig, charged_total

from fsbill.cli.main import main
from fsbill.core.money import Money
from fsbill.db import Store, ledger, reports
from fsbill.db import vendors as dbvendors
from fsbill.db.rates import import_deck

SELL = "prefix,rate\n49,1.00\n44,0.60\n"
VENDORS = {
    # name: (deck, max_channels, weight)
    "cheap": ("prefix,rate,connect_fee,initial_increment,increment\n49,0.20,0,1,1\n", 0, 0),
    "mid": ("prefix,rate,connect_fee,initial_increment,increment\n49,0.30,0.01,30,6\n", 0, 0),
    "dear": ("prefix,rate,connect_fee,initial_increment,increment\n49,0.50,0,60,60\n", 0, 0),
}


def add_vendors(store, vendors=VENDORS, now_us=0):
    for name, (deck, channels, weight) in vendors.items():
        dbvendors.create_vendor(
            store, name, f"sofia/gateway/{name}/{{destination}}", now_us, max_channels=channels, weight=weight
        )
        dbvendors.import_rates(store, name, io.StringIO(deck))


@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25, routing="lcr", deck=SELL)
    add_vendors(r.store, now_us=r.clock.now_us())
    yield r
    r.close()


def bridge_targets(record) -> list[str]:
    """The targets FreeSWITCH was asked to try, in order, without their [leg variables]."""
    (arg,) = [a for app, a in record.applications if app == "bridge"]
    return [re.sub(r"^\[[^\]]*\]", "", part) for part in arg.split("|")]


def vendor_counts(store) -> dict[str, int]:
    return {v.name: v.live_channels for v in dbvendors.list_vendors(store, with_counts=False)}


def attempts(store, uuid):
    m = store.models
    with store.reading():
        q = m.VendorAttempt.select().where(m.VendorAttempt.call_uuid == uuid).order_by(m.VendorAttempt.position)
        return [(a.vendor, a.result, a.cause) for a in q]


def test_cheapest_vendor_carries_the_call_with_the_others_as_failover(rig):
    rig.account("acme", "10.00")
    record = rig.call(talk_s=61)
    (cdr,) = rig.settled(1)
    assert bridge_targets(record) == [
        "sofia/gateway/cheap/4930123456",
        "sofia/gateway/mid/4930123456",
        "sofia/gateway/dear/4930123456",
    ]
    assert cdr.result == "completed" and cdr.billed_s == 61 and cdr.cost == Money.parse("1.0167")
    # cheap: 61 s at 0.20/min, 1/1 -> 0.2033
    assert cdr.vendor == "cheap" and cdr.vendor_cost == Money.parse("0.2033")
    assert cdr.margin == cdr.cost - cdr.vendor_cost == Money.parse("0.8134")
    assert attempts(rig.store, cdr.uuid) == [("cheap", "answered", "")]
    assert vendor_counts(rig.store) == {"cheap": 0, "mid": 0, "dear": 0}
    text = rig.node.metrics.render().decode()
    assert 'fsbill_vendor_attempts_total{result="answered",vendor="cheap"} 1.0' in text
    # the exported CDR (csv/json/jsonl) carries the vendor side too
    from fsbill import cdr_format

    exported = cdr_format.record(cdr)
    assert (exported["vendor"], exported["vendor_cost"], exported["margin"]) == ("cheap", "0.2033", "0.8134")


def test_failover_to_the_second_vendor_when_the_first_fails(rig):
    rig.account("acme", "10.00")
    rig.call(talk_s=61, failover_causes=["NO_ROUTE_DESTINATION"])
    (cdr,) = rig.settled(1)
    # mid: 61 s at 30/6 bills 66 s: 0.01 + 66 x 0.30 / 60 = 0.34
    assert cdr.vendor == "mid" and cdr.vendor_cost == Money.parse("0.34") and cdr.billed_s == 61
    assert cdr.margin == cdr.cost - Money.parse("0.34")
    assert attempts(rig.store, cdr.uuid) == [("cheap", "failed", "NO_ROUTE_DESTINATION"), ("mid", "answered", "")]
    assert vendor_counts(rig.store) == {"cheap": 0, "mid": 0, "dear": 0}
    quality = {q.vendor: q for q in reports.quality(rig.store)}
    assert (quality["cheap"].attempts, quality["cheap"].answered, quality["cheap"].asr_percent) == (1, 0, "0.00")
    assert (quality["mid"].attempts, quality["mid"].answered, quality["mid"].asr_percent) == (1, 1, "100.00")
    text = rig.node.metrics.render().decode()
    assert 'fsbill_vendor_attempts_total{result="failed",vendor="cheap"} 1.0' in text
    assert 'fsbill_vendor_attempts_total{result="answered",vendor="mid"} 1.0' in text


def test_every_vendor_fails(rig):
    rig.account("acme", "10.00")
    record = rig.call(failover_causes=["USER_BUSY", "NO_ANSWER"], fail_cause="CALL_REJECTED", answer_after_s=0.5)
    (cdr,) = rig.settled(1)
    assert record.answered_us is None and cdr.result == "unanswered" and cdr.cost == Money(0)
    assert cdr.vendor == "" and cdr.vendor_cost is None
    assert attempts(rig.store, cdr.uuid) == [
        ("cheap", "failed", "USER_BUSY"),
        ("mid", "failed", "NO_ANSWER"),
        ("dear", "failed", "CALL_REJECTED"),
    ]
    assert vendor_counts(rig.store) == {"cheap": 0, "mid": 0, "dear": 0}


def test_the_dialplan_dial_string_wins_and_the_template_is_the_last_resort(rig):
    rig.account("acme", "10.00")
    explicit = rig.call(talk_s=5, variables={"fsbill_dial_string": "sofia/gateway/mine/4930123456"})
    uk = rig.call(talk_s=5, destination="442071234567")  # no vendor has a rate for 44: the route template
    cdrs = rig.settled(2)
    assert bridge_targets(explicit) == ["sofia/gateway/mine/4930123456"]
    assert bridge_targets(uk) == ["loopback/442071234567"]
    assert all(c.vendor == "" and c.vendor_cost is None and c.result == "completed" for c in cdrs)


def test_no_usable_vendor_is_vendor_unavailable(rig):
    rig.account("acme", "10.00")
    for name in VENDORS:
        dbvendors.set_status(rig.store, name, dbvendors.SUSPENDED)
    gap = rig.clock.now_us()
    while rig.clock.now_us() < gap + 1_500_000:  # past the router's one-second view of the vendors
        gevent.sleep(0.02)
    record = rig.call()
    (cdr,) = rig.settled(1)
    assert cdr.result == "rejected" and cdr.reason == "vendor_unavailable"
    assert record.responded is not None and record.responded.startswith("503")
    assert record.answered_us is None


def test_a_vendor_dearer_than_the_sell_price_is_never_used(rig):
    add_vendors(rig.store, {"lossy": ("prefix,rate\n49,1.01\n", 0, 99), "free": ("prefix,rate\n49,0\n", 0, 0)})
    rig.account("acme", "10.00")
    record = rig.call(talk_s=3)
    (cdr,) = rig.settled(1)
    assert [t.split("/")[2] for t in bridge_targets(record)] == ["free", "cheap", "mid", "dear"]
    assert cdr.vendor == "free" and cdr.vendor_cost == Money(0) and cdr.margin == cdr.cost


def test_no_rate_anywhere_is_no_route(db_url):
    rig = Rig(db_url, time_scale=25, routing="lcr", deck=SELL, route="")
    try:
        add_vendors(rig.store)
        rig.account("acme", "10.00")
        rig.call(destination="442071234567")
        (cdr,) = rig.settled(1)
        assert cdr.result == "rejected" and cdr.reason == "no_route"
    finally:
        rig.close()


# -- channel limits across two nodes -------------------------------------------------------------------
def test_vendor_channel_limits_hold_across_two_nodes(pg_url):
    limited = {
        "cheap": (VENDORS["cheap"][0], 2, 0),
        "mid": (VENDORS["mid"][0], 2, 0),
        "dear": (VENDORS["dear"][0], 20, 0),
    }
    a = Rig(pg_url, time_scale=10, routing="lcr", deck=SELL, node="node-a")
    b = Rig(pg_url, time_scale=10, routing="lcr", deck=SELL, node="node-b", seed_tariff=False)
    try:
        add_vendors(a.store, limited)
        a.account("acme", "100.00")
        specs = [(a if i % 2 else b, a.spec(talk_s=40, answer_after_s=1.0)) for i in range(10)]
        greenlets = [rig.switch.start_call(rig.address, spec) for rig, spec in specs]
        peak = {"cheap": 0, "mid": 0, "dear": 0}
        while not all(g.ready() for g in greenlets):
            for name, n in vendor_counts(a.store).items():
                peak[name] = max(peak[name], n)
            gevent.sleep(0.05)
        cdrs = a.settled(10, timeout_s=30)
        assert all(c.result == "completed" for c in cdrs), [(c.result, c.reason) for c in cdrs]
        carried = {name: sum(1 for c in cdrs if c.vendor == name) for name in limited}
        # every call talked at the same time, so no vendor carried more than its limit; the two
        # cheapest vendors' channels were taken first, by whichever node got there first
        assert carried["cheap"] == 2 and carried["mid"] <= 2 and sum(carried.values()) == 10
        assert peak["cheap"] <= 2 and peak["mid"] <= 2
        assert vendor_counts(a.store) == {"cheap": 0, "mid": 0, "dear": 0}
        assert {c.node for c in cdrs} == {"node-a", "node-b"}
    finally:
        b.close()
        a.close()


# -- vendor cost and margin, exactly, for many random calls ------------------------------------------------
def independent_cost(rate: str, fee: str, first: int, inc: int, talked_us: int) -> Decimal:
    """From the rule text, not fsbill.core.rating: every started second; at least the first
    block; then whole increments; fee + seconds x price / 60, rounded once to 4 decimals."""
    if talked_us <= 0:
        return Decimal(0)
    seconds = -(-talked_us // 1_000_000)
    billed = max(seconds, first)
    billed += (-(billed - first)) % inc
    return (Decimal(fee) + Decimal(billed) * Decimal(rate) / 60).quantize(Decimal("0.0001"), ROUND_HALF_UP)


RANDOM_VENDORS = {
    "v1": ("49", "0.2100", "0.0000", 1, 1),
    "v2": ("49", "0.2100", "0.0150", 30, 6),
    "v3": ("49", "0.3333", "0.0000", 60, 60),
    "v4": ("4915", "0.1234", "0.0100", 6, 6),
}


CALLS = int(os.environ.get("LCR_CALLS", "600"))


def test_vendor_cost_and_margin_exact_for_random_calls_and_the_books_balance(sqlite_url):
    rnd = random.Random(16)
    deck = "prefix,rate,connect_fee,initial_increment,increment\n49,1.00,0,1,1\n4915,0.7777,0.02,30,6\n"
    # At 50x a cut-off that fires 20 ms late on a loaded CI machine is a whole second late: the
    # margin covers more of the emulator's lateness than the default 1 s would (a real switch
    # is late by at most 0.5 s, which the default covers).
    rig = Rig(sqlite_url, time_scale=50, routing="lcr", deck=deck, slice_s=60, cutoff={"margin_s": 4})
    try:
        vendors = {
            name: (f"prefix,rate,connect_fee,initial_increment,increment\n{p},{r},{f},{i},{n}\n", 0, rnd.randint(0, 3))
            for name, (p, r, f, i, n) in RANDOM_VENDORS.items()
        }
        add_vendors(rig.store, vendors)
        codes = [rig.account(f"a{i}", "0.50" if i == 0 else rnd.choice(["100.00", "500.00"])) for i in range(6)]
        specs = []
        for _ in range(CALLS):
            specs.append(
                rig.spec(
                    account=rnd.choice(codes),
                    destination=rnd.choice(["4930123456", "4915112345678"]),
                    talk_s=rnd.choice([rnd.uniform(0.3, 10), rnd.uniform(10, 90)]),
                    answer_after_s=rnd.uniform(0.1, 2),
                    failover_causes=[
                        rnd.choice(["USER_BUSY", "NO_ROUTE_DESTINATION"]) for _ in range(rnd.randint(0, 2))
                    ],
                    leg_fail_after_s=rnd.uniform(0.1, 1),
                )
            )
        records = rig.switch.run_load(rig.address, specs, concurrency=60)
        cdrs = rig.settled(CALLS, timeout_s=400)
        by_uuid = {r.uuid: r for r in records}
        carried = 0
        for cdr in cdrs:
            rec = by_uuid[cdr.uuid]
            if cdr.result == "rejected" or rec.answered_us is None:
                assert cdr.vendor == "" and cdr.vendor_cost is None
                continue
            carried += 1
            # which vendor: the leg FreeSWITCH bridged, i.e. the first target that did not fail
            targets = bridge_targets(rec)
            failures = rec.spec.failover_causes  # the first legs fail, the next one answers
            answered_at = len(failures)
            expected_vendor = targets[answered_at].split("/")[2]
            assert cdr.vendor == expected_vendor, (cdr.vendor, targets, failures)
            _, r, f, i, n = RANDOM_VENDORS[cdr.vendor]
            talked_us = min(rec.ended_us, rec.unbridged_us or rec.ended_us) - rec.answered_us
            assert cdr.vendor_cost == Money.parse(independent_cost(r, f, i, n, talked_us)), cdr
            assert cdr.margin == cdr.cost - cdr.vendor_cost
        assert carried > CALLS // 2
        # the books: Σ customer cost of every call == Σ ledger call debits == balance changes
        for code in codes:
            acct = rig.show(code)
            debits = sum((e.amount for e in ledger.ledger(rig.store, code) if e.kind == "call"), Money(0))
            mine = [c for c in cdrs if c.account == code]
            assert -debits == charged_total(mine) == rig.initial[code] - acct.balance
            assert all(c.charged + c.uncollected == c.cost for c in mine if c.result != "rejected")
            if code != codes[0]:  # only the 0.50 account is ever cut off, so only its calls can overrun
                assert all(c.charged == c.cost for c in mine if c.result != "rejected")
            assert acct.balance >= Money(0) and acct.reserved == Money(0)
        assert vendor_counts(rig.store) == dict.fromkeys(RANDOM_VENDORS, 0)
        # the reports add up to the CDRs
        for by in ("vendor", "account", "prefix"):
            rows = reports.margin(rig.store, by)
            assert sum((r.margin for r in rows), Money(0)) == sum((c.margin for c in cdrs if c.vendor), Money(0))
            assert sum((r.vendor_cost for r in rows), Money(0)) == sum(
                (c.vendor_cost for c in cdrs if c.vendor), Money(0)
            )
            assert sum(r.calls for r in rows) == carried
        quality = reports.quality(rig.store)
        assert sum(q.answered for q in quality) == carried
    finally:
        rig.close()


def test_report_commands(rig, tmp_path, capsys):
    rig.account("acme", "10.00")
    rig.calls([rig.spec(talk_s=30), rig.spec(talk_s=20, failover_causes=["USER_BUSY"])])
    cdrs = rig.settled(2)
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {rig.settings.database}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["report", "margin", "--json", "--config", str(config)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["vendor"] for r in rows} == {"cheap", "mid"}
    total = sum((Money.parse(r["margin"]) for r in rows), Money(0))
    assert total == sum((c.margin for c in cdrs), Money(0))
    assert main(["report", "margin", "--by", "account", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "account,currency,calls,billed_s,cost,vendor_cost,margin" and out[1].startswith("acme,EUR,2,")
    assert main(["report", "quality", "--format", "json", "--config", str(config)]) == 0
    quality = {q["vendor"]: q for q in json.loads(capsys.readouterr().out)}
    assert (
        quality["cheap"]["attempts"] == 2 and quality["cheap"]["answered"] == 1 and quality["cheap"]["asr"] == "50.00"
    )
    (mid_call,) = [c for c in cdrs if c.vendor == "mid"]
    assert quality["mid"]["acd_s"] == f"{mid_call.billsec}.0" and quality["mid"]["billsec"] == mid_call.billsec
    assert main(["report", "margin", "--since", "2020-01-01", "--until", "2020-01-02", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == ["vendor,currency,calls,billed_s,cost,vendor_cost,margin"]


def test_database_outage_between_reservation_and_settlement(pg_url):
    """The database goes away after the call took its vendor channels and before FreeSWITCH
    bridged it: the release at CHANNEL_BRIDGE and the settlement are deferred, and once the
    database is back the settlement lands with the carrier, its cost and every channel freed."""
    target = urlparse(pg_url)
    proxy = CuttableProxy((target.hostname, target.port or 5432))
    migrate_fresh(pg_url)
    seeded = Store(pg_url)
    seeded.upgrade()
    ledger.create_tariff(seeded, "retail", "EUR", 0)
    import_deck(seeded, "retail", io.StringIO(SELL))
    add_vendors(seeded)
    url = f"postgresql://{target.username}@127.0.0.1:{proxy.port}{target.path}"
    rig = Rig(url, time_scale=10, routing="lcr", seed_tariff=False, heartbeat_s=5)
    try:
        rig.account("acme", "10.00")
        greenlet = rig.switch.start_call(
            rig.address, rig.spec(talk_s=20, answer_after_s=4, failover_causes=["NO_ROUTE_DESTINATION"])
        )
        with gevent.Timeout(10):
            while not rig.live():
                gevent.sleep(0.01)
        assert vendor_counts(seeded) == {"cheap": 1, "mid": 1, "dear": 1}
        proxy.cut()
        record = greenlet.get(timeout=30)
        assert record.answered_us is not None
        rig.clock.sleep(3)
        assert vendor_counts(seeded) == {"cheap": 1, "mid": 1, "dear": 1}  # nothing could be released
        proxy.up()
        with gevent.Timeout(30):
            while not rig.cdrs():
                gevent.sleep(0.1)
        (cdr,) = rig.cdrs()
        talked_us = min(record.ended_us, record.unbridged_us or record.ended_us) - record.answered_us
        assert cdr.vendor == "mid" and cdr.vendor_cost == Money.parse(
            independent_cost("0.30", "0.01", 30, 6, talked_us)
        )
        assert cdr.margin == cdr.cost - cdr.vendor_cost and cdr.charged == cdr.cost
        assert attempts(seeded, cdr.uuid) == [("cheap", "failed", "NO_ROUTE_DESTINATION"), ("mid", "answered", "")]
        assert vendor_counts(seeded) == {"cheap": 0, "mid": 0, "dear": 0}
    finally:
        rig.close()
        proxy.close()
        seeded.close()


def test_transfer_cutoff_settles_the_vendor_side_at_the_unbridge(db_url):
    """A transfer cut-off settles the visit when the bridge ends (the caller is then in the
    cut-off extension, not talking to the vendor): the vendor is billed the same window."""
    rig = Rig(db_url, time_scale=25, routing="lcr", deck=SELL, cutoff={"mode": "transfer"})
    try:
        add_vendors(rig.store)
        rig.account("acme", "1.00")  # 60 s at 1.00/min
        record = rig.call(talk_s=None, failover_causes=["USER_BUSY"])
        (cdr,) = rig.settled(1)
        assert record.transferred_to == "fsbill_cutoff" and cdr.result == "cut_off"
        talked_us = record.unbridged_us - record.answered_us
        assert cdr.vendor == "mid" and cdr.billed_s <= 60
        assert cdr.vendor_cost == Money.parse(independent_cost("0.30", "0.01", 30, 6, talked_us))
        assert attempts(rig.store, cdr.uuid) == [("cheap", "failed", "USER_BUSY"), ("mid", "answered", "")]
        assert vendor_counts(rig.store) == {"cheap": 0, "mid": 0, "dear": 0}
    finally:
        rig.close()
