"""Closing a TCP socket so that the peer and our own reader both notice at once."""

from __future__ import annotations

import socket

from fsbill.errors import FsbillError


def listening_socket(host: str, port: int, what: str = "listen", backlog: int = 1024) -> socket.socket:
    """A TCP socket bound to host:port and listening (port 0: any free port). `what` names the
    setting in the error an operator sees when the address is taken or not ours."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FsbillError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


def close_socket(sock: socket.socket, reset: bool = False) -> None:
    """Shut the socket down, then close it. shutdown comes first because a reader's makefile()
    holds the descriptor open: close() alone would neither wake that reader nor tell the peer
    we are gone. `reset`: abort with an RST instead (SO_LINGER 0), as a crashed peer would."""
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
