"""Bundles of minutes, the pure core (fsbill.core.bundle, docs/BUNDLES.md): one decision takes
bundle seconds first and money after; use is rounded by the bundle's increment; balances renew
each calendar period with at most rollover_max carried over."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.bundle import (
    END_OF_TIME,
    Allowance,
    Bundle,
    Draw,
    consumed,
    plan_mixed,
    renewals,
    take,
    usable,
)
from fsbill.core.call import AccountState, LiveCall, admit, beat, recovered, settlement
from fsbill.core.grant import US, Cap, GrantPolicy
from fsbill.core.money import Money, RoundingRule
from fsbill.core.plans import Period
from fsbill.core.rating import Rate, cost, max_seconds

M = Money.parse
RATE = Rate("49", M("0.60"), Money(0), 1, 1, 0, RoundingRule())
POLICY = GrantPolicy(slice_s=120, max_call_s=7200, margin_s=1, extend_below_s=60)


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * US


def account(balance: str, bundle_free_s: int = 0, held: str = "0") -> AccountState:
    return AccountState("active", M(balance), Money(0), M(held), bundle_free_s=bundle_free_s)


def test_twenty_bundle_seconds_and_ten_cents_at_sixty_cents_a_minute_talk_thirty_seconds():
    plan = plan_mixed(RATE, 0, 0, 20, M("0.10"), POLICY)
    assert (plan.granted_s, plan.bundle_s, plan.extra_hold, plan.final) == (30, 20, M("0.10"), True)
    call = admit("u", 1, account("0.10", 20), RATE, POLICY, 0, 30).call
    assert call is not None and (call.granted_s, call.bundle_s, call.held) == (30, 20, M("0.10"))


def test_the_paid_part_is_rated_as_a_call_of_its_own_length():
    fee = Rate("49", M("0.60"), M("0.05"), 60, 60, 0, RoundingRule())
    plan = plan_mixed(fee, 0, 0, 20, M("1.00"), POLICY)
    # 120 s slice: 20 s of bundle, then the paid part within the slice: a 60/60 block boundary
    assert plan.bundle_s == 20 and (plan.granted_s - 20) % 60 == 0
    assert plan.extra_hold == cost(fee, plan.granted_s - 20)
    end_us = 100 * US + (20 + 61) * US  # 20 s bundle, then 61 s: two 60 s blocks plus the fee
    call = LiveCall("u", 1, fee, plan.granted_s, plan.extra_hold, Money(0), 0, 0, 100 * US, bundle_s=20)
    charge = settlement(call, 100 * US, end_us, account("1.00", held=str(plan.extra_hold)))
    assert charge.cost == cost(fee, 61) == M("1.25") and charge.billed_s == 120


def test_a_call_within_its_bundle_pays_nothing_and_consumes_its_rounded_seconds():
    call = LiveCall("u", 1, RATE, 30, M("0.10"), Money(0), 0, 0, 0, bundle_s=20)
    charge = settlement(call, 0, 12_300_000, account("0.10", held="0.10"))
    assert charge.cost == Money(0) and charge.release == M("0.10")
    assert consumed([Draw(1, 20, 1)], 0, 12_300_000) == [13]
    assert consumed([Draw(1, 20, 60)], 0, 12_300_000) == [20]  # rounded to 60, never beyond the hold
    assert consumed([Draw(1, 20, 1)], None, None) == [0]  # never connected: nothing used
    assert consumed([Draw(1, 5, 1), Draw(2, 10, 6)], 0, 8 * US) == [5, 6]


def test_several_bundles_are_used_longest_prefix_then_earliest_expiry_then_name():
    a = Allowance(1, "world", (), 1, 100, 0, 10)
    b = Allowance(2, "de", ("49",), 1, 100, 0, 20)
    c = Allowance(3, "berlin", ("4930",), 1, 100, 0, 30)
    d = Allowance(4, "de-2", ("49",), 1, 100, 0, 5)
    e = Allowance(5, "uk", ("44",), 1, 100, 90, 5)
    assert [x.name for x in usable([a, b, c, d, e], "4930123")] == ["berlin", "de-2", "de", "world"]
    assert [x.name for x in usable([a, b, c, d, e], "44207")] == ["uk", "world"]
    assert take(usable([a, e], "44207"), 30) == [(5, 10), (1, 20)]


def test_a_heartbeat_takes_more_bundle_then_money_without_a_break():
    first = plan_mixed(RATE, 0, 0, 300, M("1.00"), POLICY)
    assert (first.granted_s, first.bundle_s, first.extra_hold, first.final) == (120, 120, Money(0), False)
    call = LiveCall("u", 1, RATE, 120, Money(0), Money(0), 0, 0, 0, cutoff_us=119 * US, bundle_s=120)
    b = beat(call, account("1.00", 180), 70 * US, POLICY, True)
    assert (b.call.granted_s, b.call.bundle_s, b.extra_bundle_s) == (190, 190, 70)
    b2 = beat(b.call, account("1.00", 110), 140 * US, POLICY, True)
    assert (b2.call.granted_s, b2.call.bundle_s) == (260, 260)
    # the bundle runs out within the slice: money buys the rest of it, in the same decision
    b3 = beat(b2.call, account("1.00", 40), 201 * US, POLICY, True)
    assert (b3.call.granted_s, b3.call.bundle_s, b3.extra_bundle_s) == (321, 300, 40)
    assert b3.extra_hold == cost(RATE, 21) and not b3.call.final
    # once it talks into paid time, no more bundle seconds are taken
    b4 = beat(b3.call, account("1.00", 500), 270 * US, POLICY, True)
    assert b4.call.bundle_s == 300 and b4.extra_bundle_s == 0 and b4.call.granted_s == 390
    # debits start only once the bundle part is over
    assert b4.debit == Money(0)
    later = beat(b4.call, account("1.00", 0), 310 * US, POLICY, False)
    assert later.debit == cost(RATE, 10)


def test_a_reseller_cap_cuts_the_bundle_part_too():
    plan = plan_mixed(RATE, 0, 0, 200, M("5.00"), POLICY, cap=Cap(50, True))
    assert (plan.granted_s, plan.bundle_s, plan.final) == (50, 50, True)
    plan = plan_mixed(RATE, 0, 0, 20, M("5.00"), POLICY, cap=Cap(50, True))
    assert (plan.granted_s, plan.bundle_s, plan.extra_hold) == (50, 20, cost(RATE, 30))


def test_recovered_call_with_a_bundle_part_owes_only_its_debits():
    call = LiveCall("u", 1, RATE, 30, M("0.10"), Money(0), 0, 0, 0, bundle_s=20)
    assert recovered(call).charged == Money(0) and recovered(call).release == M("0.10")


@settings(max_examples=300, deadline=None)
@given(
    free_s=st.integers(0, 400),
    money=st.integers(0, 3_000_000),
    slice_s=st.integers(5, 200),
    cap_s=st.one_of(st.none(), st.integers(0, 500)),
    inc=st.sampled_from([(1, 1), (30, 6), (60, 60)]),
)
def test_a_grant_never_exceeds_the_bundle_plus_what_the_money_buys(free_s, money, slice_s, cap_s, inc):
    rate = Rate("49", M("0.60"), M("0.01"), inc[0], inc[1], 0, RoundingRule())
    policy = GrantPolicy(slice_s=slice_s, max_call_s=3600, margin_s=1, extend_below_s=slice_s // 2 + 1)
    cap = None if cap_s is None else Cap(cap_s, False)
    plan = plan_mixed(rate, 0, 0, free_s, Money(money), policy, cap=cap)
    assert plan.bundle_s <= free_s and plan.extra_bundle_s == plan.bundle_s
    assert plan.extra_hold <= Money(money)  # what the money buys, never more
    assert plan.extra_hold == cost(rate, plan.granted_s - plan.bundle_s)
    assert plan.granted_s <= plan.bundle_s + max_seconds(rate, Money(money))
    if cap is not None:
        assert plan.granted_s <= cap_s
    if plan.granted_s:
        assert plan.granted_s > policy.margin_s


# -- renewal, with a stepped clock across month ends --------------------------------------------------
BUNDLE = Bundle("de", 1000, ("49",), rollover_max_s=300, increment_s=1)


def test_renewal_with_rollover_across_month_ends():
    end = at("2026-02-01T00:00:00")  # January's balance: 700 of 1000 s left
    [r] = list(renewals(BUNDLE, 1, 700, 0, end, at("2026-02-01T00:00:00"), Period.MONTHLY, "UTC", None))
    assert (r.carried_s, r.expired_s, r.given_s, r.seconds) == (300, 400, 1000, 1300)
    assert (r.period_start_us, r.period_end_us) == (end, at("2026-03-01T00:00:00"))
    # nothing is due before the month ends
    assert list(renewals(BUNDLE, 1, 700, 0, end, end - 1, Period.MONTHLY, "UTC", None)) == []
    # three idle months later: each turn carries at most 300 s
    turns = list(
        renewals(BUNDLE, 1, 1300, 0, at("2026-03-01T00:00:00"), at("2026-05-15T00:00:00"), Period.MONTHLY, "UTC", None)
    )
    assert [t.seconds for t in turns] == [1300, 1300, 1300]
    assert [t.expired_s for t in turns] == [1000, 1000, 1000]
    assert turns[-1].period_end_us == at("2026-06-01T00:00:00")


def test_renewal_keeps_what_live_calls_hold_and_follows_the_time_zone():
    end = at("2026-01-31T23:00:00")  # midnight in Berlin (UTC+1)
    [r] = list(renewals(BUNDLE, 2, 500, 200, end, end, Period.MONTHLY, "Europe/Berlin", None))
    # 300 free: all of them carried; 200 held stay; 2 × 1000 given
    assert (r.carried_s, r.expired_s, r.seconds) == (300, 0, 2500)
    assert r.period_end_us == at("2026-02-28T23:00:00")


def test_an_ended_subscription_expires_its_seconds():
    end = at("2026-02-01T00:00:00")
    [r] = list(renewals(BUNDLE, 1, 700, 50, end, at("2026-03-10T00:00:00"), Period.MONTHLY, "UTC", end))
    assert (r.expired_s, r.given_s, r.seconds, r.period_end_us) == (650, 0, 50, END_OF_TIME)
