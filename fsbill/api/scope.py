"""The scope of a `reseller` API token (docs/RESELLERS.md "Reseller tokens"): the subtree of
its account. The door (fsbill.api.app) checks what the path and query name; handlers check what
only the body names with `within`, with the same 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsbill.api import tokens
from fsbill.api.problems import Problem
from fsbill.api.routing import Request
from fsbill.db import subtree

if TYPE_CHECKING:
    from fsbill.api.app import Api


def outside(token: tokens.Token, why: str = "") -> str:
    """The 403's sentence for what a `reseller` token may not do."""
    what = why or "acts only on accounts and tariffs inside that subtree"
    return f"token {token.name!r} is a reseller token for account {token.account!r}: it {what}"


def reseller_of(req: Request) -> str | None:
    """The account whose subtree the request's token runs; None: not a reseller token."""
    token = req.token
    return token.account if token is not None and token.role == tokens.RESELLER else None


def within(api: Api, req: Request, code: str) -> None:
    """403 unless `code` is the reseller token's account or below it (nothing for other roles)."""
    top = reseller_of(req)
    if top is not None and not subtree.contains(api.store, top, code):
        assert req.token is not None
        raise Problem("forbidden", outside(req.token))


__all__ = ["outside", "reseller_of", "within"]
