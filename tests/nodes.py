"""Real `fsbill serve` processes for multi-node and crash tests, and a TCP proxy that can cut
a node off from PostgreSQL (connections refused, live ones reset) and let it back."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import gevent
from gevent import socket as gsocket
from gevent.server import StreamServer

from fsbill.bench.calls import Server


class ServeProcess(Server):
    """`python -m fsbill serve --config FILE` in its own process (the benchmark's launcher),
    with what the crash and shutdown tests need on top."""

    def __init__(self, tmp: Path, name: str, settings: dict[str, Any]) -> None:
        data = dict(listen="127.0.0.1:0", metrics_listen="", node=name, log_level="info")
        data.update(settings)
        super().__init__(tmp, data, name=name)
        self.name = name

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class CuttableProxy:
    """Forwards TCP to `target`; `cut()` resets every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: StreamServer | None = None
        self.pairs: set = set()
        self.up()

    def up(self) -> None:
        listener = gsocket.socket()
        listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.server = StreamServer(listener, self._handle)
        self.server.start()

    def cut(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=0)
            self.server = None
        for a, b in list(self.pairs):
            for s in (a, b):
                try:
                    s.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    s.close()
                except OSError:
                    pass
        self.pairs.clear()

    def _handle(self, client, _address) -> None:
        try:
            upstream = gsocket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        pair = (client, upstream)
        self.pairs.add(pair)

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass

        a = gevent.spawn(pump, client, upstream)
        b = gevent.spawn(pump, upstream, client)
        gevent.joinall([a, b])
        self.pairs.discard(pair)

    def close(self) -> None:
        self.cut()
