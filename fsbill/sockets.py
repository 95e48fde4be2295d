"""Closing a TCP socket so that the peer and our own reader both notice at once."""

from __future__ import annotations

import socket


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
