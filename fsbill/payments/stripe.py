"""Stripe webhooks: the `Stripe-Signature` check and what fsbill reads from an event.

The signature (https://docs.stripe.com/webhooks#verify-manually): the header is
`t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`; each `v1` is HMAC-SHA256, keyed with the
endpoint's secret, of `"{t}.{raw body}"`. Any one `v1` may match (while a secret is rolled,
Stripe signs with the old and the new one), compared in constant time; `t` must be within the
tolerance (300 s) of now, so a captured delivery cannot be replayed later. It is checked on the
raw bytes before anything is parsed.

Why not the `stripe` package's `WebhookSignature.verify_header`: it reads `time.time()` itself
(no clock can be given, so a replay an hour later cannot be tested without patching the time
module), accepts any timestamp in the future, and would bring the whole API client and its
HTTP stack in for forty lines of HMAC. This follows the same published algorithm.

Events fsbill acts on (anything else is acknowledged and ignored):
- `payment_intent.succeeded`: `data.object` is the PaymentIntent; `amount_received` (minor
  units of `currency`) is credited to `metadata.fsbill_account`, with the ledger reference
  `metadata.fsbill_recharge` when present, else `stripe:<payment intent id>`.
- `charge.refunded`: `data.object` is the Charge; `amount_refunded` is the cumulative total
  refunded of it, and `payment_intent` names the credit it comes out of.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from fsbill.core.money import Money
from fsbill.core.payment import from_minor_units, notice_text
from fsbill.db.payments import Credit, Refund
from fsbill.errors import InvalidInput, MoneyError

MAX_HEADER_CHARS = 4096
MAX_SIGNATURES = 16
MAX_ID_CHARS = 200  # Stripe's ids are ~30 characters; `stripe:<id>` must fit a 255-character column
MAX_TEXT_CHARS = 255  # what is kept of a metadata value (Stripe allows 500): longer never matches


class BadSignature(InvalidInput):
    """A Stripe-Signature that does not check out (absent, malformed, wrong, stale): a 400."""


class BadEvent(InvalidInput):
    """A signed body that is not an event fsbill can read: a 400 (Stripe keeps it for retries)."""


def verify_signature(payload: bytes, header: str, secret: str, now_s: int, tolerance_s: int) -> int:
    """Check `header` against `payload`; returns its timestamp. Raises BadSignature."""
    if not secret:
        raise BadSignature("no webhook secret is configured")
    if not header:
        raise BadSignature("no Stripe-Signature header")
    if len(header) > MAX_HEADER_CHARS:
        raise BadSignature("the Stripe-Signature header is too long")
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise BadSignature("the Stripe-Signature timestamp is not a whole number of seconds")
            timestamp = int(value)
        elif name == "v1" and len(candidates) < MAX_SIGNATURES:
            candidates.append(value.encode("ascii", "replace"))
    if timestamp is None or not candidates:
        raise BadSignature("the Stripe-Signature header has no timestamp or no v1 signature")
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    # every candidate is compared, in constant time each: how many bytes of which one matched
    # is not observable
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate)
    if not matched:
        raise BadSignature("no v1 signature matches this body and the webhook secret")
    if abs(now_s - timestamp) > tolerance_s:
        raise BadSignature(f"the signature's timestamp is {now_s - timestamp} s from now, beyond {tolerance_s} s")
    return timestamp


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header for `payload`, as Stripe makes it (for tests and `fsbill` demos)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    item: Credit | Refund | None  # None: an event fsbill does not act on


def parse_event(payload: bytes) -> Event:
    """The event in a verified body. Raises BadEvent for anything that is not one."""
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise BadEvent("the body is not a JSON event") from None
    if not isinstance(event, dict):
        raise BadEvent("the body is not a JSON object")
    event_id, kind = _text(event, "id"), _text(event, "type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadEvent("the event has no data.object")
    if kind == "payment_intent.succeeded":
        return Event(event_id, kind, _credit(obj))
    if kind == "charge.refunded":
        return Event(event_id, kind, _refund(obj))
    return Event(event_id, kind, None)


def _credit(pi: dict[str, Any]) -> Credit:
    pi_id, currency = _text(pi, "id"), _currency(pi)
    metadata = pi.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadEvent("metadata is not an object")
    account = metadata.get("fsbill_account", "")
    recharge = metadata.get("fsbill_recharge", "")
    if not isinstance(account, str) or not isinstance(recharge, str):
        raise BadEvent("metadata.fsbill_account and metadata.fsbill_recharge must be text")
    identity = f"stripe:{pi_id}"
    return Credit(
        provider="stripe",
        identity=identity,
        account=notice_text(account, MAX_TEXT_CHARS),
        amount=_minor(pi, "amount_received", currency),
        currency=currency,
        reference=notice_text(recharge, MAX_TEXT_CHARS) or identity,
    )


def _refund(charge: dict[str, Any]) -> Refund:
    currency = _currency(charge)
    pi = charge.get("payment_intent")
    if isinstance(pi, dict):  # expanded
        pi = pi.get("id")
    if not isinstance(pi, str) or not pi or len(pi) > MAX_ID_CHARS or notice_text(pi) != pi:
        raise BadEvent("the charge names no payment_intent")
    return Refund("stripe", f"stripe:{pi}", _minor(charge, "amount_refunded", currency), currency, total=True)


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS or notice_text(value) != value:
        raise BadEvent(f"{key} must be non-empty printable text of at most {MAX_ID_CHARS} characters")
    return value


def _currency(obj: dict[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or len(value) != 3 or not value.isascii() or not value.isalpha():
        raise BadEvent("currency must be a 3-letter ISO 4217 code")
    return value.upper()


def _minor(obj: dict[str, Any], key: str, currency: str) -> Money:
    value = obj.get(key)
    try:
        return from_minor_units(value, currency)  # type: ignore[arg-type]  # checked inside: ints only
    except MoneyError as exc:
        raise BadEvent(f"{key}: {exc}") from None


__all__ = ["BadEvent", "BadSignature", "Event", "parse_event", "sign", "verify_signature"]
