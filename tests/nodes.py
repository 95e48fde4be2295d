"""Real `fsbill serve` processes for multi-node and crash tests, and a TCP proxy that can cut
a node off from PostgreSQL (connections refused, live ones reset) and let it back."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import gevent
import yaml
from gevent import socket as gsocket
from gevent.server import StreamServer

SERVING = re.compile(rb"on [^ ]+:(\d+) ")


class ServeProcess:
    """`python -m fsbill serve --config FILE` in its own process."""

    def __init__(self, tmp: Path, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.config = tmp / f"{name}.yaml"
        self.log = tmp / f"{name}.log"
        data = dict(listen="127.0.0.1:0", metrics_listen="", node=name, log_level="info")
        data.update(settings)
        self.config.write_text(yaml.safe_dump(data))
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self, timeout_s: float = 20.0) -> int:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fsbill", "serve", "--config", str(self.config)],
            stdout=logf, stderr=logf, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        logf.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = SERVING.search(self.log.read_bytes())
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            gevent.sleep(0.05)
        raise AssertionError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

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
        self.server: Optional[StreamServer] = None
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
