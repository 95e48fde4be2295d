"""Settling a call nobody saw end, from FreeSWITCH's own record of it (mod_json_cdr).

Pure: no database, no clock. A process that crashed charged a call only up to its last
heartbeat debit (a `recovered` CDR). When FreeSWITCH's CDR for the channel arrives, the call
is re-rated from its real answer→end times and the difference is posted, under two limits:

- never more than the grant that was held for that visit (`grant` = cost(granted_s), all of
  which was reserved while the call lived, so charging up to it cannot exceed what the account
  had promised), even if that hold was already released;
- never more than the account can pay now without breaking the invariant (`available`, its
  balance + credit − everything its live calls hold); the rest is recorded as uncollected.

A channel can enter the socket more than once (issue 9's visits): each visit's billed window
is the channel's answer→end clipped to the visit, `visit_window`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.money import Money
from fsbill.core.rating import Rate, billed_seconds_us, cost


@dataclass(frozen=True)
class Correction:
    billed_s: int
    cost: Money  # the exact rated cost of the real window
    owed: Money  # cost, capped at the grant
    post: Money  # to move off the balance now (negative: a refund of debits past the real end)
    uncollected: Money  # owed beyond what the account can pay now, plus cost beyond the grant


def visit_window(
    answer_us: int | None, end_us: int | None, visit_start_us: int | None = None, visit_end_us: int | None = None
) -> tuple[int | None, int | None]:
    """The part of a channel's answer→end that belongs to one visit of the socket."""
    if answer_us is None or end_us is None or end_us <= answer_us:
        return None, None
    start = max(answer_us, visit_start_us) if visit_start_us is not None else answer_us
    end = min(end_us, visit_end_us) if visit_end_us is not None else end_us
    if end <= start:
        return None, None
    return start, end


def correct(
    rate: Rate, start_us: int | None, end_us: int | None, charged: Money, grant: Money, available: Money
) -> Correction:
    """What to post to bring a recovered call from `charged` to the rating of start→end."""
    if start_us is None or end_us is None or end_us <= start_us:
        billed, total = 0, Money(0)
    else:
        billed = billed_seconds_us(rate, end_us - start_us)
        total = cost(rate, billed)
    owed = total if total <= grant else grant
    delta = owed - charged
    if delta.micros > 0:
        payable = available if available.micros > 0 else Money(0)
        post = delta if delta <= payable else payable
    else:
        post = delta  # debits ran past the real end: refund them
    return Correction(billed, total, owed, post, (total - owed) + (delta - post if delta.micros > 0 else Money(0)))


__all__ = ["Correction", "correct", "visit_window"]
