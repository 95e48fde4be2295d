"""The HTTP API served for real: an `ApiServer` on a free port over a real database, seeded with
two accounts on one tariff, another tariff, a vendor, a live call and CDRs, and one token of
each role; `call()` speaks HTTP/1.1 to it over TCP."""

from __future__ import annotations

import http.client
import io
import json
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from migrated import migrated_store

from fsbill.api.app import Api, ApiServer
from fsbill.api.tokens import add_token
from fsbill.clock import Clock
from fsbill.core.grant import GrantPolicy
from fsbill.core.money import Money
from fsbill.core.rating import Rate
from fsbill.core.records import RejectionRecord
from fsbill.db import calls as dbcalls
from fsbill.db import ledger
from fsbill.db import vendors as dbvendors
from fsbill.db.rates import import_deck

US = 1_000_000
NOW = Clock().now_us()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class ApiRig:
    def __init__(self, url: str, extra: dict | None = None, extra_paths: dict | None = None) -> None:
        self.store = migrated_store(url)
        self.api = Api(self.store, Clock().now_us, extra=extra, extra_paths=extra_paths)
        self.server = ApiServer(self.api, "127.0.0.1", 0)
        self.port = self.server.start()
        self.tokens: dict[str, str] = {}

    def seed(self) -> ApiRig:
        s = self.store
        ledger.create_tariff(s, "retail", "EUR", NOW)
        ledger.create_tariff(s, "wholesale", "EUR", NOW)
        import_deck(s, "retail", io.StringIO("prefix,rate,description\n49,0.10,Germany\n4930,0.05,Berlin\n"))
        import_deck(s, "wholesale", io.StringIO("prefix,rate\n44,0.02\n"))
        ledger.create_account(s, "1001", "retail", NOW, clis=["15551001"])
        ledger.create_account(s, "1002", "wholesale", NOW)
        ledger.topup(s, "1001", Money.parse("50"), NOW, reference="seed")
        ledger.topup(s, "1002", Money.parse("70"), NOW, reference="seed")
        dbvendors.create_vendor(s, "carrier", "sofia/gateway/carrier/{destination}", NOW)
        for i, code in enumerate(("1001", "1002", "1001")):
            dbcalls.write_rejection(
                s,
                RejectionRecord(
                    uuid=f"cdr-{i}",
                    account_code=code,
                    node="n",
                    caller="1555",
                    destination="4930123",
                    currency="EUR",
                    start_us=NOW - (10 - i) * US,
                    reason="no_rate",
                    hangup_cause="",
                ),
                now_us=NOW,
            )
        for code in ("1001", "1002"):
            dbcalls.reserve(
                s,
                uuid=str(uuidlib.uuid4()),
                account_id=ledger.get_account(s, code).id,
                rate=Rate("49", Money.parse("0.10")),
                policy=GrantPolicy(slice_s=120, max_call_s=3600, margin_s=1, extend_below_s=60),
                node="n",
                caller="1",
                destination="4930123",
                now_us=NOW,
                lease_until_us=NOW + 3600 * US,
                max_ring_s=0,
            )
        for name, role, account in (
            ("boss", "admin", None),
            ("auditor", "readonly", None),
            ("portal-1001", "account", "1001"),
        ):
            self.tokens[role] = add_token(s, name, role, NOW, "test", account)[1]
        return self

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            if data is not None:
                sent.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=sent)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode())
        finally:
            conn.close()

    def close(self) -> None:
        self.server.stop()
        self.store.close()
