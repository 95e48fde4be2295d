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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from fsbill.db import Store
from fsbill.db.recovery import Applied, PostedCdr, apply_stored, store_post
from fsbill.errors import DatabaseUnavailable
from fsbill.logs import event as log_event

if TYPE_CHECKING:
    from gevent.pywsgi import WSGIServer

log = logging.getLogger("fsbill.cdr_intake")

MAX_BODY_BYTES = 4 * 1_048_576


class BadCdr(ValueError):
    pass


def parse_json_cdr(body: bytes, content_type: str, query_uuid: str = "") -> PostedCdr:
    """The fields fsbill rates from, out of one mod_json_cdr post."""
    text = body.decode("utf-8", "replace")
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        text = (parse_qs(text).get("cdr") or [""])[0]
    elif ctype == "application/x-www-form-base64-encoded":
        raw = text[4:] if text.startswith("cdr=") else text
        try:
            text = base64.b64decode(raw).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise BadCdr("not base64") from None
    try:
        cdr = json.loads(text)
    except ValueError:
        raise BadCdr("the body is not JSON") from None
    if not isinstance(cdr, dict) or not isinstance(cdr.get("variables"), dict):
        raise BadCdr("no 'variables' object: not a mod_json_cdr CDR")
    variables = cdr["variables"]

    def var(name: str) -> str:
        value = variables.get(name, "")
        return unquote(value) if isinstance(value, str) else str(value)  # encode-values (default on)

    def us(name: str) -> int | None:
        value = var(name)
        return int(value) if value.isdigit() and int(value) > 0 else None

    uuid = var("uuid") or query_uuid
    if not uuid:
        raise BadCdr("no channel uuid")
    destination = ""
    callflow = cdr.get("callflow")
    if isinstance(callflow, list) and callflow and isinstance(callflow[0], dict):
        profile = callflow[0].get("caller_profile") or {}
        if isinstance(profile, dict):
            destination = str(profile.get("destination_number", ""))
    billsec = var("billsec")
    return PostedCdr(
        uuid=uuid,
        answer_us=us("answer_uepoch"),
        end_us=us("end_uepoch"),
        start_us=us("start_uepoch") or 0,
        billsec=int(billsec) if billsec.isdigit() else 0,
        hangup_cause=var("hangup_cause"),
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
    ) -> None:
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
        from gevent.pywsgi import WSGIServer

        if self.listener_fd is not None:
            import socket

            listener: Any = socket.socket(fileno=self.listener_fd)
        else:
            from fsbill.sockets import listening_socket

            # bound here, not by gevent: a taken address is the operator's clean one-line error
            # (exit 2, naming the setting and the address), as for `listen`
            listener = listening_socket(self.host, self.port, what="cdr_intake.listen")
        server = WSGIServer(listener, self.app, log=None, error_log=log)
        self.server = server
        server.start()
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
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            return reply("413 Payload Too Large", {"error": f"over {MAX_BODY_BYTES} bytes"})
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
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
