"""Vendors (carriers) in the database: their rows, their cost decks, their channels, and what a
settled call records about them.

A vendor's cost deck is an ordinary tariff's deck (a tariff named `vendor:NAME`, created with
the vendor): it is imported by `fsbill.db.rates.import_deck`, validated by
`fsbill.core.ratedeck`, and cached per node by `fsbill.db.rates.DeckCache` exactly like a
customer deck, so there is one deck format and one set of import rules.

Channel limits work like account limits: a live call holds one channel on every vendor of its
failover bridge (`take_channels`, in the transaction that holds the call's money, with one
conditional UPDATE per vendor so that two nodes racing for a vendor's last channel cannot both
get it); once FreeSWITCH reports which leg it bridged, the others are released
(`keep_carrier`); the settlement (or the reaper) releases the rest (`settle_vendors`).
"""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import peewee

from fsbill.core.money import Money, RoundingRule
from fsbill.core.rating import Rate
from fsbill.core.records import BridgeOutcome, Leg
from fsbill.core.routing import Attempt, Option, VendorCost, vendor_cost
from fsbill.core.routing import Vendor as RoutingVendor
from fsbill.core.routing import attempts as attempts_of
from fsbill.db import audit
from fsbill.db import rates as dbrates
from fsbill.db.accounts import _valid_currency, _valid_timezone, new_tariff_row
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow, rate_columns, rate_of, rounding_of
from fsbill.errors import Conflict, InvalidInput, NotFound

DECK_PREFIX = "vendor:"
ACTIVE, SUSPENDED, CLOSED = "active", "suspended", "closed"  # closed: for good (fsbill.db.management)
_FORBIDDEN_IN_NAME = set("|,[]{}/:;\"'=")


def deck_name(vendor: str) -> str:
    """The tariff that holds a vendor's cost deck."""
    return DECK_PREFIX + vendor


@dataclass(frozen=True)
class VendorView:
    id: int
    name: str
    deck_id: int
    dial_string: str
    currency: str
    rounding: RoundingRule
    timezone: str
    max_channels: int
    live_channels: int
    weight: int
    status: str
    rate_count: int = 0

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "dial_string": self.dial_string,
            "currency": self.currency,
            "decimals": self.rounding.decimals,
            "rounding": self.rounding.method.value,
            "timezone": self.timezone,
            "max_channels": self.max_channels,
            "live_channels": self.live_channels,
            "weight": self.weight,
            "status": self.status,
            "rates": self.rate_count,
        }


def _valid_name(name: str) -> str:
    if not name or len(name) > 64 or any(ch.isspace() or ch in _FORBIDDEN_IN_NAME for ch in name):
        raise InvalidInput(
            f"vendor name must be 1-64 characters without spaces or any of {''.join(sorted(_FORBIDDEN_IN_NAME))}, "
            f"got {name!r}"
        )
    return name


def _valid_dial_string(dial: str) -> str:
    dial = dial.strip()
    if not dial:
        raise InvalidInput("--dial-string must not be empty (e.g. 'sofia/gateway/NAME/{destination}')")
    if "|" in dial or "\n" in dial or "\r" in dial:
        raise InvalidInput("--dial-string is one target: no '|' (fsbill builds the failover itself) and no line breaks")
    if "{destination}" not in dial:
        # without it every call would go to the same fixed target, whatever number was dialled
        raise InvalidInput(
            f"--dial-string {dial!r} has no '{{destination}}': it is replaced by the dialled number, "
            f"e.g. 'sofia/gateway/NAME/{{destination}}'"
        )
    return dial


def create_vendor(
    store: Store,
    name: str,
    dial_string: str,
    now_us: int,
    *,
    max_channels: int = 0,
    weight: int = 0,
    currency: str = "EUR",
    rounding: RoundingRule = RoundingRule(),
    timezone: str = "UTC",
    actor: str | None = None,
) -> VendorView:
    """`actor`: who creates it, for the audit trail (None: not audited)."""
    name = _valid_name(name)
    dial_string = _valid_dial_string(dial_string)
    currency = _valid_currency(currency)
    if max_channels < 0:
        raise InvalidInput("--max-channels must be 0 (no limit) or more")
    timezone = _valid_timezone(timezone)
    m = store.models
    try:
        with store.transaction():
            if m.Vendor.get_or_none(m.Vendor.name == name) is not None:
                raise Conflict(f"vendor {name!r} already exists")
            deck = new_tariff_row(store, deck_name(name), currency, rounding, timezone, now_us)
            m.Vendor.create(
                name=name,
                deck=deck.id,
                dial_string=dial_string,
                max_channels=max_channels,
                weight=weight,
                status=ACTIVE,
                created_us=now_us,
            )
            if actor is not None:
                fields = {
                    "dial_string": dial_string,
                    "max_channels": str(max_channels),
                    "weight": str(weight),
                    "currency": currency,
                    "decimals": str(rounding.decimals),
                    "rounding": rounding.method.value,
                    "timezone": timezone,
                }
                audit.record(
                    store, actor, now_us, "add", "vendor", name, [audit.Change(k, None, v) for k, v in fields.items()]
                )
    except peewee.IntegrityError:
        raise Conflict(f"vendor {name!r} already exists (or a tariff named {deck_name(name)!r} does)") from None
    return get_vendor(store, name)


def _query(store: Store) -> peewee.ModelSelect[DbRow]:
    m = store.models
    return m.Vendor.select(m.Vendor, m.Tariff).join(m.Tariff, on=(m.Vendor.deck == m.Tariff.id))


def _view(row: DbRow, rate_count: int) -> VendorView:
    t = row.deck
    return VendorView(
        id=row.id,
        name=row.name,
        deck_id=t.id,
        dial_string=row.dial_string,
        currency=t.currency,
        rounding=rounding_of(t),
        timezone=t.timezone,
        max_channels=row.max_channels,
        live_channels=row.live_channels,
        weight=row.weight,
        status=row.status,
        rate_count=rate_count,
    )


def list_vendors(store: Store, with_counts: bool = True) -> list[VendorView]:
    m = store.models
    with store.reading():
        counts: dict[int, int] = {}
        if with_counts:
            counts = dict(m.Rate.select(m.Rate.tariff, peewee.fn.COUNT(m.Rate.id)).group_by(m.Rate.tariff).tuples())
        return [_view(r, counts.get(r.deck.id, 0)) for r in _query(store).order_by(m.Vendor.name)]


def get_vendor(store: Store, name: str) -> VendorView:
    m = store.models
    with store.reading():
        row = _query(store).where(m.Vendor.name == name).first()
        if row is None:
            raise NotFound(f"no vendor named {name!r} (see 'fsbill vendor list')")
        return _view(row, m.Rate.select().where(m.Rate.tariff == row.deck.id).count())


def set_status(store: Store, name: str, status: str) -> VendorView:
    if status not in (ACTIVE, SUSPENDED):
        raise InvalidInput(f"vendor status must be {ACTIVE} or {SUSPENDED}")
    m = store.models
    with store.transaction():
        changed = m.Vendor.update(status=status).where(m.Vendor.name == name).execute()
    if not changed:
        raise NotFound(f"no vendor named {name!r} (see 'fsbill vendor list')")
    return get_vendor(store, name)


def import_rates(
    store: Store,
    name: str,
    source: dbrates.Source,
    replace: bool = False,
    progress: dbrates.Progress | None = None,
    **options: Any,
) -> dbrates.ImportResult:
    """A vendor's cost deck from CSV: the customer deck importer, on the vendor's deck tariff.
    `options`: those of `fsbill.db.rates.import_deck` (format, allow_empty, dry_run, show)."""
    vendor = get_vendor(store, name)
    result = dbrates.import_deck(store, deck_name(vendor.name), source, replace=replace, progress=progress, **options)
    return dataclasses.replace(result, tariff=vendor.name)


# -- routing inputs -------------------------------------------------------------------------------
def offers(
    vendors: Sequence[VendorView], rate_for: dict[int, Rate | None] | None = None
) -> list[tuple[VendorView, RoutingVendor]]:
    """The routing core's view of each vendor, given each vendor's rate for the number (by id)."""
    rate_for = rate_for or {}
    return [
        (
            v,
            RoutingVendor(
                name=v.name,
                rate=rate_for.get(v.id),
                currency=v.currency,
                dial_string=v.dial_string,
                suspended=v.status != ACTIVE,
                live_channels=v.live_channels,
                max_channels=v.max_channels,
                weight=v.weight,
            ),
        )
        for v in vendors
    ]


def rates_for_number(store: Store, vendors: Sequence[VendorView], number: str, at_us: int) -> dict[int, Rate | None]:
    """Each vendor's rate for `number` at `at_us`, from the database (operators' queries)."""
    return {v.id: dbrates.lookup_rate(store, deck_name(v.name), number, at_us) for v in vendors}


def rates_from_decks(decks: dbrates.DeckCache, vendors: Sequence[VendorView], number: str, at_us: int, now_us: int):
    """Each vendor's rate for `number` from the node's deck cache (the call path)."""
    return {v.id: decks.get(v.deck_id, now_us).lookup(number, at_us) for v in vendors}


# -- channels, inside the caller's transaction ---------------------------------------------------------
def legs_for(options: Sequence[Option], by_name: dict[str, VendorView], rates: dict[int, Rate | None]) -> list[Leg]:
    legs = []
    for o in options:
        v = by_name[o.vendor]
        rate = rates[v.id]
        assert rate is not None, "a usable option has a rate"
        legs.append(Leg(v.id, v.name, str(uuidlib.uuid4()), o.dial_string, rate))
    return legs


def take_channels(store: Store, call_uuid: str, visit: int, legs: Sequence[Leg]) -> set[str]:
    """Hold one channel on each leg's vendor for this call; call inside `store.transaction()`.

    Returns the vendors refused (suspended or at their limit when the statement ran, perhaps
    because a call on another node got the last channel first). Vendors are updated in id
    order so that concurrent transactions lock them in the same order.
    """
    m = store.models
    refused: set[str] = set()
    for position, leg in sorted(enumerate(legs), key=lambda p: p[1].vendor_id):
        taken = (
            m.Vendor.update(live_channels=m.Vendor.live_channels + 1)
            .where(
                (m.Vendor.id == leg.vendor_id)
                & (m.Vendor.status == ACTIVE)
                & ((m.Vendor.max_channels == 0) | (m.Vendor.live_channels < m.Vendor.max_channels))
            )
            .execute()
        )
        if not taken:
            refused.add(leg.vendor)
            continue
        r = leg.rate
        m.LiveCallVendor.insert(
            call_uuid=call_uuid,
            visit=visit,
            vendor=leg.vendor_id,
            position=position,
            leg_uuid=leg.leg_uuid,
            **rate_columns(r),
            rounding_decimals=r.rounding.decimals,
            rounding_method=r.rounding.method.value,
        ).execute()
    return refused


# live_call_vendor.answered: HOLDING while the bridge is undecided, CARRIER once FreeSWITCH
# bridged that leg, RELEASED once the channel was given back (the row stays until the
# settlement, which records the attempts from it).
HOLDING, CARRIER, RELEASED = 0, 1, -1


def drop_channels(store: Store, call_uuid: str, visit: int) -> None:
    """Give back every channel this call holds and forget its legs (inside the caller's transaction)."""
    m = store.models
    rows = list(
        m.LiveCallVendor.select(m.LiveCallVendor.id, m.LiveCallVendor.vendor, m.LiveCallVendor.answered)
        .where(_leg(m, call_uuid, visit))
        .order_by(m.LiveCallVendor.vendor)
    )
    _release(store, rows)
    m.LiveCallVendor.delete().where(_leg(m, call_uuid, visit)).execute()


def _leg(m: SimpleNamespace, call_uuid: str, visit: int) -> peewee.Expression:
    return (m.LiveCallVendor.call_uuid == call_uuid) & (m.LiveCallVendor.visit == visit)


def _release(store: Store, rows: Sequence[DbRow]) -> None:
    """Give back the channels of `rows` still held (in vendor id order, see take_channels)."""
    m = store.models
    for row in sorted(rows, key=lambda r: r.vendor_id):
        if row.answered == RELEASED:
            continue
        m.Vendor.update(live_channels=m.Vendor.live_channels - 1).where(
            (m.Vendor.id == row.vendor_id) & (m.Vendor.live_channels > 0)
        ).execute()
        m.LiveCallVendor.update(answered=RELEASED).where(m.LiveCallVendor.id == row.id).execute()


def keep_carrier(store: Store, call_uuid: str, visit: int, answered_leg: str) -> str:
    """FreeSWITCH bridged `answered_leg`: release the channels of every other vendor of the call
    and mark the carrier. Returns the carrier's name ("" if the leg is not one of the call's)."""
    m = store.models
    with store.transaction():
        rows = list(
            m.LiveCallVendor.select(
                m.LiveCallVendor.id, m.LiveCallVendor.vendor, m.LiveCallVendor.leg_uuid, m.LiveCallVendor.answered
            )
            .where(_leg(m, call_uuid, visit))
            .order_by(m.LiveCallVendor.vendor)
        )
        carrier = [r for r in rows if r.leg_uuid == answered_leg and r.answered == HOLDING]
        if not carrier:
            return ""
        _release(store, [r for r in rows if r.leg_uuid != answered_leg])
        m.LiveCallVendor.update(answered=CARRIER).where(m.LiveCallVendor.id == carrier[0].id).execute()
        return m.Vendor.get_by_id(carrier[0].vendor_id).name


def settle_vendors(
    store: Store,
    call_uuid: str,
    visit: int,
    outcome: BridgeOutcome | None,
    answered_us: int | None,
    end_us: int | None,
    billed_s: int,
    sell_cost: Money,
    start_us: int,
) -> tuple[VendorCost | None, list[Attempt]]:
    """The vendor side of a settlement, inside its transaction: which vendor carried the call,
    what it charges for the same billed window, the margin on the CDR, one attempt row per vendor
    tried, and every channel the call still holds released.

    `outcome` None means nobody saw the bridge end (a reaper): the carrier is the leg already
    marked as bridged, billed over the `billed_s` the customer was charged for.
    """
    m = store.models
    rows = list(
        m.LiveCallVendor.select(m.LiveCallVendor, m.Vendor.id, m.Vendor.name)
        .join(m.Vendor, on=(m.LiveCallVendor.vendor == m.Vendor.id))
        .where(_leg(m, call_uuid, visit))
        .order_by(m.LiveCallVendor.position)
    )
    if not rows:
        return None, []
    legs = [(r.vendor.name, r.leg_uuid) for r in rows]
    marked = [r for r in rows if r.answered == CARRIER]  # seen bridged (CHANNEL_BRIDGE)
    if outcome is not None:
        answered_leg = outcome.answered_leg or (marked[0].leg_uuid if marked else "")
        tried = attempts_of(legs, answered_leg, dict(outcome.leg_causes))
    else:
        answered_leg = marked[0].leg_uuid if marked else ""
        tried = []
        if answered_us is not None and billed_s:
            end_us = answered_us + billed_s * 1_000_000
    charged_by = None
    for r in rows:
        if r.leg_uuid == answered_leg and answered_leg:
            charged_by = vendor_cost(r.vendor.name, rate_of(r), answered_us, end_us, sell_cost)
    if charged_by is not None:
        m.Cdr.update(
            vendor=charged_by.vendor, vendor_cost_micros=charged_by.cost.micros, margin_micros=charged_by.margin.micros
        ).where((m.Cdr.uuid == call_uuid) & (m.Cdr.visit == visit)).execute()
    for position, attempt in enumerate(tried):
        m.VendorAttempt.insert(
            call_uuid=call_uuid,
            visit=visit,
            vendor=attempt.vendor,
            position=position,
            result=attempt.result,
            cause=attempt.cause[:255],
            start_us=start_us,
        ).execute()
    _release(store, rows)
    m.LiveCallVendor.delete().where(_leg(m, call_uuid, visit)).execute()
    return charged_by, tried


__all__ = [
    "ACTIVE",
    "SUSPENDED",
    "BridgeOutcome",
    "Leg",
    "VendorView",
    "create_vendor",
    "deck_name",
    "drop_channels",
    "get_vendor",
    "import_rates",
    "keep_carrier",
    "legs_for",
    "list_vendors",
    "offers",
    "rates_for_number",
    "rates_from_decks",
    "set_status",
    "settle_vendors",
    "take_channels",
]
