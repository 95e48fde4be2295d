"""A `reseller` API token (docs/RESELLERS.md "Reseller tokens") over real HTTP against a real
SQLite file: it runs its account's subtree - creates accounts and tariffs there, imports their
decks, funds its children from its own balance, reads its subtree's accounts, ledgers, calls and
CDRs (at its own cost) - and every route of the OpenAPI document answers 403 for anything
outside it, whether or not that exists, moving nothing."""

from __future__ import annotations

import io

import pytest
from api_rig import NOW, ApiRig
from test_resellers_db import answered, end, reserve

from fsbill.api.app import ROUTES
from fsbill.api.routing import CHILD, IN_SUBTREE, IN_SUBTREE_QUERY, OWNED_TARIFF, PUBLIC, SCOPED, SEEN_TARIFF
from fsbill.api.tokens import add_token
from fsbill.cli.main import main
from fsbill.core.money import Money
from fsbill.db import calls as dbcalls
from fsbill.db import ledger
from fsbill.db.management import set_account
from fsbill.db.rates import import_deck
from fsbill.errors import InvalidInput

DECK = "prefix,rate\n49,{}\n"
SUBTREE = {"R", "C1", "G"}  # R -> C1 -> G; S -> S1 and the seed's 1001, 1002 are outside


@pytest.fixture
def rig(tmp_path):
    r = ApiRig(f"sqlite:///{tmp_path}/api.db").seed()
    s = r.store
    ledger.create_tariff(s, "top", "EUR", NOW)
    import_deck(s, "top", io.StringIO(DECK.format("0.30")))
    for reseller in ("R", "S"):
        ledger.create_account(s, reseller, "top", NOW)
        ledger.topup(s, reseller, Money.parse("10"), NOW, reference="seed")
        name = reseller.lower() + "-retail"
        ledger.create_tariff(s, name, "EUR", NOW, owner=reseller)
        import_deck(s, name, io.StringIO(DECK.format("1.20")))
    ledger.create_account(s, "C1", "r-retail", NOW, parent="R")
    ledger.create_account(s, "G", "r-retail", NOW, parent="C1")
    ledger.create_account(s, "S1", "s-retail", NOW, parent="S")
    r.tokens["reseller"] = add_token(s, "r-portal", "reseller", NOW, "test", "R")[1]
    yield r
    r.close()


def _routes(rig):
    doc = rig.call("GET", "/v1/openapi.json").json
    by_key = {(r.method, r.template): r for r in ROUTES}
    return [by_key[(m.upper(), p)] for p, item in doc["paths"].items() for m in item]


def _path(template: str, code: str, name: str) -> str:
    name = "carrier" if template.startswith("/v1/vendors/") else name
    return (
        template.replace("{code}", code).replace("{name}", name).replace("{number}", "4930").replace("{key}", "rch_x")
    )


def _body(route, *, parent: str, owner: str, tariff: str) -> dict | None:
    if route.method == "GET":
        return None
    return {
        "createAccount": {"code": f"new-{parent}", "tariff": tariff, "parent": parent},
        "createTariff": {"name": f"t-{owner}", "currency": "EUR", "owner": owner},
        "importRates": {"csv": DECK.format("2.00").replace("49", "33")},
        "fundAccount": {"amount": "1.00"},
        "topUp": {"amount": "1.00"},
        "adjust": {"amount": "1.00", "reason": "x"},
    }.get(route.operation_id, {})


def balances(rig) -> dict[str, str]:
    return {a.code: str(a.balance) for a in ledger.list_accounts(rig.store)}


def test_every_route_refuses_what_lies_outside_the_subtree_and_moves_nothing(rig):
    before = balances(rig)
    for i, route in enumerate(_routes(rig)):
        if route.access == PUBLIC:
            continue
        for code, name in (("S1", "s-retail"), ("1002", "wholesale"), ("no-such", "no-such")):
            path = _path(route.template, code, name)
            query = "?account=" + code if route.reseller == IN_SUBTREE_QUERY else ""
            body = _body(route, parent=code, owner=code, tariff=name)
            r = rig.call(route.method, path + query, "reseller", body, {"Idempotency-Key": f"out-{i}-{code}"})
            if route.reseller == SCOPED and route.method == "GET":
                assert r.status == 200, (route.method, path)
                listed = {item.get("code") or item.get("name") for item in r.json["items"]}
                assert not listed & {"S", "S1", "1001", "1002", "s-retail", "wholesale", "retail"}, listed
                continue
            assert r.status == 403, (route.method, path, query, r.status, r.text)
            assert r.json["kind"] == "forbidden" and r.headers["content-type"] == "application/problem+json"
            assert "reseller token for account 'R'" in r.json["detail"]
    assert balances(rig) == before
    assert {t.name for t in ledger.list_tariffs(rig.store)} == {
        "retail",
        "wholesale",
        "top",
        "r-retail",
        "s-retail",
        "vendor:carrier",
    }


def test_inside_the_subtree_each_route_it_is_given_answers_and_the_rest_stay_closed(rig):
    for i, route in enumerate(_routes(rig)):
        if route.access == PUBLIC:
            continue
        code = "C1" if route.reseller == CHILD else "G"
        path = _path(route.template, code, "r-retail")
        query = "?account=G" if route.reseller == IN_SUBTREE_QUERY else ""
        body = _body(route, parent="C1", owner="R", tariff="r-retail")
        r = rig.call(route.method, path + query, "reseller", body, {"Idempotency-Key": f"in-{i}"})
        if route.reseller in (IN_SUBTREE, IN_SUBTREE_QUERY, SEEN_TARIFF, OWNED_TARIFF, SCOPED, CHILD):
            assert r.status in (200, 201), (route.method, path, r.status, r.text)
        else:  # changes an account, moves outside money, or reads vendors: the operator's
            assert r.status == 403 and "may not call this route" in r.json["detail"], (route.method, path, r.text)
    assert ledger.get_account(rig.store, "new-C1").parent == "C1"
    assert ledger.get_tariff(rig.store, "t-R").owner == "R"
    assert (balances(rig)["R"], balances(rig)["C1"]) == ("9.00", "1.00")  # funded once, from R


def test_a_reseller_creates_its_tariff_imports_its_deck_and_sells_it_to_a_new_customer(rig):
    r = rig.call("POST", "/v1/tariffs", "reseller", {"name": "r-gold", "currency": "eur"})
    assert r.status == 201 and r.json["owner"] == "R" and r.json["currency"] == "EUR", r.text
    r = rig.call("POST", "/v1/tariffs/r-gold/rates", "reseller", {"csv": DECK.format("0.90")})
    assert r.status == 200 and r.json["imported"] == 1 and r.json["deck_version"] == 1, r.text
    r = rig.call("POST", "/v1/accounts", "reseller", {"code": "C2", "tariff": "r-gold"})
    assert r.status == 201 and r.json["parent"] == "R", r.text  # under R when it names no parent
    assert rig.call("GET", "/v1/tariffs/r-gold/rates/4930", "reseller").json["rate"] == "0.90"
    seen = {t["name"] for t in rig.call("GET", "/v1/tariffs", "reseller").json["items"]}
    assert seen == {"top", "r-retail", "r-gold"}  # what R pays, and what it sells
    listed = [a["code"] for a in rig.call("GET", "/v1/accounts", "reseller").json["items"]]
    assert listed == sorted(SUBTREE | {"C2"})
    # what it may not give: the operator's tariffs, another reseller's, or its own outside its subtree
    for body in ({"code": "C3", "tariff": "top"}, {"code": "C3", "tariff": "s-retail"}):
        r = rig.call("POST", "/v1/accounts", "reseller", body)
        assert r.status == 403 and r.json["kind"] == "forbidden", r.text
    r = rig.call("POST", "/v1/accounts", "admin", {"code": "X", "tariff": "r-gold"})
    assert r.status == 400 and "belongs to reseller 'R'" in r.json["detail"], r.text
    r = rig.call("POST", "/v1/accounts", "admin", {"code": "X", "tariff": "r-gold", "parent": "G"})
    assert r.status == 201, r.text  # the operator may, inside R's subtree
    with pytest.raises(InvalidInput, match="belongs to reseller 'R'"):
        set_account(rig.store, "S1", NOW, "test", tariff="r-gold")


def test_funding_moves_the_resellers_own_money_once_and_only_to_its_children(rig):
    key = {"Idempotency-Key": "fund-1"}
    r = rig.call("POST", "/v1/accounts/C1/funds", "reseller", {"amount": "2.50", "reference": "inv-1"}, key)
    assert r.status == 201 and r.json["applied"] is True, r.text
    assert (r.json["parent"]["account"], r.json["parent"]["amount"]) == ("R", "-2.50")
    again = rig.call("POST", "/v1/accounts/C1/funds", "reseller", {"amount": "2.50", "reference": "inv-1"}, key)
    assert again.status == 201 and again.headers["idempotent-replayed"] == "true"
    assert (balances(rig)["R"], balances(rig)["C1"]) == ("7.50", "2.50")
    r = rig.call("POST", "/v1/accounts/C1/funds", "reseller", {"amount": "100"}, {"Idempotency-Key": "fund-2"})
    assert r.status == 400 and "nothing was moved" in r.json["detail"], r.text
    r = rig.call("POST", "/v1/accounts/G/funds", "reseller", {"amount": "1"}, {"Idempotency-Key": "fund-3"})
    assert r.status == 403 and "funds only its own children" in r.json["detail"], r.text
    r = rig.call("POST", "/v1/accounts/C1/topups", "reseller", {"amount": "1"}, {"Idempotency-Key": "fund-4"})
    assert r.status == 403, r.text  # money from outside is the operator's
    entries = rig.call("GET", "/v1/accounts/C1/ledger", "reseller").json["items"]
    assert [(e["kind"], e["amount"]) for e in entries] == [("fund", "2.50")]


def test_the_subtree_cdrs_read_at_the_resellers_cost(rig):
    ledger.topup(rig.store, "G", Money.parse("5"), NOW, reference="g")
    ledger.topup(rig.store, "C1", Money.parse("5"), NOW, reference="c1")
    g = ledger.get_account(rig.store, "G").id
    auth = reserve(rig.store, "g-call", g, per_min="1.20", now_us=NOW)
    assert auth.reason == "", auth.reason
    dbcalls.settle_call(rig.store, end("g-call", answered(rig.store, auth, NOW).answered_us, 30))
    mine = {c["uuid"]: c for c in rig.call("GET", "/v1/cdrs", "reseller").json["items"]}
    assert mine["g-call"]["account"] == "G" and mine["g-call"]["cost"] == "0.15"  # R's 0.30/min
    theirs = rig.call("GET", "/v1/cdrs?account=G", "reseller").json["items"]
    assert [(c["uuid"], c["cost"]) for c in theirs] == [("g-call", "0.60")]  # G's own 1.20/min
    assert {c["uuid"] for c in mine.values()} == {"g-call"}  # nothing of 1001, 1002 or S


def test_the_cli_makes_reseller_tokens_and_owned_tariffs(rig, tmp_path, capsys):
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: '{rig.store.url}'\n")

    def cli(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main([*argv, "--config", str(config)])
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = cli("api", "token", "add", "s-portal", "--role", "reseller", "--account", "S", "--json")
    assert code == 0 and '"token": "fsb_' in out
    code, out = cli("api", "token", "add", "s2", "--role", "reseller", "--json")
    assert code != 0 and "--account CODE is needed with --role reseller" in out and "Traceback" not in out
    code, out = cli("tariff", "add", "s-silver", "--owner", "S", "--json")
    assert code == 0 and '"owner": "S"' in out
    code, out = cli("account", "add", "Y", "--tariff", "s-silver", "--parent", "R", "--json")
    assert code != 0 and "belongs to reseller 'S'" in out
