"""Reads that are not one account's own record: live calls, CDRs, tariffs and their rates,
vendors. The same JSON as `fsbill calls --json`, `cdr export --json`, `tariff list`, `rates
lookup|list` and `vendor list|show`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsbill import cdr_format
from fsbill.api import queries
from fsbill.api.routing import (
    IN_SUBTREE_QUERY,
    OWN_QUERY,
    OWN_TARIFF,
    READ,
    SCOPED,
    SEEN_TARIFF,
    Param,
    Reply,
    Request,
    Route,
)
from fsbill.api.scope import reseller_of
from fsbill.cli.rates import _rate_json
from fsbill.cli.tariffs import _json as tariff_json
from fsbill.core.rating import normalize_number
from fsbill.db import ledger, subtree, views
from fsbill.db import rates as dbrates
from fsbill.db import vendors as dbvendors
from fsbill.db.cdr_export import cdr_page
from fsbill.errors import InvalidInput, NotFound
from fsbill.instant import iso

if TYPE_CHECKING:
    from fsbill.api.app import Api


def _account_filter(api: Api, req: Request) -> str | None:
    """The `account` query parameter (an `account` token's own when it gives none); an unknown
    account is a 404, as in the CLI, not an empty page."""
    code = req.query.get("account")
    if code is None and req.token is not None and req.token.account is not None:
        code = req.token.account
    if code is not None:
        ledger.get_account(api.store, code)
    return code


def live_calls(api: Api, req: Request) -> Reply:
    calls = views.live_calls(api.store, _account_filter(api, req))
    return Reply(200, {"items": [cdr_format.live_record(c) for c in calls]})


def cdrs(api: Api, req: Request) -> Reply:
    account = _account_filter(api, req)
    since, until = queries.window(req.query)
    limit = queries.limit(req.query)
    after = queries.decode_cursor(req.query, (int, int))
    rows, following = cdr_page(
        api.store,
        account=account,
        since_us=since,
        until_us=until,
        after=None if after is None else (after[0], after[1]),
        limit=limit,
    )
    cursor = None if following is None else queries.encode_cursor(list(following))
    return Reply(200, {"items": [cdr_format.record(c) for c in rows], "next_cursor": cursor})


def _sold(name: str) -> str:
    if name.startswith(dbvendors.DECK_PREFIX):  # a vendor's cost deck: read it as a vendor
        raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
    return name


def tariffs(api: Api, req: Request) -> Reply:
    found = [t for t in ledger.list_tariffs(api.store) if not t.name.startswith(dbvendors.DECK_PREFIX)]
    top = reseller_of(req)
    if top is not None:  # a reseller sees the tariffs of its subtree (fsbill.db.subtree)
        seen = subtree.visible_tariffs(api.store, top)
        found = [t for t in found if t.name in seen]
    return Reply(200, {"items": [tariff_json(t) for t in found]})


def tariff(api: Api, req: Request) -> Reply:
    return Reply(200, tariff_json(ledger.get_tariff(api.store, _sold(req.params["name"]))))


def rates(api: Api, req: Request) -> Reply:
    prefix = req.query.get("prefix")
    if prefix is not None and not (prefix.isascii() and prefix.isdigit()):
        raise InvalidInput(f"prefix must be digits, got {prefix[:40]!r}")
    found = dbrates.list_rates(api.store, _sold(req.params["name"]), prefix, queries.limit(req.query))
    return Reply(200, {"items": [_rate_json(r) for r in found]})


def rate_lookup(api: Api, req: Request) -> Reply:
    name = _sold(req.params["name"])
    at_us = queries.instant(req.query, "at")
    at_us = req.now_us if at_us is None else at_us
    number = normalize_number(req.params["number"], api.international_prefix)
    rate = dbrates.lookup_rate(api.store, name, number, at_us)
    if rate is None:
        raise NotFound(f"no rate for {number} in tariff {name} at {iso(at_us)}")
    return Reply(200, {"number": number, **_rate_json(rate)})


def vendors(api: Api, req: Request) -> Reply:
    return Reply(200, {"items": [v.as_json() for v in dbvendors.list_vendors(api.store)]})


def vendor(api: Api, req: Request) -> Reply:
    return Reply(200, dbvendors.get_vendor(api.store, req.params["name"]).as_json())


PREFIX = Param("prefix", {"type": "string", "pattern": "^[0-9]{1,32}$"}, "only prefixes starting with these digits")
AT = Param("at", {"type": "string", "format": "date-time"}, "call start (default: now)")

ROUTES = (
    Route("GET", "/v1/calls", live_calls, OWN_QUERY, "listLiveCalls",
          "Live calls on every node and what each holds (`calls`)", "LiveCallList", query=(queries.ACCOUNT,),
          reseller=IN_SUBTREE_QUERY),
    Route("GET", "/v1/cdrs", cdrs, OWN_QUERY, "listCdrs",
          "CDRs by call start, in pages (`cdr export`)", "CdrPage",
          query=(queries.ACCOUNT, queries.SINCE, queries.UNTIL, queries.LIMIT, queries.CURSOR),
          reseller=IN_SUBTREE_QUERY),
    Route("GET", "/v1/tariffs", tariffs, READ, "listTariffs", "All tariffs (`tariff list`)", "TariffList", reseller=SCOPED),
    Route("GET", "/v1/tariffs/{name}", tariff, OWN_TARIFF, "getTariff", "One tariff", "Tariff", reseller=SEEN_TARIFF),
    Route("GET", "/v1/tariffs/{name}/rates", rates, OWN_TARIFF, "listRates",
          "A tariff's rates by prefix (`rates list`)", "RateList", query=(PREFIX, queries.LIMIT),
          reseller=SEEN_TARIFF),
    Route("GET", "/v1/tariffs/{name}/rates/{number}", rate_lookup, OWN_TARIFF, "lookupRate",
          "The rate a number gets (`rates lookup`)", "RateLookup", query=(AT,), reseller=SEEN_TARIFF),
    Route("GET", "/v1/vendors", vendors, READ, "listVendors", "All vendors (`vendor list`)", "VendorList"),
    Route("GET", "/v1/vendors/{name}", vendor, READ, "getVendor", "One vendor (`vendor show`)", "Vendor"),
)  # fmt: skip

__all__ = ["ROUTES"]
