"""What a reseller runs through the API (docs/RESELLERS.md "Reseller tokens"): its tariffs
(`tariff add --owner`), their decks (`rates import`) and the funding of its children (`fund`).
An admin token may call these too, for any reseller.

A `reseller` token for R is scoped at the door (fsbill.api.app, by each route's `reseller`);
what only the body says (the owner of a new tariff, the parent of a new account) is checked
here with `within`, with the same 403.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from fsbill.api.accounts import _actor, _money, once
from fsbill.api.problems import Problem
from fsbill.api.routing import ADMIN, CHILD, OWNED_TARIFF, SCOPED, Reply, Request, Route
from fsbill.api.scope import reseller_of, within
from fsbill.cli.tariffs import _json as tariff_json
from fsbill.core.money import RoundingMethod, RoundingRule
from fsbill.db import audit, funding, ledger
from fsbill.db import rates as dbrates
from fsbill.db import vendors as dbvendors
from fsbill.db.audit import Change
from fsbill.errors import InvalidInput

if TYPE_CHECKING:
    from fsbill.api.app import Api

MAX_DECK_BYTES = 8 * 1024 * 1024  # a deck sent as one JSON string: ~300 000 rows of prefix,rate


def create_tariff(api: Api, req: Request) -> Reply:
    body = req.body
    name = body["name"]
    if name.startswith(dbvendors.DECK_PREFIX):
        raise InvalidInput(f"tariff names starting with {dbvendors.DECK_PREFIX!r} hold vendors' cost decks")
    owner = body.get("owner", reseller_of(req))
    if owner is not None:
        within(api, req, owner)
    rule = RoundingRule(body.get("decimals", 4), RoundingMethod(body.get("rounding", RoundingMethod.HALF_UP.value)))
    t = ledger.create_tariff(
        api.store,
        name,
        body["currency"],
        req.now_us,
        rule,
        body.get("timezone", "UTC"),
        actor=_actor(req),
        owner=owner,
    )
    return Reply(201, tariff_json(t))


def import_rates(api: Api, req: Request) -> Reply:
    name = req.params["name"]
    if name.startswith(dbvendors.DECK_PREFIX):  # a vendor's cost deck is the operator's (`vendor rates import`)
        raise Problem("forbidden", f"{name!r} is a vendor's cost deck: import it with 'fsbill vendor rates import'")
    body = req.body
    result = dbrates.import_deck(
        api.store,
        name,
        io.StringIO(body["csv"]),
        replace=body.get("replace", False),
        allow_empty=body.get("allow_empty", False),
        dry_run=body.get("dry_run", False),
    )
    if not result.dry_run:
        with api.store.transaction():
            changes = [Change("deck", None, f"{result.imported} rates" + (" (replaced)" if result.replaced else ""))]
            audit.record(api.store, _actor(req), req.now_us, "import", "tariff", name, changes)
    return Reply(200, result.as_json() | {"deck_version": result.deck_version})


def fund(api: Api, req: Request) -> Reply:
    body = req.body
    amount = _money(body["amount"])
    code = req.params["code"]

    def act() -> Reply:
        reference = body.get("reference") or req.idempotency_key or ""
        result = funding.fund(api.store, code, amount, req.now_us, reference=reference, in_transaction=True)
        if result.applied:
            for entry in (result.parent, result.child):
                before = entry.balance_after - entry.amount
                changes = [
                    Change("balance", str(before), str(entry.balance_after)),
                    Change("reference", None, entry.reference),
                ]
                audit.record(api.store, _actor(req), req.now_us, "fund", "account", entry.account, changes)
        data = {"parent": result.parent.as_json(), "child": result.child.as_json(), "applied": result.applied}
        return Reply(201 if result.applied else 200, data)

    return once(api, req, act)


ROUTES = (
    Route("POST", "/v1/tariffs", create_tariff, ADMIN, "createTariff",
          "Create a tariff (`tariff add`); a reseller token's belongs to it (owner)", "Tariff",
          status=201, request="NewTariff", reseller=SCOPED),
    Route("POST", "/v1/tariffs/{name}/rates", import_rates, ADMIN, "importRates",
          "Import a CSV rate deck into the tariff, all or nothing (`rates import`)", "DeckImported",
          request="DeckImport", reseller=OWNED_TARIFF, max_body=MAX_DECK_BYTES),
    Route("POST", "/v1/accounts/{code}/funds", fund, ADMIN, "fundAccount",
          "Move money from the account's parent to it (`fund`); needs an Idempotency-Key", "Funding",
          status=201, request="Fund", idempotent=True, reseller=CHILD),
)  # fmt: skip

__all__ = ["MAX_DECK_BYTES", "ROUTES"]
