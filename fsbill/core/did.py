"""Inbound numbers (DIDs, docs/DIDS.md): a call the dialplan marks `fsbill_direction=inbound`
is paid for by the owner of the number it came in on, never by the caller, at the number's own
price, and bridged to the number's dial string.

This module decides, from plain values: whether a channel is inbound (`is_inbound`), the
number it came in on (`did_number`), the rate and dial string of a number (`rate_of_did`,
`dial_of_did`), and the admission of an inbound call (`admit_inbound`: the number's channel
limit, then the owner's account as for any call; when the owner cannot pay, or is suspended or
closed, a number set to `on_empty: free` lets the call through unbilled).

Nothing here reads a clock, logs or performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.call import AccountState, Admission, Channel, LiveCall, admit, destination_of, hold_deadline_us
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate

INBOUND, OUTBOUND = "inbound", "outbound"
DIRECTION_VARIABLE = "fsbill_direction"
UNKNOWN_DID = "unknown_did"  # the rejection reason of an inbound call to a number that is not ours
FREE_ON_EMPTY = "free_on_empty"  # the CDR reason of an inbound call let through unbilled
ON_EMPTY = ("reject", "free")
# The refusals `on_empty: free` turns into an unbilled call: the owner cannot pay, or may not.
EMPTY_REASONS = frozenset({"insufficient_funds", "suspended", "closed", "spend_cap"})


@dataclass(frozen=True)
class Did:
    """An inbound number as a call's decisions see it."""

    number: str
    account_id: int
    dial_string: str
    rate: Money | None = None  # price per minute; None: free inbound
    connect_fee: Money = Money(0)
    initial_increment_s: int = 1
    increment_s: int = 1
    on_empty: str = "reject"  # reject | free
    max_channels: int = 0  # 0 = no limit
    status: str = "active"  # active | removed


def is_inbound(channel: Channel) -> bool:
    """Only a call the dialplan marks `fsbill_direction=inbound` is inbound: an on-net call to
    another customer's number stays an outbound call of its caller."""
    return channel.var(DIRECTION_VARIABLE).lower() == INBOUND


def did_number(channel: Channel) -> str | None:
    """The number an inbound call came in on, normalised as caller ids are (no leading '+',
    ASCII digits only); None when it is not a number."""
    number = destination_of(channel).strip().lstrip("+")
    return number if number.isascii() and number.isdigit() else None


def rate_of_did(did: Did) -> Rate:
    """The number's own price (prefix: the number); no price is free inbound (a zero rate)."""
    if did.rate is None:
        return Rate(prefix=did.number, rate=Money(0))
    return Rate(
        prefix=did.number,
        rate=did.rate,
        connect_fee=did.connect_fee,
        initial_increment_s=did.initial_increment_s,
        increment_s=did.increment_s,
    )


def dial_of_did(did: Did) -> str:
    return did.dial_string.replace("{destination}", did.number)


def admit_inbound(
    uuid: str,
    visit: int,
    account: AccountState,
    did: Did,
    did_live: int,
    policy: GrantPolicy,
    now_us: int,
    max_ring_s: int,
) -> Admission:
    """Admit an inbound call to `did` (with `did_live` calls to it already live) on its owner's
    `account`: the number's channel limit first, then `admit` as for any call at the number's
    rate. A refusal because the owner cannot pay (or is suspended or closed) becomes, for a
    number set to `on_empty: free`, an unbilled call: a zero rate, nothing held, one grant of
    the per-call maximum (final: it is never extended), its reason `free_on_empty`."""
    if did.max_channels and did_live >= did.max_channels:
        return Admission("channel_limit")
    admission = admit(uuid, visit, account, rate_of_did(did), policy, now_us, max_ring_s, did.number)
    if admission.call is not None or admission.reason not in EMPTY_REASONS or did.on_empty != "free":
        return admission
    granted_s = policy.max_call_s
    call = LiveCall(
        uuid=uuid,
        visit=visit,
        rate=Rate(prefix=did.number, rate=Money(0)),
        granted_s=granted_s,
        held=Money(0),
        debited=Money(0),
        created_us=now_us,
        hold_until_us=hold_deadline_us(now_us, granted_s, max_ring_s),
        final=True,
    )
    return Admission(FREE_ON_EMPTY, call)


__all__ = [
    "DIRECTION_VARIABLE",
    "EMPTY_REASONS",
    "FREE_ON_EMPTY",
    "INBOUND",
    "ON_EMPTY",
    "OUTBOUND",
    "UNKNOWN_DID",
    "Did",
    "admit_inbound",
    "did_number",
    "dial_of_did",
    "is_inbound",
    "rate_of_did",
]
