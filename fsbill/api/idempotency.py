"""`Idempotency-Key`: a money-moving request acts once, whatever is retried, replayed or raced.

The first request with a key acts, and its response (status and body) is written in the same
transaction as the money it moved: either both commit or neither. A request with a key
already recorded acts no more: the same method, path and body get the recorded response back;
anything else with that key is a 409 (a key names one request). Keys are unique across the
installation (the table's unique index), so two requests racing on one key - two greenlets, or
two nodes sharing PostgreSQL - credit once: the loser's insert fails on the index, its
transaction (its credit with it) rolls back, and it answers with the winner's response.

A refused request (a 4xx from the rules: unknown account, closed, over the limit) moves no
money and records nothing, so the same key may be sent again once the cause is fixed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from fsbill.db.connection import Store

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Recorded:
    key: str
    fingerprint: str
    status: int
    body: str


def valid_key(value: str | None) -> str | None:
    """The key as sent, or None when it is missing; ValueError (with the reason) if malformed:
    1-255 printable ASCII characters."""
    if value is None or value == "":
        return None
    if len(value) > MAX_KEY_CHARS or not value.isascii() or not value.isprintable() or value != value.strip():
        raise ValueError(f"{HEADER} must be 1-{MAX_KEY_CHARS} printable ASCII characters (a UUID is a good choice)")
    return value


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests the same request: method, path and the body's JSON value (key
    order and spacing do not matter)."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def find(store: Store, key: str) -> Recorded | None:
    m = store.models
    with store.reading():
        row = m.ApiIdempotency.get_or_none(m.ApiIdempotency.key == key)
    return None if row is None else Recorded(row.key, row.fingerprint, row.status, row.body)


def find_within(store: Store, key: str) -> Recorded | None:
    """`find` inside the caller's transaction (SQLite: under its write lock, so no other
    request with this key can be between this check and the insert)."""
    m = store.models
    row = m.ApiIdempotency.get_or_none(m.ApiIdempotency.key == key)
    return None if row is None else Recorded(row.key, row.fingerprint, row.status, row.body)


def record_within(store: Store, recorded: Recorded, token_name: str, now_us: int) -> None:
    """Write the response inside the transaction that moved the money. A key another request
    recorded meanwhile is the caller's peewee.IntegrityError (and its rollback)."""
    store.models.ApiIdempotency.create(
        key=recorded.key,
        fingerprint=recorded.fingerprint,
        token_name=token_name,
        status=recorded.status,
        body=recorded.body,
        created_us=now_us,
    )


__all__ = ["HEADER", "Recorded", "find", "find_within", "fingerprint", "record_within", "valid_key"]
