"""The API as a WSGI application (`Api`) and its server inside `fsbill serve` (`ApiServer`).

One request: find the route (404 / 405), check the bearer token (401) and its scope (403),
read and check the body (400 / 413), run the handler; every error is a problem+json reply
(fsbill.api.problems), never a traceback. Other WSGI apps can be mounted beside the API by
path prefix (`extra`): they see the request untouched and do their own authentication (a
payment gateway's webhook signs its requests; it has no bearer token).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from fsbill.api import accounts, idempotency, openapi, readings, recharges, resellers, scope, tokens
from fsbill.api.problems import MEDIA_TYPE, Problem, from_error
from fsbill.api.routing import (
    ADMIN,
    CHILD,
    IN_SUBTREE,
    IN_SUBTREE_QUERY,
    OWN_ACCOUNT,
    OWN_QUERY,
    OWN_TARIFF,
    OWNED_TARIFF,
    PUBLIC,
    SCOPED,
    SEEN_TARIFF,
    Invalid,
    Reply,
    Request,
    Route,
    find,
    validate,
)
from fsbill.db import Store, ledger, subtree
from fsbill.errors import FsbillError, NotFound
from fsbill.wsgi import BodyError, WSGIApp, read_body, serve_wsgi

log = logging.getLogger("fsbill.api")

MAX_BODY_BYTES = 64 * 1024  # the largest request the API takes is an account with its caller ids
OPENAPI_PATH = "/v1/openapi.json"


def _openapi(api: Api, req: Request) -> Reply:
    return Reply(200, api.document())


ROUTES: tuple[Route, ...] = (
    Route("GET", OPENAPI_PATH, _openapi, PUBLIC, "getOpenApi", "This document", "OpenApi"),
    *accounts.ROUTES,
    *recharges.ROUTES,
    *readings.ROUTES,
    *resellers.ROUTES,
)


class Api:
    """The WSGI application. `extra`: other WSGI apps by path prefix (e.g. "/v1/payments/stripe"),
    served as they are, without bearer auth; `extra_paths`: their OpenAPI path items, merged
    into the document."""

    def __init__(
        self,
        store: Store,
        now_us: Callable[[], int],
        *,
        international_prefix: str = "00",
        extra: Mapping[str, WSGIApp] | None = None,
        extra_paths: Mapping[str, Any] | None = None,
        routes: Sequence[Route] = ROUTES,
    ) -> None:
        self.store = store
        self.now_us = now_us
        self.international_prefix = international_prefix
        self.extra = dict(extra or {})
        self.extra_paths = dict(extra_paths or {})
        self.routes = tuple(routes)
        self._document: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        if self._document is None:
            doc = openapi.document(self.routes, self.extra_paths)
            doc["components"]["schemas"]["OpenApi"] = {"type": "object"}
            self._document = doc
        return self._document

    # -- WSGI ---------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw_path = _raw_path(environ)
        for prefix, app in self.extra.items():
            if raw_path == prefix or raw_path.startswith(prefix.rstrip("/") + "/"):
                return app(environ, start_response)
        try:
            reply = self._handle(environ, raw_path)
        except Problem as problem:
            reply = _problem_reply(problem, environ.get("PATH_INFO", ""))
        except FsbillError as exc:
            reply = _problem_reply(from_error(exc), environ.get("PATH_INFO", ""))
        except Exception:
            log.exception("API request failed: %s %s", environ.get("REQUEST_METHOD"), raw_path[:200])
            reply = _problem_reply(Problem("internal", "internal error (see the server's log)"), "")
        return self._send(reply, start_response, environ.get("REQUEST_METHOD") == "HEAD")

    def _send(self, reply: Reply, start_response: Callable[..., Any], head: bool) -> list[bytes]:
        if reply.raw is not None:
            data = reply.raw.encode("utf-8")
            ctype = "application/json"
        else:
            data = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
            ctype = MEDIA_TYPE if reply.status >= 400 else "application/json"
        headers = [("Content-Type", ctype), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")]
        start_response(f"{reply.status} {_REASONS.get(reply.status, 'Status')}", headers + list(reply.headers))
        return [] if head else [data]

    def _handle(self, environ: dict[str, Any], raw_path: str) -> Reply:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        segments = _segments(raw_path)
        path = "/" + "/".join(segments)
        route, params, allowed = find(self.routes, "GET" if method == "HEAD" else method, segments)
        if route is None:
            if not allowed:
                raise Problem("not_found", f"no such resource: {path[:200]} (the routes are in {OPENAPI_PATH})")
            raise Problem(
                "usage",
                f"{method} is not allowed here (allowed: {', '.join(allowed)})",
                [("Allow", ", ".join(allowed))],
                status=405,
            )
        query = _query(environ.get("QUERY_STRING", ""))
        token = None
        if route.access != PUBLIC:
            token = self._authenticate(environ)
            self._authorize(route, token, params, query)
        body: Any = None
        if route.request is not None:
            body = _json_body(environ, route)
        key = None
        if route.idempotent:
            try:
                key = idempotency.valid_key(environ.get("HTTP_IDEMPOTENCY_KEY"))
            except ValueError as exc:
                raise Problem("usage", str(exc)) from None
        request = Request(method, path, params, query, body, token, key, self.now_us())
        return route.handler(self, request)

    def _authenticate(self, environ: dict[str, Any]) -> tokens.Token:
        scheme, _, presented = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = tokens.authenticate(self.store, presented.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise Problem(
                "unauthorized",
                "a valid bearer token is needed: Authorization: Bearer <token from 'fsbill api token add'>",
                [("WWW-Authenticate", 'Bearer realm="fsbill"')],
            )
        return token

    def _authorize(self, route: Route, token: tokens.Token, params: dict[str, str], query: dict[str, str]) -> None:
        if token.role == tokens.ADMIN:
            return
        if token.role == tokens.RESELLER:
            return self._authorize_reseller(route, token, params, query)
        if route.access == ADMIN:
            raise Problem("forbidden", f"token {token.name!r} ({token.role}) may not make changes or move money")
        if token.role == tokens.READONLY:
            return
        own = token.account
        if route.access == OWN_ACCOUNT and params.get("code") == own:
            return
        if route.access == OWN_QUERY and query.get("account", own) == own:
            return
        if route.access == OWN_TARIFF and own is not None and params.get("name") == self._tariff_of(own):
            return
        raise Problem("forbidden", f"token {token.name!r} may read only account {own!r} and its tariff")

    def _authorize_reseller(
        self, route: Route, token: tokens.Token, params: dict[str, str], query: dict[str, str]
    ) -> None:
        """A `reseller` token acts only inside its account's subtree (fsbill.api.routing), and
        is refused the same way whether or not what it names exists."""
        top = token.account or ""
        how = route.reseller
        if how == SCOPED:
            return
        if how == IN_SUBTREE and subtree.contains(self.store, top, params.get("code", "")):
            return
        if how == IN_SUBTREE_QUERY and subtree.contains(self.store, top, query.get("account", top)):
            return
        if how == CHILD and subtree.is_child(self.store, top, params.get("code", "")):
            return
        if how == SEEN_TARIFF and subtree.tariff_visible(self.store, top, params.get("name", "")):
            return
        if how == OWNED_TARIFF and subtree.tariff_owned_within(self.store, top, params.get("name", "")):
            return
        why = {
            CHILD: "funds only its own children",
            "": "may not call this route (top-ups, adjustments, account changes and vendors are the operator's)",
        }.get(how, "")
        raise Problem("forbidden", scope.outside(token, why))

    def _tariff_of(self, code: str) -> str | None:
        try:
            return ledger.get_account(self.store, code).tariff
        except NotFound:
            return None


def _problem_reply(problem: Problem, instance: str) -> Reply:
    return Reply(problem.status, problem.body(instance[:200]), headers=tuple(problem.headers))


def _raw_path(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI")
    if raw is None:  # another WSGI server: PATH_INFO is already decoded
        return environ.get("PATH_INFO", "/")
    if not raw.startswith("/"):
        raw = urlsplit(raw).path or "/"
    return raw.split("?", 1)[0]


def _segments(raw_path: str) -> list[str]:
    """The path's segments, each percent-decoded on its own (an account code may hold a '/',
    sent as %2F); not UTF-8 is bad input."""
    try:
        return [unquote(s, errors="strict") for s in raw_path.strip("/").split("/")]
    except UnicodeDecodeError:
        raise Problem("usage", "the path is not UTF-8") from None


def _query(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Problem("usage", "the query string is malformed or not UTF-8") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(name, value)  # the first of a repeated parameter
    return out


def _json_body(environ: dict[str, Any], route: Route) -> Any:
    try:
        raw = read_body(environ, route.max_body or MAX_BODY_BYTES)
    except BodyError as exc:
        raise Problem("usage", exc.reason, [("Connection", "close")], status=exc.status) from None
    if not raw.strip():
        if route.body_required:
            raise Problem("usage", "a JSON body is needed")
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise Problem("usage", "the JSON nests too deep") from None
    except (UnicodeDecodeError, ValueError):
        raise Problem("usage", "the body is not JSON (UTF-8)") from None
    from fsbill.api.schemas import components

    try:
        validate(body, components()[route.request or ""], "body")
    except Invalid as exc:
        raise Problem("usage", str(exc)) from None
    return body


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiServer:
    """The API on its own address inside `fsbill serve` (`api.listen`), on the gevent WSGI stack
    the metrics and the CDR intake use."""

    def __init__(self, api: Api, host: str, port: int, listener_fd: int | None = None) -> None:
        self.api = api
        self.host, self.port = host, port
        self.listener_fd = listener_fd
        self.server: Any = None

    def start(self) -> int:
        self.server = serve_wsgi(
            self.api, self.host, self.port, what="api.listen", log=log, listener_fd=self.listener_fd
        )
        self.port = self.server.server_port
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1)


__all__ = ["MAX_BODY_BYTES", "OPENAPI_PATH", "ROUTES", "Api", "ApiServer"]
