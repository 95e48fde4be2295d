"""The gateways' two routes as OpenAPI 3.1 path items, self-contained (no `$ref`), for the API's
document (`/v1/openapi.json`) to merge under `paths`."""

from __future__ import annotations

from typing import Any

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "kind": {"type": "string"},
    },
}
_PROBLEM = {"application/problem+json": {"schema": PROBLEM_SCHEMA}}
OUTCOMES = ["credited", "refunded", "duplicate", "unmatched", "ignored", "pending"]
OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["outcome"],
    "properties": {
        "outcome": {"type": "string", "enum": OUTCOMES},
        "event": {"type": "string", "description": "the Stripe event id"},
        "notice": {
            "type": ["integer", "null"],
            "description": "the notification as stored (fsbill payments unmatched)",
        },
        "payment": {"type": ["integer", "null"]},
        "detail": {"type": "string"},
        "owed": {"type": "string", "description": "of a refund, what could not be taken now (exact decimal)"},
    },
}


def _responses(ok: str, bad: str) -> dict[str, Any]:
    return {
        "200": {"description": ok, "content": {"application/json": {"schema": OUTCOME_SCHEMA}}},
        "400": {"description": bad, "content": _PROBLEM},
        "404": {"description": "this gateway is not configured", "content": _PROBLEM},
        "405": {"description": "only POST", "content": _PROBLEM},
        "413": {"description": "body too large", "content": _PROBLEM},
        "503": {"description": "the database could not take it: the gateway retries", "content": _PROBLEM},
    }


PATHS: dict[str, Any] = {
    "/v1/payments/stripe": {
        "post": {
            "operationId": "postStripeWebhook",
            "summary": "Stripe webhook: payment_intent.succeeded credits, charge.refunded debits, each once",
            "description": (
                "Verified by the Stripe-Signature header (HMAC-SHA256 with payments.stripe.webhook_secret, "
                "300 s tolerance), not by a bearer token. See docs/PAYMENTS.md."
            ),
            "security": [],
            "tags": ["payments"],
            "parameters": [
                {"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object", "description": "a Stripe event"}}},
            },
            "responses": _responses(
                "received: credited, refunded, a duplicate, unmatched (kept for an operator) or ignored",
                "bad or stale signature, or not an event: nothing changed",
            ),
        }
    },
    "/v1/payments/paypal": {
        "post": {
            "operationId": "postPaypalIpn",
            "summary": "PayPal IPN: stored, acknowledged, then verified with PayPal and applied once",
            "description": (
                "No bearer token: the notice is verified by posting it back to payments.paypal.verify_url. "
                "See docs/PAYMENTS.md."
            ),
            "security": [],
            "tags": ["payments"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": {"type": "object", "description": "an IPN"}}
                },
            },
            "responses": _responses("stored; verified with PayPal next", "an empty notice"),
        }
    },
}

__all__ = ["OUTCOME_SCHEMA", "PATHS", "PROBLEM_SCHEMA"]
