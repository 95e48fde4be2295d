"""The smallest async outbound-socket application, for `fsbill bench switch --modes socket`.

What every outbound-socket design costs the switch, whatever it does with the call: per call
it sends `connect`, `filter Unique-ID <uuid>`, `event plain CHANNEL_ANSWER
CHANNEL_HANGUP_COMPLETE`, `linger` and one `sendmsg` executing `bridge`, then reads events
until CHANNEL_HANGUP_COMPLETE and says `exit`. No database, no rating, no cut-off: the
difference between this and a plain bridge is the design's floor; the difference between this
and fsbill is fsbill's own.

    python -m fsbill.bench.socket_app 127.0.0.1:18085 'loopback/fsbill_bench_echo/{context}'

`{context}` is the channel's dialplan context (the connect reply's Caller-Context), as the
fsbill extension's `${context}`: the echo extension is found wherever the bench dialplan was put.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

EVENTS = "CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE"


def _frame(stream) -> tuple[dict[bytes, bytes], bytes] | None:
    headers: dict[bytes, bytes] = {}
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.rstrip(b"\n")
        if not line:
            if headers:
                break
            continue
        name, _, value = line.partition(b": ")
        headers.setdefault(name, value)
    length = int(headers.get(b"Content-Length", b"0") or 0)
    return headers, stream.read(length) if length else b""


def _serve(sock: socket.socket, dial_string: str) -> None:
    try:
        stream = sock.makefile("rb")
        sock.sendall(b"connect\n\n")
        reply = _frame(stream)
        if reply is None:
            return
        uuid = reply[0].get(b"Unique-ID", b"").decode()
        context = reply[0].get(b"Caller-Context", b"default").decode()
        dial_string = dial_string.replace("{context}", context)
        sock.sendall(
            f"filter Unique-ID {uuid}\n\nevent plain {EVENTS}\n\nlinger\n\n"
            f"sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: {dial_string}\n\n".encode()
        )
        while True:
            frame = _frame(stream)
            if frame is None:
                return
            headers, body = frame
            if headers.get(b"Content-Type") == b"text/event-plain" and body.startswith(
                b"Event-Name: CHANNEL_HANGUP_COMPLETE"
            ):
                sock.sendall(b"exit\n\n")
                return
    except OSError:
        pass
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    host, _, port = argv[0].rpartition(":")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(1024)
    print(f"socket app serving FreeSWITCH outbound sockets on {host}:{port} ", flush=True)
    while True:
        sock, _ = server.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        gevent.spawn(_serve, sock, argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
