"""Notices, decided: low-balance levels and their hysteresis, the retry schedule, the Standard
Webhooks signature and the email text of each kind (docs/NOTICES.md).

Pure: amounts are Money, instants epoch microseconds given by the caller, no clock, no I/O.

Low balance. An account has levels (e.g. 10.00 and 2.00) on what is available (balance +
credit limit − held, fsbill.core.grant.available). A level is *armed* until what is available
falls under it: that raises one `balance.low` notice and disarms it. It is armed again only
once what is available is back at the level plus 10 % of it (11.00 for 10.00), so an account
hovering around a level (a heartbeat debit, a small top-up, the next call's hold) is not told
again and again. Every comparison is on integer micro-units: exact, never a float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from standardwebhooks import Webhook

from fsbill.core.money import MAX_MICROS, Money
from fsbill.errors import InvalidInput

# -- kinds ------------------------------------------------------------------------------------
BALANCE_LOW = "balance.low"
ACCOUNT_SUSPENDED = "account.suspended"
ACCOUNT_RESUMED = "account.resumed"
# raised by the features that own them (recurring charges, payments, auto-recharge)
CHARGE_POSTED = "charge.posted"
ARREARS = "arrears"
PAYMENT_UNMATCHED = "payment.unmatched"
RECHARGE_REQUESTED = "recharge.requested"
KINDS = (
    BALANCE_LOW,
    ACCOUNT_SUSPENDED,
    ACCOUNT_RESUMED,
    CHARGE_POSTED,
    ARREARS,
    PAYMENT_UNMATCHED,
    RECHARGE_REQUESTED,
)
MAX_KIND = 64
_KIND_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
ID_PREFIX = "ntc_"

# -- low-balance levels -----------------------------------------------------------------------
MAX_LEVELS = 10
HYSTERESIS_PERCENT = 10  # a level is armed again at level + 10 % of it


def parse_levels(text: str) -> tuple[Money, ...]:
    """'10.00,2.00' -> (10.00, 2.00): positive exact amounts, highest first, each once.
    '' (or 'none', 'off') is no level. Raises InvalidInput naming the bad part."""
    text = text.strip()
    if text.lower() in ("", "none", "off"):
        return ()
    levels: set[Money] = set()
    for part in text.split(","):
        try:
            level = Money.parse(part.strip())
        except ValueError as exc:
            raise InvalidInput(f"--low-balance: {exc} (levels look like 10.00,2.00)") from None
        if level.micros <= 0:
            raise InvalidInput(f"--low-balance: a level must be more than zero, got {level}")
        levels.add(level)
    if len(levels) > MAX_LEVELS:
        raise InvalidInput(f"--low-balance: at most {MAX_LEVELS} levels, got {len(levels)}")
    return tuple(sorted(levels, reverse=True))


def format_levels(levels: Iterable[Money]) -> str:
    """The stored and shown text of levels ('10.00,2.00'); '' for none."""
    return ",".join(str(level) for level in sorted(levels, reverse=True))


def rearm_at(level: Money) -> Money:
    """What must be available again before `level` may raise another notice: the level plus
    10 % of it, rounded up to the micro-unit (never below the exact 110 %)."""
    tenth = -(-level.micros * HYSTERESIS_PERCENT // 100)
    return Money(min(MAX_MICROS, level.micros + tenth))


@dataclass(frozen=True)
class LevelChanges:
    """What one look at an account's levels decides."""

    crossed: tuple[Money, ...] = ()  # fell under these armed levels: one notice each, then disarmed
    rearmed: tuple[Money, ...] = ()  # disarmed levels to arm again (back above, or no longer a level)

    def __bool__(self) -> bool:
        return bool(self.crossed or self.rearmed)


def level_changes(available: Money, levels: Collection[Money], disarmed: Collection[Money]) -> LevelChanges:
    """Which levels `available` has just crossed downwards and which are armed again.

    `levels`: the account's levels now; `disarmed`: those that raised a notice and wait to be
    armed again (a disarmed amount that is no longer a level is simply forgotten)."""
    crossed = tuple(sorted((lv for lv in levels if lv not in disarmed and available < lv), reverse=True))
    rearmed = tuple(sorted((lv for lv in disarmed if lv not in levels or available >= rearm_at(lv)), reverse=True))
    return LevelChanges(crossed, rearmed)


def balance_low_payload(account: str, currency: str, level: Money, available: Money, balance: Money) -> dict[str, Any]:
    return {
        "account": account,
        "currency": currency,
        "level": str(level),
        "available": str(available),
        "balance": str(balance),
        "rearm_at": str(rearm_at(level)),
    }


# -- retries ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backoff:
    """Exponential: the n-th failed attempt waits first_s × 2^(n−1), at most max_s."""

    first_s: float = 10.0
    max_s: float = 3600.0

    def delay_us(self, failed_attempts: int) -> int:
        if failed_attempts <= 0:
            return 0
        # 2^n grows past max_s quickly: cap the exponent so the float never overflows
        delay_s = self.first_s * 2 ** min(failed_attempts - 1, 64)
        return int(min(delay_s, self.max_s) * 1_000_000)


# -- the webhook ----------------------------------------------------------------------------------
def webhook_secret_problem(secret: str) -> str | None:
    """Why `secret` is not a Standard Webhooks secret ('whsec_' + base64 of the key), or None."""
    if not secret.startswith("whsec_"):
        return "must start with whsec_ followed by the base64 of the key (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)"
    try:
        Webhook(secret)
    except Exception:
        return "the part after whsec_ must be base64 of at least one byte"
    return None


def webhook_body(notice_id: str, kind: str, created_us: int, payload: Mapping[str, Any]) -> bytes:
    """What is POSTed: the Standard Webhooks envelope {type, timestamp, data} plus the notice's
    id. The same notice gives the same bytes on every attempt."""
    envelope = {"id": notice_id, "type": kind, "timestamp": _iso(created_us), "data": dict(payload)}
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def webhook_headers(notice_id: str, timestamp_s: int, body: bytes, secret: str) -> dict[str, str]:
    """The Standard Webhooks headers: webhook-signature is `v1,` + base64(HMAC-SHA256(key,
    "id.timestamp.body")), the key being the base64-decoded part of `secret` after `whsec_`."""
    sent_at = datetime.fromtimestamp(timestamp_s, tz=timezone.utc)
    signature = Webhook(secret).sign(notice_id, sent_at, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": notice_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
    }


def _iso(us: int) -> str:
    moment = datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)
    return moment.isoformat().replace("+00:00", "Z")


# -- email ------------------------------------------------------------------------------------------
_TEMPLATES: dict[str, tuple[str, str]] = {
    BALANCE_LOW: (
        "Low balance on account {account}: {available} {currency} available",
        "What account {account} has available fell under {level} {currency}: {available} {currency} is "
        "available now (balance {balance} {currency}).\n\nPlease top up to keep calls going. You will not be "
        "told about this level again until {rearm_at} {currency} or more is available.",
    ),
    ACCOUNT_SUSPENDED: (
        "Account {account} suspended",
        "Account {account} has been suspended: its new calls are refused until it is resumed.",
    ),
    ACCOUNT_RESUMED: (
        "Account {account} resumed",
        "Account {account} is active again: its calls are accepted.",
    ),
    CHARGE_POSTED: (
        "Charge on account {account}: {amount} {currency}",
        "A charge of {amount} {currency} ({plan}, {period}) was posted to account {account}.",
    ),
    ARREARS: (
        "Account {account} is in arrears: {arrears} {currency}",
        "Account {account} owes {arrears} {currency} that could not be taken from its balance. "
        "Its new calls are refused until a payment covers it.",
    ),
    PAYMENT_UNMATCHED: (
        "A payment could not be applied",
        "A payment of {amount} {currency} (reference {reference}) could not be applied to an account: {reason}.",
    ),
    RECHARGE_REQUESTED: (
        "Automatic recharge of account {account}: {amount} {currency}",
        "Account {account} fell under its recharge level; a recharge of {amount} {currency} was requested (key {key}).",
    ),
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def email_text(kind: str, notice_id: str, payload: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, plain-text body) of a notice's email: its kind's template filled from the
    payload (a field the payload lacks shows as '?'); an unknown kind gets a generic one."""
    subject, body = _TEMPLATES.get(kind, ("Notice {kind} for account {account}", "Notice {kind}."))
    values = _Blank({k: v for k, v in payload.items() if isinstance(v, (str, int))})
    values.setdefault("kind", kind)
    subject = subject.format_map(values).replace("\n", " ")[:200]
    details = "\n".join(f"  {k}: {payload[k]}" for k in sorted(payload))
    text = f"{body.format_map(values)}\n\n{details}\n\nNotice {notice_id} ({kind})\n"
    return subject, text


def valid_kind(kind: str) -> str:
    """A notice kind: dotted lower-case words (`balance.low`); other features add their own."""
    if len(kind) > MAX_KIND or not _KIND_RE.fullmatch(kind):
        raise InvalidInput(f"a notice kind is lower-case words joined by dots (like balance.low), got {kind!r}")
    return kind
