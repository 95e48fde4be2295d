"""The vendor choice (fsbill.core.routing): ordering, exclusions, attribution, vendor cost."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.rating import Rate
from fsbill.core.routing import (
    CHANNEL_LIMIT,
    CURRENCY,
    LOSS,
    NO_ROUTE,
    SUSPENDED,
    VENDOR_UNAVAILABLE,
    Vendor,
    attempts,
    carrier,
    choose,
    narrow,
    vendor_cost,
)


def rate(per_min: str, fee: str = "0", inc: tuple[int, int] = (1, 1), minimum: int = 0, prefix: str = "49") -> Rate:
    return Rate(prefix, Money.parse(per_min), Money.parse(fee), inc[0], inc[1], minimum)


SELL = rate("0.10")  # 60 s sells for 0.10


def vendor(name: str, r: Rate | None, **kw) -> Vendor:
    kw.setdefault("currency", "EUR")
    kw.setdefault("dial_string", f"sofia/gateway/{name}/{{destination}}")
    return Vendor(name, r, **kw)


# (vendors, expected usable order, expected {vendor: reason} for the unusable, route reason)
CASES = [
    pytest.param(
        [vendor("a", rate("0.05")), vendor("b", rate("0.03")), vendor("c", rate("0.04"))],
        ["b", "c", "a"],
        {},
        "",
        id="cheapest-first",
    ),
    pytest.param(
        [vendor("a", rate("0.04"), weight=1), vendor("b", rate("0.04"), weight=5), vendor("c", rate("0.04"))],
        ["b", "a", "c"],
        {},
        "",
        id="ties-higher-weight-first",
    ),
    pytest.param(
        [vendor("z", rate("0.04")), vendor("y", rate("0.04"))],
        ["y", "z"],
        {},
        "",
        id="full-ties-by-name",
    ),
    pytest.param(
        # 0.01/min but a 0.08 connect fee: 0.09 for the minute, dearer than b's 0.05
        [vendor("a", rate("0.01", fee="0.08")), vendor("b", rate("0.05"))],
        ["b", "a"],
        {},
        "",
        id="connect-fee-counts",
    ),
    pytest.param(
        # 60/60 at 0.06 is 0.06 for 60 s; 1/1 with a 90 s minimum at 0.05 bills 90 s: 0.075
        [vendor("a", rate("0.05", minimum=90)), vendor("b", rate("0.06", inc=(60, 60)))],
        ["b", "a"],
        {},
        "",
        id="minimum-counts",
    ),
    pytest.param(
        [vendor("a", rate("0.11")), vendor("b", rate("0.09"))],
        ["b"],
        {"a": LOSS},
        "",
        id="loss-excluded",
    ),
    pytest.param(
        [vendor("a", rate("0.10"))],
        ["a"],
        {},
        "",
        id="at-cost-is-not-a-loss",
    ),
    pytest.param(
        [vendor("a", rate("0.02"), suspended=True), vendor("b", rate("0.03"))],
        ["b"],
        {"a": SUSPENDED},
        "",
        id="suspended-excluded",
    ),
    pytest.param(
        [vendor("a", rate("0.02"), currency="USD"), vendor("b", rate("0.03"))],
        ["b"],
        {"a": CURRENCY},
        "",
        id="currency-excluded",
    ),
    pytest.param(
        [vendor("a", rate("0.02"), max_channels=2, live_channels=2), vendor("b", rate("0.03"), max_channels=2)],
        ["b"],
        {"a": CHANNEL_LIMIT},
        "",
        id="channel-limit-excluded",
    ),
    pytest.param(
        [vendor("a", rate("0.02"), max_channels=0, live_channels=500)],
        ["a"],
        {},
        "",
        id="zero-is-no-limit",
    ),
    pytest.param(
        [vendor("a", rate("0.20"), suspended=True, currency="USD", live_channels=1, max_channels=1)],
        [],
        {"a": SUSPENDED},
        VENDOR_UNAVAILABLE,
        id="reason-precedence-suspended",
    ),
    pytest.param(
        [vendor("a", rate("0.20"), currency="USD", live_channels=1, max_channels=1)],
        [],
        {"a": CURRENCY},
        VENDOR_UNAVAILABLE,
        id="reason-precedence-currency",
    ),
    pytest.param(
        [vendor("a", rate("0.20"), live_channels=1, max_channels=1)],
        [],
        {"a": LOSS},
        VENDOR_UNAVAILABLE,
        id="reason-precedence-loss",
    ),
    pytest.param([vendor("a", None), vendor("b", None)], [], {}, NO_ROUTE, id="no-rate-no-route"),
    pytest.param([], [], {}, NO_ROUTE, id="no-vendors"),
]


@pytest.mark.parametrize("vendors,order,unusable,reason", CASES)
def test_choice(vendors, order, unusable, reason):
    route = choose(vendors, SELL, "EUR", "4930123")
    assert [o.vendor for o in route.usable] == order
    assert {o.vendor: o.reason for o in route.options if not o.usable} == unusable
    assert route.reason == reason
    assert [o.vendor for o in route.options][: len(order)] == order  # usable ones come first
    assert route.dial_strings == tuple(f"sofia/gateway/{v}/4930123" for v in order)


def test_allow_loss_keeps_dearer_vendors_last_by_cost():
    vendors = [vendor("dear", rate("0.30")), vendor("cheap", rate("0.05"))]
    route = choose(vendors, SELL, "EUR", "49", allow_loss=True)
    assert [o.vendor for o in route.usable] == ["cheap", "dear"]
    assert route.options[1].margin == Money.parse("-0.20")
    assert choose(vendors, SELL, "EUR", "49").usable[0].vendor == "cheap"


def test_costs_and_margin_of_the_compared_minute():
    route = choose([vendor("a", rate("0.036", fee="0.01", inc=(30, 6)))], rate("0.12", fee="0.02"), "EUR", "49")
    (o,) = route.options
    assert o.cost == Money.parse("0.046") and o.sell == Money.parse("0.14") and o.margin == Money.parse("0.094")


def test_destination_filled_everywhere():
    v = vendor("a", rate("0.01"), dial_string="{destination}@a;sofia/a/{destination}")
    assert choose([v], SELL, "EUR", "4912").dial_strings == ("4912@a;sofia/a/4912",)


def test_narrow_moves_refused_vendors_out():
    route = choose([vendor("a", rate("0.01")), vendor("b", rate("0.02"))], SELL, "EUR", "49")
    n = narrow(route, {"a"})
    assert [o.vendor for o in n.usable] == ["b"] and n.options[1].reason == CHANNEL_LIMIT and n.reason == ""
    assert narrow(route, {"a", "b"}).reason == VENDOR_UNAVAILABLE
    assert narrow(route, ()) is route


LEGS = [("a", "u1"), ("b", "u2"), ("c", "u3")]


@pytest.mark.parametrize(
    "answered,causes,expected",
    [
        ("u1", {"u1": "NONE"}, [("a", "answered", "")]),
        (
            "u2",
            {"u1": "NO_ROUTE_DESTINATION", "u2": "NONE"},
            [("a", "failed", "NO_ROUTE_DESTINATION"), ("b", "answered", "")],
        ),
        # a leg that failed before a channel existed reports no cause but was still tried
        ("u3", {"u3": "NONE"}, [("a", "failed", ""), ("b", "failed", ""), ("c", "answered", "")]),
        ("", {"u1": "USER_BUSY", "u2": "NO_ANSWER"}, [("a", "failed", "USER_BUSY"), ("b", "failed", "NO_ANSWER")]),
        ("", {}, []),
        ("someone-else", {}, []),
    ],
)
def test_attempts(answered, causes, expected):
    assert [(a.vendor, a.result, a.cause) for a in attempts(LEGS, answered, causes)] == expected


def test_carrier():
    assert carrier(LEGS, "u2") == "b"
    assert carrier(LEGS, "") == "" and carrier(LEGS, "x") == ""


# -- vendor cost against an independent computation ----------------------------------------------
def independent_cost(per_min: Decimal, fee: Decimal, first: int, inc: int, minimum: int, decimals: int, us: int):
    """Straight from the rule text, in Decimal: every started second counts; bill at least the
    minimum and the first block; then whole increments; fee + seconds x price / 60, rounded once."""
    if us <= 0:
        return 0, Decimal(0)
    seconds = -(-us // 1_000_000)
    billed = max(seconds, minimum, first)
    while (billed - first) % inc:
        billed += 1
    exact = fee + Decimal(billed) * per_min / Decimal(60)
    return billed, exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


amounts = st.integers(min_value=0, max_value=5_000_000).map(lambda m: Decimal(m).scaleb(-6))


@settings(max_examples=3000, deadline=None)
@given(
    per_min=amounts,
    fee=amounts,
    first=st.integers(1, 120),
    inc=st.integers(1, 60),
    minimum=st.integers(0, 180),
    decimals=st.integers(0, 6),
    answered_us=st.integers(1_700_000_000_000_000, 1_800_000_000_000_000),
    duration_us=st.integers(-5_000_000, 4 * 3600 * 1_000_000),
    sell=st.integers(0, 10**9),
)
def test_vendor_cost_matches_independent_arithmetic(
    per_min, fee, first, inc, minimum, decimals, answered_us, duration_us, sell
):
    r = Rate(
        "1",
        Money.parse(per_min),
        Money.parse(fee),
        first,
        inc,
        minimum,
        RoundingRule(decimals, RoundingMethod.HALF_UP),
    )
    vc = vendor_cost("v", r, answered_us, answered_us + duration_us, Money(sell))
    billed, expected = independent_cost(per_min, fee, first, inc, minimum, decimals, duration_us)
    assert vc.billed_s == billed
    assert vc.cost == Money.parse(expected)
    assert vc.margin == Money(sell) - Money.parse(expected)


def test_vendor_cost_unanswered():
    vc = vendor_cost("v", rate("1.00", fee="1"), None, None, Money(0))
    assert vc.cost == Money(0) and vc.billed_s == 0 and vc.margin == Money(0)


# -- properties of the choice ------------------------------------------------------------------------
vendor_strategy = st.builds(
    lambda i, micros, fee, w, susp, cur, live, cap, has: Vendor(
        f"v{i}",
        Rate("49", Money(micros), Money(fee)) if has else None,
        cur,
        "x/{destination}",
        susp,
        live,
        cap,
        w,
    ),
    st.integers(0, 10**6),
    st.integers(0, 300_000),
    st.integers(0, 50_000),
    st.integers(0, 3),
    st.booleans(),
    st.sampled_from(["EUR", "EUR", "EUR", "USD"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(vendors=st.lists(vendor_strategy, max_size=8, unique_by=lambda v: v.name), allow_loss=st.booleans())
def test_choice_properties(vendors, allow_loss):
    route = choose(vendors, SELL, "EUR", "4930", allow_loss)
    with_rate = [v for v in vendors if v.rate is not None]
    assert sorted(o.vendor for o in route.options) == sorted(v.name for v in with_rate)
    usable = route.usable
    for o in usable:
        v = next(v for v in vendors if v.name == o.vendor)
        assert not v.suspended and v.currency == "EUR" and not v.full
        assert allow_loss or o.cost <= o.sell
    keys = [(o.cost.micros, -o.weight) for o in usable]
    assert keys == sorted(keys)
    assert route.reason == ("" if usable else (NO_ROUTE if not with_rate else VENDOR_UNAVAILABLE))
