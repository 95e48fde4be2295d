"""PayPal Instant Payment Notification (IPN): asking PayPal whether a notice is its own, and what
fsbill reads from one.

PayPal's protocol (IPN integration guide, "Implementing the IPN listener"): it POSTs the notice
as `application/x-www-form-urlencoded`; the listener answers HTTP 200 (else PayPal resends it,
for up to four days; a notice acknowledged is never sent again), then POSTs the notice back
*unchanged*, in the same order and encoding, prefixed with `cmd=_notify-validate&`, to the
verify URL; PayPal answers with the single word `VERIFIED` or `INVALID`. Only a VERIFIED notice
is acted on, and only after checking it is for this seller (`receiver_email`), complete
(`payment_status=Completed`), in the account's currency (`mc_currency`) and of an exact amount
(`mc_gross`). The account is in `custom` (set by the payment button or the checkout), the
payment's identity is its `txn_id`; a refund or a chargeback (`Refunded`, `Reversed`) is a new
transaction whose `parent_txn_id` is the payment's, and whose `mc_gross` is negative.

Text fields are in the notice's `charset` (windows-1252 unless the seller's profile says
UTF-8); the raw bytes are what is posted back and kept.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qs

from fsbill import __version__
from fsbill.core.money import Money
from fsbill.core.payment import notice_text
from fsbill.db.payments import Credit, Refund
from fsbill.errors import FsbillError, MoneyError

VERIFY_PREFIX = b"cmd=_notify-validate&"
MAX_ANSWER_BYTES = 1024
MAX_ID_CHARS = 64  # txn_id is 17 characters; room for the sandbox and for other ids
MAX_TEXT_CHARS = 255  # what is kept of `custom` (PayPal allows 256): a longer one never matches
REFUND_STATUSES = ("Refunded", "Reversed")


class VerifyFailed(FsbillError):
    """PayPal's verify URL could not say (unreachable, an error page, a timeout): retry later."""


def notice_key(body: bytes) -> str:
    """The notice's identity in the store: the same bytes redelivered are the same notice."""
    return "paypal-ipn:" + hashlib.sha256(body).hexdigest()


def as_text(body: bytes) -> str:
    """The raw notice as text that gives the same bytes back (latin-1 maps each byte to one
    character), so what is posted back after a restart is what PayPal sent."""
    return body.decode("latin-1")


def as_bytes(text: str) -> bytes:
    return text.encode("latin-1")


def verify(url: str, body: bytes, timeout_s: float) -> bool:
    """Ask PayPal about `body`: True for VERIFIED, False for INVALID; VerifyFailed for anything
    else (so the notice is asked about again later, never taken or dropped on a guess)."""
    request = urllib.request.Request(
        url,
        data=VERIFY_PREFIX + body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            # PayPal refuses verification requests without a User-Agent
            "User-Agent": f"fsbill/{__version__} IPN listener",
            "Connection": "close",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = response.read(MAX_ANSWER_BYTES).strip()
    except urllib.error.HTTPError as exc:
        raise VerifyFailed(f"the verify URL answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:  # refused, reset, timed out, a bad URL
        raise VerifyFailed(f"the verify URL could not be reached: {exc}") from None
    if answer == b"VERIFIED":
        return True
    if answer == b"INVALID":
        return False
    raise VerifyFailed(f"the verify URL answered {answer[:40]!r}, neither VERIFIED nor INVALID")


@dataclass(frozen=True)
class Reading:
    """What a verified notice asks for: `item` to apply, or why nothing (`status` ignored or
    rejected, with `reason`)."""

    item: Credit | Refund | None
    status: str = "ignored"
    reason: str = ""


def read_notice(body: bytes, receiver_email: str) -> Reading:
    """A verified notice's meaning. Never raises for what PayPal may send: a notice that is not
    for this seller or not exact is `rejected` (kept, never applied); one fsbill has nothing to
    do with (a pending payment, a subscription sign-up) is `ignored`."""
    fields = _fields(body)
    if fields is None:
        return Reading(None, "rejected", "the notice cannot be decoded in its charset")
    status = fields.get("payment_status", "")
    receiver = fields.get("receiver_email", "")
    if receiver.strip().lower() != receiver_email.strip().lower():
        return Reading(None, "rejected", f"receiver_email {receiver[:80]!r} is not {receiver_email!r}")
    txn_id = fields.get("txn_id", "")
    if not txn_id or len(txn_id) > MAX_ID_CHARS or notice_text(txn_id) != txn_id:
        return Reading(None, "ignored", f"payment_status {status[:40]!r} without a txn_id: nothing to credit")
    currency = fields.get("mc_currency", "").upper()
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        return Reading(None, "rejected", f"mc_currency {currency[:10]!r} is not a currency code")
    try:
        gross = Money.parse(fields.get("mc_gross", ""))
    except MoneyError:
        return Reading(None, "rejected", f"mc_gross {fields.get('mc_gross', '')[:40]!r} is not an exact amount")
    if status == "Completed":
        if gross.micros <= 0:
            return Reading(None, "rejected", f"a completed payment of {gross}")
        identity = f"paypal:{txn_id}"
        account = notice_text(fields.get("custom", ""), MAX_TEXT_CHARS)
        return Reading(Credit("paypal", identity, account, gross, currency, identity), "credited")
    if status in REFUND_STATUSES:
        parent = fields.get("parent_txn_id", "")
        if not parent or len(parent) > MAX_ID_CHARS or notice_text(parent) != parent:
            return Reading(None, "rejected", f"a {status} notice without a parent_txn_id")
        refund = Refund("paypal", f"paypal:{parent}", abs(gross), currency, total=False, identity=f"paypal:{txn_id}")
        return Reading(refund, "refunded")
    return Reading(None, "ignored", f"payment_status {status[:40]!r}: nothing to credit")


def _fields(body: bytes) -> dict[str, str] | None:
    text = body.decode("ascii", "replace")  # a form is ASCII; its values are percent-encoded
    charset = (parse_qs(text).get("charset") or ["windows-1252"])[0].strip().lower() or "windows-1252"
    try:
        "".encode(charset)
    except LookupError:
        charset = "windows-1252"
    try:
        parsed = parse_qs(text, keep_blank_values=True, encoding=charset, errors="strict")
    except UnicodeDecodeError:
        return None
    return {name: values[0] for name, values in parsed.items() if values}


__all__ = ["Reading", "VerifyFailed", "as_bytes", "as_text", "notice_key", "read_notice", "verify"]
