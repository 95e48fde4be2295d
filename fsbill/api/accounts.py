"""/v1/accounts: create, read, change and close accounts; top-ups, adjustments and the ledger.

Each does what the CLI command of the same name does (`account add|show|list|set|suspend|
resume|close`, `topup`, `adjust`, `ledger`), through the same functions, with the same rules
and refusals, and answers with the same JSON; the token's name is the audit trail's actor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import peewee

from fsbill.api import idempotency, queries, scope
from fsbill.api.problems import Problem
from fsbill.api.routing import ADMIN, IN_SUBTREE, OWN_ACCOUNT, READ, SCOPED, Reply, Request, Route
from fsbill.core import recharge
from fsbill.core.guards import GUARD_COLUMNS
from fsbill.core.money import Money
from fsbill.db import audit, ledger, management, subtree
from fsbill.db import guards as dbguards
from fsbill.db import notices as dbnotices
from fsbill.db.audit import Change

if TYPE_CHECKING:
    from fsbill.api.app import Api


def _actor(req: Request) -> str:
    assert req.token is not None  # every route here needs one
    return req.token.name


def _changes(changes: tuple[Change, ...]) -> list[dict]:
    return [{"field": c.field, "old": c.old, "new": c.new} for c in changes]


def _money(value: str) -> Money:
    return Money.parse(value)  # a MoneyError names the amount; the schema already checked the digits


def create(api: Api, req: Request) -> Reply:
    body = req.body
    top = scope.reseller_of(req)
    parent = body.get("parent", top)  # a reseller token's accounts go under it by default
    if top is not None:
        scope.within(api, req, parent)
        if not subtree.tariff_owned_within(api.store, top, body["tariff"]):
            assert req.token is not None
            raise Problem("forbidden", scope.outside(req.token, "gives its accounts only tariffs it owns"))
    a = ledger.create_account(
        api.store,
        body["code"],
        body["tariff"],
        req.now_us,
        credit_limit=_money(body.get("credit_limit", "0")),
        max_channels=body.get("max_channels", 0),
        clis=body.get("clis", []),
        actor=_actor(req),
        parent=parent,
    )
    return Reply(201, a.as_json(), headers=(("Location", "/v1/accounts/" + quote(a.code, safe="")),))


def show(api: Api, req: Request) -> Reply:
    code = req.params["code"]
    a = ledger.get_account(api.store, code)
    g = dbguards.account_guards(api.store, code, req.now_us)
    low = dbnotices.levels_of(api.store, "account", code)  # docs/NOTICES.md, as `account show --json`
    ar = management.auto_recharge_of(api.store, code)
    return Reply(200, a.as_json() | low.as_json() | ar.as_json() | {"guards": g.as_json()})


def listing(api: Api, req: Request) -> Reply:
    limit = queries.limit(req.query)
    after = queries.decode_cursor(req.query, str)
    top = scope.reseller_of(req)
    within = None if top is None else subtree.member_ids(api.store, top)  # a reseller lists its subtree
    accounts = ledger.list_accounts(api.store, after=after, limit=limit, within=within)
    following = queries.encode_cursor(accounts[-1].code) if len(accounts) == limit else None
    return Reply(200, {"items": [a.as_json() for a in accounts], "next_cursor": following})


def change(api: Api, req: Request) -> Reply:
    code, body = req.params["code"], req.body
    status = body.get("status")
    attributes = {k: body[k] for k in ("credit_limit", "max_channels", "tariff", "email") if k in body}
    recharging = "auto_recharge" in body
    if status is not None and (attributes or "force" in body or recharging):
        raise Problem("usage", "change status on its own (suspend or resume), not with other fields")
    settings = _auto_recharge(body["auto_recharge"]) if recharging else None
    changes: tuple[Change, ...] = ()
    if status is not None:
        changes = management.set_account_status(api.store, code, status, req.now_us, _actor(req)).changes
    elif attributes or not recharging:
        if "credit_limit" in attributes:
            attributes["credit_limit"] = _money(attributes["credit_limit"])
        r = management.set_account(
            api.store, code, req.now_us, _actor(req), force=body.get("force", False), **attributes
        )
        changes = r.changes
    if recharging:  # docs/NOTICES.md "Auto-recharge", as `account set --auto-recharge`
        changes += management.set_auto_recharge(api.store, code, settings, req.now_us, _actor(req)).changes
    return Reply(200, ledger.get_account(api.store, code).as_json() | {"changes": _changes(changes)})


def _auto_recharge(value: dict | None) -> recharge.Settings | None:
    if value is None:
        return None
    return recharge.parse_settings(value["amount"], value["below"], value.get("max_per_day"))


# -- caller ids and fraud guards (`account cli`, `account guard`) ------------------------------------------
def add_cli(api: Api, req: Request) -> Reply:
    code = req.params["code"]
    r = management.account_cli(api.store, code, req.body["number"], True, req.now_us, _actor(req))
    return Reply(200, r.account.as_json() | {"changes": _changes(r.changes)})


def remove_cli(api: Api, req: Request) -> Reply:
    code = req.params["code"]
    r = management.account_cli(api.store, code, req.params["number"], False, req.now_us, _actor(req))
    return Reply(200, r.account.as_json() | {"changes": _changes(r.changes)})


def guards(api: Api, req: Request) -> Reply:
    g = dbguards.account_guards(api.store, req.params["code"], req.now_us)
    return Reply(200, {"account": g.account} | g.as_json() | {"changes": []})


def change_guards(api: Api, req: Request) -> Reply:
    wanted = {GUARD_COLUMN[k]: str(v) for k, v in req.body.items()}
    if not wanted:
        raise Problem("usage", f"nothing to change: give at least one of {', '.join(GUARD_COLUMN)}")
    g = dbguards.set_account_guards(api.store, req.params["code"], wanted, req.now_us, actor=_actor(req))
    return Reply(200, {"account": g.account} | g.as_json() | {"changes": _changes(g.changes)})


GUARD_COLUMN = {c.removesuffix("_micros").removesuffix("_prefixes"): c for c in GUARD_COLUMNS}


def close(api: Api, req: Request) -> Reply:
    force = (req.body or {}).get("force", False)
    r = management.close_account(api.store, req.params["code"], req.now_us, _actor(req), force=force)
    entry = r.entry.as_json() if r.entry else None
    return Reply(200, r.account.as_json() | {"changes": _changes(r.changes), "entry": entry})


# -- money -----------------------------------------------------------------------------------------
def topup(api: Api, req: Request) -> Reply:
    body = req.body
    amount = _money(body["amount"])
    code = req.params["code"]

    def act() -> Reply:
        reference = body.get("reference") or req.idempotency_key
        result = ledger.topup_within(
            api.store, code, amount, req.now_us, reference=reference, note=body.get("note", "")
        )
        return _moved(api, req, "topup", result)

    return once(api, req, act)


def adjust(api: Api, req: Request) -> Reply:
    body = req.body
    amount = _money(body["amount"])
    code = req.params["code"]

    def act() -> Reply:
        reference = body.get("reference") or req.idempotency_key
        result = ledger.adjust_within(
            api.store,
            code,
            amount,
            body["reason"],
            req.now_us,
            force=body.get("force", False),
            reference=reference,
            actor=None,  # audited below with the token's name, like every movement the API makes
        )
        return _moved(api, req, "adjust", result)

    return once(api, req, act)


def _moved(api: Api, req: Request, action: str, result: ledger.TopupResult) -> Reply:
    """The reply to a money movement, audited (the ledger says what moved; the trail says which
    token moved it) in its transaction."""
    entry = result.entry
    if result.applied:
        before = entry.balance_after - entry.amount
        changes = [Change("balance", str(before), str(entry.balance_after)), Change("reference", None, entry.reference)]
        audit.record(api.store, _actor(req), req.now_us, action, "account", entry.account, changes)
    return Reply(201 if result.applied else 200, entry.as_json() | {"applied": result.applied})


def once(api: Api, req: Request, act: Callable[[], Reply]) -> Reply:
    """Run `act` (inside one transaction) at most once per Idempotency-Key, recording its reply
    in that transaction (fsbill.api.idempotency)."""
    key = req.idempotency_key
    if key is None:
        raise Problem(
            "usage",
            f"a money movement needs an {idempotency.HEADER} header (e.g. a UUID) so a retry cannot move it twice",
        )
    fingerprint = idempotency.fingerprint(req.method, req.path, req.body)
    for _ in range(3):
        seen = idempotency.find(api.store, key)
        if seen is not None:
            return _replay(seen, fingerprint)
        try:
            with api.store.transaction():
                seen = idempotency.find_within(api.store, key)
                if seen is None:
                    reply = act()
                    raw = _dump(reply.body)
                    recorded = idempotency.Recorded(key, fingerprint, reply.status, raw)
                    idempotency.record_within(api.store, recorded, _actor(req), req.now_us)
            if seen is not None:
                return _replay(seen, fingerprint)
            return Reply(reply.status, raw=raw)
        except peewee.IntegrityError:
            # Another request recorded this key meanwhile (its insert won the unique index) or
            # credited the same reference: this transaction, credit and all, rolled back. Look
            # again: the next round finds the winner's reply, or sees the reference as applied.
            continue
    raise Problem("conflict", f"{idempotency.HEADER} {key!r} is being used by another request at this moment; retry")


def _replay(seen: idempotency.Recorded, fingerprint: str) -> Reply:
    if seen.fingerprint != fingerprint:
        raise Problem(
            "conflict",
            f"{idempotency.HEADER} {seen.key!r} was already used for another request (another path or body): "
            f"nothing was changed; a key names one request, use a new one",
        )
    return Reply(seen.status, raw=seen.body, headers=(("Idempotent-Replayed", "true"),))


def _dump(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def ledger_page(api: Api, req: Request) -> Reply:
    limit = queries.limit(req.query)
    since, until = queries.window(req.query)
    after = queries.decode_cursor(req.query, int)
    entries = ledger.ledger_page(
        api.store, req.params["code"], since_us=since, until_us=until, after_id=after, limit=limit
    )
    following = queries.encode_cursor(entries[-1].id) if len(entries) == limit else None
    return Reply(200, {"items": [e.as_json() for e in entries], "next_cursor": following})


ROUTES = (
    Route("GET", "/v1/accounts", listing, READ, "listAccounts", "All accounts, by code", "AccountList",
          query=(queries.LIMIT, queries.CURSOR), reseller=SCOPED),
    Route("POST", "/v1/accounts", create, ADMIN, "createAccount", "Create an account (`account add`)", "Account",
          status=201, request="NewAccount", reseller=SCOPED),
    Route("GET", "/v1/accounts/{code}", show, OWN_ACCOUNT, "getAccount",
          "Balance, reserved, available, live calls and guards (`account show`)", "AccountDetail",
          reseller=IN_SUBTREE),
    Route("PATCH", "/v1/accounts/{code}", change, ADMIN, "changeAccount",
          "Change credit limit, channel limit, tariff, email, auto-recharge; or suspend/resume "
          "(`account set|suspend|resume`)",
          "AccountChanged", request="AccountChange"),
    Route("POST", "/v1/accounts/{code}/clis", add_cli, ADMIN, "addCallerId",
          "Map a caller id to the account (`account cli --add`)", "AccountChanged", request="CallerId"),
    Route("DELETE", "/v1/accounts/{code}/clis/{number}", remove_cli, ADMIN, "removeCallerId",
          "Remove a caller id from the account (`account cli --remove`)", "AccountChanged"),
    Route("GET", "/v1/accounts/{code}/guards", guards, OWN_ACCOUNT, "getGuards",
          "The fraud guards in force and their usage (`account guard --json`)", "AccountGuards",
          reseller=IN_SUBTREE),
    Route("PATCH", "/v1/accounts/{code}/guards", change_guards, ADMIN, "changeGuards",
          "Set the account's own fraud guards: a value, none (the tariff's) or off (`account guard`)",
          "AccountGuards", request="GuardsChange"),
    Route("POST", "/v1/accounts/{code}/close", close, ADMIN, "closeAccount",
          "Close the account for good (`account close`)", "AccountClosed", request="AccountClose", body_required=False),
    Route("POST", "/v1/accounts/{code}/topups", topup, ADMIN, "topUp",
          "Credit the account (`topup`); needs an Idempotency-Key", "Movement", status=201, request="Topup",
          idempotent=True),
    Route("POST", "/v1/accounts/{code}/adjustments", adjust, ADMIN, "adjust",
          "Signed correction of the balance (`adjust`); needs an Idempotency-Key", "Movement", status=201,
          request="Adjustment", idempotent=True),
    Route("GET", "/v1/accounts/{code}/ledger", ledger_page, OWN_ACCOUNT, "getLedger",
          "The account's movements, oldest first (`ledger`)", "LedgerPage",
          query=(queries.SINCE, queries.UNTIL, queries.LIMIT, queries.CURSOR), reseller=IN_SUBTREE),
)  # fmt: skip

__all__ = ["ROUTES", "once"]
