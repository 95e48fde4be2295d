"""Least-cost routing: which vendors (carriers) a call is offered to, in which order, and what
the call cost the operator once it is over. Pure: plain values in, plain values out.

The rules (issue 16, docs/ROUTING.md):

- Every vendor with a rate for the number is a candidate. Cost and sell price are compared as
  each deck rates *the same 60-second call* (`COMPARE_S`), connect fee, increments, minimum and
  each deck's own rounding included, so a vendor with a cheap per-minute price but a big connect
  fee or 60/60 billing is ranked by what it really charges.
- A candidate is unusable, and says why, when it is suspended (`suspended`), in another
  currency than the tariff (`currency`), dearer than the sell price (`loss`, unless
  `allow_loss`), or at its channel limit (`channel_limit`); when several apply the first in
  that order is given.
- Usable vendors are tried cheapest first; ties go to the higher weight, then to the name (so
  the order never depends on the database's row order).
- No candidate at all is `no_route`; candidates but none usable is `vendor_unavailable`.
- After the call: the vendor that carried it is the one whose leg FreeSWITCH bridged; its cost
  is its own deck's rate over the same billed window as the customer's cost, and the margin is
  `cost - vendor_cost` (negative when the call was carried at a loss).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fsbill.core.money import Money
from fsbill.core.rating import Rate, billed_seconds_us, cost

COMPARE_S = 60

NO_ROUTE = "no_route"
VENDOR_UNAVAILABLE = "vendor_unavailable"

# Why a vendor with a rate is not offered the call (in precedence order).
SUSPENDED = "suspended"
CURRENCY = "currency"
LOSS = "loss"
CHANNEL_LIMIT = "channel_limit"
UNUSABLE_REASONS = (SUSPENDED, CURRENCY, LOSS, CHANNEL_LIMIT)

REASON_TEXT = {
    SUSPENDED: "suspended",
    CURRENCY: "another currency than the tariff",
    LOSS: "dearer than the sell price",
    CHANNEL_LIMIT: "at its channel limit",
}


@dataclass(frozen=True)
class Vendor:
    """A vendor as routing sees it: what it charges for this number and what state it is in."""

    name: str
    rate: Rate | None  # its deck's rate for the number at the call's start; None = no rate
    currency: str
    dial_string: str  # template; '{destination}' is replaced by the normalized number
    suspended: bool = False
    live_channels: int = 0
    max_channels: int = 0  # 0 = no limit
    weight: int = 0

    @property
    def full(self) -> bool:
        return self.max_channels > 0 and self.live_channels >= self.max_channels


@dataclass(frozen=True)
class Option:
    """One vendor with a rate for the number, in the order fsbill would try it."""

    vendor: str
    prefix: str
    cost: Money  # what the vendor charges for the COMPARE_S-second call
    sell: Money  # what the customer pays for the same call
    usable: bool
    reason: str  # "" when usable, else one of UNUSABLE_REASONS
    dial_string: str  # with the destination filled in
    weight: int = 0

    @property
    def margin(self) -> Money:
        return self.sell - self.cost


@dataclass(frozen=True)
class Route:
    """The routing decision for one call."""

    options: tuple[Option, ...]  # usable vendors in trial order, then the unusable ones
    reason: str = ""  # "" | NO_ROUTE | VENDOR_UNAVAILABLE

    @property
    def usable(self) -> tuple[Option, ...]:
        return tuple(o for o in self.options if o.usable)

    @property
    def dial_strings(self) -> tuple[str, ...]:
        return tuple(o.dial_string for o in self.usable)


def fill_destination(template: str, destination: str) -> str:
    return template.replace("{destination}", destination)


def _unusable_reason(vendor: Vendor, vendor_cost: Money, sell: Money, currency: str, allow_loss: bool) -> str:
    if vendor.suspended:
        return SUSPENDED
    if vendor.currency != currency:
        return CURRENCY
    if vendor_cost > sell and not allow_loss:
        return LOSS
    if vendor.full:
        return CHANNEL_LIMIT
    return ""


def choose(
    vendors: Iterable[Vendor],
    sell_rate: Rate,
    currency: str,
    destination: str,
    allow_loss: bool = False,
) -> Route:
    """The vendors to offer a call to `destination` sold at `sell_rate` in `currency`."""
    sell = cost(sell_rate, COMPARE_S)
    options = []
    for v in vendors:
        if v.rate is None:
            continue
        vendor_cost = cost(v.rate, COMPARE_S)
        reason = _unusable_reason(v, vendor_cost, sell, currency, allow_loss)
        options.append(
            Option(
                vendor=v.name,
                prefix=v.rate.prefix,
                cost=vendor_cost,
                sell=sell,
                usable=not reason,
                reason=reason,
                dial_string=fill_destination(v.dial_string, destination),
                weight=v.weight,
            )
        )
    options.sort(key=lambda o: (not o.usable, o.cost.micros, -o.weight, o.vendor))
    if not options:
        return Route((), NO_ROUTE)
    if not options[0].usable:
        return Route(tuple(options), VENDOR_UNAVAILABLE)
    return Route(tuple(options))


def narrow(route: Route, refused: Iterable[str]) -> Route:
    """The route once the vendors in `refused` turned out to be at their channel limit when
    their channels were taken (another call, perhaps on another node, got there first)."""
    gone = set(refused)
    if not gone:
        return route
    options = [
        Option(o.vendor, o.prefix, o.cost, o.sell, False, CHANNEL_LIMIT, o.dial_string, o.weight)
        if o.usable and o.vendor in gone
        else o
        for o in route.options
    ]
    options.sort(key=lambda o: (not o.usable, o.cost.micros, -o.weight, o.vendor))
    reason = route.reason if any(o.usable for o in options) or not options else VENDOR_UNAVAILABLE
    return Route(tuple(options), reason)


# -- after the call ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    vendor: str
    result: str  # "answered" | "failed"
    cause: str  # FreeSWITCH's hangup cause for that leg ("" if it reported none)


def attempts(legs: Sequence[tuple[str, str]], answered_leg: str, leg_causes: Mapping[str, str]) -> list[Attempt]:
    """Which vendors the call was really offered to, and how each attempt ended.

    `legs` are (vendor, leg uuid) in bridge order; `answered_leg` is the leg FreeSWITCH bridged
    (`last_bridge_to`, "" if none); `leg_causes` the per-leg causes FreeSWITCH reported
    (`originate_causes`). Failover tries legs in order, so every leg before the answered one
    was attempted and failed. Without an answer, the legs attempted are those FreeSWITCH
    reported a cause for and every leg before the last of them (a leg that failed before a
    channel existed, e.g. an unknown gateway, leaves no cause behind).
    """
    uuids = [leg for _, leg in legs]
    if answered_leg in uuids:
        last = uuids.index(answered_leg)
    else:
        reported = [i for i, leg in enumerate(uuids) if leg in leg_causes]
        last = reported[-1] if reported else -1
    out = []
    for i in range(last + 1):
        vendor, leg = legs[i]
        if leg == answered_leg:
            out.append(Attempt(vendor, "answered", ""))
        else:
            out.append(Attempt(vendor, "failed", leg_causes.get(leg, "")))
    return out


def carrier(legs: Sequence[tuple[str, str]], answered_leg: str) -> str:
    """The vendor whose leg FreeSWITCH bridged, or "" (none answered, or not one of ours)."""
    for vendor, leg in legs:
        if leg and leg == answered_leg:
            return vendor
    return ""


@dataclass(frozen=True)
class VendorCost:
    vendor: str
    billed_s: int
    cost: Money
    margin: Money


def vendor_cost(vendor: str, rate: Rate, answered_us: int | None, end_us: int | None, sell_cost: Money) -> VendorCost:
    """What the carrying vendor charges for the billed window [answered_us, end_us) (the same
    window the customer is charged for), by its own increments, fee and rounding."""
    if answered_us is None or end_us is None or end_us <= answered_us:
        billed = 0
        amount = Money(0)
    else:
        billed = billed_seconds_us(rate, end_us - answered_us)
        amount = cost(rate, billed)
    return VendorCost(vendor, billed, amount, sell_cost - amount)


__all__ = [
    "COMPARE_S",
    "NO_ROUTE",
    "VENDOR_UNAVAILABLE",
    "UNUSABLE_REASONS",
    "REASON_TEXT",
    "Vendor",
    "Option",
    "Route",
    "Attempt",
    "VendorCost",
    "attempts",
    "carrier",
    "choose",
    "fill_destination",
    "narrow",
    "vendor_cost",
]
