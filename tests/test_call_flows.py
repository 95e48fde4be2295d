"""Real call flows (issue 12): the promise holds on every path a real dialplan takes.

Through the FreeSWITCH emulator over real TCP into a real node, on SQLite and PostgreSQL.
Assertions are about what FreeSWITCH did and what the books say.
"""

from __future__ import annotations

import gevent
import pytest
from rig import Rig, charged_total

from fsbill.core.money import Money
from fsbill.db import ledger
from fsbill.sim import Misbehaviour

US = 1_000_000


_to_close: list[Rig] = []


def request_close(rig: Rig) -> None:
    _to_close.append(rig)


@pytest.fixture(autouse=True)
def _close_rigs():
    yield
    while _to_close:
        _to_close.pop().close()


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
    assert rig.initial[code] - acct.balance == charged_total(rig.cdrs(code))
    return acct


def wait_no_live_calls(rig, timeout_s=30):
    with gevent.Timeout(timeout_s, AssertionError("a hold was never released")):
        while rig.live():
            gevent.sleep(0.05)


# -- item 9: the reaper charges the minimum a call provably owes ------------------------------------
def test_reaper_charges_connect_fee_and_first_block_of_an_answered_call(db_url):
    rig = Rig(db_url, time_scale=25, heartbeat_s=60, max_ring_s=30)
    request_close(rig)
    rig.account("acme", "10.00")
    # France: 0.30/min, 30/6, connect fee 0.05. The socket dies 3 s after answer, long before
    # the first heartbeat debit (every 60 s); the caller talks on for 20 s inside FreeSWITCH.
    rec = rig.call(destination="33612345678", talk_s=20, misbehaviour=Misbehaviour(drop_after_s=3))
    assert rec.answered_us is not None and rec.ended_by == "caller"
    [cdr] = rig.settled(1, timeout_s=30)
    assert cdr.result == "recovered"
    assert [e for e in ledger.ledger(rig.store, "acme") if e.note == "heartbeat"] == []
    assert cdr.charged == Money.parse("0.20")  # 0.05 + 30 s at 0.30/min: provably owed
    assert cdr.billed_s == 30
    wait_no_live_calls(rig)
    books_balance(rig, "acme")


def test_reaper_charges_nothing_for_a_call_that_never_answered(rig):
    rig.account("acme", "10.00")
    rec = rig.call(destination="33612345678", answer_after_s=None, ring_s=10, misbehaviour=Misbehaviour(silent=True))
    assert rec.answered_us is None
    wait_no_live_calls(rig)
    assert all(c.charged == Money(0) for c in rig.cdrs())
    books_balance(rig, "acme")


# -- item 4: the warning is always heard before a final cut-off --------------------------------------
@pytest.mark.parametrize("warning_s", [15, 60])
def test_warning_is_heard_when_the_grant_becomes_final_inside_the_warning_window(db_url, warning_s):
    rig = Rig(db_url, time_scale=25, slice_s=20, heartbeat_s=10, cutoff={"warning_s": warning_s})
    request_close(rig)
    # 0.50 buys 30 s at 1.00/min: grants of 20, then 28, then a final 30 decided ~18 s into the
    # call, with less than warning_s left
    rig.account("acme", "0.50")
    rec = rig.call(talk_s=None)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT" and cdr.result == "cut_off"
    assert len(rec.broadcasts) == 1, rec.scheduled_tasks
    warned_at = rec.broadcasts[0][0]
    assert rec.answered_us < warned_at < rec.ended_us
    assert cdr.charged <= Money.parse("0.50")
    books_balance(rig, "acme")


# -- item 1: a channel answered before it reaches the socket ---------------------------------------------
def test_pre_answered_channel_ten_euros_never_buy_seventy_one_minutes(db_url):
    """Measured on a real FreeSWITCH before the fix: an IVR answered the channel 700 s before the
    socket; the cut-off was armed at an absolute instant already past, which FreeSWITCH's
    scheduler takes as relative, so it never fired: 10.00 of credit bought 71.00 of talk."""
    rig = Rig(db_url, time_scale=100, heartbeat_s=30)
    request_close(rig)
    rig.account("acme", "10.00")  # 600 s at 1.00/min
    rec = rig.call(answered_before_s=700, answer_after_s=2, talk_s=4260)
    [cdr] = rig.settled(1, timeout_s=60)
    talked_s = (rec.ended_us - rec.bridged_us) / US
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT", (talked_s, rec.scheduled_tasks)
    assert talked_s <= 600
    # billed from the bridge (the B leg's answer), not from the IVR's answer
    assert cdr.answer_us == rec.bridged_us
    assert cdr.result == "cut_off" and cdr.cost == cdr.charged <= Money.parse("10.00")
    assert 595 <= cdr.billed_s <= 600
    books_balance(rig, "acme")


def test_pre_answered_channel_is_cut_even_if_the_bridge_never_reports(db_url):
    """The cut-off is armed (relative) the moment fsbill takes the call, bounded by the grant
    plus the ring allowance: here the bridge's B leg takes 50 s to answer."""
    rig = Rig(db_url, time_scale=50, max_ring_s=60)
    request_close(rig)
    rig.account("acme", "1.00")  # 60 s
    rec = rig.call(answered_before_s=30, answer_after_s=50, talk_s=None)
    [cdr] = rig.settled(1, timeout_s=60)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert (rec.ended_us - rec.bridged_us) / US <= 60
    assert cdr.charged <= Money.parse("1.00") and cdr.answer_us == rec.bridged_us
    books_balance(rig, "acme")


def test_pre_answered_channel_honours_max_call_s(db_url):
    rig = Rig(db_url, time_scale=50, max_call_s=300, slice_s=120)
    request_close(rig)
    rig.account("acme", "100.00")
    rec = rig.call(answered_before_s=400, answer_after_s=2, talk_s=None)
    [cdr] = rig.settled(1, timeout_s=60)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert (rec.ended_us - rec.bridged_us) / US <= 300
    assert 295 <= cdr.billed_s <= 300 and cdr.answer_us == rec.bridged_us
    books_balance(rig, "acme")


# -- item 3: transfer cut-off ---------------------------------------------------------------------------
def sent_after(rec, at_us, *needles):
    return [c for t, c in rec.commands if t >= at_us and any(n in c for n in needles)]


def test_transfer_cutoff_lets_the_cutoff_extension_run_and_bills_to_the_unbridge(db_url):
    rig = Rig(db_url, time_scale=25, cutoff={"mode": "transfer"})
    request_close(rig)
    rig.account("acme", "1.00")  # 60 s
    rec = rig.call(talk_s=None)
    [cdr] = rig.settled(1)
    [(transfer_us, ext)] = rec.transfers
    assert ext == "fsbill_cutoff" and rec.ended_by == "sched_transfer"
    # the announcement played to its end: fsbill sent nothing that ends the call
    assert rec.ended_us - transfer_us >= rig.switch.announce_s * US * 0.9
    assert sent_after(rec, transfer_us, "call-command: hangup", "uuid_kill", "execute-app-name: hangup") == []
    assert rec.hangup_cause == rig.switch.transfer_hangup_cause
    # billed from answer to the unbridge, not through the announcement
    assert cdr.result == "cut_off" and cdr.end_us == rec.unbridged_us <= transfer_us
    assert 57 <= cdr.billed_s <= 60 and cdr.cost == cdr.charged <= Money.parse("1.00")
    wait_no_live_calls(rig)
    books_balance(rig, "acme")


# -- item 2: the same channel entering the socket twice -----------------------------------------------------
def test_a_channel_transferred_back_into_the_socket_is_billed_per_visit(db_url):
    """Transfer cut-off → a top-up menu (the operator tops the account up meanwhile) → transfer
    back into the billed extension: the same channel uuid connects again, pre-answered. Each
    visit is its own leg with its own CDR, every hold is released once, all talk is billed."""
    rig = Rig(db_url, time_scale=10, cutoff={"mode": "transfer"})
    request_close(rig)
    rig.account("acme", "1.00")  # 60 s for the first visit
    uuid = "6a3c2f0e-0000-4000-8000-00000000c0de"
    in_menu = gevent.event.Event()

    def watch(_uuid, name, _headers):
        if name == "CHANNEL_UNBRIDGE":
            in_menu.set()

    rig.switch.subscribe(watch, uuid)
    menu = ["answer", "playback ivr/topup.wav", "sleep 20000", "transfer 4930123456 XML public"]
    call = rig.switch.start_call(
        rig.address,
        rig.spec(uuid=uuid, talk_s=None, dialplan={"fsbill_cutoff": menu}, after_socket="hangup"),
    )
    assert in_menu.wait(60)
    rig.topup("acme", "0.50")  # 30 s more, during the menu
    rec = call.get(timeout=120)
    # visit 2 ends at its own cut-off and the menu sends the caller back again, until a visit
    # finds too little money left: refused, with a CDR of its own
    with gevent.Timeout(30, AssertionError("the refused visit has no CDR")):
        while not any(c.result == "rejected" for c in rig.cdrs()):
            gevent.sleep(0.05)
    cdrs = sorted(rig.cdrs(), key=lambda c: c.visit)
    n = len(rec.connects)
    assert n >= 3 and [c.visit for c in cdrs] == list(range(1, n + 1)) and {c.uuid for c in cdrs} == {uuid}
    first, second, *_, last = cdrs
    assert first.result == "cut_off" and first.end_us == rec.unbridges[0][1]
    # the second visit is billed from its own bridge (the channel was long answered) to its cut-off
    assert second.answer_us == rec.unbridges[1][0] and second.end_us == rec.unbridges[1][1]
    assert all(c.result == "cut_off" for c in cdrs[:-1])
    assert last.result == "rejected" and last.reason == "insufficient_funds"
    assert 57 <= first.billed_s <= 60 and 27 <= second.billed_s <= 31
    assert charged_total(cdrs) <= Money.parse("1.50")
    assert all(c.cost == c.charged for c in cdrs)
    wait_no_live_calls(rig)
    books_balance(rig, "acme")
    assert [c.as_json()["visit"] for c in cdrs] == list(range(1, n + 1))


# -- item 6: money moved or access withdrawn mid-call ---------------------------------------------------------
def test_a_suspended_accounts_call_finishes_its_grant_and_gets_no_more(rig):
    rig.account("acme", "10.00")  # 600 s; the first grant is one slice (120 s)
    call = rig.switch.start_call(rig.address, rig.spec(talk_s=None))
    rig.clock.sleep(20)
    ledger.set_status(rig.store, "acme", "suspended", rig.clock.now_us())
    rec = call.get(timeout=60)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert cdr.billed_s <= 120
    books_balance(rig, "acme")


def test_on_suspend_cut_ends_live_calls_through_their_own_socket(db_url):
    rig = Rig(db_url, time_scale=25, on_suspend="cut")
    request_close(rig)
    rig.account("acme", "10.00")
    call = rig.switch.start_call(rig.address, rig.spec(talk_s=None))
    rig.clock.sleep(20)
    suspended_us = rig.clock.now_us()
    ledger.set_status(rig.store, "acme", "suspended", suspended_us)
    rec = call.get(timeout=60)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "OUTGOING_CALL_BARRED"
    assert rec.ended_us - suspended_us <= 2 * rig.settings.heartbeat_s * US  # at the next heartbeat
    assert [c for _, c in rec.commands if c.startswith("api uuid_kill")]
    assert cdr.cost == cdr.charged and cdr.billed_s < 60
    books_balance(rig, "acme")


def test_money_taken_from_under_live_calls_gives_them_no_more_time(rig):
    rig.account("acme", "10.00")
    call = rig.switch.start_call(rig.address, rig.spec(talk_s=None))
    rig.clock.sleep(20)
    # a forced adjustment leaves less than the live call holds: nothing more is available
    ledger.adjust(rig.store, "acme", Money.parse("-9.00"), "chargeback", rig.clock.now_us(), force=True)
    rig.initial["acme"] -= Money.parse("9.00")
    rec = call.get(timeout=60)
    [cdr] = rig.settled(1)
    assert rec.hangup_cause == "ALLOTTED_TIMEOUT"
    assert cdr.billed_s <= 120  # the grant it held when the money went, no extension
    books_balance(rig, "acme")


# -- item 8: never billed by mod_nibblebill as well ------------------------------------------------------
@pytest.fixture
def compat_rig(db_url):
    r = Rig(db_url, time_scale=25, nibblebill_compat=True)  # the compat dialplan's setting
    yield r
    r.close()


@pytest.mark.parametrize("before_dialplan", [False, True])
def test_a_call_fsbill_enforces_is_never_also_billed_by_mod_nibblebill(compat_rig, before_dialplan):
    """dialplan/nibblebill_compat.xml with mod_nibblebill still loaded (heartbeat 1 s): fsbill
    bills the call (nibble_rate, nibble_account honoured) and removes the variables before
    answer, so mod_nibblebill's heartbeats and its hangup handler find nothing to bill.
    `before_dialplan`: the variables came from the directory, so the module's heartbeat is
    armed at CS_EXECUTE before fsbill ever sees the channel."""
    from fsbill.sim import Nibblebill, Switch

    rig = compat_rig
    rig.switch.close()
    rig.switch = Switch(rig.clock, nibblebill=Nibblebill(global_heartbeat=1, balances={"acme": 10.0}))
    rig.account("acme", "10.00")
    nibble = {"nibble_account": "acme", "nibble_rate": "0.30"}
    kwargs = {"directory_variables": nibble, "variables": {}} if before_dialplan else {"variables": nibble}
    rec = rig.call(account=None, talk_s=30, **kwargs)
    [cdr] = rig.settled(1)
    assert rec.answered_us is not None and cdr.account == "acme" and cdr.rate == Money.parse("0.30")
    assert cdr.charged == Money.parse("0.15")  # 30 s at 0.30/min, once, by fsbill
    assert rec.nibblebill_debits == [] and rig.switch.nibblebill.balances["acme"] == 10.0
    assert "nibble_rate" not in rec.variables and "nibble_account" not in rec.variables
    books_balance(rig, "acme")


def test_without_nibblebill_compat_mod_nibblebill_still_bills_nothing(rig):
    """nibblebill_compat: false (the default): fsbill ignores nibble_account / nibble_rate and
    bills from its deck, and still strips them so mod_nibblebill bills nothing beside it."""
    from fsbill.sim import Nibblebill, Switch

    rig.switch.close()
    rig.switch = Switch(rig.clock, nibblebill=Nibblebill(global_heartbeat=1, balances={"acme": 10.0}))
    rig.account("acme", "10.00")
    rec = rig.call(talk_s=30, variables={"fsbill_account": "acme", "nibble_account": "acme", "nibble_rate": "0"})
    [cdr] = rig.settled(1)
    assert rec.answered_us is not None and cdr.rate == Money.parse("1.00")  # the deck, not nibble_rate 0
    assert rec.nibblebill_debits == [] and rig.switch.nibblebill.balances["acme"] == 10.0
    books_balance(rig, "acme")
