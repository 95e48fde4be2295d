"""Bundles of minutes: seconds for some destinations, renewed each calendar period (issue 25,
docs/BUNDLES.md).

Pure: no database, no clock. The rules:

- A bundle is a balance of seconds for the destinations its prefixes cover (no prefixes: every
  destination), sold through a plan: each calendar period of the plan (in the account's time
  zone, fsbill.core.plans spans) it is renewed with its seconds, and at most `rollover_max_s`
  of what was left unused is carried over (`renewals`).
- A call takes bundle seconds first and money after, in one decision (`plan_mixed`): its grant
  is a *bundle part* of `bundle_s` seconds from answer, then a *paid part* rated as a call of
  its own length (connect fee, increments, minimum), so the longest talk is what the bundles
  still have (net of what other live calls hold on them) plus what the money buys. Bundle
  seconds are only added while the call has no paid part yet: once it talks into paid time,
  its bundle part is fixed.
- Several bundles covering one destination are used in a fixed order (`usable`): the longest
  matching prefix first (a bundle with no prefixes matches with length 0), then the one whose
  period ends first, then by name.
- Only billed seconds consume bundle seconds, each bundle's part rounded up to its increment and
  never beyond what the call held on it; a call never answered consumes nothing (`consumed`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from fsbill.core.frozen import evolve
from fsbill.core.grant import US, Cap, GrantPolicy, boundary_at_most, plan_grant
from fsbill.core.money import Money
from fsbill.core.plans import Period, span_of
from fsbill.core.rating import Rate, cost
from fsbill.errors import InvalidInput

MAX_SECONDS = 10**9  # about 31 years of talk: more than any period could use
MAX_PREFIX_DIGITS = 15
# A renewal catches up at most this many periods at once (a daily plan idle for years).
MAX_RENEWALS = 100_000


@dataclass(frozen=True)
class Bundle:
    """A bundle's definition (`fsbill bundle add`)."""

    name: str
    seconds: int  # given each period
    prefixes: tuple[str, ...] = ()  # the destinations it covers; () = all
    rollover_max_s: int = 0  # at most this many unused seconds carried into the next period
    increment_s: int = 1  # a call's use is rounded up to this


def parse_prefixes(text: str | None) -> tuple[str, ...]:
    """'49,4930' → ('49', '4930'): digits only, no duplicates, sorted."""
    if text is None or not text.strip():
        return ()
    found = []
    for part in text.split(","):
        p = part.strip().lstrip("+")
        if not (p.isascii() and p.isdigit() and 1 <= len(p) <= MAX_PREFIX_DIGITS):
            raise InvalidInput(f"bundle prefix {part.strip()!r} is not 1-{MAX_PREFIX_DIGITS} digits")
        found.append(p)
    return tuple(sorted(set(found)))


def check_bundle(bundle: Bundle) -> None:
    name = bundle.name
    if not name or len(name) > 64 or name != name.strip():
        raise InvalidInput(f"bundle name must be 1-64 characters without surrounding spaces, got {name!r}")
    if not 1 <= bundle.seconds <= MAX_SECONDS:
        raise InvalidInput(f"--seconds must be 1..{MAX_SECONDS}, got {bundle.seconds}")
    if not 0 <= bundle.rollover_max_s <= MAX_SECONDS:
        raise InvalidInput(f"--rollover-max must be 0..{MAX_SECONDS}, got {bundle.rollover_max_s}")
    if not 1 <= bundle.increment_s <= 3600:
        raise InvalidInput(f"--increment must be 1..3600 seconds, got {bundle.increment_s}")


def match_length(prefixes: Sequence[str], destination: str) -> int | None:
    """How specifically the prefixes cover a destination: the longest matching prefix's length,
    0 for a bundle of every destination, None when it does not cover it."""
    if not prefixes:
        return 0
    best = None
    for p in prefixes:
        if destination.startswith(p) and (best is None or len(p) > best):
            best = len(p)
    return best


# -- an account's bundle balances -----------------------------------------------------------------------
@dataclass(frozen=True)
class Allowance:
    """One bundle balance of an account (one per subscription), as a decision sees it."""

    id: int
    name: str
    prefixes: tuple[str, ...]
    increment_s: int
    seconds: int  # the balance: what is left this period (held seconds included)
    held_s: int  # held by live calls
    period_end_us: int

    @property
    def free_s(self) -> int:
        return max(0, self.seconds - self.held_s)


def usable(allowances: Sequence[Allowance], destination: str) -> list[Allowance]:
    """The balances covering a destination, in the order a call uses them: longest matching
    prefix first, then the period ending first, then by name (then id, for equal names)."""
    covering = [(match_length(a.prefixes, destination), a) for a in allowances]
    ranked = [(-n, a.period_end_us, a.name, a.id, a) for n, a in covering if n is not None]
    return [r[-1] for r in sorted(ranked, key=lambda r: r[:4])]


def free_seconds(allowances: Sequence[Allowance]) -> int:
    return sum(a.free_s for a in allowances)


def take(allowances: Sequence[Allowance], want_s: int) -> list[tuple[int, int]]:
    """Draw `want_s` seconds from the balances in order: [(allowance id, seconds)]."""
    drawn = []
    left = want_s
    for a in allowances:
        if left <= 0:
            break
        n = min(a.free_s, left)
        if n > 0:
            drawn.append((a.id, n))
            left -= n
    return drawn


@dataclass(frozen=True)
class Draw:
    """What a live call holds on one bundle balance, in the order its bundle part uses them."""

    allowance_id: int
    held_s: int
    increment_s: int = 1


def consumed(draws: Sequence[Draw], answered_us: int | None, end_us: int | None) -> list[int]:
    """Seconds each draw gives up for a call answered → ended: the bundle part of the call comes
    first, in draw order; each bundle's share of the talk is rounded up to its increment and
    never exceeds what the call held on it. Nothing for a call never answered."""
    if answered_us is None or end_us is None or end_us <= answered_us:
        return [0 for _ in draws]
    talk_s = -(-(end_us - answered_us) // US)  # every started second counts
    used = []
    offset = 0
    for d in draws:
        part = talk_s - offset
        if part <= 0:
            used.append(0)
        else:
            rounded = -(-part // d.increment_s) * d.increment_s
            used.append(min(d.held_s, rounded))
        offset += d.held_s
    return used


def paid_start_us(answered_us: int | None, bundle_s: int) -> int | None:
    """When the paid part of a call begins: `bundle_s` seconds after answer."""
    return None if answered_us is None else answered_us + bundle_s * US


# -- one decision: bundle seconds first, money after ---------------------------------------------------
@dataclass(frozen=True)
class MixedPlan:
    granted_s: int  # the call's new total grant (bundle part + paid part)
    bundle_s: int  # its bundle part after this plan
    extra_bundle_s: int  # newly held on bundles
    extra_hold: Money  # newly held money, for the paid part
    final: bool


NO_GRANT = MixedPlan(0, 0, 0, Money(0), True)


def plan_mixed(
    rate: Rate,
    granted_s: int,
    bundle_s: int,
    bundle_free_s: int,
    available: Money,
    policy: GrantPolicy,
    elapsed_s: int = 0,
    cap: Cap | None = None,
) -> MixedPlan:
    """The grant a call can have now, up to one more slice: bundle seconds first (while the call
    has no paid part yet, up to `bundle_free_s`, what its bundles have that no live call holds),
    then money for the rest, as `plan_grant` plans a call whose length is the paid part (its
    own hold excluded from `available`). Within `cap`, what the resellers above afford for the
    whole call at their own prices (fsbill.core.chain). Never takes back a grant; a first grant
    of the margin or less is no grant."""
    assert 0 <= bundle_s <= granted_s
    money_s = granted_s - bundle_s
    target_s = min(max(elapsed_s + policy.slice_s, granted_s + 1), policy.max_call_s)
    take_s = min(bundle_free_s, target_s - granted_s) if money_s == 0 and granted_s < target_s else 0
    new_bundle = bundle_s + max(0, take_s)
    room_s = policy.max_call_s - new_bundle
    if new_bundle >= target_s or room_s <= 0:
        # the bundle covers the slice: no money now; final only at the per-call maximum
        new_money, final = money_s, new_bundle >= policy.max_call_s
    else:
        m_elapsed = max(0, elapsed_s - new_bundle)
        m_policy = evolve(
            policy,
            slice_s=max(1, elapsed_s + policy.slice_s - new_bundle - m_elapsed),
            max_call_s=room_s,
            margin_s=policy.margin_s if new_bundle == 0 else 0,
        )
        mp = plan_grant(rate, money_s, available, m_policy, m_elapsed)
        new_money, final = mp.granted_s, mp.final
    if cap is not None:
        final = final or cap.final
        if new_bundle + new_money > cap.granted_s:
            final = True
            if cap.granted_s <= granted_s:
                new_bundle, new_money = bundle_s, money_s
            elif money_s == 0 and cap.granted_s <= new_bundle:
                new_bundle, new_money = cap.granted_s, 0
            else:
                new_money = max(money_s, boundary_at_most(rate, cap.granted_s - new_bundle))
    total = new_bundle + new_money
    if granted_s == 0 and total <= policy.margin_s:
        return NO_GRANT
    extra = cost(rate, new_money) - cost(rate, money_s)
    return MixedPlan(total, new_bundle, new_bundle - bundle_s, extra, final)


# -- renewal ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Renewal:
    """One period's turn of a bundle balance: what expired, what was carried, what was given."""

    period_start_us: int
    period_end_us: int  # END_OF_TIME once the subscription is over
    expired_s: int  # unused seconds beyond rollover_max_s (or all of them, at the end)
    carried_s: int
    given_s: int  # the bundle's seconds for the new period (0 once the subscription is over)
    seconds: int  # the balance after


END_OF_TIME = 2**62


def renewals(
    bundle: Bundle,
    quantity: int,
    seconds: int,
    held_s: int,
    period_end_us: int,
    now_us: int,
    period: Period,
    tz: str,
    sub_end_us: int | None,
) -> Iterator[Renewal]:
    """Every renewal due by `now_us` for a balance whose current period ends at `period_end_us`.

    Seconds live calls hold stay in the balance (the calls were granted them while they were
    valid; what they do not use expires when they settle). Of the rest, at most
    `rollover_max_s` is carried over; the new period adds the bundle's seconds × quantity. Once
    the subscription has ended, everything left expires and nothing more is given."""
    quota = bundle.seconds * quantity
    end = period_end_us
    for _ in range(MAX_RENEWALS):
        if end > now_us or end >= END_OF_TIME:
            return
        free = max(0, seconds - held_s)
        span = span_of(period, end, tz)
        if sub_end_us is not None and span.start_us >= sub_end_us:
            seconds -= free
            yield Renewal(span.start_us, END_OF_TIME, free, 0, 0, seconds)
            return
        carried = min(free, bundle.rollover_max_s)
        seconds = seconds - free + carried + quota
        yield Renewal(span.start_us, span.end_us, free - carried, carried, quota, seconds)
        end = span.end_us


def first_period(period: Period, start_us: int, tz: str) -> tuple[int, int]:
    """The period a new subscription's bundle starts in (the whole allowance, not prorated)."""
    span = span_of(period, start_us, tz)
    return span.start_us, span.end_us


__all__ = [
    "Allowance",
    "Bundle",
    "Draw",
    "MixedPlan",
    "Renewal",
    "check_bundle",
    "consumed",
    "first_period",
    "free_seconds",
    "match_length",
    "paid_start_us",
    "parse_prefixes",
    "plan_mixed",
    "renewals",
    "take",
    "usable",
]
