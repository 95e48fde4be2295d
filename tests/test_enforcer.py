"""The acceptance scenarios of the enforcer, driven through the FreeSWITCH emulator over real
TCP into a real `fsbill serve` node, on SQLite and on PostgreSQL.

Assertions are about what FreeSWITCH did (when and why each call ended, what it was told to
play) and what the books say (CDRs, ledger, balances), never about which commands were sent.
"""

import logging
import random

import pytest
from rig import Rig, charged_total

from fsbill.core.money import Money
from fsbill.db import ledger

TEN = Money.parse("10.00")


@pytest.fixture
def rig(db_url):
    r = Rig(db_url, time_scale=25)
    yield r
    r.close()


def books_balance(rig, code):
    """balance == Σ ledger; nothing held once no call is live; charges == Σ CDR charges."""
    acct = rig.show(code)
    assert acct.balance == ledger.ledger_sum(rig.store, code)
    assert acct.reserved == Money(0)
    cdrs = rig.cdrs(code)
    assert rig.initial[code] - acct.balance == charged_total(cdrs)
    return acct, cdrs


def test_ten_euros_pay_for_ten_minutes_not_twenty(rig):
    rig.account("acme", "10.00")
    records = rig.calls([rig.spec(talk_s=None), rig.spec(talk_s=None)])
    cdrs = rig.settled(2)
    for rec in records:
        assert rec.answered_us is not None
        assert rec.hangup_cause == "ALLOTTED_TIMEOUT", rec
        assert rec.ended_by == "sched_hangup"
    billed = sum(c.billed_s for c in cdrs)
    assert 600 - 2 <= billed <= 600  # one 1-s increment per call
    assert charged_total(cdrs) <= TEN
    assert all(c.result == "cut_off" and c.cost == c.charged and not c.uncollected for c in cdrs)
    acct, _ = books_balance(rig, "acme")
    assert acct.balance >= Money(0)
    # what FreeSWITCH measured agrees with what was charged
    talked = sum(-(-(r.ended_us - r.answered_us) // 1_000_000) for r in records)
    assert talked == billed


@pytest.mark.parametrize("n", [20, 200])
def test_many_concurrent_calls_never_overspend(db_url, n):
    if n == 200 and db_url.startswith("sqlite"):
        pytest.skip("200 concurrent calls run on PostgreSQL (SQLite covers 20)")
    rig = Rig(db_url, time_scale=25, slice_s=30)
    try:
        rig.account("acme", "3.00")
        rnd = random.Random(n)
        specs = [rig.spec(talk_s=rnd.randint(5, 120), answer_after_s=rnd.uniform(0.5, 3)) for _ in range(n)]
        records = rig.calls(specs)
        cdrs = rig.settled(n, timeout_s=30)
        acct, _ = books_balance(rig, "acme")
        assert acct.balance >= Money(0)
        assert charged_total(cdrs) <= Money.parse("3.00")  # overspend 0
        accepted = [c for c in cdrs if c.result != "rejected"]
        assert accepted and all(c.cost == c.charged and not c.uncollected for c in accepted)
        rejected = [c for c in cdrs if c.result == "rejected"]
        assert all(c.reason == "insufficient_funds" for c in rejected)
        assert len({r.uuid for r in records}) == n == len(cdrs)
    finally:
        rig.close()


def test_topup_during_a_call_extends_it_and_cancels_the_warning(rig):
    rig.account("acme", "2.00")  # 120 s at 1.00/min: the first grant is already final, warned at 59 s
    greenlet = rig.switch.start_call(rig.address, rig.spec(talk_s=200))
    rig.clock.sleep(20)
    rig.topup("acme", "5.00")
    rec = greenlet.get(timeout=60)
    [cdr] = rig.settled(1)
    assert rec.ended_by == "caller" and rec.hangup_cause == "NORMAL_CLEARING"
    assert cdr.result == "completed"
    assert 199 <= cdr.billed_s <= 201
    assert cdr.cost == cdr.charged
    books_balance(rig, "acme")
    # the warning scheduled for the first, final grant was deleted with it (sched_del)
    assert not rec.broadcasts


def test_warning_is_played_before_the_final_cutoff(rig, caplog):
    caplog.set_level(logging.INFO, logger="fsbill.call")
    rig.account("acme", "3.00")  # 180 s
    rec = rig.call(talk_s=None)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert len(rec.broadcasts) == 1
    warned_at = rec.broadcasts[0][0]
    assert rec.ended_us - 62_000_000 <= warned_at <= rec.ended_us - 57_000_000
    assert 178 <= cdr.billed_s <= 180
    # the operator sees it in the log: one structured line per warning scheduled
    lines = [r.getMessage() for r in caplog.records if "event=warning_scheduled" in r.getMessage()]
    assert len(lines) == 1 and f"uuid={rec.uuid}" in lines[0] and "warning_s=60" in lines[0]


def test_unanswered_call_costs_nothing_and_holds_nothing(rig):
    rig.account("acme", "10.00")
    rec = rig.call(answer_after_s=None, fail_cause="NO_ANSWER")
    [cdr] = rig.settled(1)
    assert rec.answered_us is None
    assert cdr.cost == Money(0) and cdr.charged == Money(0) and cdr.result == "unanswered"
    acct, _ = books_balance(rig, "acme")
    assert acct.balance == TEN and acct.reserved == Money(0)
    assert rig.live() == []


@pytest.fixture
def compat_rig(db_url):
    r = Rig(db_url, time_scale=25, nibblebill_compat=True)
    yield r
    r.close()


def test_nibblebill_dialplan_is_enforced(compat_rig):
    rig = compat_rig
    rig.account("acme", "0.50")
    # nibble_rate 0.30/min, billed per second: 0.50 buys 100 s
    rec = rig.call(account=None, variables={"nibble_account": "acme", "nibble_rate": "0.30"}, talk_s=None)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert cdr.rate == Money.parse("0.30")
    assert 98 <= cdr.billed_s <= 100
    assert cdr.charged <= Money.parse("0.50")
    books_balance(rig, "acme")


def test_nibble_variables_are_not_trusted_without_nibblebill_compat(rig):
    rig.account("acme", "10.00")
    # nibble_rate 0 would be free; without nibblebill_compat the deck's 1.00/min applies
    priced = rig.call(variables={"nibble_rate": "0"}, talk_s=6)
    # nibble_account names nobody fsbill trusts: the caller id does not map either
    nobody = rig.call(account=None, variables={"nibble_account": "acme"}, talk_s=6)
    cdrs = {c.uuid: c for c in rig.settled(2)}
    assert cdrs[priced.uuid].rate == Money.parse("1.00") and cdrs[priced.uuid].charged > Money(0)
    assert cdrs[nobody.uuid].result == "rejected" and cdrs[nobody.uuid].reason.startswith("unknown_account")
    books_balance(rig, "acme")


@pytest.mark.parametrize("allow", [False, True])
def test_nibblebill_compat_refuses_a_zero_rate_unless_allowed(db_url, allow):
    rig = Rig(db_url, time_scale=25, nibblebill_compat=True, nibblebill_allow_zero_rate=allow)
    try:
        rig.account("acme", "10.00")
        rec = rig.call(variables={"nibble_rate": "0"}, talk_s=4)
        [cdr] = rig.settled(1)
        assert cdr.uuid == rec.uuid and cdr.charged == Money(0)
        if allow:
            assert cdr.result == "completed" and cdr.billed_s >= 3
        else:
            assert cdr.result == "rejected" and cdr.reason == "no_rate"  # the log line names the option
        books_balance(rig, "acme")
    finally:
        rig.close()


def test_accountcode_and_caller_id_identify_the_payer(rig):
    rig.account("acme", "10.00", clis=["15550001111"])
    by_code = rig.call(account=None, variables={"accountcode": "acme"}, talk_s=5)
    by_cli = rig.call(account=None, caller_id_number="15550001111", talk_s=5)
    cdrs = rig.settled(2)
    assert {c.account for c in cdrs} == {"acme"}
    assert by_code.variables.get("fsbill_account") == by_cli.variables.get("fsbill_account") == "acme"


def test_connect_fee_and_increments_are_rated_from_freeswitch_times(rig):
    rig.account("acme", "10.00")
    rig.call(destination="33612345678", talk_s=61)  # 30/6: 61 s bills 66 s, + 0.05 connect fee
    [cdr] = rig.settled(1)
    assert cdr.prefix == "33" and cdr.billed_s in (66, 72)  # 61-62 s talked, whole-second scheduler
    assert cdr.cost == Money.parse("0.05") + Money.from_ratio(cdr.billed_s * Money.parse("0.30").micros, 60, cdr_rule())
    books_balance(rig, "acme")


def cdr_rule():
    from fsbill.core.money import RoundingRule

    return RoundingRule()


REJECTIONS = [
    # (reason, how to provoke it, what FreeSWITCH must have been told)
    ("unknown_account", dict(account="nobody"), ("hangup", "CALL_REJECTED")),
    ("suspended", dict(account="frozen"), ("hangup", "OUTGOING_CALL_BARRED")),
    ("invalid_number", dict(destination="12ab"), ("hangup", "INVALID_NUMBER_FORMAT")),
    ("no_rate", dict(destination="8612345678"), ("hangup", "NO_ROUTE_DESTINATION")),
    ("insufficient_funds", dict(account="poor"), ("respond", "402 Payment Required")),
    ("channel_limit", dict(account="single"), ("respond", "486 Busy Here")),
]


def test_every_rejection_reason_gets_its_response_and_a_cdr(rig):
    rig.account("acme", "10.00")
    rig.account("frozen", "10.00")
    ledger.set_status(rig.store, "frozen", "suspended", rig.clock.now_us())
    rig.account("poor", "0")
    rig.account("single", "10.00", max_channels=1)
    busy = rig.switch.start_call(rig.address, rig.spec(account="single", talk_s=30))
    rig.clock.sleep(5)
    for reason, provoke, (kind, expected) in REJECTIONS:
        rec = rig.call(**provoke)
        assert rec.answered_us is None, reason
        if kind == "respond":
            assert rec.responded == expected, (reason, rec)
        else:
            assert rec.hangup_cause == expected, (reason, rec)
        assert rec.variables.get("fsbill_result") == f"rejected_{reason}"
    busy.get(timeout=30)
    cdrs = rig.settled(len(REJECTIONS) + 1)
    reasons = sorted(c.reason for c in cdrs if c.result == "rejected")
    assert reasons == sorted(r for r, _, _ in REJECTIONS)
    assert all(c.cost == Money(0) and c.charged == Money(0) for c in cdrs if c.result == "rejected")


def test_no_route_rejection(db_url):
    rig = Rig(db_url, time_scale=25, route="")
    try:
        rig.account("acme", "10.00")
        rec = rig.call()
        [cdr] = rig.settled(1)
        assert rec.hangup_cause == "NO_ROUTE_DESTINATION"
        assert cdr.reason == "no_route"
        ok = rig.call(
            variables={"fsbill_account": "acme", "fsbill_dial_string": "sofia/gateway/x/4930123456"}, talk_s=3
        )
        assert ok.answered_us is not None
    finally:
        rig.close()


def test_transfer_cutoff_stops_billing_at_the_transfer(db_url):
    rig = Rig(db_url, time_scale=25, cutoff={"mode": "transfer"})
    try:
        rig.account("acme", "1.00")
        rec = rig.call(talk_s=None)
        [cdr] = rig.settled(1)
        assert rec.transferred_to == "fsbill_cutoff"
        assert rec.unbridged_us is not None and rec.ended_us > rec.unbridged_us
        assert cdr.result == "cut_off"
        assert 58 <= cdr.billed_s <= 60  # the announcement after the transfer is not billed
        books_balance(rig, "acme")
    finally:
        rig.close()
