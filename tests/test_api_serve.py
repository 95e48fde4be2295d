"""`fsbill serve` with `api.listen` serves the API: in one process, and with `--workers` from the
one socket the supervisor binds and hands to its workers (as it does the event socket)."""

from __future__ import annotations

import http.client
import json
import re
import time

import gevent
import pytest
from migrated import migrate_fresh
from nodes import ServeProcess

from fsbill.api.tokens import add_token
from fsbill.clock import Clock
from fsbill.db import Store, ledger

API = re.compile(r"api=127\.0\.0\.1:(\d+)")


def seed(url: str) -> str:
    migrate_fresh(url)
    store = Store(url)
    store.upgrade()
    now = Clock().now_us()
    ledger.create_tariff(store, "retail", "EUR", now)
    ledger.create_account(store, "acme", "retail", now)
    token = add_token(store, "ops", "admin", now, "test")[1]
    store.close()
    return token


def api_ports(server: ServeProcess, n: int) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = API.findall(server.output())
        if len(found) >= n:
            return {int(p) for p in found}
        gevent.sleep(0.1)
    raise AssertionError(f"no 'api=' in the started lines:\n{server.output()[-3000:]}")


def request(port: int, method: str, path: str, token: str, body: dict | None = None, key: str = "") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = conn.getresponse()
    data = json.loads(r.read())
    conn.close()
    return r.status, data


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_with_api_listen_serves_the_api(tmp_path, workers):
    url = f"sqlite:///{tmp_path}/fsbill.db"
    token = seed(url)
    server = ServeProcess(tmp_path, "edge", dict(database=url, workers=workers, api={"listen": "127.0.0.1:0"}))
    try:
        server.start()
        ports = api_ports(server, workers)
        assert len(ports) == 1  # every worker serves the supervisor's one socket
        port = ports.pop()
        for i in range(6):
            status, body = request(
                port, "POST", "/v1/accounts/acme/topups", token, {"amount": "1.50"}, key=f"serve-{i}"
            )
            assert status == 201 and body["applied"] is True
        status, body = request(port, "GET", "/v1/accounts/acme", token)
        assert status == 200 and body["balance"] == "9.00"
        status, body = request(port, "GET", "/v1/accounts/acme", "fsb_wrong")
        assert status == 401 and body["kind"] == "unauthorized"
    finally:
        assert server.terminate() == 0, server.output()[-3000:]
