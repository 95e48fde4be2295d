"""`fsbill serve --workers N`: N serving processes behind one listening socket.

One process keeps up with a few switches; more cores need more processes. The supervisor
binds the event-socket listener (or takes systemd's, deploy/fsbill.socket), the CDR
intake's and the HTTP API's once, then starts N ordinary `fsbill serve` processes that inherit them and accept
from them: the kernel hands each new FreeSWITCH connection to whichever worker accepts first.

Each worker is a node of its own (`<node>-w<i>`): its own instance id, lease, heartbeats and
reaper, exactly as separate machines sharing the database are (the money rules never rely on
one process seeing another's calls: the database's row locks do that). A worker that dies is
started again under the same name, which is what a restart of that node is: its calls keep
their cut-off inside FreeSWITCH and are adopted (`switches:`) or reaped as after any crash.
Worker i serves /metrics on the configured port + i, so Prometheus scrapes each worker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import gevent
import gevent.event

from fsbill.config import Settings, parse_hostport
from fsbill.errors import ConfigError
from fsbill.logs import event as log_event
from fsbill.logs import render
from fsbill.sockets import listening_socket

log = logging.getLogger("fsbill.workers")

# What a worker finds in its environment (set only by the supervisor, for its children).
ENV_WORKER = "FSBILL_WORKER"  # this worker's index, 0..N-1
ENV_LISTEN_FD = "FSBILL_LISTEN_FD"  # the event-socket listener, inherited
ENV_CDR_INTAKE_FD = "FSBILL_CDR_INTAKE_FD"  # the CDR intake's listener, inherited
ENV_API_FD = "FSBILL_API_FD"  # the HTTP API's listener, inherited

# A worker that dies sooner than this after its start is failing, not crashing once: wait
# longer before each new start, up to the ceiling, rather than spinning.
_STEADY_S = 10.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0


def worker_index() -> int | None:
    """This process's worker index, when a supervisor started it."""
    value = os.environ.get(ENV_WORKER, "")
    return int(value) if value.isdigit() else None


def take_inherited_fd(name: str) -> int | None:
    """A listening socket's descriptor the supervisor passed down, removed from the environment
    so that nothing this process starts inherits the claim."""
    value = os.environ.pop(name, "")
    return int(value) if value.isdigit() else None


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker `index`'s settings: its own node name and its own metrics port."""
    metrics = settings.metrics_listen
    if metrics:
        host, port = parse_hostport(metrics, "metrics_listen")
        if port:
            if port + index > 65535:
                raise ConfigError(f"metrics_listen: worker {index} would serve on port {port + index}, past 65535")
            metrics = f"[{host}]:{port + index}" if ":" in host else f"{host}:{port + index}"
    return replace(settings, node=f"{settings.node}-w{index}", metrics_listen=metrics)


def backoff_s(previous_s: float, lived_s: float) -> float:
    """How long to wait before starting a worker again that lived `lived_s`."""
    if lived_s >= _STEADY_S:
        return _BACKOFF_FIRST_S
    return min(_BACKOFF_MAX_S, max(_BACKOFF_FIRST_S, previous_s * 2))


class Supervisor:
    """Starts the workers, starts again any that dies, and stops them all on SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, worker_argv: Sequence[str], inherited_fd: int | None = None) -> None:
        self.settings = settings
        self.worker_argv = list(worker_argv)  # `python -m fsbill serve ...` without --workers
        self.inherited_fd = inherited_fd
        self.procs: dict[int, subprocess.Popen] = {}
        self.starts: dict[int, int] = {}
        self.stopping = False
        self._stopped = gevent.event.Event()
        self._fds: dict[str, int] = {}
        self._sockets: list = []

    def bind(self) -> tuple[str, int]:
        """The listening sockets the workers share. Returns the event socket's address."""
        if self.inherited_fd is not None:
            import socket

            sock = socket.socket(fileno=self.inherited_fd)
        else:
            sock = listening_socket(*self.settings.listen_address(), what="listen")
        self._sockets.append(sock)
        self._fds[ENV_LISTEN_FD] = sock.fileno()
        intake = self.settings.cdr_intake.address()
        if intake is not None:
            isock = listening_socket(*intake, what="cdr_intake.listen")
            self._sockets.append(isock)
            self._fds[ENV_CDR_INTAKE_FD] = isock.fileno()
        api = self.settings.api.address()
        if api is not None:
            asock = listening_socket(*api, what="api.listen")
            self._sockets.append(asock)
            self._fds[ENV_API_FD] = asock.fileno()
        for fd in self._fds.values():
            os.set_inheritable(fd, True)
        host, port = sock.getsockname()[:2]
        return host, port

    def _spawn(self, index: int) -> subprocess.Popen:
        env = {**os.environ, ENV_WORKER: str(index), **{k: str(v) for k, v in self._fds.items()}}
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # systemd's claim is the supervisor's
            env.pop(name, None)
        proc = subprocess.Popen(
            self.worker_argv, env=env, pass_fds=tuple(self._fds.values()), preexec_fn=_die_with(os.getpid())
        )
        self.procs[index] = proc
        self.starts[index] = self.starts.get(index, 0) + 1
        log_event(log, "worker_started", worker=index, pid=proc.pid, start=self.starts[index])
        return proc

    def _keep(self, index: int) -> None:
        """Run worker `index` until the supervisor stops, starting it again when it dies."""
        wait_s = 0.0
        while not self.stopping:
            started = time.monotonic()
            proc = self._spawn(index)
            if self.stopping:  # the stop came while this worker was being started
                proc.send_signal(signal.SIGTERM)
            code = proc.wait()
            if self.stopping:
                return
            lived = time.monotonic() - started
            wait_s = backoff_s(wait_s, lived)
            log.error(render("worker_died", dict(worker=index, pid=proc.pid, code=code, lived_s=round(lived, 1))))
            if self._stopped.wait(wait_s):
                return

    def run(self, stop: gevent.event.Event) -> int:
        """Until `stop` is set; then SIGTERM to every worker, which settles what it can within
        shutdown_grace_s, and SIGKILL to any still running well after that.

        Each keeper sees its own worker out (a worker being started when the stop comes is
        signalled by its keeper once it exists), so the stop never races a start."""
        keepers = [gevent.spawn(self._keep, i) for i in range(self.settings.workers)]
        stop.wait()
        self.stopping = True
        self._stopped.set()
        log_event(log, "stopping_workers", workers=len(self.procs))
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        gevent.joinall(keepers, timeout=self.settings.shutdown_grace_s + 15)
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                log.error(render("worker_killed", dict(pid=proc.pid)))
                proc.kill()
        gevent.joinall(keepers)
        for sock in self._sockets:
            sock.close()
        return 0


def _die_with(supervisor: int) -> Callable[[], None]:
    """In the forked child, before exec: SIGTERM when the supervisor dies (prctl
    PR_SET_PDEATHSIG), so a supervisor killed with SIGKILL leaves no worker holding the
    listening socket; a worker whose supervisor is already gone exits at once."""

    def arm() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != supervisor:
            os._exit(1)

    return arm


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_argv(config: str | None, overrides: dict[str, str | None]) -> list[str]:
    """The command line of one worker: this interpreter running `fsbill serve` with the same
    config file and command-line overrides, but one process (the supervisor is the only one)."""
    argv = [sys.executable, "-m", "fsbill", "serve", "--workers", "1"]
    if config:
        argv += ["--config", os.path.abspath(config)]
    for option, value in overrides.items():
        if value is not None:
            argv += [option, value]
    return argv
