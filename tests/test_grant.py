"""The reservation arithmetic: grants, debits, settlement — and the invariant under
random concurrent calls, with no database (the DB adapter's own tests cover the SQL)."""

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.grant import (
    US,
    GrantPolicy,
    collectable,
    cutoff_epoch_s,
    cutoff_offset_s,
    heartbeat_debit,
    plan_grant,
    settle,
    wants_extension,
    warning_epoch_s,
)
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate, cost


def rate(per_minute="1.00", fee="0", initial=1, increment=1, minimum=0, decimals=4):
    return Rate(
        prefix="49",
        rate=Money.parse(per_minute),
        connect_fee=Money.parse(fee),
        initial_increment_s=initial,
        increment_s=increment,
        min_duration_s=minimum,
        rounding=RoundingRule(decimals, RoundingMethod.HALF_UP),
    )


POLICY = GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60)


@pytest.mark.parametrize(
    "r, available, expected_s, final",
    [
        (rate(), "100", 120, False),  # plenty: one slice
        (rate(), "0.50", 30, True),  # 0.50 at 1.00/min buys 30 s, and that is all
        (rate(initial=60, increment=60), "100", 120, False),
        (rate(initial=60, increment=60), "1.50", 60, True),  # a second minute is unaffordable
        (rate(initial=30, increment=6), "0.60", 36, True),  # 30 + 6 s = 0.60
        (rate(fee="0.10"), "0.60", 30, True),  # the connect fee comes first
        (rate(), "0.01", 0, True),  # 0.6 s... not even 1 s: reject
        (rate(), "0.0250", 1, True),  # 1.5 s at 1/1 buys 1 s, but the cut-off margin eats it
    ],
)
def test_first_grant(r, available, expected_s, final):
    plan = plan_grant(r, 0, Money.parse(available), POLICY)
    if expected_s <= POLICY.margin_s:
        assert plan.granted_s == 0
        return
    assert plan.granted_s == expected_s
    assert plan.final is final
    assert plan.extra_hold == cost(r, expected_s)
    assert plan.extra_hold <= Money.parse(available)


def test_slice_never_below_first_billing_block():
    r = rate(initial=60, increment=60)
    plan = plan_grant(r, 0, Money.parse("10"), GrantPolicy(slice_s=30, max_call_s=3600))
    assert plan.granted_s == 60


def test_max_call_duration_caps_grant_and_is_final():
    policy = GrantPolicy(slice_s=120, max_call_s=90)
    plan = plan_grant(rate(), 0, Money.parse("100"), policy)
    assert plan.granted_s == 90 and plan.final
    again = plan_grant(rate(), 90, Money.parse("100"), policy, elapsed_s=80)
    assert again.granted_s == 90 and again.extra_hold == Money(0) and again.final


def test_extension_reaches_one_slice_past_elapsed():
    plan = plan_grant(rate(), 120, Money.parse("100"), POLICY, elapsed_s=70)
    assert plan.granted_s == 190
    assert plan.extra_hold == cost(rate(), 190) - cost(rate(), 120)


def test_extension_never_shrinks_a_grant():
    plan = plan_grant(rate(), 120, Money(0), POLICY, elapsed_s=70)
    assert plan.granted_s == 120 and plan.extra_hold == Money(0) and plan.final


def test_wants_extension_only_when_running_low():
    assert not wants_extension(120, 10, POLICY)
    assert wants_extension(120, 61, POLICY)


def test_policy_build_leaves_room_for_the_warning():
    policy = GrantPolicy.build(slice_s=120, max_call_s=3600, margin_s=1, warning_s=60, heartbeat_s=10)
    assert policy.extend_below_s >= 60 + 1 + 2 * 10


def test_cutoff_times_are_floored_whole_seconds_inside_the_grant():
    answered = 1_795_375_769_268_123
    assert cutoff_offset_s(120, 1) == 119
    epoch = cutoff_epoch_s(answered, 120, 1)
    assert epoch * US <= answered + 119 * US < (epoch + 1) * US
    assert cutoff_offset_s(1, 1) == 1  # never zero


def test_warning_is_skipped_when_its_moment_has_passed():
    assert warning_epoch_s(1000, 60, now_us=900 * US) == 940
    assert warning_epoch_s(1000, 60, now_us=950 * US) is None


def test_heartbeat_debit_is_accrued_cost_capped_by_hold():
    r = rate()
    answered = 1_000 * US
    assert heartbeat_debit(r, answered, answered + 30 * US, Money(0), cost(r, 120)) == cost(r, 30)
    assert heartbeat_debit(r, answered, answered + 30 * US + 1, Money(0), cost(r, 120)) == cost(r, 31)
    assert heartbeat_debit(r, answered, answered + 500 * US, Money(0), cost(r, 120)) == cost(r, 120)
    assert heartbeat_debit(r, answered, answered + 30 * US, cost(r, 40), Money(0)) == Money(0)


@pytest.mark.parametrize(
    "talk_us, debited, held, cost_s, post, overflow",
    [
        (61 * US, "0", "2.00", 61, "1.0167", "0"),
        (61 * US, "0.50", "1.50", 61, "0.5167", "0"),
        (61_000_001, "0", "2.00", 62, "1.0333", "0"),  # a started second is billed
        (200 * US, "0", "2.00", 200, "2.00", "1.3333"),  # beyond the hold
    ],
)
def test_settle(talk_us, debited, held, cost_s, post, overflow):
    r = rate()
    s = settle(r, 10 * US, 10 * US + talk_us, Money.parse(debited), Money.parse(held))
    assert s.billed_s == cost_s
    assert s.cost == cost(r, cost_s)
    assert s.post == Money.parse(post)
    assert s.overflow == Money.parse(overflow)
    assert s.release_hold == Money.parse(held)
    assert Money.parse(debited) + s.post + s.overflow == s.cost


def test_unanswered_costs_nothing_even_with_a_connect_fee():
    s = settle(rate(fee="0.25"), None, 99 * US, Money(0), Money.parse("2"))
    assert s.cost == Money(0) and s.post == Money(0) and s.billed_s == 0


def test_debits_that_ran_ahead_are_refunded_at_settlement():
    r = rate()
    s = settle(r, 0, 30 * US, cost(r, 40), cost(r, 80))
    assert s.post == cost(r, 30) - cost(r, 40)
    assert s.post.is_negative()


def test_collectable_never_exceeds_available():
    assert collectable(Money.parse("1"), Money.parse("0.3")) == Money.parse("0.3")
    assert collectable(Money.parse("1"), Money.parse("-5")) == Money(0)
    assert collectable(Money.parse("0.2"), Money.parse("5")) == Money.parse("0.2")


# -- the invariant, under random interleavings of many calls on one account ----------------
@dataclass
class Book:
    balance: Money
    credit: Money
    reserved: Money = Money(0)
    charged: Money = Money(0)
    rated: Money = Money(0)
    calls: dict = field(default_factory=dict)

    @property
    def available(self) -> Money:
        return self.balance + self.credit - self.reserved

    def check(self):
        assert self.available >= Money(0), "invariant broken"
        assert self.reserved == Money(sum(c["held"].micros for c in self.calls.values()))


rates = st.builds(
    rate,
    per_minute=st.sampled_from(["0.01", "0.5", "1.00", "3.3333", "12"]),
    fee=st.sampled_from(["0", "0.05"]),
    initial=st.sampled_from([1, 30, 60]),
    increment=st.sampled_from([1, 6, 60]),
    minimum=st.sampled_from([0, 10]),
)

ops = st.lists(
    st.tuples(st.sampled_from(["start", "beat", "end", "topup"]), st.integers(0, 9), st.integers(1, 400)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    r=rates, balance=st.sampled_from(["0", "0.30", "1", "10", "25.123456"]), credit=st.sampled_from(["0", "1"]), ops=ops
)
def test_invariant_holds_for_any_interleaving(r, balance, credit, ops):
    book = Book(Money.parse(balance), Money.parse(credit))
    policy = GrantPolicy(slice_s=60, max_call_s=900, margin_s=1, extend_below_s=30)
    clock = 0
    for op, slot, arg in ops:
        clock += arg * US // 10
        call = book.calls.get(slot)
        if op == "start" and call is None:
            plan = plan_grant(r, 0, book.available, policy)
            if plan.granted_s:
                book.reserved += plan.extra_hold
                book.calls[slot] = {
                    "answered": clock,
                    "granted": plan.granted_s,
                    "held": plan.extra_hold,
                    "debited": Money(0),
                }
        elif op == "beat" and call is not None:
            due = heartbeat_debit(r, call["answered"], clock, call["debited"], call["held"])
            book.balance -= due
            book.reserved -= due
            book.charged += due
            call["held"] -= due
            call["debited"] += due
            elapsed = (clock - call["answered"]) // US
            if wants_extension(call["granted"], elapsed, policy):
                plan = plan_grant(r, call["granted"], book.available, policy, elapsed)
                book.reserved += plan.extra_hold
                call["held"] += plan.extra_hold
                call["granted"] = plan.granted_s
        elif op == "end" and call is not None:
            # FreeSWITCH ends the call at the latest at the cut-off (+0.5 s of scheduler lateness).
            cutoff = call["answered"] + cutoff_offset_s(call["granted"], policy.margin_s) * US + US // 2
            end = min(clock, cutoff)
            s = settle(r, call["answered"], end, call["debited"], call["held"])
            assert s.overflow == Money(0), "a call ended by its cut-off never exceeds its hold"
            book.balance -= s.post
            book.reserved -= call["held"]
            book.charged += s.post
            book.rated += s.cost
            del book.calls[slot]
        elif op == "topup":
            book.balance += Money.parse("0.25")
        book.check()
    assert book.charged >= book.rated  # live calls may have debits not yet rated
