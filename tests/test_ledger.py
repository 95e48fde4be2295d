"""fsbill.db.ledger on real SQLite and PostgreSQL: tariffs, accounts, top-ups, adjustments and the
rule that an account's balance is always the sum of its ledger entries."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import pytest

from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.db import Store, ledger
from fsbill.errors import Conflict, InvalidInput, NotFound
from fsbill.instant import parse_iso

M = Money.parse
T0 = parse_iso("2026-01-01T00:00:00Z")


def us(seconds: int) -> int:
    return T0 + seconds * 1_000_000


@pytest.fixture(scope="module")
def shared_pg_url():
    """One migrated PostgreSQL database for this module, emptied before each test (creating a
    database per test would cost most of this module's run time)."""
    import uuid

    import psycopg

    # the same server and the same skip/fail rule as conftest's pg_url (not imported from
    # there: tests/sim has a conftest module of its own)
    admin = os.environ.get("FSBILL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(admin, connect_timeout=3, autocommit=True).close()
    except Exception as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if os.environ.get("FSBILL_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but unreachable: {why}")
        pytest.skip(f"PostgreSQL unreachable: {why}")
    name = f"fsbill_t_ledger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin.rsplit('/', 1)[0]}/{name}"
    s = Store(url)
    s.upgrade()
    s.close()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """An empty, migrated database: a fresh SQLite file, or the module's PostgreSQL database
    with every table emptied and its ids restarted."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/fsbill.db")
        s.upgrade()
    else:
        s = Store(request.getfixturevalue("shared_pg_url"))
        assert s.upgrade() == []
        with s.transaction() as db:
            tables = [t for t in db.get_tables() if t != "schema_migration"]
            db.execute_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    yield s
    s.close()


@pytest.fixture
def acct(store):
    ledger.create_tariff(store, "retail", "EUR", T0)
    ledger.create_account(store, "A", "retail", T0)
    return "A"


def entries(store, code):
    return ledger.ledger(store, code)


def assert_ledger_is_truth(store, code):
    a = ledger.get_account(store, code)
    rows = entries(store, code)
    assert a.balance == ledger.ledger_sum(store, code)
    running = Money.zero()
    for e in rows:
        running = running + e.amount
        assert e.balance_after == running, e
    assert running == a.balance
    return a


# -- tariffs ---------------------------------------------------------------------------------------
def test_create_and_list_tariffs(store):
    t = ledger.create_tariff(store, "retail", "usd", T0, RoundingRule(2, RoundingMethod.UP), "Europe/Berlin")
    assert (t.name, t.currency, t.timezone, t.rate_count) == ("retail", "USD", "Europe/Berlin", 0)
    assert t.rounding == RoundingRule(2, RoundingMethod.UP)
    ledger.create_tariff(store, "a-wholesale", "EUR", T0)
    assert [x.name for x in ledger.list_tariffs(store)] == ["a-wholesale", "retail"]
    got = ledger.get_tariff(store, "retail")
    assert got.rounding == RoundingRule(2, RoundingMethod.UP) and got.currency == "USD"


def test_duplicate_tariff_is_a_conflict(store):
    ledger.create_tariff(store, "retail", "EUR", T0)
    with pytest.raises(Conflict, match="retail"):
        ledger.create_tariff(store, "retail", "USD", T0)
    assert len(ledger.list_tariffs(store)) == 1


@pytest.mark.parametrize(
    "name, currency, tz",
    [
        ("", "EUR", "UTC"),
        ("  ", "EUR", "UTC"),
        ("x", "EU", "UTC"),
        ("x", "EURO", "UTC"),
        ("x", "E1R", "UTC"),
        ("x", "EUR", "Mars/Olympus"),
    ],
)
def test_bad_tariff_is_refused(store, name, currency, tz):
    with pytest.raises(InvalidInput):
        ledger.create_tariff(store, name, currency, T0, timezone=tz)
    assert ledger.list_tariffs(store) == []


def test_unknown_tariff(store):
    with pytest.raises(NotFound):
        ledger.get_tariff(store, "nope")


# -- accounts --------------------------------------------------------------------------------------
def test_create_account(store):
    ledger.create_tariff(store, "retail", "GBP", T0)
    a = ledger.create_account(
        store, "1001", "retail", T0, credit_limit=M("5.5"), max_channels=3, clis=["+441234", "445678"]
    )
    assert (a.code, a.tariff, a.currency, a.status) == ("1001", "retail", "GBP", "active")
    assert a.balance == Money.zero() and a.reserved == Money.zero()
    assert a.credit_limit == M("5.5") and a.available == M("5.5")
    assert a.max_channels == 3 and a.live_channels == 0
    assert a.clis == ("441234", "445678")
    assert ledger.get_account(store, "1001") == a
    j = a.as_json()
    assert j["balance"] == "0.00" and j["credit_limit"] == "5.50" and j["available"] == "5.50"
    assert all(isinstance(j[k], str) for k in ("balance", "credit_limit", "reserved", "available"))


def test_duplicate_account_is_a_conflict(store, acct):
    with pytest.raises(Conflict, match="'A'"):
        ledger.create_account(store, "A", "retail", T0)
    assert [a.code for a in ledger.list_accounts(store)] == ["A"]


def test_account_on_unknown_tariff_is_refused(store):
    with pytest.raises(NotFound, match="nope"):
        ledger.create_account(store, "A", "nope", T0)
    assert ledger.list_accounts(store) == []


@pytest.mark.parametrize(
    "code, kwargs",
    [
        ("", {}),
        ("has space", {}),
        ("x" * 65, {}),
        ("B", {"credit_limit": M("-1")}),
        ("B", {"max_channels": -1}),
        ("B", {"clis": ["12ab"]}),
        ("B", {"clis": [""]}),
    ],
)
def test_bad_account_is_refused(store, acct, code, kwargs):
    with pytest.raises(InvalidInput):
        ledger.create_account(store, code, "retail", T0, **kwargs)
    assert [a.code for a in ledger.list_accounts(store)] == ["A"]


def test_list_accounts_sorted(store, acct):
    ledger.create_account(store, "0-first", "retail", T0)
    ledger.create_account(store, "Z", "retail", T0)
    assert [a.code for a in ledger.list_accounts(store)] == ["0-first", "A", "Z"]


def test_unknown_account(store):
    with pytest.raises(NotFound):
        ledger.get_account(store, "ghost")
    with pytest.raises(NotFound):
        ledger.ledger(store, "ghost")


def test_caller_id_mapping(store, acct):
    ledger.create_account(store, "B", "retail", T0, clis=["+4930111", "4930111", "4930222"])
    assert ledger.get_account(store, "B").clis == ("4930111", "4930222")  # normalized, deduplicated
    m = store.models
    with store.reading():
        owner = m.Account.get_by_id(m.AccountCli.get(m.AccountCli.number == "4930222").account_id)
    assert owner.code == "B"
    # a caller id identifies one account only; the refused account is not created at all
    with pytest.raises(Conflict, match="4930111"):
        ledger.create_account(store, "C", "retail", T0, clis=["4930333", "+4930111"])
    with pytest.raises(NotFound):
        ledger.get_account(store, "C")
    with store.reading():
        assert m.AccountCli.select().where(m.AccountCli.number == "4930333").count() == 0


def test_suspend_and_resume(store, acct):
    assert ledger.set_status(store, "A", "suspended", us(1)).status == "suspended"
    assert ledger.get_account(store, "A").status == "suspended"
    assert ledger.set_status(store, "A", "active", us(2)).status == "active"
    with pytest.raises(NotFound):
        ledger.set_status(store, "ghost", "suspended", us(3))
    with pytest.raises(InvalidInput):
        ledger.set_status(store, "A", "closed", us(3))
    assert ledger.get_account(store, "A").status == "active"


# -- top-ups ---------------------------------------------------------------------------------------
def test_topup_credits_and_ledgers(store, acct):
    r = ledger.topup(store, "A", M("10.25"), us(1), reference="pay-1", note="card")
    assert r.applied
    assert (r.entry.amount, r.entry.kind, r.entry.reference, r.entry.note) == (M("10.25"), "topup", "pay-1", "card")
    assert r.entry.balance_after == M("10.25") and r.entry.created_us == us(1)
    ledger.topup(store, "A", M("0.000001"), us(2))
    assert assert_ledger_is_truth(store, "A").balance == M("10.250001")
    j = entries(store, "A")[0].as_json()
    assert j["amount"] == "10.25" and j["balance_after"] == "10.25" and j["time"] == "2026-01-01T00:00:01Z"


@pytest.mark.parametrize("amount", ["0", "-0.01", "-10"])
def test_topup_must_be_positive(store, acct, amount):
    with pytest.raises(InvalidInput):
        ledger.topup(store, "A", M(amount), us(1))
    assert entries(store, "A") == [] and ledger.get_account(store, "A").balance == Money.zero()


def test_topup_unknown_account_writes_nothing(store, acct):
    with pytest.raises(NotFound):
        ledger.topup(store, "ghost", M("1"), us(1))
    m = store.models
    with store.reading():
        assert m.LedgerEntry.select().count() == 0


def test_topup_empty_reference_is_refused(store, acct):
    with pytest.raises(InvalidInput):
        ledger.topup(store, "A", M("1"), us(1), reference="  ")


def test_same_reference_credits_once(store, acct):
    first = ledger.topup(store, "A", M("5"), us(1), reference="bank-77")
    again = ledger.topup(store, "A", M("5.00"), us(2), reference="bank-77")
    assert first.applied and not again.applied
    assert again.entry == first.entry  # says which credit it was
    assert len(entries(store, "A")) == 1
    assert assert_ledger_is_truth(store, "A").balance == M("5")


def test_same_reference_with_another_amount_is_refused_naming_the_earlier_movement(store, acct):
    """A mistyped reference must not silently drop a payment."""
    first = ledger.topup(store, "A", M("5"), us(1), reference="bank-77")
    with pytest.raises(Conflict) as info:
        ledger.topup(store, "A", M("9"), us(3), reference="bank-77")
    message = str(info.value)
    assert "bank-77" in message and f"movement {first.entry.id}" in message and "topup 5.00" in message
    assert "9.00" in message
    # an adjustment may not reuse a top-up's reference either, whatever the amount
    with pytest.raises(Conflict, match=f"movement {first.entry.id}"):
        ledger.adjust(store, "A", M("5"), "x", us(4), reference="bank-77")
    assert len(entries(store, "A")) == 1
    assert assert_ledger_is_truth(store, "A").balance == M("5")


def test_references_are_per_account(store, acct):
    ledger.create_account(store, "B", "retail", T0)
    assert ledger.topup(store, "A", M("1"), us(1), reference="r").applied
    assert ledger.topup(store, "B", M("2"), us(1), reference="r").applied
    assert ledger.get_account(store, "A").balance == M("1")
    assert ledger.get_account(store, "B").balance == M("2")


# -- adjustments --------------------------------------------------------------------------------------
def test_adjust_is_signed_and_keeps_its_reason(store, acct):
    ledger.topup(store, "A", M("10"), us(1))
    down = ledger.adjust(store, "A", M("-2.5"), "refund of double charge", us(2))
    up = ledger.adjust(store, "A", M("0.75"), "goodwill", us(3))
    assert (down.kind, down.amount, down.note, down.balance_after) == (
        "adjust",
        M("-2.5"),
        "refund of double charge",
        M("7.5"),
    )
    assert (up.amount, up.balance_after) == (M("0.75"), M("8.25"))
    assert assert_ledger_is_truth(store, "A").balance == M("8.25")


@pytest.mark.parametrize("amount, reason", [("0", "x"), ("1", ""), ("1", "   ")])
def test_adjust_needs_an_amount_and_a_reason(store, acct, amount, reason):
    with pytest.raises(InvalidInput):
        ledger.adjust(store, "A", M(amount), reason, us(1))
    assert entries(store, "A") == []


def test_adjust_unknown_account(store):
    with pytest.raises(NotFound):
        ledger.adjust(store, "ghost", M("1"), "x", us(1))


def test_adjust_refuses_to_make_available_negative_unless_forced(store):
    ledger.create_tariff(store, "retail", "EUR", T0)
    ledger.create_account(store, "A", "retail", T0, credit_limit=M("2"))
    ledger.topup(store, "A", M("3"), us(1))
    # available = 3 + 2 = 5: taking exactly 5 is allowed, 0.000001 more is not
    with pytest.raises(InvalidInput, match="--force"):
        ledger.adjust(store, "A", M("-5.000001"), "too much", us(2))
    assert ledger.get_account(store, "A").balance == M("3") and len(entries(store, "A")) == 1
    ledger.adjust(store, "A", M("-5"), "exactly all", us(3))
    assert ledger.get_account(store, "A").available == Money.zero()
    with pytest.raises(InvalidInput):
        ledger.adjust(store, "A", M("-0.01"), "more", us(4))
    forced = ledger.adjust(store, "A", M("-1"), "chargeback", us(5), force=True)
    assert forced.balance_after == M("-3")
    assert assert_ledger_is_truth(store, "A").available == M("-1")


def test_adjust_respects_what_live_calls_hold(store, acct):
    ledger.topup(store, "A", M("10"), us(1))
    m = store.models
    with store.transaction():  # a live call holding 4 (as fsbill.db.calls would)
        m.Account.update(reserved_micros=M("4").micros).where(m.Account.code == "A").execute()
    assert ledger.get_account(store, "A").available == M("6")
    with pytest.raises(InvalidInput, match="hold"):
        ledger.adjust(store, "A", M("-7"), "x", us(2))
    ledger.adjust(store, "A", M("-6"), "x", us(3))
    a = assert_ledger_is_truth(store, "A")
    assert (a.balance, a.reserved, a.available) == (M("4"), M("4"), Money.zero())


def test_adjust_reference_is_idempotent_for_the_same_amount_and_a_conflict_for_another(store, acct):
    first = ledger.adjust_result(store, "A", M("1"), "x", us(1), reference="fix-1")
    again = ledger.adjust_result(store, "A", M("1"), "x", us(2), reference="fix-1")
    assert first.applied and not again.applied and again.entry == first.entry
    with pytest.raises(Conflict, match=f"fix-1.*movement {first.entry.id}"):
        ledger.adjust(store, "A", M("-1"), "x", us(2), reference="fix-1")
    assert assert_ledger_is_truth(store, "A").balance == M("1")


# -- the ledger ----------------------------------------------------------------------------------------
def test_ledger_since_filters_by_time(store, acct):
    for i, t in enumerate(["2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z", "2026-01-03T10:00:00Z"]):
        ledger.topup(store, "A", M(str(i + 1)), parse_iso(t))
    assert [e.amount for e in ledger.ledger(store, "A")] == [M("1"), M("2"), M("3")]
    assert [e.amount for e in ledger.ledger(store, "A", since_us=parse_iso("2026-01-02"))] == [M("2"), M("3")]
    # inclusive at the boundary
    assert [e.amount for e in ledger.ledger(store, "A", since_us=parse_iso("2026-01-02T10:00:00Z"))] == [M("2"), M("3")]
    assert ledger.ledger(store, "A", since_us=parse_iso("2026-01-04")) == []
    # --limit N: the latest N, still oldest first (the help says "the latest N")
    assert [e.amount for e in ledger.ledger(store, "A", limit=2)] == [M("2"), M("3")]
    assert [e.amount for e in ledger.ledger(store, "A", limit=1)] == [M("3")]
    assert [e.amount for e in ledger.ledger(store, "A", limit=5)] == [M("1"), M("2"), M("3")]
    since = parse_iso("2026-01-02")
    assert [e.amount for e in ledger.ledger(store, "A", since_us=since, limit=1)] == [M("3")]


def test_ledger_is_per_account(store, acct):
    ledger.create_account(store, "B", "retail", T0)
    ledger.topup(store, "A", M("1"), us(1))
    ledger.topup(store, "B", M("2"), us(1))
    assert [e.account for e in ledger.ledger(store, "B")] == ["B"]
    assert ledger.ledger_sum(store, "B") == M("2")


def test_balance_equals_ledger_after_random_operations(store, acct):
    """A seeded random mix of top-ups (with repeated references), signed adjustments (some
    refused, some forced) and failures: the balance is the ledger's sum after every step, and
    equals an independent model of what should have been applied."""
    rng = random.Random(20260101)
    ledger.create_account(store, "B", "retail", T0, credit_limit=M("1"))
    model = {"A": 0, "B": 0}
    limits = {"A": 0, "B": M("1").micros}
    seen: dict[str, dict[str, int]] = {"A": {}, "B": {}}
    for step in range(120):
        code = rng.choice(["A", "B"])
        micros = rng.randint(1, 5_000_000)
        op = rng.random()
        if op < 0.5:
            ref = rng.choice([None, f"ref-{rng.randint(0, 15)}"])
            if ref in seen[code] and rng.random() < 0.5:
                with pytest.raises(Conflict):  # the same reference, another amount
                    ledger.topup(store, code, Money(seen[code][ref] + 1), us(step), reference=ref)
                continue
            if ref in seen[code]:
                micros = seen[code][ref]
            r = ledger.topup(store, code, Money(micros), us(step), reference=ref)
            assert r.applied == (ref is None or ref not in seen[code])
            if r.applied:
                model[code] += micros
                if ref:
                    seen[code][ref] = micros
        elif op < 0.9:
            sign = rng.choice([1, -1])
            force = rng.random() < 0.2
            if sign < 0 and not force and model[code] + limits[code] - micros < 0:
                with pytest.raises(InvalidInput):
                    ledger.adjust(store, code, Money(-micros), "random", us(step))
            else:
                ledger.adjust(store, code, Money(sign * micros), "random", us(step), force=force)
                model[code] += sign * micros
        else:
            with pytest.raises((InvalidInput, NotFound)):
                if rng.random() < 0.5:
                    ledger.topup(store, rng.choice(["ghost", code]), Money(-micros), us(step))
                else:
                    ledger.adjust(store, "ghost", Money(micros), "x", us(step))
        if step % 10 == 0:
            assert ledger.get_account(store, code).balance == ledger.ledger_sum(store, code)
    for code in ("A", "B"):
        assert assert_ledger_is_truth(store, code).balance == Money(model[code])


# -- concurrency: several OS processes, one database ------------------------------------------------
WORKER = textwrap.dedent(
    """
    import sys
    from fsbill.db import Store
    from fsbill.db import ledger
    from fsbill.core.money import Money

    url, code, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = Store(url, busy_timeout_ms=30000)
    assert store.ping()
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    applied = 0
    for i in range(count):
        # every worker credits its own references and fights over the shared ones
        for ref, micros in ((f"w{worker}-{i}", 1_000 * (worker + 1) + i), (f"shared-{i}", 7_000 + i)):
            result = ledger.topup(store, code, Money(micros), 1_000_000 + i, reference=ref)
            applied += result.applied
    store.close()
    print(applied, flush=True)
    """
)


def _run_workers(url: str, code: str, workers: int, count: int) -> list[int]:
    env = dict(os.environ)
    env.pop("FSBILL_CONFIG", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, code, str(w), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(workers)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:  # release them all at once
        p.stdin.write("go\n")
        p.stdin.flush()
    applied = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        applied.append(int(out.strip().splitlines()[-1]))
    return applied


@pytest.mark.timeout(180)
def test_concurrent_topups_from_processes_lose_nothing(store, acct):
    workers, count = 4, 15
    applied = _run_workers(store.url, "A", workers, count)
    distinct = sum(1_000 * (w + 1) + i for w in range(workers) for i in range(count))
    shared = sum(7_000 + i for i in range(count))
    a = assert_ledger_is_truth(store, "A")
    assert a.balance == Money(distinct + shared)
    # every distinct reference once, every shared one exactly once over all workers
    assert sum(applied) == workers * count + count
    rows = entries(store, "A")
    assert len(rows) == workers * count + count
    assert len({e.reference for e in rows}) == len(rows)


@pytest.mark.timeout(180)
def test_concurrent_cli_topups_with_one_reference_credit_once(store, acct, tmp_path):
    """The operator's tool itself: `python -m fsbill topup` from several processes at once."""
    config = tmp_path / "cli.yaml"
    config.write_text(f"database: '{store.url}'\n", encoding="utf-8")
    env = dict(os.environ)
    env.pop("FSBILL_CONFIG", None)
    cmds = [["A", "2.50", "--reference", "same"]] * 3 + [["A", "0.000002", "--reference", "own"]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fsbill", "topup", *c, "--config", str(config), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for c in cmds
    ]
    import json

    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert [r["applied"] for r in results[:3]].count(True) == 1
    assert all(r["applied"] for r in results[3:])
    assert {r["amount"] for r in results[:3]} == {"2.50"}
    assert assert_ledger_is_truth(store, "A").balance == M("2.500002")


def test_two_stores_on_one_database_see_each_others_writes(db_url):
    """What two nodes (or the CLI next to the server) do: separate connections, one truth."""
    first, second = Store(db_url), Store(db_url)
    try:
        first.upgrade()
        assert second.upgrade() == []
        ledger.create_tariff(first, "retail", "EUR", T0)
        ledger.create_account(second, "A", "retail", T0)
        ledger.topup(first, "A", M("1"), us(1), reference="x")
        assert not ledger.topup(second, "A", M("1"), us(2), reference="x").applied
        assert ledger.get_account(second, "A").balance == M("1")
    finally:
        first.close()
        second.close()


def test_a_balance_past_int64_micro_units_is_refused_never_approximated(store):
    """Ten top-ups of 999999999999: the first fits, the second would pass the largest exact
    balance, and is refused with a clear message (no REAL on SQLite, no 'bigint out of range'
    on PostgreSQL); the balance stays exact and equal to the ledger."""
    ledger.create_tariff(store, "big", "EUR", 1)
    ledger.create_account(store, "whale", "big", 1)
    huge = Money.parse("999999999999")
    ledger.topup(store, "whale", huge, 2, reference="t0")
    refused = 0
    for i in range(1, 10):
        with pytest.raises(InvalidInput, match="beyond the largest balance fsbill keeps exact"):
            ledger.topup(store, "whale", huge, 2 + i, reference=f"t{i}")
        refused += 1
    shown = ledger.get_account(store, "whale")
    assert refused == 9 and str(shown.balance) == "999999999999.00"
    assert isinstance(shown.balance.micros, int) and ledger.ledger_sum(store, "whale") == huge
    with pytest.raises(InvalidInput):
        ledger.adjust(store, "whale", huge, "bonus", 20)
    ledger.adjust(store, "whale", -huge, "back to zero", 21)
    assert ledger.get_account(store, "whale").balance == Money(0)
    assert [e.reference for e in ledger.ledger(store, "whale") if e.kind == "topup"] == ["t0"]
