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
