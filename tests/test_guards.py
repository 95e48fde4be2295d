"""Fraud guards (issue 21, docs/FRAUD.md): the pure formula and rules, then the same enforced in
the database (SQLite and PostgreSQL) under the account's row lock, then the CLI."""

from __future__ import annotations

import json
import uuid as uuidlib
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from migrated import migrate_fresh

from fsbill.cli.main import main
from fsbill.core.call import AccountState, LiveCall, admit, answer, beat
from fsbill.core.grant import GrantPolicy, plan_grant
from fsbill.core.guards import (
    OFF,
    Guards,
    Usage,
    destination_allowed,
    destination_verdict,
    may_spend,
    parse_prefixes,
    period_starts_us,
    resolve_limit,
    resolve_prefixes,
    spend_room,
)
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate, cost
from fsbill.db import Store, ledger
from fsbill.db import calls as dbcalls
from fsbill.db import guards as dbguards
from fsbill.errors import InvalidInput

US = 1_000_000
M = Money.parse
POLICY = GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60)


def rate(per_minute: str = "1.00", prefix: str = "49", initial: int = 1, increment: int = 1) -> Rate:
    return Rate(prefix, M(per_minute), Money(0), initial, increment, 0, RoundingRule(4, RoundingMethod.HALF_UP))


def state(balance="100", held="0", guards: Guards | None = None, usage: Usage | None = None, **kw) -> AccountState:
    return AccountState("active", M(balance), Money(0), M(held), guards=guards, usage=usage or Usage(), **kw)


# -- the formula -------------------------------------------------------------------------------------------
def test_no_cap_means_the_money_alone():
    assert spend_room(Guards(), Usage(), M("5")) is None
    assert state("7", "2").spendable == M("5")
    assert state("7", "2", Guards(block=("882",))).spendable == M("5")


@pytest.mark.parametrize(
    "daily, monthly, spent_day, spent_month, held, room",
    [
        ("10", None, "3", "0", "2", "5"),  # 10 − 3 − 2
        (None, "100", "3", "90", "2", "8"),  # 100 − 90 − 2
        ("10", "100", "3", "95", "2", "3"),  # the tighter one
        ("10", None, "12", "0", "0", "-2"),  # past the cap: negative
        ("0", None, "0", "0", "0", "0"),
    ],
)
def test_spend_room_is_the_tightest_cap(daily, monthly, spent_day, spent_month, held, room):
    g = Guards(daily_cap=daily and M(daily), monthly_cap=monthly and M(monthly))
    assert spend_room(g, Usage(M(spent_day), M(spent_month)), M(held)) == M(room)


def test_may_spend_is_the_smaller():
    assert may_spend(M("5"), M("3")) == M("3")
    assert may_spend(M("3"), M("5")) == M("3")
    assert may_spend(M("3"), None) == M("3")
    assert may_spend(M("3"), M("-1")) == M("-1")


money = st.integers(min_value=0, max_value=50 * US).map(Money)


@given(
    balance=money,
    cap=money,
    spent=money,
    held=money,
    granted=st.integers(0, 600),
    per_min=st.sampled_from(["0.01", "0.30", "1.00", "3.99"]),
    blocks=st.sampled_from([(1, 1), (60, 60), (30, 6)]),
)
@settings(max_examples=400, deadline=None)
def test_an_extension_never_takes_the_period_past_the_cap(balance, cap, spent, held, granted, per_min, blocks):
    """Whatever is spent and held: what a grant newly holds fits in both the money and the cap."""
    r = rate(per_min, initial=blocks[0], increment=blocks[1])
    acc = state(str(balance + held), str(held), Guards(daily_cap=cap), Usage(spent, spent))
    plan = plan_grant(r, granted, acc.spendable, POLICY)
    assert plan.extra_hold <= (acc.available if acc.available.micros > 0 else Money(0))
    if plan.extra_hold:
        assert spent + held + plan.extra_hold <= cap


@given(
    cap=st.integers(1, 30).map(lambda n: Money(n * US // 2)),
    ops=st.lists(
        st.tuples(st.sampled_from(["start", "beat", "end"]), st.integers(0, 7), st.integers(0, 200)), max_size=60
    ),
)
@settings(max_examples=200, deadline=None)
def test_concurrent_calls_of_one_account_never_spend_past_the_daily_cap(cap, ops):
    """A model of one account's live calls (admit, heartbeats with extensions, settlements at any
    time inside the grant): the period's charges plus live holds never exceed the cap."""
    r = rate("1.00")
    balance, spent, held = M("1000"), Money(0), Money(0)
    live: dict[int, LiveCall] = {}
    now = 10**15
    g = Guards(daily_cap=cap)
    for op, slot, dt in ops:
        now += dt * US // 10
        acc = AccountState("active", balance, Money(0), held, guards=g, usage=Usage(spent, spent))
        if op == "start" and slot not in live:
            adm = admit(f"c{slot}", 1, acc, r, POLICY, now, 0, "4930")
            if adm.call is not None:
                live[slot] = answer(adm.call, now, POLICY)
                held += adm.call.held
            else:
                assert adm.reason in ("spend_cap", "insufficient_funds")
        elif op == "beat" and slot in live:
            call = live[slot]
            at = min(now, call.answered_us + call.granted_s * US)
            b = beat(call, acc, at, POLICY, extend=True)
            balance -= b.debit
            spent += b.debit
            held += b.extra_hold - b.debit
            live[slot] = b.call
        elif op == "end" and slot in live:
            call = live.pop(slot)
            used_s = min((now - call.answered_us) // US, call.granted_s)
            owed = cost(r, used_s) - call.debited
            owed = owed if owed <= call.held else call.held
            balance -= owed
            spent += owed
            held -= call.held
        assert spent + held <= cap


def test_admit_refuses_with_spend_cap_when_money_is_there():
    g = Guards(daily_cap=M("5"))
    assert admit("u", 1, state("100", guards=g, usage=Usage(M("5"), M("5"))), rate(), POLICY, 0, 0, "49").reason == (
        "spend_cap"
    )
    # no money either: the money is what it says
    assert admit("u", 1, state("0", guards=g, usage=Usage(M("5"), M("5"))), rate(), POLICY, 0, 0, "49").reason == (
        "insufficient_funds"
    )
    ok = admit("u", 1, state("100", guards=g, usage=Usage(M("4"), M("4"))), rate(), POLICY, 0, 0, "49")
    assert ok.call is not None and ok.call.granted_s == 60 and ok.call.final  # 1.00 left at 1.00/min


def test_admit_order_and_reasons():
    g = Guards(block=("882",), max_rate=M("1.00"), max_calls_per_minute=2, daily_cap=M("0"))
    suspended = AccountState("suspended", M("100"), Money(0), Money(0), guards=g)
    assert admit("u", 1, suspended, rate(prefix="882"), POLICY, 0, 0, "88212").reason == "suspended"
    assert admit("u", 1, state(guards=g), rate(prefix="882"), POLICY, 0, 0, "88212").reason == "destination_blocked"
    assert admit("u", 1, state(guards=g), rate("1.01"), POLICY, 0, 0, "4930").reason == "rate_too_high"
    busy = state(guards=g, usage=Usage(calls_last_minute=2))
    assert admit("u", 1, busy, rate(), POLICY, 0, 0, "4930").reason == "call_rate"
    assert admit("u", 1, state(guards=g), rate("1.00"), POLICY, 0, 0, "4930").reason == "spend_cap"
    assert admit("u", 1, state(guards=replace_cap(g)), rate("1.00"), POLICY, 0, 0, "4930").reason == ""


def replace_cap(g: Guards) -> Guards:
    from dataclasses import replace

    return replace(g, daily_cap=None)


def test_beat_extension_is_capped_and_final():
    g = Guards(daily_cap=M("3"))
    adm = admit("u", 1, state(guards=g), rate(), POLICY, 0, 0, "49")
    call = answer(adm.call, 0, POLICY)
    assert call.granted_s == 120 and call.held == M("2")  # 2.00 of the 3.00 cap
    acc = state("100", str(call.held), g)
    b = beat(call, acc, 70 * US, POLICY, extend=True)
    # 1.17 debited (70 s), 0.83 still held: the extension may add 1.00 → 180 s, final
    assert b.extended and b.call.granted_s == 180 and b.call.final
    assert b.call.held + b.call.debited == M("3")


# -- destinations -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number, block, allow, allowed",
    [
        ("4930123", (), (), True),
        ("88212345", ("882",), (), False),
        ("4930123", ("882",), (), True),
        ("4930123", (), ("44",), False),  # allow-list mode: unmatched is refused
        ("4420123", (), ("44",), True),
        ("4490123", ("449",), ("44",), False),  # a longer block carves a hole in an allow
        ("4420123", ("44",), ("4420",), True),  # a longer allow carves a hole in a block
        ("4420123", ("4420",), ("4420",), True),  # equal length: allow wins
        ("", (), ("44",), False),
    ],
)
def test_longest_prefix_decides(number, block, allow, allowed):
    assert destination_allowed(number, block, allow) is allowed


prefixes = st.lists(st.text("0123456789", min_size=1, max_size=4), max_size=5).map(tuple)


@given(number=st.text("0123456789", max_size=8), block=prefixes, allow=prefixes)
@settings(max_examples=500, deadline=None)
def test_longest_prefix_matches_the_definition(number, block, allow):
    matches = [(len(p), p in allow) for p in set(block) | set(allow) if number.startswith(p)]
    expected = max(matches)[1] if matches else not allow
    assert destination_allowed(number, block, allow) is expected


def test_max_rate_is_per_minute_and_inclusive():
    g = Guards(max_rate=M("0.50"))
    assert destination_verdict(g, "49", M("0.50")) == ""
    assert destination_verdict(g, "49", M("0.500001")) == "rate_too_high"
    assert destination_verdict(Guards(allow=("44",)), "49", M("9")) == "destination_blocked"


# -- periods ---------------------------------------------------------------------------------------------------
def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * US


@pytest.mark.parametrize(
    "now, tz, day, month",
    [
        ("2025-03-15T12:00:00+00:00", "UTC", "2025-03-15T00:00:00+00:00", "2025-03-01T00:00:00+00:00"),
        ("2025-03-15T23:30:00+00:00", "Europe/Berlin", "2025-03-16T00:00:00+01:00", "2025-03-01T00:00:00+01:00"),
        ("2025-03-30T12:00:00+00:00", "Europe/Berlin", "2025-03-30T00:00:00+01:00", "2025-03-01T00:00:00+01:00"),
        ("2025-04-01T00:30:00+02:00", "Europe/Berlin", "2025-04-01T00:00:00+02:00", "2025-04-01T00:00:00+02:00"),
        ("2025-01-01T03:00:00+00:00", "America/New_York", "2024-12-31T00:00:00-05:00", "2024-12-01T00:00:00-05:00"),
    ],
)
def test_period_starts_in_the_tariffs_zone(now, tz, day, month):
    assert period_starts_us(us(now), tz) == (us(day), us(month))


@given(
    now=st.integers(946_684_800, 4_102_444_800).map(lambda s: s * US),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/Sao_Paulo", "Australia/Lord_Howe", "Asia/Kolkata"]),
)
@settings(max_examples=300, deadline=None)
def test_period_starts_are_local_midnights_before_now(now, tz):
    day, month = period_starts_us(now, tz)
    assert month <= day <= now < day + 25 * 3600 * US
    local_day = datetime.fromtimestamp(day // US, tz=timezone.utc).astimezone(ZoneInfo(tz))
    local_now = datetime.fromtimestamp(now // US, tz=timezone.utc).astimezone(ZoneInfo(tz))
    assert local_day.date() == local_now.date()
    assert datetime.fromtimestamp(month // US, tz=timezone.utc).astimezone(ZoneInfo(tz)).day == 1


# -- the two layers ----------------------------------------------------------------------------------------------
def test_account_settings_over_the_tariffs():
    assert resolve_limit(None, 5) == 5
    assert resolve_limit(7, 5) == 7
    assert resolve_limit(OFF, 5) is None
    assert resolve_limit(None, None) is None
    assert resolve_prefixes(None, "882,883") == ("882", "883")
    assert resolve_prefixes("", "882") == ()
    assert resolve_prefixes("44", "882") == ("44",)


@pytest.mark.parametrize("text", ["abc", "49a", "٤٩", "0049", "", ","])
def test_bad_prefixes_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_prefixes(text)


def test_prefixes_are_normalised():
    assert parse_prefixes(" +882, 44,882 ") == ("44", "882")


# -- in the database ---------------------------------------------------------------------------------------------
NOW = 1_750_000_000 * US  # 2025-06-15T15:06:40Z


def seed(store: Store, balance: str = "100", code: str = "acme", tz: str = "UTC") -> int:
    if not any(t.name == "retail" for t in ledger.list_tariffs(store)):
        ledger.create_tariff(store, "retail", "EUR", NOW, timezone=tz)
    ledger.create_account(store, code, "retail", NOW)
    ledger.topup(store, code, M(balance), NOW - 86400 * US * 40, reference="seed")
    return ledger.get_account(store, code).id


def reserve(
    store: Store, account_id: int, now_us: int = NOW, destination: str = "4930123", r: Rate | None = None, uuid=None
):
    return dbcalls.reserve(
        store,
        uuid=uuid or str(uuidlib.uuid4()),
        account_id=account_id,
        rate=r or rate(),
        policy=POLICY,
        node="n",
        caller="1",
        destination=destination,
        now_us=now_us,
        lease_until_us=now_us + 60 * US,
        max_ring_s=0,
    )


def spend(store: Store, account_id: int, amount: str, at_us: int) -> None:
    with store.transaction():
        ledger.post(store, account_id, -M(amount), "call", at_us, call_uuid=str(uuidlib.uuid4()), note="settlement")


def test_daily_cap_counts_todays_charges_and_live_holds(store):
    acc = seed(store)
    dbguards.set_account_guards(store, "acme", {"daily_cap_micros": "3.50"}, NOW, actor="test")
    spend(store, acc, "9.00", NOW - 86400 * US)  # yesterday: not today's
    spend(store, acc, "1.00", NOW - 3600 * US)  # today
    first = reserve(store, acc)
    assert first.call is not None and first.call.held == M("2.00")  # a full slice
    second = reserve(store, acc)
    assert second.call is not None and second.call.held == M("0.50") and second.call.final
    third = reserve(store, acc)
    assert third.call is None and third.reason == "spend_cap"
    view = dbguards.account_guards(store, "acme", NOW)
    assert view.spent_today == M("3.50") and view.spent_this_month == M("12.50")
    # the next day, the cap starts again (the holds of the live calls still count)
    tomorrow = reserve(store, acc, NOW + 86400 * US)
    assert tomorrow.call is not None and tomorrow.call.held == M("1.00")


def test_monthly_cap_and_the_tariffs_zone(db_url):
    migrate_fresh(db_url)
    store = Store(db_url)
    store.upgrade()
    try:
        acc = seed(store, tz="Pacific/Kiritimati")  # UTC+14: NOW is 2025-06-16 05:06 there
        dbguards.set_tariff_guards(store, "retail", {"monthly_cap_micros": "10"}, NOW, actor="test")
        spend(store, acc, "4", us("2025-06-01T00:30:00+14:00"))  # this month there
        spend(store, acc, "50", us("2025-05-31T23:30:00+14:00"))  # last month there (both are May 31 in UTC)
        auth = reserve(store, acc)
        assert auth.call is not None and auth.call.held == M("2.00")  # 10 − 4: a full slice
        assert dbguards.account_guards(store, "acme", NOW).spent_this_month == M("6.00")
        # the account's own cap wins over the tariff's: 5 − 4 − 2 held leaves nothing
        dbguards.set_account_guards(store, "acme", {"monthly_cap_micros": "5"}, NOW, actor="test")
        assert reserve(store, acc).reason == "spend_cap"
    finally:
        store.close()


def test_account_overrides_and_off(store):
    acc = seed(store)
    dbguards.set_tariff_guards(store, "retail", {"block_prefixes": "49", "daily_cap_micros": "0"}, NOW, actor="test")
    assert reserve(store, acc).reason == "destination_blocked"
    dbguards.set_account_guards(store, "acme", {"block_prefixes": "off"}, NOW, actor="test")
    assert reserve(store, acc).reason == "spend_cap"  # the tariff's cap of 0 still applies
    dbguards.set_account_guards(store, "acme", {"daily_cap_micros": "off"}, NOW, actor="test")
    assert reserve(store, acc).call is not None
    dbguards.set_account_guards(
        store, "acme", {"block_prefixes": "none", "daily_cap_micros": "none"}, NOW, actor="test"
    )
    assert reserve(store, acc).reason == "destination_blocked"  # back to the tariff's defaults


def test_allow_list_and_max_rate(store):
    acc = seed(store)
    dbguards.set_account_guards(store, "acme", {"allow_prefixes": "49", "max_rate_micros": "0.50"}, NOW, actor="test")
    assert reserve(store, acc, destination="88212345").reason == "destination_blocked"
    assert reserve(store, acc, r=rate("0.51")).reason == "rate_too_high"
    assert reserve(store, acc, r=rate("0.50")).call is not None
    assert ledger.get_account(store, "acme").live_channels == 1  # the refused ones hold nothing


def test_calls_per_minute_counted_in_the_database(store):
    acc = seed(store)
    dbguards.set_account_guards(store, "acme", {"max_calls_per_minute": "3"}, NOW, actor="test")
    uuids = [str(uuidlib.uuid4()) for _ in range(3)]
    for i, u in enumerate(uuids):
        assert reserve(store, acc, NOW + i * US, uuid=u).call is not None
    assert reserve(store, acc, NOW + 10 * US).reason == "call_rate"
    # a refused call is not counted; 60 s after the first, one slot is free again
    assert reserve(store, acc, NOW + 60 * US).call is not None
    assert reserve(store, acc, NOW + 60 * US).reason == "call_rate"
    with store.reading() as db:
        rows = db.execute_sql("SELECT COUNT(*) FROM call_start").fetchone()[0]
    assert rows == 3  # the one outside the window was pruned


def test_heartbeat_extension_stops_at_the_cap(store):
    acc = seed(store)
    dbguards.set_account_guards(store, "acme", {"daily_cap_micros": "3"}, NOW, actor="test")
    auth = reserve(store, acc)
    call = answer(auth.call, NOW, POLICY)
    dbcalls.mark_answered(store, call, NOW + 60 * US)
    b = dbcalls.heartbeat(store, call.uuid, 1, NOW + 70 * US, POLICY, NOW + 130 * US, known=call)
    assert b.extended and b.call.granted_s == 180 and b.call.final
    view = dbguards.account_guards(store, "acme", NOW + 70 * US)
    assert view.spent_today == M("3.00")  # 1.1667 posted + the rest held


@pytest.mark.timeout(120)
def test_concurrent_reservations_from_several_connections_respect_the_cap(db_url):
    migrate_fresh(db_url)
    first = Store(db_url)
    first.upgrade()
    acc = seed(first)
    dbguards.set_account_guards(
        first, "acme", {"daily_cap_micros": "5", "max_calls_per_minute": "4"}, NOW, actor="test"
    )
    stores = [first] + [Store(db_url) for _ in range(3)]
    try:
        results = []
        jobs = [gevent.spawn(lambda s=s: results.append(reserve(s, acc))) for s in stores for _ in range(3)]
        gevent.joinall(jobs, raise_error=True)
        admitted = [r for r in results if r.call is not None]
        assert len(admitted) == 3  # 2.00 + 2.00 + 1.00 = the cap
        assert sum((r.call.held for r in admitted), Money(0)) == M("5")
        assert {r.reason for r in results if r.call is None} == {"spend_cap"}
    finally:
        for s in stores:
            s.close()


# -- the CLI -----------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: 'sqlite:///{tmp_path}/c.db'\n", encoding="utf-8")

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config)])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("tariff", "add", "retail")[0] == 0
    assert run("account", "add", "acme", "--tariff", "retail")[0] == 0
    return run


def test_cli_guards_on_tariff_and_account(cli):
    code, out, _ = cli("tariff", "guard", "retail", "--daily-cap", "5", "--block", "882,+883", "--json")
    assert code == 0 and json.loads(out)["daily_cap"] == "5.00" and json.loads(out)["block"] == ["882", "883"]
    code, out, _ = cli("account", "guard", "acme", "--monthly-cap", "100", "--allow", "49", "--max-rate", "1.5")
    assert code == 0 and "monthly cap  100.00 EUR (from the account)" in out
    code, out, _ = cli("account", "guard", "acme", "--block", "off", "--max-calls-per-minute", "10")
    assert code == 0
    code, out, _ = cli("account", "show", "acme", "--json")
    g = json.loads(out)["guards"]
    assert g["daily_cap"] == "5.00" and g["from"]["daily_cap"] == "tariff"
    assert g["block"] == [] and g["from"]["block"] == "account"
    assert g["allow"] == ["49"] and g["max_rate"] == "1.50" and g["max_calls_per_minute"] == 10
    assert g["spent_today"] == "0.00"
    code, out, _ = cli("account", "show", "acme")
    assert "daily cap    5.00 EUR (from the tariff)" in out and "blocked      off (from the account)" in out
    cli("account", "guard", "acme", "--daily-cap", "none", "--max-rate", "none")
    code, out, _ = cli("account", "guard", "acme", "--json")
    assert json.loads(out)["max_rate"] is None and json.loads(out)["daily_cap"] == "5.00"


@pytest.mark.parametrize(
    "args, message",
    [
        (("account", "guard", "acme", "--daily-cap", "x"), "daily cap"),
        (("account", "guard", "acme", "--daily-cap", "-1"), "must not be negative"),
        (("account", "guard", "acme", "--block", "0049"), "starts with 00"),
        (("account", "guard", "acme", "--allow", "4a"), "not digits"),
        (("account", "guard", "acme", "--max-calls-per-minute", "0"), "> 0"),
        (("account", "guard", "nobody", "--daily-cap", "1"), "no account"),
        (("tariff", "guard", "nothing", "--daily-cap", "1"), "no tariff"),
    ],
)
def test_cli_bad_guard_input_is_one_clean_line(cli, args, message):
    code, out, err = cli(*args)
    assert code != 0 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = cli(*args, "--json")
    assert code != 0 and out == "" and message in json.loads(err)["error"]
