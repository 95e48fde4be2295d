"""Notices, the pure part (fsbill.core.notices): low-balance levels with 10 % hysteresis, the retry
schedule, the Standard Webhooks signature checked by an independent HMAC, the email templates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.money import MAX_MICROS, Money
from fsbill.core.notices import (
    KINDS,
    Backoff,
    email_text,
    format_levels,
    level_changes,
    parse_levels,
    rearm_at,
    valid_kind,
    webhook_body,
    webhook_headers,
    webhook_secret_problem,
)
from fsbill.errors import InvalidInput

M = Money.parse
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# -- levels -----------------------------------------------------------------------------------------
def test_levels_parse_highest_first_each_once():
    assert parse_levels("2.00, 10,2") == (M("10"), M("2"))
    assert format_levels(parse_levels("2.00,10")) == "10.00,2.00"
    assert parse_levels("") == parse_levels("off") == parse_levels(" none ") == ()


@pytest.mark.parametrize("text", ["0", "-1", "1,x", "1e3", "1.0000001", ",", "1,,2", "1.5.0"])
def test_bad_levels_are_refused_with_the_flag_named(text):
    with pytest.raises(InvalidInput, match="--low-balance"):
        parse_levels(text)


def test_too_many_levels():
    with pytest.raises(InvalidInput, match="at most 10"):
        parse_levels(",".join(str(i) for i in range(1, 12)))


def test_rearm_is_ten_percent_above_exactly():
    assert rearm_at(M("10.00")) == M("11.00")
    assert rearm_at(M("2.00")) == M("2.20")
    assert rearm_at(Money(1)) == Money(2)  # rounded up to the micro-unit: never below 110 %
    assert rearm_at(Money(MAX_MICROS)) == Money(MAX_MICROS)  # never past the largest amount


def test_crossing_down_raises_once_then_waits_for_ten_percent_above():
    levels = (M("10"), M("2"))
    first = level_changes(M("9.99"), levels, set())
    assert first.crossed == (M("10"),) and first.rearmed == ()
    disarmed = {M("10")}
    # hovering just under and over the level: nothing
    for available in ("9.00", "10.00", "10.99", "5"):
        assert not level_changes(M(available), levels, disarmed)
    assert level_changes(M("11.00"), levels, disarmed).rearmed == (M("10"),)
    # falling through both levels at once: one notice each
    assert level_changes(M("1"), levels, set()).crossed == (M("10"), M("2"))
    # a disarmed amount that is no longer a level is forgotten
    assert level_changes(M("0"), (M("2"),), {M("10"), M("2")}).rearmed == (M("10"),)


@settings(max_examples=300, deadline=None)
@given(
    levels=st.lists(st.integers(1, 10**9), min_size=1, max_size=4, unique=True),
    walk=st.lists(st.integers(0, 2 * 10**9), min_size=1, max_size=40),
)
def test_a_walk_raises_one_notice_per_downward_crossing_of_each_level(levels, walk):
    """Simulated over any walk of what is available: a level fires only when it is under the
    level, and between two notices for a level what is available reached level + 10 %."""
    lv = tuple(Money(x) for x in levels)
    disarmed: set[Money] = set()
    highest_since: dict[Money, int] = {}
    fired: dict[Money, int] = {}
    for micros in walk:
        available = Money(micros)
        for level in list(highest_since):
            highest_since[level] = max(highest_since[level], micros)
        changes = level_changes(available, lv, disarmed)
        assert not set(changes.crossed) & set(changes.rearmed)
        for level in changes.rearmed:
            assert available >= rearm_at(level)
            disarmed.discard(level)
        for level in changes.crossed:
            assert available < level
            if level in highest_since:  # not the first: it was back above level + 10 % in between
                assert highest_since[level] * 10 >= level.micros * 11
            highest_since[level] = micros
            fired[level] = fired.get(level, 0) + 1
            disarmed.add(level)
        # the state is consistent: a level is disarmed iff its last notice was not followed by a re-arm
        for level in lv:
            if level in disarmed:
                assert available < rearm_at(level) or level in changes.crossed


# -- retries ------------------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap():
    b = Backoff(first_s=10, max_s=3600)
    assert [b.delay_us(n) // 1_000_000 for n in (0, 1, 2, 3, 4)] == [0, 10, 20, 40, 80]
    assert b.delay_us(10) == 3600 * 1_000_000
    assert b.delay_us(10_000) == 3600 * 1_000_000  # no overflow however many attempts


# -- the webhook ----------------------------------------------------------------------------------------
def spec_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks algorithm, written out here independently of the library."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def test_signature_is_the_standard_one():
    body = webhook_body("ntc_1", "balance.low", 1_700_000_000_123_456, {"account": "a", "level": "10.00"})
    headers = webhook_headers("ntc_1", 1_700_000_100, body, SECRET)
    assert headers["webhook-id"] == "ntc_1"
    assert headers["webhook-timestamp"] == "1700000100"
    assert headers["webhook-signature"] == spec_signature(SECRET, "ntc_1", "1700000100", body)
    envelope = json.loads(body)
    assert envelope == {
        "id": "ntc_1",
        "type": "balance.low",
        "timestamp": "2023-11-14T22:13:20.123456Z",
        "data": {"account": "a", "level": "10.00"},
    }
    # the same notice gives the same bytes on every attempt
    assert body == webhook_body("ntc_1", "balance.low", 1_700_000_000_123_456, {"level": "10.00", "account": "a"})


@pytest.mark.parametrize("secret", ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"])
def test_bad_secrets_are_explained(secret):
    assert webhook_secret_problem(secret)
    assert webhook_secret_problem(SECRET) is None


# -- email ----------------------------------------------------------------------------------------------
def test_every_kind_has_a_template_filled_from_its_payload():
    subject, body = email_text(
        "balance.low",
        "ntc_9",
        {
            "account": "acme",
            "currency": "EUR",
            "level": "10.00",
            "available": "9.50",
            "balance": "9.50",
            "rearm_at": "11.00",
        },
    )
    assert subject == "Low balance on account acme: 9.50 EUR available"
    assert "under 10.00 EUR" in body and "11.00 EUR" in body and "ntc_9" in body
    for kind in KINDS:
        subject, body = email_text(kind, "ntc_1", {"account": "acme"})
        assert "acme" in subject + body and "\n" not in subject
    # an unknown kind (another feature's) still gets a message; a missing field shows as '?'
    assert email_text("plan.renewed", "ntc_2", {})[0] == "Notice plan.renewed for account ?"


def test_kind_names():
    for kind in KINDS:
        assert valid_kind(kind) == kind
    for bad in ("", "Balance.Low", "balance low", "balance..low", ".x", "x" * 65):
        with pytest.raises(InvalidInput):
            valid_kind(bad)


def test_the_guides_receiver_accepts_fsbills_signature_and_drops_duplicates():
    """docs/NOTICES.md's Python receiver, run as written, against what fsbill sends."""
    import re
    import time
    from pathlib import Path

    guide = (Path(__file__).parent.parent / "docs" / "NOTICES.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", guide, re.S)
    space: dict = {}
    exec(code, space)
    body = webhook_body("ntc_7", "balance.low", 1_700_000_000_000_000, {"account": "acme"})
    headers = webhook_headers("ntc_7", int(time.time()), body, space["SECRET"])
    assert space["receive"](headers, body) == 204
    assert space["seen"] == {"ntc_7"}
    assert space["receive"](headers, body) == 204  # the duplicate, dropped
    assert space["receive"](headers, body + b" ") == 401  # a body changed on the way
    stale = webhook_headers("ntc_8", int(time.time()) - 3600, body, space["SECRET"])
    assert space["receive"](stale, body) == 400
