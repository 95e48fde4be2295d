"""`fsbill api token add|list|revoke`: the HTTP API's bearer tokens (docs/API.md)."""

from __future__ import annotations

import argparse

from fsbill.api import tokens
from fsbill.cli.common import actor, add_actor_option, emit, load, open_store, table
from fsbill.clock import Clock
from fsbill.instant import iso


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    api = subparsers.add_parser("api", help="the HTTP API: its bearer tokens")
    sub = api.add_subparsers(dest="api_command", metavar="ACTION", parser_class=type(api))
    sub.required = True
    token = sub.add_parser("token", help="bearer tokens: add, list, revoke")
    tsub = token.add_subparsers(dest="api_token_command", metavar="ACTION", parser_class=type(api))
    tsub.required = True
    add = tsub.add_parser("add", parents=[parent], help="make a token and print it (once: only its hash is kept)")
    add.add_argument("name", help="the token's name: the audit trail's actor for what it changes")
    add.add_argument(
        "--role",
        required=True,
        choices=tokens.ROLES,
        help="admin: everything; readonly: reads everything; account: reads only --account, moves no money; "
        "reseller: runs --account's subtree (docs/RESELLERS.md)",
    )
    add.add_argument(
        "--account",
        metavar="CODE",
        help="with --role account: the account it may read; reseller: the top of its subtree",
    )
    add_actor_option(add)
    add.set_defaults(func=_add)
    lst = tsub.add_parser("list", parents=[parent], help="the tokens (names, roles, scopes; never the tokens)")
    lst.set_defaults(func=_list)
    revoke = tsub.add_parser("revoke", parents=[parent], help="revoke a token for good (its next request is a 401)")
    revoke.add_argument("name")
    add_actor_option(revoke)
    revoke.set_defaults(func=_revoke)


def _add(args: argparse.Namespace) -> int:
    store = open_store(load(args))
    token, secret = tokens.add_token(store, args.name, args.role, Clock().now_us(), actor(args), args.account)
    scope = f" for account {token.account}" if token.account else ""
    emit(
        args,
        {"name": token.name, "token": secret},
        f"API token {token.name} ({token.role}{scope}):\n{secret}\n"
        "keep it now: it is not stored and cannot be shown again (revoke and add another if it is lost)",
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    found = tokens.list_tokens(open_store(load(args)))
    emit(
        args,
        [t.as_json() for t in found],
        lambda: (
            table(
                [[t.name, t.role, t.account or "", iso(t.created_us), iso(t.revoked_us) or "valid"] for t in found],
                ["NAME", "ROLE", "ACCOUNT", "CREATED", "REVOKED"],
            )
            if found
            else "no API tokens (make one with 'fsbill api token add NAME --role ROLE')"
        ),
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    token = tokens.revoke_token(open_store(load(args)), args.name, Clock().now_us(), actor(args))
    emit(args, token.as_json(), f"API token {token.name} revoked")
    return 0
