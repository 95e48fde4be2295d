"""The CDR intake: an authenticated HTTP endpoint FreeSWITCH's mod_json_cdr posts to.

Off unless `cdr_intake.listen` is set. What mod_json_cdr sends (mod_json_cdr.c `process_cdr`,
switch_ivr.c `switch_ivr_generate_json_cdr`): `POST <url>?uuid=<uuid>` with the JSON CDR as
`application/json` (or `cdr=<url-encoded JSON>` / base64 with `encode`), HTTP basic auth from
its `cred` param, channel variables url-encoded when `encode-values` is on (the default). It
retries `retries` times `delay` seconds apart on anything but a 2xx, then keeps the CDR in its
`err-log-dir`. So: 2xx once the post is safely stored (or known), 401 on bad credentials,
400 on a body that is not a CDR (retrying cannot help: mod_json_cdr still backs it up), 503 when
the database is down (a retry will).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from fsbill.db import Store
from fsbill.db.recovery import Applied, PostedCdr, apply_stored, store_post
from fsbill.errors import DatabaseUnavailable
from fsbill.logs import event as log_event
from fsbill.wsgi import READ_TIMEOUT_S, BodyError, read_body

if TYPE_CHECKING:
    from gevent.pywsgi import WSGIServer

log = logging.getLogger("fsbill.cdr_intake")

MAX_BODY_BYTES = 4 * 1_048_576
# Bounds on the fields fsbill keeps: a post outside them is a 400, never a 500 nor a stored row.
MAX_UUID_CHARS = 64  # FreeSWITCH's are 36 (8-4-4-4-12 hex)
_UUID_RE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_UUID_CHARS}}}\Z")
MAX_UEPOCH = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z in microseconds
MAX_BILLSEC = 10**9
MAX_TEXT_CHARS = 256  # hangup_cause, destination


class BadCdr(ValueError):
    pass


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCdr(f"{what} is not UTF-8") from None


def _text(value: str, name: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(value) > limit:
        raise BadCdr(f"{name} is longer than {limit} characters")
    try:
        value.encode("utf-8")  # a lone surrogate (a JSON "\\ud800" escape) cannot be stored
    except UnicodeEncodeError:
        raise BadCdr(f"{name} is not valid Unicode text") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadCdr(f"{name} holds control characters")
    return value


def _bounded_int(value: str, name: str, high: int) -> int | None:
    """ASCII digits within 1..high, else None when empty; anything else is a BadCdr."""
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(high)) or not 0 <= int(value) <= high:
        raise BadCdr(f"{name} must be a whole number from 0 to {high}, got {value[:40]!r}")
    return int(value)


def parse_json_cdr(body: bytes, content_type: str, query_uuid: str = "") -> PostedCdr:
    """The fields fsbill rates from, out of one mod_json_cdr post. Anything malformed (not UTF-8,
    not JSON, nested absurdly deep, fields out of range) is a BadCdr: a 400, never a 500."""
    text = _utf8(body, "the body")
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            text = (parse_qs(text, errors="strict").get("cdr") or [""])[0]
        except UnicodeDecodeError:
            raise BadCdr("the cdr field is not UTF-8") from None
    elif ctype == "application/x-www-form-base64-encoded":
        raw = text[4:] if text.startswith("cdr=") else text
        try:
            decoded = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadCdr("not base64") from None
        text = _utf8(decoded, "the decoded CDR")
    try:
        cdr = json.loads(text)
    except RecursionError:  # json's C scanner recurses once per level of nesting
        raise BadCdr("the JSON nests too deep: not a CDR") from None
    except ValueError:
        raise BadCdr("the body is not JSON") from None
    if not isinstance(cdr, dict) or not isinstance(cdr.get("variables"), dict):
        raise BadCdr("no 'variables' object: not a mod_json_cdr CDR")
    variables = cdr["variables"]

    def var(name: str) -> str:
        value = variables.get(name, "")
        if isinstance(value, str):
            try:
                return unquote(value, errors="strict")  # encode-values (default on)
            except UnicodeDecodeError:
                raise BadCdr(f"variable {name} is not UTF-8 once url-decoded") from None
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadCdr(f"variable {name} must be text, got {type(value).__name__}")
        return str(value)  # json.loads keeps ints within Python's 4300-digit limit; bounded below

    def us(name: str) -> int | None:
        value = _bounded_int(var(name), name, MAX_UEPOCH)
        return value if value else None

    uuid = var("uuid") or query_uuid
    if not uuid:
        raise BadCdr("no channel uuid")
    if not _UUID_RE.match(uuid):
        raise BadCdr(f"the uuid must be 1-{MAX_UUID_CHARS} letters, digits or '.', '_', ':', '-'")
    destination = ""
    callflow = cdr.get("callflow")
    if isinstance(callflow, list) and callflow and isinstance(callflow[0], dict):
        profile = callflow[0].get("caller_profile") or {}
        if isinstance(profile, dict):
            destination = _text(str(profile.get("destination_number", ""))[: MAX_TEXT_CHARS + 1], "destination_number")
    return PostedCdr(
        uuid=uuid,
        answer_us=us("answer_uepoch"),
        end_us=us("end_uepoch"),
        start_us=us("start_uepoch") or 0,
        billsec=_bounded_int(var("billsec"), "billsec", MAX_BILLSEC) or 0,
        hangup_cause=_text(var("hangup_cause"), "hangup_cause"),
        destination=destination,
        body=text,
    )


class CdrIntake:
    def __init__(
        self,
        store: Store,
        host: str,
        port: int,
        user: str,
        password: str,
        now_us: Callable[[], int],
        result_of: Callable[[bool, str, str], str],
        on_applied: Callable[[Applied], None] | None = None,
        listener_fd: int | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.read_timeout_s = read_timeout_s
        self.store = store
        self.listener_fd = listener_fd  # already bound and listening (a worker's, fsbill.workers)
        self.host, self.port = host, port
        self._expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.now_us = now_us
        self.result_of = result_of
        self.on_applied = on_applied
        self.server: WSGIServer | None = None
        self.received = 0

    def start(self) -> int:
        from fsbill.wsgi import serve_wsgi

        server = serve_wsgi(
            self.app,
            self.host,
            self.port,
            what="cdr_intake.listen",
            log=log,
            listener_fd=self.listener_fd,
            read_timeout_s=self.read_timeout_s,
        )
        self.server = server
        port = server.server_port
        assert port is not None  # start() has bound the socket
        self.port = port
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1)

    def app(self, environ, start_response):
        def reply(status: str, body: dict, extra: list | None = None):
            data = (json.dumps(body) + "\n").encode()
            start_response(status, [("Content-Type", "application/json"), *(extra or [])])
            return [data]

        if environ.get("REQUEST_METHOD") != "POST":
            return reply("405 Method Not Allowed", {"error": "POST the CDR"}, [("Allow", "POST")])
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), self._expected.encode()):
            return reply(
                "401 Unauthorized", {"error": "bad credentials"}, [("WWW-Authenticate", 'Basic realm="fsbill"')]
            )
        try:
            body = read_body(environ, MAX_BODY_BYTES)
        except BodyError as exc:
            log_event(log, "cdr_post_rejected", error=exc.reason)
            status = "413 Payload Too Large" if exc.status == 413 else "400 Bad Request"
            return reply(status, {"error": exc.reason}, [("Connection", "close")])
        query_uuid = (parse_qs(environ.get("QUERY_STRING", "")).get("uuid") or [""])[0]
        try:
            cdr = parse_json_cdr(body, environ.get("CONTENT_TYPE", ""), query_uuid)
        except BadCdr as exc:
            log_event(log, "cdr_post_rejected", uuid=query_uuid, error=str(exc))
            return reply("400 Bad Request", {"error": str(exc)})
        self.received += 1
        try:
            applied = self.accept(cdr, environ.get("REMOTE_ADDR", ""))
        except DatabaseUnavailable as exc:
            log_event(log, "cdr_post_deferred", uuid=cdr.uuid, error=str(exc))
            return reply("503 Service Unavailable", {"error": "database unavailable; retry"})
        return reply("200 OK", {"uuid": cdr.uuid, "outcome": ",".join(sorted({a.outcome for a in applied}))})

    def accept(self, cdr: PostedCdr, switch: str = "") -> list[Applied]:
        """Store the post (once) and act on it for each visit of its channel."""
        now = self.now_us()
        new = store_post(self.store, cdr, switch, now)
        applied = apply_stored(self.store, cdr.uuid, now, self.result_of)
        if not new and all(a.outcome in ("stored", "duplicate") for a in applied):
            applied = [Applied("duplicate", cdr.uuid)]
        for a in applied:
            if a.outcome in ("corrected", "settled"):
                log_event(log, "cdr_post_applied", uuid=a.uuid, visit=a.visit, outcome=a.outcome, posted=a.posted)
            if self.on_applied is not None:
                self.on_applied(a)
        return applied


__all__ = ["BadCdr", "CdrIntake", "parse_json_cdr"]
