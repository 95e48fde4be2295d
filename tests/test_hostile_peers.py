"""Broken and hostile event-socket peers, through the emulator over real TCP: each is dropped
with a log line and a metric, the calls beside it are unaffected, nothing is left spinning,
and the money a dropped call held is settled by the reaper. Each of greenswitch 0.0.19's sharp
edges that fsbill.esl fixes has its test here."""

import gc
import random

import gevent
import pytest
from rig import Rig, charged_total

from fsbill.core.money import Money
from fsbill.sim import Misbehaviour


@pytest.fixture
def rig(sqlite_url):
    r = Rig(sqlite_url, time_scale=25, esl_command_timeout_s=1.0, slice_s=30, max_ring_s=10)
    yield r
    r.close()


def metric(rig, name, **labels):
    value = rig.node.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def live_session_greenlets() -> int:
    from fsbill.esl import EslSession

    return sum(1 for o in gc.get_objects() if isinstance(o, EslSession) and o._run)


HOSTILE = {
    # greenswitch loops forever on EOF mid-frame and on garbage; fsbill ends the session
    "garbage": Misbehaviour(garbage=True),
    # greenswitch would try to read a terabyte
    "oversized_content_length": Misbehaviour(oversized_content_length=True),
    # greenswitch's decoder raised out of its reader greenlet
    "invalid_utf8": Misbehaviour(invalid_utf8=True),
    # greenswitch's send() waits forever for a reply that never comes
    "silent": Misbehaviour(silent=True),
    "slow_replies": Misbehaviour(reply_delay_s=2.0),
    # the peer shuts its sending side: EOF, which greenswitch spins on
    "half_close": Misbehaviour(half_close=True),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_peer_at_connect_is_dropped_and_others_are_unaffected(rig, kind):
    rig.account("acme", "10.00")
    baseline = live_session_greenlets()
    good = [rig.switch.start_call(rig.address, rig.spec(talk_s=20)) for _ in range(3)]
    bad = rig.switch.start_call(rig.address, rig.spec(talk_s=20, misbehaviour=HOSTILE[kind]))
    bad_rec = bad.get(timeout=30)
    records = [g.get(timeout=30) for g in good]
    # the good calls talked and were billed exactly
    rig.settled(3)
    # the hostile one never talked; if it broke after being authorized, its hold waits for the
    # reaper (until its ring time and grant have certainly passed) and is released unspent
    with gevent.Timeout(30, AssertionError("hold not released")):
        while rig.live():
            gevent.sleep(0.1)
    cdrs = {c.uuid: c for c in rig.cdrs()}
    for rec in records:
        assert rec.answered_us is not None and rec.ended_by == "caller"
        assert cdrs[rec.uuid].result == "completed" and cdrs[rec.uuid].cost == cdrs[rec.uuid].charged
    if kind == "invalid_utf8":
        # the broken bytes sit in a CHANNEL_EXECUTE event, which fsbill unsubscribed from and
        # skips unread: the call is served (invalid UTF-8 in an event it reads is fuzzed in
        # test_esl_fuzz and ends the session)
        assert cdrs[bad_rec.uuid].result == "completed"
        return
    assert bad_rec.answered_us is None
    if bad_rec.uuid in cdrs:
        assert cdrs[bad_rec.uuid].result == "recovered" and cdrs[bad_rec.uuid].charged == Money(0)
    acct = rig.show("acme")
    assert acct.reserved == Money(0)
    assert Money.parse("10.00") - acct.balance == charged_total(cdrs.values())
    if kind != "half_close":  # a half-closed peer is a clean end of stream, not a protocol error
        assert metric(rig, "fsbill_esl_protocol_errors_total") >= 1
    gevent.sleep(0.5)
    assert live_session_greenlets() <= baseline  # nothing left reading or waiting


def test_peer_turning_hostile_mid_call_is_dropped_and_its_money_settled_by_the_reaper(rig):
    rig.account("acme", "10.00")
    bad_spec = rig.spec(talk_s=20, misbehaviour=Misbehaviour(garbage=True, fault_after_s=5))
    good = rig.switch.start_call(rig.address, rig.spec(talk_s=20))
    bad = rig.switch.start_call(rig.address, bad_spec)
    bad_rec = bad.get(timeout=60)
    good.get(timeout=60)
    # fsbill closed the socket without `resume`: FreeSWITCH kept the call up, the caller ended it
    assert bad_rec.answered_us is not None and bad_rec.ended_by == "caller"
    assert bad_rec.socket_closed_by_app_us is not None
    assert metric(rig, "fsbill_esl_protocol_errors_total") == 1
    # the reaper settles it once its FreeSWITCH-side cut-off has certainly passed
    cdrs = {c.uuid: c for c in rig.settled(2, timeout_s=30)}
    assert cdrs[bad_rec.uuid].result == "recovered"
    assert cdrs[good.value.uuid].result == "completed"
    acct = rig.show("acme")
    assert acct.reserved == Money(0)
    assert Money.parse("10.00") - acct.balance == charged_total(cdrs.values())
    assert metric(rig, "fsbill_recovered_calls_total") == 1


def test_connection_limit_is_hard_and_refuses_before_connect(sqlite_url):
    rig = Rig(sqlite_url, time_scale=25, esl_max_connections=3)
    try:
        rig.account("acme", "100.00")
        greenlets = [rig.switch.start_call(rig.address, rig.spec(talk_s=30)) for _ in range(6)]
        records = [g.get(timeout=60) for g in greenlets]
        answered = [r for r in records if r.answered_us is not None]
        refused = [r for r in records if r.answered_us is None]
        assert len(answered) == 3 and len(refused) == 3
        # closed before `connect`: FreeSWITCH goes on with the dialplan, which refuses the call
        assert all(r.responded == "503 Service Unavailable" for r in refused)
        assert all(not r.commands for r in refused)
        assert metric(rig, "fsbill_esl_refused_total", reason="capacity") == 3
        assert len(rig.settled(3)) == 3
    finally:
        rig.close()


def test_peers_outside_the_allow_list_are_refused(sqlite_url):
    rig = Rig(sqlite_url, time_scale=25, allow_peers=["192.0.2.0/24"])
    try:
        rig.account("acme", "10.00")
        rec = rig.call(talk_s=5)
        assert rec.answered_us is None and not rec.commands
        assert rec.responded == "503 Service Unavailable"
        assert metric(rig, "fsbill_esl_refused_total", reason="not_allowed") == 1
        assert rig.cdrs() == []
    finally:
        rig.close()


def test_connections_are_accepted_as_they_arrive_not_polled(sqlite_url):
    """greenswitch's accept loop makes the listening socket non-blocking and sleeps 100 ms
    whenever no connection is waiting; fsbill's waits on the socket itself, so gevent wakes it
    the moment a connection arrives. Decided by state, not by timing: the listening socket is
    in blocking (cooperative) mode and the idle accept greenlet is parked inside accept(),
    with no sleep in its stack, before and after calls."""
    rig = Rig(sqlite_url, time_scale=25)
    try:
        rig.account("acme", "10.00")
        server = rig.node.esl.server
        assert server.getblocking() and server.gettimeout() is None

        def parked_in() -> list[str]:
            frame, names = rig.node.esl._accept_greenlet.gr_frame, []
            while frame is not None:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            return names

        for _ in range(3):
            names = parked_in()
            assert "accept" in names and "listen" in names and "sleep" not in names, names
            rec = rig.call(talk_s=1, answer_after_s=0.5)
            assert [c for _, c in rec.commands][:1] == ["connect"]
        assert "sleep" not in parked_in()
    finally:
        rig.close()


def test_a_long_run_of_mixed_hostile_and_normal_calls_leaves_the_books_exact(sqlite_url):
    rig = Rig(sqlite_url, time_scale=25, esl_command_timeout_s=1.0, slice_s=30, max_ring_s=10)
    try:
        rig.account("acme", "20.00")
        rnd = random.Random(3)
        specs = []
        for i in range(40):
            mis = Misbehaviour()
            if i % 5 == 0:
                mis = HOSTILE[rnd.choice(sorted(HOSTILE))]
            specs.append(rig.spec(talk_s=rnd.randint(3, 25), misbehaviour=mis))
        records = rig.switch.run_load(rig.address, specs, concurrency=15)
        # a peer that went away after its call was authorized leaves a hold for the reaper
        with gevent.Timeout(30, AssertionError("holds not released")):
            while rig.live():
                gevent.sleep(0.1)
        cdrs = {c.uuid: c for c in rig.cdrs()}
        acct = rig.show("acme")
        assert acct.reserved == Money(0)
        assert Money.parse("20.00") - acct.balance == charged_total(cdrs.values())
        for spec, rec in zip(specs, records, strict=False):
            if spec.misbehaviour == Misbehaviour():
                assert cdrs[rec.uuid].result == "completed"
                assert cdrs[rec.uuid].cost == cdrs[rec.uuid].charged
            else:
                assert rec.uuid not in cdrs or cdrs[rec.uuid].result == "recovered"
    finally:
        rig.close()
