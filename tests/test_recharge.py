"""Auto-recharge end to end on real databases (docs/NOTICES.md "Auto-recharge"): a change of what
is available that falls under the level (a call's hold, a charge, an adjustment) raises one
`recharge.requested` with a fresh key; none while it is open; the credit naming the key (`fsbill
topup --reference`, a signed Stripe event's metadata.fsbill_recharge) closes it and a redelivery
credits nothing more; three failures in a row stop requests until a credit; at most N a local
day; two writers crossing at once raise one request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import gevent
import pytest
from cli_rig import Cli
from migrated import migrate_fresh
from payments_rig import US, hold, start_gateway, succeeded

from fsbill.core.money import Money
from fsbill.core.recharge import MAX_FAILURES, parse_settings
from fsbill.db import Store, audit, ledger, management
from fsbill.db import notices as dbnotices
from fsbill.db import plans as dbplans
from fsbill.db import recharge as dbrecharge
from fsbill.db.accounts import account_for_update
from fsbill.db.charges import run_charges
from fsbill.errors import Conflict, InvalidInput, NotFound

M = Money.parse
NOW = 1_750_000_000 * US  # 2025-06-15T15:06:40Z
DAY = 86_400 * US


def seed(
    store: Store, balance: str = "12", amount: str = "20", below: str = "10", per_day: int | None = None, tz="UTC"
) -> int:
    ledger.create_tariff(store, "retail", "USD", NOW, timezone=tz)
    ledger.create_account(store, "acme", "retail", NOW)
    ledger.topup(store, "acme", M(balance), NOW, reference="seed")
    management.set_auto_recharge(store, "acme", parse_settings(amount, below, per_day), NOW, "test")
    return ledger.get_account(store, "acme").id


def requested(store: Store) -> list[dict]:
    return [n.payload for n in dbnotices.list_notices(store, account="acme") if n.kind == "recharge.requested"]


def statuses(store: Store) -> list[str]:
    return [r.status for r in dbrecharge.list_recharges(store, "acme")]


def cross(store: Store, amount: str = "-1", at: int = NOW) -> None:
    ledger.adjust(store, "acme", M(amount), "test", at, force=True)


def test_a_calls_hold_under_the_level_raises_one_request_with_a_key(store):
    acc = seed(store, balance="11.50")
    assert requested(store) == []  # 11.50 available: above 10
    hold(store, acc)  # holds 2.00: 9.50 available
    [payload] = requested(store)
    assert payload["key"].startswith("rch_") and len(payload["key"]) == 36
    assert {k: payload[k] for k in ("account", "currency", "amount", "below", "available", "balance")} == {
        "account": "acme",
        "currency": "USD",
        "amount": "20.00",
        "below": "10.00",
        "available": "9.50",
        "balance": "11.50",
    }
    # requested money is never counted as available
    assert ledger.get_account(store, "acme").available == M("9.50")
    hold(store, acc)  # a second crossing while it is open: nothing
    cross(store)
    assert len(requested(store)) == 1 and statuses(store) == ["open"]


def test_a_charge_under_the_level_raises_the_request(store):
    seed(store, balance="12")
    dbplans.create_plan(store, "did", M("5.00"), "monthly", "USD", NOW)
    dbplans.subscribe(store, "acme", "did", NOW, start_us=NOW)
    run_charges(store, NOW + 60 * US)
    [payload] = requested(store)
    assert M(payload["available"]) < M("10")
    kinds = [n.kind for n in dbnotices.list_notices(store, account="acme")]
    assert kinds.index("charge.posted") < kinds.index("recharge.requested")  # in the charge's transaction


def test_setting_it_under_the_level_asks_at_once_and_none_turns_it_off(store):
    seed(store, balance="12", below="15")
    assert len(requested(store)) == 1
    r = management.set_auto_recharge(store, "acme", None, NOW, "test")
    assert r.settings is None and [c.new for c in r.changes] == [None]
    trail = [(e.field, e.old, e.new) for e in audit.entries(store, "account", "acme") if e.field == "auto_recharge"]
    assert trail == [
        ("auto_recharge", "20.00 below 15.00, at most 3 a day", None),
        ("auto_recharge", None, "20.00 below 15.00, at most 3 a day"),
    ]
    cross(store, "-5")
    assert len(requested(store)) == 1


def test_a_topup_with_the_key_closes_it_and_again_credits_nothing(store):
    seed(store)
    cross(store, "-3")  # 9.00
    key = requested(store)[0]["key"]
    first = ledger.topup(store, "acme", M("20"), NOW, reference=key)
    again = ledger.topup(store, "acme", M("20"), NOW, reference=key)  # the payment side retried
    assert first.applied and not again.applied
    assert ledger.get_account(store, "acme").balance == M("29")
    [r] = dbrecharge.list_recharges(store, "acme")
    assert (r.status, r.entry_id) == ("credited", first.entry.id)
    cross(store, "-20")  # under again: a new request, a new key
    assert [p["key"] == key for p in requested(store)] == [True, False]


def test_a_signed_stripe_event_with_the_key_closes_it_once(store):
    seed(store)
    cross(store, "-3")
    key = requested(store)[0]["key"]
    gw = start_gateway(store)
    try:
        event = succeeded(pi="pi_r", amount=2000, recharge=key)
        assert gw.stripe(event)[0] == 200
        assert gw.stripe(event)[0] == 200  # redelivered
        assert gw.stripe(succeeded(pi="pi_r", amount=2000, recharge=key, event_id="evt_other"))[0] == 200
    finally:
        gw.close()
    credits = [e for e in ledger.ledger(store, "acme") if e.reference == key]
    assert [e.amount for e in credits] == [M("20")]
    assert statuses(store) == ["credited"] and ledger.get_account(store, "acme").balance == M("29")


def test_three_failures_stop_requests_until_a_credit(store):
    seed(store, per_day=10)
    keys = []
    for n in range(1, MAX_FAILURES + 1):
        cross(store, "-3" if n == 1 else "-1")
        keys.append(requested(store)[-1]["key"])
        r = dbrecharge.fail(store, "acme", keys[-1], NOW, "payments")
        assert (r.failures, r.stopped, r.changed) == (n, n == MAX_FAILURES, True)
    assert len(set(keys)) == MAX_FAILURES
    assert dbrecharge.fail(store, "acme", keys[-1], NOW, "payments").changed is False  # a retried report
    cross(store)
    assert len(requested(store)) == MAX_FAILURES  # stopped
    ledger.topup(store, "acme", M("0.50"), NOW)  # any credit: the run of failures is over
    assert management.auto_recharge_of(store, "acme").failures == 0
    cross(store)
    assert len(requested(store)) == MAX_FAILURES + 1
    trail = [e for e in audit.entries(store, "account", "acme") if e.action == "recharge_failed"]
    assert len(trail) == 2 * MAX_FAILURES and {e.actor for e in trail} == {"payments"}


def test_a_failed_request_credited_after_all_is_closed_and_a_credited_one_cannot_fail(store):
    seed(store)
    cross(store, "-3")
    key = requested(store)[0]["key"]
    dbrecharge.fail(store, "acme", key, NOW, "payments")
    ledger.topup(store, "acme", M("20"), NOW, reference=key)
    assert statuses(store) == ["credited"]
    with pytest.raises(Conflict, match="already credited"):
        dbrecharge.fail(store, "acme", key, NOW, "payments")
    with pytest.raises(NotFound, match="no recharge request"):
        dbrecharge.fail(store, "acme", "rch_nope", NOW, "payments")
    with pytest.raises(InvalidInput, match="rch_"):
        dbrecharge.fail(store, "acme", "nope", NOW, "payments")


def test_at_most_n_a_day_in_the_tariffs_time_zone(store):
    # NOW is 17:06 in Berlin; the next local day starts 6 h 53 min later
    seed(store, per_day=2, tz="Europe/Berlin")
    for _ in range(2):
        cross(store, "-3")
        dbrecharge.fail(store, "acme", requested(store)[-1]["key"], NOW, "payments")
        ledger.topup(store, "acme", M("0.01"), NOW)  # keeps failures from stopping it
    cross(store)
    assert len(requested(store)) == 2  # the day's two are used
    cross(store, "-0.01", at=NOW + 6 * 3600 * US)  # 23:06 Berlin: the same day
    assert len(requested(store)) == 2
    cross(store, "-0.01", at=NOW + 7 * 3600 * US)  # 00:06 Berlin: a new day (still 22:06 UTC)
    assert len(requested(store)) == 3
    assert [r.day for r in dbrecharge.list_recharges(store, "acme")] == ["2025-06-15", "2025-06-15", "2025-06-16"]


def test_two_transactions_crossing_at_once_raise_one_request(db_url):
    """Each holds the account's lock while it decides: the second sees the first's request."""
    migrate_fresh(db_url)
    s1, s2 = Store(db_url), Store(db_url)
    s1.upgrade()
    try:
        acc = seed(s1)

        def slow() -> None:
            with s1.transaction():
                account_for_update(s1, "acme")
                ledger.post(s1, acc, M("-3"), "adjust", NOW)
                dbnotices.check_low_balance(s1, acc, NOW)
                gevent.sleep(0.3)  # the other crosses meanwhile

        jobs = [gevent.spawn(slow), gevent.spawn_later(0.05, cross, s2, "-1")]
        gevent.joinall(jobs, raise_error=True)
        assert len(requested(s1)) == 1 and statuses(s1) == ["open"]
    finally:
        s1.close()
        s2.close()


WORKER = textwrap.dedent(
    """
    import sys
    from fsbill.db import Store, ledger
    from fsbill.core.money import Money

    store = Store(sys.argv[1], busy_timeout_ms=30000)
    assert store.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(5):
        ledger.adjust(store, "acme", Money(-100_000), "test", 1, force=True)
    store.close()
    """
)


@pytest.mark.timeout(180)
def test_processes_crossing_at_once_raise_one_request(store):
    seed(store, balance="10.30")  # 10.30: the workers' 2.00 in all cross 10.00 somewhere
    env = dict(os.environ)
    env.pop("FSBILL_CONFIG", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert ledger.get_account(store, "acme").balance == M("8.30")
    assert len(requested(store)) == 1 and statuses(store) == ["open"]


# -- the CLI ---------------------------------------------------------------------------------------------
@pytest.fixture
def cli(capsys, tmp_path) -> Cli:
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/cli.db\n")
    c = Cli(capsys, config)
    assert c.run("tariff", "add", "retail")[0] == 0
    assert c.run("account", "add", "acme", "--tariff", "retail")[0] == 0
    assert c.run("topup", "acme", "12")[0] == 0
    return c


def test_cli_set_list_topup_with_the_key_and_failed(cli):
    out = cli.json("account", "set", "acme", "--auto-recharge", "20", "--below", "10", "--max-per-day", "2")
    assert out["auto_recharge"] == {"amount": "20.00", "below": "10.00", "max_per_day": 2}
    assert [c["field"] for c in out["changes"]] == ["auto_recharge"]
    code, text, _ = cli.run("account", "set", "acme", "--auto-recharge", "20", "--below", "10", "--max-per-day", "2")
    assert code == 0 and "nothing changed" in text
    assert cli.run("adjust", "acme", "-3", "--reason", "test")[0] == 0
    [r] = cli.json("recharge", "list", "acme")
    assert (r["status"], r["amount"], r["account"]) == ("open", "20.00", "acme")
    assert cli.json("recharge", "list") == [r]
    done = cli.json("topup", "acme", "20", "--reference", r["key"])
    again = cli.json("topup", "acme", "20", "--reference", r["key"])
    assert done["applied"] and not again["applied"]
    assert cli.json("recharge", "list", "acme")[0]["status"] == "credited"
    assert cli.run("adjust", "acme", "-25", "--reason", "test")[0] == 0
    key = cli.json("recharge", "list", "acme")[-1]["key"]
    failed = cli.json("recharge", "failed", "acme", key)
    assert (failed["status"], failed["failures"], failed["stopped"]) == ("failed", 1, False)
    code, text, _ = cli.run("recharge", "list")
    assert code == 0 and key in text and "credited" in text
    assert cli.json("account", "set", "acme", "--auto-recharge", "none")["auto_recharge"] is None


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (("account", "set", "acme", "--auto-recharge", "20"), 2, "--below"),
        (("account", "set", "acme", "--below", "5"), 2, "--auto-recharge"),
        (("account", "set", "acme", "--auto-recharge", "x", "--below", "5"), 2, "--auto-recharge"),
        (("account", "set", "acme", "--auto-recharge", "20", "--below", "5", "--max-per-day", "0"), 2, "positive"),
        (("account", "set", "ghost", "--auto-recharge", "20", "--below", "5"), 3, "no account"),
        (("recharge", "failed", "acme", "rch_nope"), 3, "no recharge request"),
        (("recharge", "failed", "acme", "nope"), 2, "rch_"),
        (("recharge", "list", "ghost"), 3, "no account"),
    ],
)
def test_cli_errors_are_one_line(cli, argv, code, words):
    got, out, err = cli.run(*argv)
    assert (got, out) == (code, "") and words in err and len(err.strip().splitlines()) == 1, err
    got, out, err = cli.run(*argv, "--json")
    assert got == code and json.loads(err)["exit"] == code


def test_the_check_stays_one_read_above_the_level(store, monkeypatch):
    """No level and no auto-recharge, or auto-recharge above its level: the check is the one read
    of the account it always was; under the level with a request open, one more."""
    acc = seed(store)
    seen: list[str] = []
    real = store.db.execute_sql

    def counted(sql, params=None, *args, **kwargs):
        seen.append(sql)
        return real(sql, params, *args, **kwargs)

    monkeypatch.setattr(store.db, "execute_sql", counted)

    def statements() -> int:
        seen.clear()
        with store.transaction():
            dbnotices.check_low_balance(store, acc, NOW)
        return len([s for s in seen if s.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE"))])

    assert statements() == 1  # 12.00 available, above 10.00
    monkeypatch.undo()
    cross(store, "-3")  # a request is open now
    monkeypatch.setattr(store.db, "execute_sql", counted)
    assert statements() == 2  # under: is one open? yes: nothing more
