"""/v1/accounts/{code}/recharges: auto-recharge requests (docs/NOTICES.md "Auto-recharge").

The payment side learns of a request from its `recharge.requested` notice, charges the saved
card, and either credits the money with the request's key as the reference (a top-up, or a
gateway's metadata.fsbill_recharge) or reports the failure here, as `fsbill recharge failed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsbill.api.routing import ADMIN, IN_SUBTREE, OWN_ACCOUNT, Reply, Request, Route
from fsbill.db import recharge as dbrecharge

if TYPE_CHECKING:
    from fsbill.api.app import Api


def listing(api: Api, req: Request) -> Reply:
    found = dbrecharge.list_recharges(api.store, req.params["code"])
    return Reply(200, {"items": [r.as_json() for r in found]})


def failed(api: Api, req: Request) -> Reply:
    assert req.token is not None
    r = dbrecharge.fail(api.store, req.params["code"], req.params["key"], req.now_us, req.token.name)
    return Reply(200, r.request.as_json() | {"failures": r.failures, "stopped": r.stopped, "changed": r.changed})


ROUTES = (
    Route("GET", "/v1/accounts/{code}/recharges", listing, OWN_ACCOUNT, "listRecharges",
          "The account's auto-recharge requests, oldest first (`recharge list`)", "RechargeList",
          reseller=IN_SUBTREE),
    Route("POST", "/v1/accounts/{code}/recharges/{key}/failed", failed, ADMIN, "rechargeFailed",
          "The payment side could not charge the card for this request (`recharge failed`)", "RechargeFailed"),
)  # fmt: skip

__all__ = ["ROUTES"]
