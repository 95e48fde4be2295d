"""`charges run` on real databases with a stepped clock: proration, month lengths, DST, daily
shares, credits, idempotence across runs, nodes and crashes, and arrears (fsbill.db.charges)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate
from fsbill.core.records import CallEnd
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db import plans as dbplans
from fsbill.db.charges import release_lease, run_charges, take_lease
from fsbill.errors import Conflict, InvalidInput, NotFound
from fsbill.instant import parse_iso

SCRIPT = Path(sys.executable).with_name("fsbill")
M = Money.parse
TZ = "Europe/Berlin"
US = 1_000_000


def t(text: str) -> int:
    """An instant; without an offset, Berlin local time (the tariff's zone)."""
    if text[-1] != "Z" and "+" not in text[10:]:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        moment = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(TZ))
        return int(moment.timestamp()) * US
    return parse_iso(text)


T0 = t("2024-01-01T00:00")


@pytest.fixture
def books(store):
    ledger.create_tariff(store, "retail", "EUR", T0, RoundingRule(2, RoundingMethod.HALF_UP), TZ)
    ledger.create_account(store, "A", "retail", T0)
    return store


def account(store, code="A"):
    return ledger.get_account(store, code)


def assert_books(store, code="A"):
    """The ledger is the truth and the invariant holds: balance + credit limit − held ≥ 0."""
    a = account(store, code)
    assert a.balance == ledger.ledger_sum(store, code)
    assert (a.balance + a.credit_limit - a.reserved).micros >= 0
    return a


def movements(store, kind, code="A"):
    return [e.amount for e in ledger.ledger(store, code) if e.kind == kind]


def charge_rows(store):
    with store.reading() as db:
        return db.execute_sql(
            'SELECT "subscription_id", "period_start_us", "kind", "amount_micros", "taken_micros", "arrears_micros" '
            'FROM "charge" ORDER BY "id"'
        ).fetchall()


# -- monthly ----------------------------------------------------------------------------------------------
def test_mid_month_start_then_each_month_in_advance_once(books):
    s = books
    ledger.topup(s, "A", M("1000"), T0)
    dbplans.create_plan(s, "did", M("31.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "did", T0, start_us=t("2024-01-16T00:00"))
    assert run_charges(s, t("2024-01-15T23:59:59")).charges == 0
    r = run_charges(s, t("2024-01-16T00:00"))
    assert r.charges == 1 and movements(s, "charge") == [M("-16.00")]  # 16/31 of the fee
    for now in ["2024-01-16T00:00", "2024-01-31T23:59:59", "2024-01-20T00:00"]:
        assert run_charges(s, t(now)).charges == 0  # nothing twice
    r = run_charges(s, t("2024-02-01T00:00"))
    assert r.charges == 1 and movements(s, "charge")[-1] == M("-31.00")
    # a year of runs on the 1st and the second before it: one charge per month, each the fee
    for month in range(3, 13):
        assert run_charges(s, t(f"2024-{month:02d}-01T00:00") - US).charges == 0
        assert run_charges(s, t(f"2024-{month:02d}-01T00:00")).charges == 1
    assert movements(s, "charge") == [M("-16.00")] + [M("-31.00")] * 11
    a = assert_books(s)
    assert a.balance == M("1000") - M("16") - 11 * M("31")


@pytest.mark.parametrize(
    "month,fee,expected",
    [
        ("2025-02", "28.00", "18.00"),  # 28 days: from the 11th, 18 days left
        ("2024-02", "29.00", "19.00"),  # leap February
        ("2025-04", "30.00", "20.00"),
        ("2025-01", "31.00", "21.00"),
        ("2025-03", "743.00", "503.00"),  # Berlin March 2025: 743 hours (DST on the 30th); 503 left
        ("2025-10", "745.00", "505.00"),  # October: 745 hours (back on the 26th); 505 left
    ],
)
def test_month_ends_and_dst_prorate_by_the_seconds_left(books, month, fee, expected):
    s = books
    ledger.topup(s, "A", M("5000"), T0)
    dbplans.create_plan(s, "seat", M(fee), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "seat", T0, start_us=t(f"{month}-11T00:00"))
    run_charges(s, t(f"{month}-11T00:00"))
    assert movements(s, "charge") == [-M(expected)]
    # the next month is charged whole, at its own first local midnight
    nxt = f"{int(month[:4]) + int(month[5:]) // 12}-{int(month[5:]) % 12 + 1:02d}-01T00:00"
    assert run_charges(s, t(nxt) - US).charges == 0
    assert run_charges(s, t(nxt)).charges == 1
    assert movements(s, "charge") == [-M(expected), -M(fee)]
    assert_books(s)


def test_a_subscription_from_the_31st_is_charged_every_following_month(books):
    """CGRateS #2255: anchored on Jan 31, the next charge went to March (or May)."""
    s = books
    ledger.topup(s, "A", M("1000"), T0)
    dbplans.create_plan(s, "did", M("31.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "did", T0, start_us=t("2025-01-31T00:00"))
    for month in range(1, 7):
        run_charges(s, t(f"2025-{month:02d}-{31 if month == 1 else 1:02d}T00:00"))
    assert movements(s, "charge") == [M("-1.00")] + [M("-31.00")] * 5


# -- daily -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("month,days", [("2024-02", 29), ("2025-03", 31)])
def test_a_daily_plans_month_sums_exactly_to_the_fee(books, month, days):
    s = books
    ledger.topup(s, "A", M("100"), T0)
    dbplans.create_plan(s, "seat", M("10.00"), "daily", "EUR", T0)
    dbplans.subscribe(s, "A", "seat", T0, start_us=t(f"{month}-01T00:00"))
    for day in range(1, days + 1):  # a stepped clock: every local day at 00:00 and at 13:00
        run_charges(s, t(f"{month}-{day:02d}T00:00"))
        run_charges(s, t(f"{month}-{day:02d}T13:00"))
    shares = movements(s, "charge")
    assert len(shares) == days
    assert sum(x.micros for x in shares) == M("-10.00").micros
    assert {x for x in shares} <= {M("-0.34"), M("-0.35"), M("-0.32"), M("-0.33")}
    assert_books(s)


# -- ending ------------------------------------------------------------------------------------------------
def test_a_subscription_ended_mid_month_is_credited_the_unused_part_once(books):
    s = books
    ledger.topup(s, "A", M("100"), T0)
    dbplans.create_plan(s, "pbx", M("30.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "pbx", T0, start_us=t("2025-04-01T00:00"), quantity=2)
    run_charges(s, t("2025-04-01T08:00"))
    assert movements(s, "charge") == [M("-60.00")]
    dbplans.unsubscribe(s, "A", "pbx", t("2025-04-10T00:00"), at_us=t("2025-04-21T00:00"))
    assert run_charges(s, t("2025-04-20T23:59")).credits == 0  # not ended yet
    r = run_charges(s, t("2025-04-21T00:00"))
    assert r.credits == 1 and movements(s, "credit") == [M("20.00")]  # 10 of 30 days unused, x2
    for now in ["2025-04-22T00:00", "2025-05-01T00:00", "2026-01-01T00:00"]:
        r = run_charges(s, t(now))
        assert (r.charges, r.credits) == (0, 0)
    (sub,) = dbplans.subscriptions(s, "A")
    assert sub.charged == M("40.00") and sub.end_us == t("2025-04-21T00:00")
    a = assert_books(s)
    assert a.balance == M("60.00")
    with s.reading() as db:
        assert db.execute_sql('SELECT "done_us" FROM "subscription"').fetchone()[0] is not None


def test_subscribe_and_unsubscribe_refusals(books):
    s = books
    dbplans.create_plan(s, "did", M("1.00"), "monthly", "EUR", T0)
    dbplans.create_plan(s, "usd", M("1.00"), "monthly", "USD", T0)
    with pytest.raises(InvalidInput, match="USD.*EUR"):
        dbplans.subscribe(s, "A", "usd", T0)
    with pytest.raises(Conflict):
        dbplans.create_plan(s, "did", M("2.00"), "daily", "EUR", T0)
    with pytest.raises(InvalidInput):
        dbplans.create_plan(s, "zero", M("0"), "daily", "EUR", T0)
    with pytest.raises(InvalidInput):
        dbplans.create_plan(s, "weekly", M("1"), "weekly", "EUR", T0)
    with pytest.raises(NotFound):
        dbplans.subscribe(s, "A", "nope", T0)
    with pytest.raises(NotFound):
        dbplans.subscribe(s, "B", "did", T0)
    dbplans.subscribe(s, "A", "did", T0, start_us=t("2025-01-10T00:00"))
    with pytest.raises(Conflict, match="already subscribes"):
        dbplans.subscribe(s, "A", "did", T0)
    with pytest.raises(InvalidInput, match="before the subscription started"):
        dbplans.unsubscribe(s, "A", "did", T0, at_us=t("2025-01-01T00:00"))
    dbplans.unsubscribe(s, "A", "did", T0, at_us=t("2025-02-01T00:00"))
    with pytest.raises(NotFound, match="no running subscription"):
        dbplans.unsubscribe(s, "A", "did", T0)
    dbplans.subscribe(s, "A", "did", T0, start_us=t("2025-03-01T00:00"))  # again, after it ended
    assert [p.subscriptions for p in dbplans.list_plans(s)] == [1, 0]


# -- idempotence: repeated runs, several nodes, crashes -------------------------------------------------------
def _many(store, accounts: int, start: str, topup: str = "100") -> None:
    dbplans.create_plan(store, "seat", M("31.00"), "daily", "EUR", T0)
    for i in range(accounts):
        code = f"n{i}"
        ledger.create_account(store, code, "retail", T0)
        ledger.topup(store, code, M(topup), T0)
        dbplans.subscribe(store, code, "seat", T0, start_us=t(start))


def _cli(db_url: str, tmp_path: Path, *argv: str) -> subprocess.Popen:
    config = tmp_path / "charges.yaml"
    config.write_text(f"database: {db_url}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("FSBILL_CONFIG", "FSBILL_DEBUG")}
    return subprocess.Popen(
        [str(SCRIPT), *argv, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _assert_each_period_once(store, accounts: int, days: int) -> None:
    rows = charge_rows(store)
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)) == accounts * days
    for i in range(accounts):
        code = f"n{i}"
        a = assert_books(store, code)
        shares = movements(store, "charge", code)
        assert len(shares) == days
        assert a.balance == M("100") + Money(sum(x.micros for x in shares))
    total = sum(r[4] for r in rows)
    assert total == accounts * M("31.00").micros * days // 31


def test_runs_on_several_nodes_at_once_charge_each_period_once(books, db_url, tmp_path):
    """Three processes run `charges run` at the same instant against one database."""
    s = books
    _many(s, 8, "2025-01-01T00:00")
    now = "2025-01-31T12:00:00+01:00"
    procs = [_cli(db_url, tmp_path, "charges", "run", "--now", now, "--node", f"n{i}", "--json") for i in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    import json

    reports = [json.loads(o[0]) for o in outs]
    assert sum(r["charges"] for r in reports) == 8 * 31
    _assert_each_period_once(s, 8, 31)
    assert run_charges(s, t("2025-01-31T13:00")).charges == 0


def test_a_run_killed_midway_loses_nothing_and_charges_nothing_twice(books, db_url, tmp_path):
    s = books
    _many(s, 6, "2025-01-01T00:00")
    now = "2025-01-31T12:00:00+01:00"
    proc = _cli(db_url, tmp_path, "charges", "run", "--now", now)
    deadline = time.monotonic() + 60
    while len(charge_rows(s)) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    partial = len(charge_rows(s))
    assert 20 <= partial < 6 * 31, "the run was not interrupted midway"
    for i in range(6):  # what was posted is whole: every charge row has its ledger entry
        assert_books(s, f"n{i}")
    assert sum(len(movements(s, "charge", f"n{i}")) for i in range(6)) == partial
    run_charges(s, t("2025-01-31T12:00"))
    run_charges(s, t("2025-01-31T12:00"))
    _assert_each_period_once(s, 6, 31)


def test_a_failure_between_charges_rolls_back_only_the_one_it_hit(books, monkeypatch):
    """An error inside a charge's transaction (after its row was written) leaves nothing of it;
    the next run posts it once."""
    import fsbill.db.charges as charges

    s = books
    ledger.topup(s, "A", M("100"), T0)
    dbplans.create_plan(s, "seat", M("31.00"), "daily", "EUR", T0)
    dbplans.subscribe(s, "A", "seat", T0, start_us=t("2025-01-01T00:00"))
    real_post, calls = charges.post, []

    def failing_post(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("power cut")
        return real_post(*args, **kwargs)

    monkeypatch.setattr(charges, "post", failing_post)
    with pytest.raises(RuntimeError):
        run_charges(s, t("2025-01-10T12:00"))
    assert len(charge_rows(s)) == 4 and len(movements(s, "charge")) == 4
    monkeypatch.setattr(charges, "post", real_post)
    run_charges(s, t("2025-01-10T12:00"))
    assert len(charge_rows(s)) == 10 and movements(s, "charge") == [M("-1.00")] * 10
    assert_books(s)


def test_the_lease_lets_one_node_at_a_time(store):
    assert take_lease(store, "charges", "a", T0, 600 * US)
    assert not take_lease(store, "charges", "b", T0 + US, 600 * US)
    assert take_lease(store, "charges", "a", T0 + 2 * US, 600 * US)  # renewed by its holder
    assert take_lease(store, "charges", "b", T0 + 700 * US, 600 * US)  # expired: taken over
    release_lease(store, "charges", "b")
    assert take_lease(store, "charges", "a", T0 + 701 * US, 600 * US)
    assert take_lease(store, "other", "x", T0, US)  # a lease not seen before


# -- arrears ---------------------------------------------------------------------------------------------------
def test_a_charge_takes_what_is_available_and_the_next_top_up_pays_arrears_first(books):
    s = books
    ledger.topup(s, "A", M("5.00"), T0)
    dbplans.create_plan(s, "pbx", M("30.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "pbx", T0, start_us=t("2025-04-01T00:00"))
    r = run_charges(s, t("2025-04-01T00:00"))
    assert r.owed == {"EUR": M("25.00").micros}
    a = assert_books(s)
    assert (a.balance, a.arrears, a.available) == (M("0"), M("25.00"), M("-25.00"))
    assert a.as_json()["arrears"] == "25.00"
    ledger.topup(s, "A", M("10.00"), T0 + 1)
    a = assert_books(s)
    assert (a.balance, a.arrears, a.available) == (M("0"), M("15.00"), M("-15.00"))
    ledger.topup(s, "A", M("100.00"), T0 + 2)
    a = assert_books(s)
    assert (a.balance, a.arrears, a.available) == (M("85.00"), M("0"), M("85.00"))
    assert movements(s, "arrears") == [M("-10.00"), M("-15.00")]
    assert movements(s, "charge") == [M("-5.00")]


def test_credit_limit_counts_and_an_adjustment_or_a_credit_pays_arrears(books):
    s = books
    from fsbill.db import management

    management.set_account(s, "A", T0, "test", credit_limit=M("10.00"))
    dbplans.create_plan(s, "pbx", M("30.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "pbx", T0, start_us=t("2025-04-01T00:00"))
    run_charges(s, t("2025-04-01T00:00"))
    a = assert_books(s)
    assert (a.balance, a.arrears, a.available) == (M("-10.00"), M("20.00"), M("-20.00"))  # the credit is available
    ledger.adjust(s, "A", M("50.00"), "goodwill", T0)
    a = assert_books(s)
    assert (a.balance, a.arrears, a.available) == (M("20.00"), M("0"), M("30.00"))
    dbplans.unsubscribe(s, "A", "pbx", T0, at_us=t("2025-04-16T00:00"))
    run_charges(s, t("2025-04-20T00:00"))
    assert movements(s, "credit") == [M("15.00")]
    assert_books(s)


RATE = Rate(
    prefix="49",
    rate=M("3.00"),
    connect_fee=Money(0),
    initial_increment_s=1,
    increment_s=1,
    min_duration_s=0,
    rounding=RoundingRule(4, RoundingMethod.HALF_UP),
)
POLICY = GrantPolicy(slice_s=120, max_call_s=3600)


def _reserve(store, uuid: str, now_us: int) -> dbcalls.Authorization:
    acc = account(store)
    return dbcalls.reserve(
        store,
        uuid=uuid,
        account_id=acc.id,
        rate=RATE,
        policy=POLICY,
        node="n",
        caller="1",
        destination="4930",
        now_us=now_us,
        lease_until_us=now_us + 60 * US,
        max_ring_s=30,
    )


def test_a_charge_never_touches_a_live_hold_and_the_released_hold_pays_arrears(books):
    s = books
    ledger.topup(s, "A", M("10.00"), T0)
    now = t("2025-04-01T00:00")
    auth = _reserve(s, "call-1", now - 10 * US)
    assert auth.reason == "" and auth.call is not None
    assert account(s).reserved == M("6.00")  # 120 s at 3.00/min
    dbplans.create_plan(s, "pbx", M("30.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "pbx", T0, start_us=now)
    run_charges(s, now)
    a = assert_books(s)
    assert (a.balance, a.reserved, a.arrears, a.available) == (M("6.00"), M("6.00"), M("26.00"), M("-26.00"))
    # in arrears: a new call is refused, the live one is not extended
    assert _reserve(s, "call-2", now + US).reason == "insufficient_funds"
    beat = dbcalls.heartbeat(s, "call-1", 1, now + 100 * US, POLICY, now + 160 * US)
    assert beat is not None and not beat.extended
    # the call ends after 60 s talking: 3.00 posted, the other 3.00 of its hold pays arrears
    answered = now - 5 * US
    dbcalls.mark_answered(s, auth.call.__class__(**{**auth.call.__dict__, "answered_us": answered}), now + 60 * US)
    end = CallEnd(
        "call-1", 1, answered, answered + 60 * US, answered, 60, "NORMAL_CLEARING", "completed", now + 70 * US
    )
    cdr = dbcalls.settle_call(s, end)
    assert cdr is not None and cdr.charged == M("3.00")
    a = assert_books(s)
    assert (a.balance, a.reserved, a.arrears) == (M("0"), M("0"), M("23.00"))
    assert movements(s, "arrears") == [M("-3.00")]


def test_a_closed_account_is_not_charged(books):
    s = books
    from fsbill.db import management

    dbplans.create_plan(s, "pbx", M("30.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "pbx", T0, start_us=t("2025-05-01T00:00"))
    management.close_account(s, "A", t("2025-04-15T00:00"), "test")
    assert run_charges(s, t("2025-05-01T00:00")).charges == 0
    assert movements(s, "charge") == []


def test_the_limit_stops_a_run_and_the_next_continues(books):
    s = books
    ledger.topup(s, "A", M("100"), T0)
    dbplans.create_plan(s, "seat", M("31.00"), "daily", "EUR", T0)
    dbplans.subscribe(s, "A", "seat", T0, start_us=t("2025-01-01T00:00"))
    r = run_charges(s, t("2025-01-31T12:00"), limit=10)
    assert (r.charges, r.more) == (10, True)
    r = run_charges(s, t("2025-01-31T12:00"), limit=100)
    assert (r.charges, r.more) == (21, False)


def test_two_stores_running_at_once_in_one_process(books, db_url):
    """Greenlets on two connections (pools) to one database: each period once."""
    import gevent

    s = books
    _many(s, 3, "2025-01-01T00:00")
    other = Store(db_url)
    try:
        jobs = [gevent.spawn(run_charges, st, t("2025-01-31T12:00"), node=n) for st, n in ((s, "a"), (other, "b"))]
        gevent.joinall(jobs, raise_error=True)
        assert sum(j.value.charges for j in jobs) == 3 * 31
    finally:
        other.close()
    _assert_each_period_once(s, 3, 31)


def test_an_unsubscribe_dated_back_credits_every_period_charged_after_it(books):
    s = books
    ledger.topup(s, "A", M("500"), T0)
    dbplans.create_plan(s, "did", M("31.00"), "monthly", "EUR", T0)
    dbplans.subscribe(s, "A", "did", T0, start_us=t("2025-01-01T00:00"))
    run_charges(s, t("2025-03-05T00:00"))
    assert movements(s, "charge") == [M("-31.00")] * 3
    dbplans.unsubscribe(s, "A", "did", t("2025-03-05T00:00"), at_us=t("2025-01-16T00:00"))
    r = run_charges(s, t("2025-03-05T00:00"))
    assert (r.charges, r.credits) == (0, 3)
    assert sorted(movements(s, "credit")) == [M("16.00"), M("31.00"), M("31.00")]
    assert run_charges(s, t("2025-06-01T00:00")).credits == 0
    (sub,) = dbplans.subscriptions(s, "A")
    assert sub.charged == M("15.00")  # 15 days of January, nothing after
    assert_books(s)
