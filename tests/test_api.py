"""The HTTP API over real HTTP against a real SQLite file: every route answers as the CLI does,
every token reaches only what its role allows, every error is problem+json, and a money
movement happens once per Idempotency-Key however often it is sent."""

from __future__ import annotations

import hashlib
import json

import gevent
import pytest
from api_rig import ApiRig

from fsbill.api.app import ROUTES
from fsbill.api.routing import ADMIN, OWN_ACCOUNT, OWN_QUERY, OWN_TARIFF, PUBLIC, READ
from fsbill.cli.main import main
from fsbill.db import audit, ledger


@pytest.fixture
def rig(tmp_path):
    r = ApiRig(f"sqlite:///{tmp_path}/api.db").seed()
    yield r
    r.close()


def cli(tmp_path, rig: ApiRig, capsys, *argv: str) -> tuple[int, str, str]:
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: '{rig.store.url}'\n")
    capsys.readouterr()
    code = main([*argv, "--config", str(config)])
    out = capsys.readouterr()
    return code, out.out, out.err


def balance(rig: ApiRig, code: str) -> str:
    return str(ledger.get_account(rig.store, code).balance)


# -- the document and the routes --------------------------------------------------------------------
def test_the_openapi_document_describes_every_route_and_nothing_else(rig):
    r = rig.call("GET", "/v1/openapi.json")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    doc = r.json
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented == {(route.method, route.template) for route in ROUTES}
    for path, item in doc["paths"].items():
        for op in item.values():
            assert "200" in op["responses"] or "201" in op["responses"], path
            for status in ("400", "500", "503"):
                assert "application/problem+json" in op["responses"][status]["content"]
            if path != "/v1/openapi.json":
                assert {"401", "403"} <= set(op["responses"]) and op["security"] == [{"bearer": []}]
    refs = json.dumps(doc).count('"$ref": "#/components/schemas/')
    assert refs and all(f"#/components/schemas/{name}" for name in doc["components"]["schemas"])


# -- every route, the happy path, as the CLI answers ---------------------------------------------
def test_an_account_reads_as_account_show_json(rig, tmp_path, capsys):
    code, out, _ = cli(tmp_path, rig, capsys, "account", "show", "1001", "--json")
    assert code == 0
    shown = json.loads(out)
    got = rig.call("GET", "/v1/accounts/1001", "admin").json
    assert got.keys() == shown.keys()
    assert {k: v for k, v in got.items() if k != "guards"} == {k: v for k, v in shown.items() if k != "guards"}
    assert got["balance"] == "50.00" and isinstance(got["balance"], str)


def test_accounts_are_listed_created_changed_and_closed(rig):
    listed = rig.call("GET", "/v1/accounts", "readonly").json
    assert [a["code"] for a in listed["items"]] == ["1001", "1002"] and listed["next_cursor"] is None
    page = rig.call("GET", "/v1/accounts?limit=1", "admin").json
    assert [a["code"] for a in page["items"]] == ["1001"]
    rest = rig.call("GET", f"/v1/accounts?limit=1&cursor={page['next_cursor']}", "admin").json
    assert [a["code"] for a in rest["items"]] == ["1002"]

    made = rig.call(
        "POST",
        "/v1/accounts",
        "admin",
        {"code": "2001", "tariff": "retail", "credit_limit": "5.50", "max_channels": 2, "clis": ["+15552001"]},
    )
    assert made.status == 201 and made.headers["location"] == "/v1/accounts/2001"
    assert made.json["credit_limit"] == "5.50" and made.json["clis"] == ["15552001"]
    again = rig.call("POST", "/v1/accounts", "admin", {"code": "2001", "tariff": "retail"})
    assert again.status == 409 and again.json["kind"] == "conflict"

    changed = rig.call("PATCH", "/v1/accounts/2001", "admin", {"max_channels": 3, "email": "a@example.com"})
    assert changed.status == 200 and changed.json["max_channels"] == 3
    assert {c["field"] for c in changed.json["changes"]} == {"max_channels", "email"}
    suspended = rig.call("PATCH", "/v1/accounts/2001", "admin", {"status": "suspended"})
    assert suspended.json["status"] == "suspended"
    nothing = rig.call("PATCH", "/v1/accounts/2001", "admin", {})
    assert nothing.status == 400 and "nothing to set" in nothing.json["detail"]

    refused = rig.call("POST", "/v1/accounts/1001/close", "admin")
    assert refused.status == 400 and "use --force" in refused.json["detail"]  # the CLI's arithmetic
    closed = rig.call("POST", "/v1/accounts/2001/close", "admin", {"force": True})
    assert closed.status == 200 and closed.json["status"] == "closed" and closed.json["entry"] is None
    trail = audit.entries(rig.store, "account", "2001")
    assert trail and {e.actor for e in trail} == {"boss"}  # the token's name is the actor


def test_a_top_up_and_an_adjustment_move_money_once_and_are_audited(rig):
    r = rig.call("POST", "/v1/accounts/1001/topups", "admin", {"amount": "10.00"}, {"Idempotency-Key": "pay-1"})
    assert r.status == 201
    assert r.json["amount"] == "10.00" and r.json["balance_after"] == "60.00" and r.json["applied"] is True
    assert r.json["reference"] == "pay-1"  # the key is the payment's reference unless one is given
    a = rig.call(
        "POST",
        "/v1/accounts/1001/adjustments",
        "admin",
        {"amount": "-2.50", "reason": "goodwill reversed", "reference": "ticket-9"},
        {"Idempotency-Key": "adj-1"},
    )
    assert a.status == 201 and a.json["balance_after"] == "57.50" and a.json["reference"] == "ticket-9"
    assert balance(rig, "1001") == "57.50"
    moves = [e for e in audit.entries(rig.store, "account", "1001") if e.action in ("topup", "adjust")]
    assert [(e.actor, e.action, e.field, e.old, e.new) for e in moves if e.field == "balance"] == [
        ("boss", "adjust", "balance", "60.00", "57.50"),
        ("boss", "topup", "balance", "50.00", "60.00"),
    ]
    over = rig.call(
        "POST",
        "/v1/accounts/1001/adjustments",
        "admin",
        {"amount": "-100", "reason": "x"},
        {"Idempotency-Key": "adj-2"},
    )
    assert over.status == 400 and "would leave" in over.json["detail"] and balance(rig, "1001") == "57.50"


def test_the_ledger_calls_cdrs_tariffs_rates_and_vendors_read_as_the_cli(rig, tmp_path, capsys):
    led = rig.call("GET", "/v1/accounts/1001/ledger", "admin").json
    assert [e["reference"] for e in led["items"]] == ["seed"] and led["next_cursor"] is None
    _, out, _ = cli(tmp_path, rig, capsys, "ledger", "1001", "--json")
    assert led["items"] == json.loads(out)

    calls = rig.call("GET", "/v1/calls", "admin").json["items"]
    _, out, _ = cli(tmp_path, rig, capsys, "calls", "--json")
    assert calls == json.loads(out) and len(calls) == 2
    mine = rig.call("GET", "/v1/calls?account=1002", "admin").json["items"]
    assert [c["account"] for c in mine] == ["1002"]

    cdrs = rig.call("GET", "/v1/cdrs", "readonly").json
    _, out, _ = cli(tmp_path, rig, capsys, "cdr", "export", "--json")
    assert cdrs["items"] == json.loads(out) and cdrs["next_cursor"] is None
    assert [c["uuid"] for c in rig.call("GET", "/v1/cdrs?account=1001", "admin").json["items"]] == ["cdr-0", "cdr-2"]

    tariffs = rig.call("GET", "/v1/tariffs", "admin").json["items"]
    _, out, _ = cli(tmp_path, rig, capsys, "tariff", "list", "--json")
    assert tariffs == json.loads(out)
    assert rig.call("GET", "/v1/tariffs/retail", "admin").json["rates"] == 2
    rates = rig.call("GET", "/v1/tariffs/retail/rates?prefix=49", "admin").json["items"]
    _, out, _ = cli(tmp_path, rig, capsys, "rates", "list", "retail", "--prefix", "49", "--json")
    assert rates == json.loads(out)
    found = rig.call("GET", "/v1/tariffs/retail/rates/+4930123?at=2030-01-01T00:00:00Z", "admin").json
    _, out, _ = cli(
        tmp_path, rig, capsys, "rates", "lookup", "retail", "+4930123", "--at", "2030-01-01T00:00:00Z", "--json"
    )
    assert found == json.loads(out) and found["prefix"] == "4930" and found["rate"] == "0.05"
    none = rig.call("GET", "/v1/tariffs/retail/rates/33123", "admin")
    assert none.status == 404 and none.json["kind"] == "not_found"

    vendors = rig.call("GET", "/v1/vendors", "admin").json["items"]
    _, out, _ = cli(tmp_path, rig, capsys, "vendor", "list", "--json")
    assert vendors == json.loads(out)
    assert rig.call("GET", "/v1/vendors/carrier", "readonly").json["name"] == "carrier"


def test_cdr_pages_add_up_to_the_whole_window_in_order(rig):
    whole = [c["uuid"] for c in rig.call("GET", "/v1/cdrs", "admin").json["items"]]
    seen, cursor = [], None
    for _ in range(10):
        page = rig.call("GET", "/v1/cdrs?limit=1" + (f"&cursor={cursor}" if cursor else ""), "admin").json
        seen += [c["uuid"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole == ["cdr-0", "cdr-1", "cdr-2"]
    start = rig.call("GET", "/v1/cdrs", "admin").json["items"][1]["start_stamp"]
    since = rig.call("GET", f"/v1/cdrs?since={start}", "admin").json["items"]
    assert [c["uuid"] for c in since] == ["cdr-1", "cdr-2"]
    until = rig.call("GET", f"/v1/cdrs?until={start}", "admin").json["items"]
    assert [c["uuid"] for c in until] == ["cdr-0"]
    for bad in (
        "limit=0",
        "limit=1001",
        "limit=%D9%A1",
        "cursor=nope",
        "since=yesterday",
        f"since={start}&until={start}",
    ):
        r = rig.call("GET", f"/v1/cdrs?{bad}", "admin")
        assert r.status == 400 and r.json["kind"] == "usage", bad
    assert rig.call("GET", "/v1/cdrs?account=nobody", "admin").status == 404


# -- who may do what ---------------------------------------------------------------------------------------
def _path(template: str, code: str, tariff: str, number: str) -> str:
    name = "carrier" if template.startswith("/v1/vendors/") else tariff
    return template.replace("{code}", code).replace("{name}", name).replace("{number}", number)


def _routes(rig):
    doc = rig.call("GET", "/v1/openapi.json").json
    by_key = {(r.method, r.template): r for r in ROUTES}
    return [by_key[(m.upper(), p)] for p, item in doc["paths"].items() for m in item]


def test_without_a_valid_token_every_route_but_the_document_is_401(rig, tmp_path, capsys):
    cli(tmp_path, rig, capsys, "api", "token", "revoke", "auditor")
    for route in _routes(rig):
        if route.access == PUBLIC:
            continue
        path = _path(route.template, "1001", "retail", "4930")
        for auth in (None, "readonly", "fsb_not-a-token", "Basic Zm9vOmJhcg=="):
            headers = {"Authorization": auth} if auth and auth.startswith("Basic") else None
            token = None if headers else auth
            r = rig.call(route.method, path, token, headers=headers)
            assert r.status == 401, (route.method, path, auth)
            assert r.json["kind"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["content-type"] == "application/problem+json"


def test_a_scoped_token_cannot_read_or_move_another_accounts_money_on_any_route(rig):
    before = {code: balance(rig, code) for code in ("1001", "1002")}
    key = 0
    for route in _routes(rig):
        if route.access == PUBLIC:
            continue
        key += 1
        other = _path(route.template, "1002", "wholesale", "44")
        query = "?account=1002" if route.access == OWN_QUERY else ""
        body = {"amount": "1.00", "reason": "x", "code": "x", "tariff": "retail"} if route.method != "GET" else None
        r = rig.call(route.method, other + query, "account", body, {"Idempotency-Key": f"k{key}"})
        assert r.status == 403 and r.json["kind"] == "forbidden", (route.method, other)
        own = _path(route.template, "1001", "retail", "4930")
        r = rig.call(route.method, own, "account", body, {"Idempotency-Key": f"own{key}"})
        if route.access in (OWN_ACCOUNT, OWN_QUERY, OWN_TARIFF):
            assert r.status == 200, (route.method, own, r.text)
        else:
            assert route.access in (ADMIN, READ)
            assert r.status == 403, (route.method, own)  # moves no money, changes nothing, lists nothing
    assert {code: balance(rig, code) for code in ("1001", "1002")} == before
    own_calls = rig.call("GET", "/v1/calls", "account").json["items"]
    assert [c["account"] for c in own_calls] == ["1001"]  # its own, when it names none
    assert {c["account"] for c in rig.call("GET", "/v1/cdrs", "account").json["items"]} == {"1001"}


def test_readonly_reads_everything_and_changes_nothing(rig):
    for route in _routes(rig):
        if route.access == PUBLIC:
            continue
        path = _path(route.template, "1002", "wholesale", "44")
        body = {"amount": "1.00", "reason": "x"} if route.method != "GET" else None
        r = rig.call(route.method, path, "readonly", body, {"Idempotency-Key": route.operation_id})
        assert r.status == (403 if route.access == ADMIN else 200), (route.method, path, r.text)
    assert balance(rig, "1002") == "70.00"


# -- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, says",
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 60_000, "nests too deep"),
        (b"[]", "must be object"),
        (b'{"amount": 10.5}', "amount must be string"),
        (b'{"amount": "10,50"}', "malformed"),
        (b'{"amount": "1e3"}', "malformed"),
        ('{"amount": "١٠"}'.encode(), "malformed"),
        (b'{"amount": "-5"}', "malformed"),
        (b'{"amount": "5", "bonus": "1"}', "unknown field"),
        (b'{"amount": "0"}', "must be positive"),
        (b'{"amount": "1000000000000000"}', "malformed"),
    ],
)
def test_a_bad_body_is_a_400_problem_and_moves_nothing(rig, raw, says):
    r = rig.call("POST", "/v1/accounts/1001/topups", "admin", raw=raw, headers={"Idempotency-Key": "bad"})
    assert r.status == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json["kind"] == "usage" and says in r.json["detail"] and r.json["status"] == 400
    assert balance(rig, "1001") == "50.00"


def test_http_level_errors_are_problems(rig):
    r = rig.call("GET", "/v1/nothing", "admin")
    assert r.status == 404 and r.json["kind"] == "not_found"
    r = rig.call("DELETE", "/v1/accounts/1001", "admin")
    assert r.status == 405 and r.headers["allow"] == "GET, PATCH" and r.json["kind"] == "usage"
    r = rig.call("POST", "/v1/accounts", "admin", raw=b"{" + b" " * 70_000 + b"}")
    assert r.status == 413 and r.json["kind"] == "usage"
    r = rig.call("GET", "/v1/accounts/nobody", "admin")
    assert r.status == 404 and "no account 'nobody'" in r.json["detail"]
    r = rig.call("GET", "/v1/accounts/%FF", "admin")
    assert r.status == 400
    r = rig.call("POST", "/v1/accounts/1001/topups", "admin", {"amount": "1"}, {"Idempotency-Key": "x" * 256})
    assert r.status == 400 and "Idempotency-Key" in r.json["detail"]


def test_a_closed_account_takes_no_top_up_and_its_key_stays_free(rig):
    rig.call("POST", "/v1/accounts", "admin", {"code": "3001", "tariff": "retail"})
    rig.call("POST", "/v1/accounts/3001/close", "admin")
    r = rig.call("POST", "/v1/accounts/3001/topups", "admin", {"amount": "5"}, {"Idempotency-Key": "k-closed"})
    assert r.status == 400 and "closed" in r.json["detail"]
    ok = rig.call("POST", "/v1/accounts/1001/topups", "admin", {"amount": "5"}, {"Idempotency-Key": "k-closed"})
    assert ok.status == 201  # a refusal records nothing: the key may be used again


# -- idempotency ----------------------------------------------------------------------------------------
def test_a_money_movement_needs_an_idempotency_key(rig):
    for path, body in (("topups", {"amount": "1"}), ("adjustments", {"amount": "1", "reason": "x"})):
        r = rig.call("POST", f"/v1/accounts/1001/{path}", "admin", body)
        assert r.status == 400 and "Idempotency-Key" in r.json["detail"]
    assert balance(rig, "1001") == "50.00"


def test_a_replay_returns_the_first_reply_and_moves_nothing(rig):
    first = rig.call(
        "POST", "/v1/accounts/1001/topups", "admin", {"amount": "10.00", "note": "web"}, {"Idempotency-Key": "K"}
    )
    # the same body with its keys in another order and other spacing is the same request
    raw = b'{ "note" : "web", "amount" : "10.00" }'
    again = rig.call("POST", "/v1/accounts/1001/topups", "admin", raw=raw, headers={"Idempotency-Key": "K"})
    assert (again.status, again.text) == (first.status, first.text) == (201, first.text)
    assert again.headers.get("idempotent-replayed") == "true"
    assert balance(rig, "1001") == "60.00"
    for path, body in (
        ("/v1/accounts/1001/topups", {"amount": "10.01", "note": "web"}),
        ("/v1/accounts/1002/topups", {"amount": "10.00", "note": "web"}),
        ("/v1/accounts/1001/adjustments", {"amount": "10.00", "reason": "web"}),
    ):
        r = rig.call("POST", path, "admin", body, {"Idempotency-Key": "K"})
        assert r.status == 409 and r.json["kind"] == "conflict", path
    assert balance(rig, "1001") == "60.00" and balance(rig, "1002") == "70.00"


def test_ten_concurrent_requests_with_one_key_credit_once(rig):
    def send(i):
        return rig.call("POST", "/v1/accounts/1001/topups", "admin", {"amount": "7.00"}, {"Idempotency-Key": "burst"})

    replies = [g.value for g in gevent.joinall([gevent.spawn(send, i) for i in range(10)], raise_error=True)]
    assert {(r.status, r.text) for r in replies} == {(201, replies[0].text)}
    assert balance(rig, "1001") == "57.00"
    assert ledger.ledger_sum(rig.store, "1001") == ledger.get_account(rig.store, "1001").balance
    others = gevent.joinall(
        [
            gevent.spawn(
                rig.call, "POST", "/v1/accounts/1001/topups", "admin", {"amount": "1"}, {"Idempotency-Key": f"b{i}"}
            )
            for i in range(10)
        ],
        raise_error=True,
    )
    assert all(g.value.status == 201 for g in others) and balance(rig, "1001") == "67.00"


# -- tokens -----------------------------------------------------------------------------------------------
def test_tokens_are_shown_once_kept_as_hashes_listed_and_revoked(rig, tmp_path, capsys):
    code, out, _ = cli(
        tmp_path, rig, capsys, "api", "token", "add", "crm", "--role", "readonly", "--json", "--actor", "ops"
    )
    assert code == 0
    made = json.loads(out)
    assert made.keys() == {"name", "token"} and made["name"] == "crm" and len(made["token"]) > 40
    assert rig.call("GET", "/v1/accounts", made["token"]).status == 200
    m = rig.store.models
    with rig.store.reading():
        row = m.ApiToken.get(m.ApiToken.name == "crm")
    assert row.token_sha256 == hashlib.sha256(made["token"].encode()).hexdigest()
    rig.store.close()
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("api.db*"))
    assert made["token"].encode() not in db_bytes

    code, out, _ = cli(tmp_path, rig, capsys, "api", "token", "list", "--json")
    listed = {t["name"]: t for t in json.loads(out)}
    assert listed["crm"]["role"] == "readonly" and listed["portal-1001"]["account"] == "1001"
    assert made["token"] not in out and row.token_sha256 not in out
    assert cli(tmp_path, rig, capsys, "api", "token", "revoke", "crm")[0] == 0
    assert rig.call("GET", "/v1/accounts", made["token"]).status == 401
    assert cli(tmp_path, rig, capsys, "api", "token", "revoke", "crm")[0] == 2  # already revoked
    assert cli(tmp_path, rig, capsys, "api", "token", "add", "crm", "--role", "admin")[0] == 2  # names stay taken
    code, _, err = cli(tmp_path, rig, capsys, "api", "token", "add", "p", "--role", "account", "--json")
    assert code == 2 and json.loads(err)["kind"] == "usage"
    assert cli(tmp_path, rig, capsys, "api", "token", "add", "p", "--role", "account", "--account", "nobody")[0] == 3
    trail = audit.entries(rig.store, "api_token", "crm")
    assert {(e.actor, e.action) for e in trail} == {("ops", "add"), (trail[0].actor, "revoke")}


# -- mounting other apps beside the API ------------------------------------------------------------------
def test_extra_apps_are_served_by_prefix_without_bearer_auth_and_documented(tmp_path):
    def webhook(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"hook {environ['PATH_INFO']}".encode()]

    item = {"post": {"operationId": "stripeWebhook", "responses": {"200": {"description": "ok"}}}}
    rig = ApiRig(
        f"sqlite:///{tmp_path}/x.db", extra={"/v1/payments/stripe": webhook}, extra_paths={"/v1/payments/stripe": item}
    )
    try:
        r = rig.call("POST", "/v1/payments/stripe", raw=b"{}")
        assert (r.status, r.text) == (200, "hook /v1/payments/stripe")
        assert rig.call("GET", "/v1/accounts").status == 401
        assert rig.call("GET", "/v1/openapi.json").json["paths"]["/v1/payments/stripe"] == item
    finally:
        rig.close()
