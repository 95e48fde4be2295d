"""Auto-recharge decided (fsbill.core.recharge): table-driven, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsbill.core.money import Money
from fsbill.core.recharge import (
    DEFAULT_MAX_PER_DAY,
    MAX_FAILURES,
    Decision,
    Settings,
    decide,
    describe,
    from_stored,
    is_key,
    local_day,
    parse_settings,
    requested_payload,
    stored,
    valid_key,
)
from fsbill.errors import InvalidInput

M = Money.parse
US = 1_000_000
S = Settings(M("20.00"), M("5.00"), 2)


@pytest.mark.parametrize(
    ("available", "open_request", "failures", "today", "expected"),
    [
        ("5.00", False, 0, 0, Decision.ABOVE),  # at the level is not under it
        ("5.000001", False, 0, 0, Decision.ABOVE),
        ("4.999999", False, 0, 0, Decision.REQUEST),
        ("-3.00", False, 0, 0, Decision.REQUEST),  # arrears or a credit limit: still a request
        ("4.00", True, 0, 0, Decision.OPEN),
        ("4.00", True, MAX_FAILURES, 2, Decision.OPEN),  # an open request is the first reason
        ("4.00", False, MAX_FAILURES - 1, 0, Decision.REQUEST),
        ("4.00", False, MAX_FAILURES, 0, Decision.FAILING),
        ("4.00", False, MAX_FAILURES + 5, 0, Decision.FAILING),
        ("4.00", False, 0, 1, Decision.REQUEST),
        ("4.00", False, 0, 2, Decision.DAILY_LIMIT),
        ("4.00", False, 0, 7, Decision.DAILY_LIMIT),
        ("9.00", True, MAX_FAILURES, 9, Decision.ABOVE),  # above: nothing else matters
    ],
)
def test_decide(available, open_request, failures, today, expected):
    assert decide(S, M(available), open_request=open_request, failures=failures, today=today) is expected


@given(
    available=st.integers(-(10**12), 10**12),
    open_request=st.booleans(),
    failures=st.integers(0, 10),
    today=st.integers(0, 10),
    per_day=st.integers(1, 5),
)
def test_a_request_only_when_under_the_level_none_open_not_failing_and_within_the_day(
    available, open_request, failures, today, per_day
):
    settings = Settings(M("10"), M("3"), per_day)
    got = decide(settings, Money(available), open_request=open_request, failures=failures, today=today)
    want = Money(available) < settings.below and not open_request and failures < MAX_FAILURES and today < per_day
    assert (got is Decision.REQUEST) == want


@pytest.mark.parametrize(
    ("amount", "below", "per_day", "expected"),
    [
        ("20", "5", None, Settings(M("20.00"), M("5.00"), DEFAULT_MAX_PER_DAY)),
        (" 20.50 ", "0", 1, Settings(M("20.50"), M("0"), 1)),
        ("none", None, None, None),
        ("OFF", None, None, None),
    ],
)
def test_parse_settings(amount, below, per_day, expected):
    assert parse_settings(amount, below, per_day) == expected


@pytest.mark.parametrize(
    ("amount", "below", "per_day", "words"),
    [
        ("20", None, None, "needs --below"),
        ("0", "5", None, "more than zero"),
        ("-1", "5", None, "more than zero"),
        ("abc", "5", None, "--auto-recharge"),
        ("20", "-1", None, "--below must not be negative"),
        ("20", "x", None, "--below"),
        ("20", "5", 0, "--max-per-day"),
        ("20", "5", 101, "--max-per-day"),
        ("none", "5", None, "give no --below"),
        ("none", None, 2, "give no --below"),
        ("1" + "0" * 30, "5", None, "--auto-recharge"),  # beyond what fsbill keeps exact
    ],
)
def test_parse_settings_refuses_with_the_option_named(amount, below, per_day, words):
    with pytest.raises(InvalidInput, match=words):
        parse_settings(amount, below, per_day)


def test_stored_round_trip_and_description():
    assert from_stored(*stored(S)) == S
    assert stored(None) == (None, None, None) and from_stored(None, None, None) is None
    assert from_stored(1, 2, None) == Settings(Money(1), Money(2), DEFAULT_MAX_PER_DAY)
    assert describe(S) == "20.00 below 5.00, at most 2 a day" and describe(None) is None
    assert S.as_json() == {"amount": "20.00", "below": "5.00", "max_per_day": 2}


def test_the_day_is_the_tariffs_local_date():
    # 2026-03-28T23:30Z is already the 29th in Berlin (UTC+1), and still the 28th in New York
    at = 1_774_740_600 * US
    assert local_day(at, "UTC") == "2026-03-28"
    assert local_day(at, "Europe/Berlin") == "2026-03-29"
    assert local_day(at, "America/New_York") == "2026-03-28"
    # across the DST change in Berlin (29 March 2026, 02:00 -> 03:00): one day until midnight
    assert local_day(at + 22 * 3600 * US, "Europe/Berlin") == "2026-03-29"
    assert local_day(at + 23 * 3600 * US, "Europe/Berlin") == "2026-03-30"


def test_keys():
    assert valid_key(" rch_0123 ") == "rch_0123"
    assert is_key("rch_x") and not is_key("seed") and not is_key(None)
    for bad in ("", "abc", "rch" + "_" * 70):
        with pytest.raises(InvalidInput, match="rch_"):
            valid_key(bad)


def test_the_payload_carries_amount_and_key():
    assert requested_payload("acme", "EUR", "rch_1", S, M("4.50"), M("4.50")) == {
        "account": "acme",
        "currency": "EUR",
        "key": "rch_1",
        "amount": "20.00",
        "below": "5.00",
        "available": "4.50",
        "balance": "4.50",
    }
