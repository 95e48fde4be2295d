"""Correcting a call nobody saw end from FreeSWITCH's CDR (fsbill.core.recovery): exact, never
above the grant held for the visit, never beyond what the account can pay, refunds debits past
the real end."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate, billed_seconds_us, cost
from fsbill.core.recovery import correct, visit_window

US = 1_000_000
M = Money.parse


def rate(per_minute="1.00", fee="0", initial=1, increment=1, minimum=0):
    return Rate("49", M(per_minute), M(fee), initial, increment, minimum, RoundingRule(4, RoundingMethod.HALF_UP))


@pytest.mark.parametrize(
    "talk_us, charged, grant, available, post, uncollected",
    [
        (36_700_000, "0.1667", "2.00", "40", "0.45", "0"),  # 37 s at 1.00/min, 10 s charged before the crash
        (36_700_000, "0.1667", "0.50", "40", "0.3333", "0.1167"),  # capped at the grant held for it
        (36_700_000, "0.1667", "2.00", "0.10", "0.10", "0.35"),  # the account can pay only 0.10 now
        (5_000_000, "0.1667", "2.00", "40", "-0.0834", "0"),  # a debit past the real end is refunded
        (10_000_000, "0.1667", "2.00", "40", "0", "0"),  # exactly what was debited
        (0, "0", "2.00", "40", "0", "0"),  # never answered
    ],
)
def test_corrections(talk_us, charged, grant, available, post, uncollected):
    start = 1_700_000_000 * US
    fix = correct(rate(), start, start + talk_us if talk_us else None, M(charged), M(grant), M(available))
    assert fix.post == M(post)
    assert fix.uncollected == M(uncollected)
    assert fix.cost == cost(rate(), billed_seconds_us(rate(), talk_us))


def test_increments_and_fees_follow_the_rate():
    r = rate("0.30", fee="0.05", initial=30, increment=6)
    fix = correct(r, 0, 61 * US, Money(0), M("5"), M("5"))
    assert fix.billed_s == 66
    assert fix.post == fix.cost == cost(r, 66)


def test_visit_window_clips_to_the_visit():
    assert visit_window(10, 100) == (10, 100)
    assert visit_window(10, 100, 40) == (40, 100)  # the second visit of the socket began at 40
    assert visit_window(10, 100, 40, 70) == (40, 70)
    assert visit_window(10, 100, 120) == (None, None)  # that visit began after the channel ended
    assert visit_window(None, 100) == (None, None)
    assert visit_window(10, None) == (None, None)


@given(
    talk_us=st.integers(0, 3600 * US),
    charged_micros=st.integers(0, 5_000_000),
    grant_micros=st.integers(0, 70_000_000),
    available_micros=st.integers(-5_000_000, 100_000_000),
)
def test_never_above_the_grant_nor_the_account(talk_us, charged_micros, grant_micros, available_micros):
    charged = Money(min(charged_micros, grant_micros))  # a recovered call was charged within its grant
    grant, available = Money(grant_micros), Money(available_micros)
    fix = correct(rate(), 0, talk_us or None, charged, grant, available)
    after = charged + fix.post
    assert after <= grant  # never more than the grant held for the visit
    assert after <= fix.owed  # never more than was owed
    assert after + fix.uncollected == fix.cost  # what is not charged is recorded, to the micro-unit
    assert fix.uncollected.micros >= 0
    if fix.post.micros > 0:
        assert fix.post <= available  # the invariant holds: only what the account can pay now
