"""The HTTP API's bearer tokens: made by `fsbill api token add`, kept only as a hash.

A token is `fsb_` + 32 random bytes (secrets.token_urlsafe): with that much entropy a plain
SHA-256 is the right hash (nothing to brute-force, so no slow KDF), and looking it up by its
hash leaks nothing an attacker could use. It is shown once, when made.

Roles (docs/API.md): `admin` may do everything; `readonly` reads everything; `account` (a
customer portal) reads only its own account - its ledger, CDRs, live calls and its tariff's
rates - and moves no money; `reseller` runs one account's subtree (docs/RESELLERS.md
"Reseller tokens"): it creates accounts under it and tariffs it owns, imports their decks, funds
its children from it, and reads its subtree's accounts, ledgers, calls and CDRs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import peewee

from fsbill.db import audit
from fsbill.db.audit import Change
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound
from fsbill.instant import iso

ADMIN, READONLY, ACCOUNT, RESELLER = "admin", "readonly", "account", "reseller"
ROLES = (ADMIN, READONLY, ACCOUNT, RESELLER)
SCOPED = (ACCOUNT, RESELLER)  # roles that name an account
PREFIX = "fsb_"
MAX_NAME = 64
MAX_TOKEN_CHARS = 512  # a header longer than any token fsbill makes is not looked up


@dataclass(frozen=True)
class Token:
    """Who a request comes from: the token's name (the audit trail's actor) and what it may do."""

    name: str
    role: str
    account: str | None = None  # role `account`: the one account it may read; `reseller`: its subtree's top
    created_us: int = 0
    revoked_us: int | None = None

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "account": self.account,
            "created": iso(self.created_us),
            "revoked": iso(self.revoked_us),
        }


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _valid_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME or not name.isascii() or any(not ch.isprintable() or ch.isspace() for ch in name):
        raise InvalidInput(f"a token name must be 1-{MAX_NAME} printable ASCII characters without spaces, got {name!r}")
    return name


def add_token(
    store: Store, name: str, role: str, now_us: int, actor: str, account: str | None = None
) -> tuple[Token, str]:
    """Make a token; returns it and its secret, which is not stored and cannot be shown again."""
    name = _valid_name(name)
    if role not in ROLES:
        raise InvalidInput(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if (role in SCOPED) != (account is not None):
        raise InvalidInput(
            f"--account CODE is needed with --role {role}"
            if role in SCOPED
            else f"--account only goes with --role {ACCOUNT} or {RESELLER}"
        )
    secret = PREFIX + secrets.token_urlsafe(32)
    m = store.models
    try:
        with store.transaction():
            if account is not None and m.Account.get_or_none(m.Account.code == account) is None:
                raise NotFound(f"no account {account!r} (see 'fsbill account list')")
            if m.ApiToken.get_or_none(m.ApiToken.name == name) is not None:
                raise Conflict(f"an API token named {name!r} already exists (names stay taken after a revoke)")
            m.ApiToken.create(
                name=name, role=role, account_code=account, token_sha256=digest(secret), created_us=now_us
            )
            changes = [Change("role", None, role)] + ([Change("account", None, account)] if account else [])
            audit.record(store, actor, now_us, "add", "api_token", name, changes)
    except peewee.IntegrityError:
        raise Conflict(f"an API token named {name!r} already exists") from None
    return Token(name, role, account, now_us), secret


def _view(row: DbRow) -> Token:
    return Token(row.name, row.role, row.account_code, row.created_us, row.revoked_us)


def list_tokens(store: Store) -> list[Token]:
    m = store.models
    with store.reading():
        return [_view(r) for r in m.ApiToken.select().order_by(m.ApiToken.name)]


def revoke_token(store: Store, name: str, now_us: int, actor: str) -> Token:
    """Revoke a token for good: its next request is a 401. Revoking a revoked token is a Conflict."""
    m = store.models
    with store.transaction():
        row = m.ApiToken.get_or_none(m.ApiToken.name == name)
        if row is None:
            raise NotFound(f"no API token named {name!r} (see 'fsbill api token list')")
        if row.revoked_us is not None:
            raise Conflict(f"API token {name!r} was already revoked at {iso(row.revoked_us)}")
        m.ApiToken.update(revoked_us=now_us).where(m.ApiToken.id == row.id).execute()
        audit.record(store, actor, now_us, "revoke", "api_token", name, [Change("status", "valid", "revoked")])
        row.revoked_us = now_us
    return _view(row)


def authenticate(store: Store, presented: str) -> Token | None:
    """The valid token a request presented, or None (unknown, malformed or revoked)."""
    if not presented.startswith(PREFIX) or len(presented) > MAX_TOKEN_CHARS or not presented.isascii():
        return None
    wanted = digest(presented)
    m = store.models
    with store.reading():
        row = m.ApiToken.get_or_none(m.ApiToken.token_sha256 == wanted)
    if row is None or not hmac.compare_digest(row.token_sha256, wanted) or row.revoked_us is not None:
        return None
    return _view(row)


__all__ = [
    "ACCOUNT",
    "ADMIN",
    "READONLY",
    "RESELLER",
    "ROLES",
    "SCOPED",
    "Token",
    "add_token",
    "authenticate",
    "list_tokens",
    "revoke_token",
]
