"""What fsbill's HTTP endpoints (the CDR intake, the API) share: a gevent WSGI server on a socket
bound with the operator's clean error, every connection under a read timeout, and a request
body read within bounds.

A client that stops sending (headers, or a body shorter than its Content-Length) is dropped
after the read timeout; a body over the limit is refused before it is read; neither reaches
the application's parsing, nor costs more than its bound in memory.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from fsbill.sockets import listening_socket

READ_TIMEOUT_S = 10.0  # a connection that sends nothing for this long (headers or body) is closed

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyError(ValueError):
    """A request body that cannot be read: its HTTP status (400 or 413) and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def read_body(environ: dict[str, Any], max_bytes: int) -> bytes:
    """The request's body, at most `max_bytes`: a BodyError (400 or 413) for a malformed or too
    large Content-Length, a body over the limit, or one shorter than declared (the socket's read
    timeout ends the wait for the rest)."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared and not (declared.isascii() and declared.isdigit()):
        raise BodyError(400, "bad Content-Length")
    length = int(declared) if declared and len(declared) <= 12 else (max_bytes + 1 if declared else 0)
    if length > max_bytes:
        raise BodyError(413, f"over {max_bytes} bytes")
    try:
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read(max_bytes + 1)
    except OSError:  # the socket's timeout: a body shorter than its Content-Length
        raise BodyError(400, "the body was not sent in time") from None
    if len(body) > max_bytes:
        raise BodyError(413, f"over {max_bytes} bytes")
    if length and len(body) < length:
        raise BodyError(400, "the body is shorter than its Content-Length")
    return body


def serve_wsgi(
    app: WSGIApp,
    host: str,
    port: int,
    *,
    what: str,
    log: logging.Logger,
    listener_fd: int | None = None,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> Any:
    """Start a gevent WSGI server for `app` and return it (its `server_port` is the bound port).

    `listener_fd`: a socket already bound and listening (a worker's, from its supervisor,
    fsbill.workers); else host:port is bound here, not by gevent, so a taken address is the
    operator's one-line error naming the setting `what` (exit 2), as for `listen`."""
    from gevent.pywsgi import WSGIHandler, WSGIServer

    listener: Any
    if listener_fd is not None:
        listener = socket.socket(fileno=listener_fd)
    else:
        listener = listening_socket(host, port, what=what)
    timeout = read_timeout_s

    class _Server(WSGIServer):
        def handle(self, sock: Any, address: Any) -> None:
            # every read and write on the connection times out: a client that stops
            # sending (headers, or a body shorter than its Content-Length) is dropped
            sock.settimeout(timeout)
            super().handle(sock, address)

    class _Handler(WSGIHandler):
        def get_environ(self) -> dict[str, Any]:
            env = super().get_environ()
            env["RAW_URI"] = self.path  # the path as sent, before %2F becomes '/' (as gunicorn)
            return env

    server = _Server(listener, app, log=None, error_log=log, handler_class=_Handler)
    server.start()
    return server


__all__ = ["READ_TIMEOUT_S", "BodyError", "WSGIApp", "read_body", "serve_wsgi"]
